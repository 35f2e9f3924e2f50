//! F(4x4, 3x3)'s tile transforms with AVX2, eight tiles of a tile row at a time held in
//! registers, from the plane straight to the runs and back (as F(2x2)'s are in
//! `transforms/avx2.rs`, whose masked loads and stores these share): the forward's here,
//! the gradients' in [`gradients`], over the same lane maps and shuffles.
//!
//! The portable loops split each padded row into its four column phases in scratch and then
//! run short loops over the row's tiles (8 at 32x32 maps, 4 at 16x16): at those lengths
//! their set-up outweighed the arithmetic, and F(4x4) ran at 0.3-0.55x F(2x2)'s speed. Every
//! value here takes the same operations in the same order as in the portable loops (no FMA,
//! products and sums as written in `bt`, `at`, `a` and `b`), so the floats are theirs; the
//! tests below hold them to it bit for bit.

use super::super::XI;
use crate::model::winograd::transforms::avx2::{add, load, store, sub};
use crate::model::winograd::transforms::{Slot, Tiles};
use std::arch::x86_64::*;

mod gradients;

pub(super) use gradients::{acc_scratch, inverse_input, transform_out_grad};

#[inline]
#[target_feature(enable = "avx2")]
fn mul(c: f32, a: __m256) -> __m256 {
    _mm256_mul_ps(_mm256_set1_ps(c), a)
}

/// [`super::bt`], lane by lane.
#[inline]
#[target_feature(enable = "avx2")]
fn bt(d: [__m256; 6]) -> [__m256; 6] {
    [
        add(sub(mul(4.0, d[0]), mul(5.0, d[2])), d[4]),
        add(add(mul(-4.0, add(d[1], d[2])), d[3]), d[4]),
        add(sub(mul(4.0, sub(d[1], d[2])), d[3]), d[4]),
        add(sub(mul(-2.0, sub(d[1], d[3])), d[2]), d[4]),
        add(sub(mul(2.0, sub(d[1], d[3])), d[2]), d[4]),
        add(sub(mul(4.0, d[1]), mul(5.0, d[3])), d[5]),
    ]
}

/// [`super::at`], lane by lane.
#[inline]
#[target_feature(enable = "avx2")]
fn at(m: [__m256; 6]) -> [__m256; 4] {
    let (s1, d1) = (add(m[1], m[2]), sub(m[1], m[2]));
    let (s3, d3) = (add(m[3], m[4]), sub(m[3], m[4]));
    [
        add(add(m[0], s1), s3),
        add(d1, mul(2.0, d3)),
        add(s1, mul(4.0, s3)),
        add(add(d1, mul(8.0, d3)), m[5]),
    ]
}

/// [`super::a`], lane by lane.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn a(e: [__m256; 4]) -> [__m256; 6] {
    let (s02, s13) = (add(e[0], e[2]), add(e[1], e[3]));
    let (q02, q13) = (
        add(e[0], mul(4.0, e[2])),
        add(mul(2.0, e[1]), mul(8.0, e[3])),
    );
    [
        e[0],
        add(s02, s13),
        sub(s02, s13),
        add(q02, q13),
        sub(q02, q13),
        e[3],
    ]
}

/// [`super::b`], lane by lane.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn b(v: [__m256; 6]) -> [__m256; 6] {
    [
        mul(4.0, v[0]),
        add(
            sub(mul(-4.0, sub(v[1], v[2])), mul(2.0, sub(v[3], v[4]))),
            mul(4.0, v[5]),
        ),
        sub(
            sub(sub(mul(-5.0, v[0]), mul(4.0, add(v[1], v[2]))), v[3]),
            v[4],
        ),
        sub(
            add(sub(v[1], v[2]), mul(2.0, sub(v[3], v[4]))),
            mul(5.0, v[5]),
        ),
        add(add(add(add(v[0], v[1]), v[2]), v[3]), v[4]),
        v[5],
    ]
}

/// The four column phases of eight tiles' 32 floats `a, b, c, d`: lane `k` of phase `j` is
/// float `4k + j`, by a 4x4 transpose in each 128-bit half after pairing the halves so that
/// the low one holds tiles 0-3.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn split(a: __m256, b: __m256, c: __m256, d: __m256) -> [__m256; 4] {
    // Tile k's four columns in half k / 4 of r[k % 4].
    let r0 = _mm256_permute2f128_ps::<0x20>(a, c);
    let r1 = _mm256_permute2f128_ps::<0x31>(a, c);
    let r2 = _mm256_permute2f128_ps::<0x20>(b, d);
    let r3 = _mm256_permute2f128_ps::<0x31>(b, d);
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    [
        _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2),
        _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2),
        _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3),
        _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3),
    ]
}

/// Padded columns `4k + j` (`j < 6`) of eight tiles `k`, from the 34 floats at the start of
/// `a, b, c, d` (32 floats) and `e` (lanes 0 and 1): [`split`], then phases 0 and 1 again
/// one tile on.
#[inline]
#[target_feature(enable = "avx2")]
fn phases(a: __m256, b: __m256, c: __m256, d: __m256, e: __m256) -> [__m256; 6] {
    let [p0, p1, p2, p3] = split(a, b, c, d);
    // Lane k of the next tile's phase: lane k + 1, and lane 7 from the ninth tile (e).
    let rot = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    let next = |p: __m256, lane: i32| {
        _mm256_blend_ps::<0x80>(
            _mm256_permutevar8x32_ps(p, rot),
            _mm256_permutevar8x32_ps(e, _mm256_set1_epi32(lane)),
        )
    };
    [p0, p1, p2, p3, next(p0, 0), next(p1, 1)]
}

/// The inverse of [`phases`]' transpose: 32 floats of a row, `out[4k + c] = y[c][k]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn join(y: [__m256; 4]) -> [__m256; 4] {
    let (u0, u1) = (
        _mm256_unpacklo_ps(y[0], y[1]),
        _mm256_unpackhi_ps(y[0], y[1]),
    );
    let (u2, u3) = (
        _mm256_unpacklo_ps(y[2], y[3]),
        _mm256_unpackhi_ps(y[2], y[3]),
    );
    // q[k % 4]: tile k in half k / 4.
    let q0 = _mm256_shuffle_ps::<0b01_00_01_00>(u0, u2);
    let q1 = _mm256_shuffle_ps::<0b11_10_11_10>(u0, u2);
    let q2 = _mm256_shuffle_ps::<0b01_00_01_00>(u1, u3);
    let q3 = _mm256_shuffle_ps::<0b11_10_11_10>(u1, u3);
    [
        _mm256_permute2f128_ps::<0x20>(q0, q1),
        _mm256_permute2f128_ps::<0x20>(q2, q3),
        _mm256_permute2f128_ps::<0x31>(q0, q1),
        _mm256_permute2f128_ps::<0x31>(q2, q3),
    ]
}

/// [`super::transform_input`]: `V = Bᵀ d B` for every tile of one `[h, w]` plane.
///
/// # Safety
/// AVX2 must be present; `v` and `slot` as for [`super::transform_input`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn transform_input(plane: &[f32], w: usize, t: Tiles, v: *mut f32, s: Slot) {
    let h = plane.len() / w;
    for ty in 0..t.th {
        for tx0 in (0..t.tw).step_by(8) {
            // Padded column 4tx + j of tile tx is the plane's column 4tx - 1 + j.
            let c0 = 4 * tx0 as isize - 1;
            // x[i][j]: padded row 4ty + i, column 4tx + j, for the eight tiles.
            let mut x = [[_mm256_setzero_ps(); 6]; 6];
            for (i, xi) in x.iter_mut().enumerate() {
                let Some(y) = (4 * ty + i).checked_sub(1).filter(|&y| y < h) else {
                    continue;
                };
                let row = plane[y * w..].as_ptr();
                // SAFETY: row[0..w] is the plane's row y; lanes outside it are masked.
                *xi = unsafe {
                    phases(
                        load(row, c0, w),
                        load(row, c0 + 8, w),
                        load(row, c0 + 16, w),
                        load(row, c0 + 24, w),
                        load(row, c0 + 32, w),
                    )
                };
            }
            // Bᵀ down the columns, then B along each row.
            for j in 0..6 {
                let col = bt(std::array::from_fn(|i| x[i][j]));
                for (xi, c) in x.iter_mut().zip(col) {
                    xi[j] = c;
                }
            }
            let (lo, len) = (tx0 as isize, t.tw);
            for (i, &xi) in x.iter().enumerate() {
                for (j, r) in bt(xi).into_iter().enumerate() {
                    let out = v.wrapping_add(s.run(t, ty, 6 * i + j));
                    // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
                    unsafe { store(out, lo, len, r) };
                }
            }
        }
    }
}

/// [`super::inverse_output`]: `y = Aᵀ M A` for every tile of one `[ho, wo]` output plane.
///
/// # Safety
/// AVX2 must be present; `m` and `slot` as for [`super::inverse_output`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn inverse_output(
    m: *const f32,
    s: Slot,
    t: Tiles,
    plane: &mut [f32],
    wo: usize,
) {
    let ho = plane.len() / wo;
    for ty in 0..t.th {
        for tx0 in (0..t.tw).step_by(8) {
            let (lo, len) = (tx0 as isize, t.tw);
            let mut mr = [_mm256_setzero_ps(); XI];
            for (xi, v) in mr.iter_mut().enumerate() {
                // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
                *v = unsafe { load(m.add(s.run(t, ty, xi)), lo, len) };
            }
            // Aᵀ down the columns: sr[r][j] for r < 4, then Aᵀ along each row.
            let mut sr = [[_mm256_setzero_ps(); 6]; 4];
            for j in 0..6 {
                let col = at(std::array::from_fn(|i| mr[6 * i + j]));
                for (r, c) in sr.iter_mut().zip(col) {
                    r[j] = c;
                }
            }
            for (r, &row_m) in sr.iter().enumerate() {
                let y = 4 * ty + r;
                if y >= ho {
                    break;
                }
                let row = plane[y * wo..].as_mut_ptr();
                let c0 = 4 * tx0 as isize;
                for (q, v) in join(at(row_m)).into_iter().enumerate() {
                    // SAFETY: row[0..wo] is the plane's row y; lanes outside it are masked.
                    unsafe { store(row, c0 + 8 * q as isize, wo, v) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::tiles;
    use super::super::{self as portable, input_scratch, output_scratch};
    use super::XI;
    use crate::model::test_util::{assert_same_bits, randn_with_zeros};
    use crate::model::winograd::transforms::{Slot, Tiles};

    /// Plane sides around whole vectors of tiles (8 tiles = 32 pixels), odd and even, with
    /// the sides of ResNet's maps at 64, 128 and 224 px.
    pub(super) const SIDES: [(usize, usize); 13] = [
        (1, 1),
        (2, 3),
        (5, 7),
        (7, 14),
        (8, 8),
        (16, 16),
        (17, 33),
        (31, 32),
        (32, 32),
        (33, 31),
        (28, 28),
        (56, 56),
        (14, 65),
    ];

    /// Runs `f(w, tiles, slot, plane, sentinel)` for each of [`SIDES`]: a random plane, its
    /// slot the middle one of three in the runs, and random data around it (so that a write
    /// past its runs would land in a neighbour's, which must stay put), seeded from `seed`.
    pub(super) fn for_each_plane(mut seed: u64, f: impl Fn(usize, Tiles, Slot, &[f32], &[f32])) {
        for (h, w) in SIDES {
            let t = tiles(h, w);
            let n = t.per_image();
            let slot = Slot {
                xi_stride: 3 * n,
                base: n,
            };
            let plane = randn_with_zeros(h * w, &mut seed);
            let sentinel = randn_with_zeros(XI * 3 * n, &mut seed);
            f(w, t, slot, &plane, &sentinel);
        }
    }

    #[test]
    fn forward_transforms_give_the_portable_bits() {
        for_each_plane(700, |w, t, slot, plane, sentinel| {
            assert_same_bits(|| {
                let mut v = sentinel.to_vec();
                let mut buf = vec![0f32; input_scratch(t)];
                portable::transform_input(plane, w, t, v.as_mut_ptr(), slot, &mut buf);
                v
            });
            assert_same_bits(|| {
                let mut out = randn_with_zeros(plane.len(), &mut 0);
                let mut buf = vec![0f32; output_scratch(t)];
                portable::inverse_output(sentinel.as_ptr(), slot, t, &mut out, w, &mut buf);
                out
            });
        });
    }
}
