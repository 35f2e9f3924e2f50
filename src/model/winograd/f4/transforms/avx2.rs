//! F(4x4, 3x3)'s tile transforms with AVX2, eight tiles of a tile row at a time held in
//! registers, from the plane straight to the runs and back (as F(2x2)'s are in
//! `transforms/avx2.rs`, whose masked loads and stores these share).
//!
//! The portable loops split each padded row into its four column phases in scratch and then
//! run short loops over the row's tiles (8 at 32x32 maps, 4 at 16x16): at those lengths
//! their set-up outweighed the arithmetic, and F(4x4) ran at 0.3-0.55x F(2x2)'s speed. Every
//! value here takes the same operations in the same order as in the portable loops (no FMA,
//! products and sums as written in `bt`, `at`, `a` and `b`), so the floats are theirs; the
//! tests below hold them to it bit for bit.

use super::super::XI;
use crate::model::winograd::transforms::avx2::{add, from_left, last, load, store, sub};
use crate::model::winograd::transforms::{Slot, Tiles};
use std::arch::x86_64::*;

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
fn a(e: [__m256; 4]) -> [__m256; 6] {
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
fn b(v: [__m256; 6]) -> [__m256; 6] {
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
fn split(a: __m256, b: __m256, c: __m256, d: __m256) -> [__m256; 4] {
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
fn join(y: [__m256; 4]) -> [__m256; 4] {
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

/// [`super::transform_out_grad`]: `Z = A dy Aᵀ` for every tile of one `[ho, wo]` plane.
///
/// # Safety
/// AVX2 must be present; `z` and `slot` as for [`super::transform_out_grad`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn transform_out_grad(plane: &[f32], wo: usize, t: Tiles, z: *mut f32, s: Slot) {
    let ho = plane.len() / wo;
    for ty in 0..t.th {
        for tx0 in (0..t.tw).step_by(8) {
            let c0 = 4 * tx0 as isize;
            // d[r][c]: row 4ty + r, column 4tx + c, for the eight tiles.
            let mut d = [[_mm256_setzero_ps(); 4]; 4];
            for (r, dr) in d.iter_mut().enumerate() {
                let y = 4 * ty + r;
                if y >= ho {
                    continue;
                }
                let row = plane[y * wo..].as_ptr();
                // SAFETY: row[0..wo] is the plane's row y; lanes outside it are masked.
                *dr = unsafe {
                    split(
                        load(row, c0, wo),
                        load(row, c0 + 8, wo),
                        load(row, c0 + 16, wo),
                        load(row, c0 + 24, wo),
                    )
                };
            }
            // A down the columns: cols[i][c], then A along each row i.
            let mut cols = [[_mm256_setzero_ps(); 4]; 6];
            for c in 0..4 {
                let col = a(std::array::from_fn(|r| d[r][c]));
                for (ci, v) in cols.iter_mut().zip(col) {
                    ci[c] = v;
                }
            }
            let (lo, len) = (tx0 as isize, t.tw);
            for (i, &ci) in cols.iter().enumerate() {
                for (j, r) in a(ci).into_iter().enumerate() {
                    let out = z.wrapping_add(s.run(t, ty, 6 * i + j));
                    // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
                    unsafe { store(out, lo, len, r) };
                }
            }
        }
    }
}

/// Floats per row of [`inverse_input`]'s padded plane: the tiles' columns rounded up to
/// whole blocks of eight tiles, and a vector more for the last tile's two right-hand columns
/// and the final copy's load one column on.
pub(super) fn acc_width(t: Tiles) -> usize {
    4 * t.tw.div_ceil(8) * 8 + 8
}

/// Scratch floats of [`inverse_input`].
pub(super) fn acc_scratch(t: Tiles) -> usize {
    (4 * t.th + 2) * acc_width(t)
}

/// [`super::inverse_input`]: `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane, added onto
/// `plane` when `accumulate`. Tiles overlap by two rows and columns: each tile row adds into a
/// zero-padded plane (`acc`, [`acc_scratch`] floats), each position taking its own tile's
/// value and then its left neighbour's, as the portable loop adds them.
///
/// # Safety
/// AVX2 must be present; `dv` and `slot` as for [`super::inverse_input`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn inverse_input(
    dv: *const f32,
    s: Slot,
    t: Tiles,
    plane: &mut [f32],
    w: usize,
    acc: &mut [f32],
    accumulate: bool,
) {
    let h = plane.len() / w;
    let (tw, n) = (t.tw, acc_width(t));
    let acc = &mut acc[..acc_scratch(t)];
    acc.fill(0.0);
    let base = acc.as_mut_ptr();
    let zero = _mm256_setzero_ps();
    for ty in 0..t.th {
        // Columns 4 and 5 of the eight tiles left of the current ones, per row k.
        let mut left = [[zero; 2]; 6];
        for tx0 in (0..tw).step_by(8) {
            let (lo, len) = (tx0 as isize, tw);
            let mut d = [zero; XI];
            for (xi, v) in d.iter_mut().enumerate() {
                // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
                *v = unsafe { load(dv.add(s.run(t, ty, xi)), lo, len) };
            }
            // B along the rows, then down the columns: db[k][l].
            let hb: [[__m256; 6]; 6] =
                std::array::from_fn(|i| b(std::array::from_fn(|j| d[6 * i + j])));
            let mut db = [[zero; 6]; 6];
            for l in 0..6 {
                let col = b(std::array::from_fn(|i| hb[i][l]));
                for (dk, v) in db.iter_mut().zip(col) {
                    dk[l] = v;
                }
            }
            // Row k of tile tx adds at padded row 4ty + k, columns 4tx .. 4tx + 5: columns
            // 0-3 onto the tile's own four, then 4 and 5 onto the next tile's first two.
            for (k, dk) in db.iter().enumerate() {
                let own = join([dk[0], dk[1], dk[2], dk[3]]);
                let next = join([
                    from_left(dk[4], left[k][0]),
                    from_left(dk[5], left[k][1]),
                    zero,
                    zero,
                ]);
                // SAFETY: 4tx0 + 32 <= n (acc_width), inside padded row 4ty + k.
                unsafe {
                    let row = base.add((4 * ty + k) * n + 4 * tx0);
                    for (q, (o, x)) in own.into_iter().zip(next).enumerate() {
                        let p = row.add(8 * q);
                        let v = add(_mm256_loadu_ps(p), o);
                        _mm256_storeu_ps(p, add(v, x));
                    }
                }
                left[k] = [dk[4], dk[5]];
            }
        }
        // With tw a multiple of 8, the last tile's columns 4 and 5 are past the last eight.
        if tw % 8 == 0 {
            for (k, [l4, l5]) in left.iter().enumerate() {
                let row = (4 * ty + k) * n + 4 * tw;
                // SAFETY: 4tw + 2 <= n, inside padded row 4ty + k.
                unsafe {
                    *base.add(row) += last(*l4);
                    *base.add(row + 1) += last(*l5);
                }
            }
        }
    }
    // Plane pixel (y, x) is padded (y + 1, x + 1).
    for y in 0..h {
        let row = plane[y * w..].as_mut_ptr();
        for x0 in (0..w).step_by(8) {
            // SAFETY: (y + 1) n + 1 + x0 + 8 <= (y + 2) n (acc_width), and the row's w floats
            // are the plane's.
            unsafe {
                let v = _mm256_loadu_ps(base.add((y + 1) * n + 1 + x0));
                let x0 = x0 as isize;
                if accumulate {
                    store(row, x0, w, add(load(row, x0, w), v));
                } else {
                    store(row, x0, w, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::tiles;
    use super::super::{
        self as portable, input_scratch, out_grad_scratch, output_scratch, plane_scratch,
    };
    use super::XI;
    use crate::model::test_util::{assert_same_bits, randn_with_zeros};
    use crate::model::winograd::transforms::Slot;

    /// Plane sides around whole vectors of tiles (8 tiles = 32 pixels), odd and even, with
    /// the sides of ResNet's maps at 64, 128 and 224 px.
    const SIDES: [(usize, usize); 13] = [
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

    /// Both forward transforms, on planes whose slot is the middle one of three in the
    /// runs, so that a write past its runs would land in a neighbour's (which must stay put).
    #[test]
    fn forward_transforms_give_the_portable_bits() {
        let mut seed = 700;
        for (h, w) in SIDES {
            let t = tiles(h, w);
            let n = t.per_image();
            let slot = Slot {
                xi_stride: 3 * n,
                base: n,
            };
            let plane = randn_with_zeros(h * w, &mut seed);
            let sentinel = randn_with_zeros(XI * 3 * n, &mut seed);
            assert_same_bits(|| {
                let mut v = sentinel.to_vec();
                let mut buf = vec![0f32; input_scratch(t)];
                portable::transform_input(&plane, w, t, v.as_mut_ptr(), slot, &mut buf);
                v
            });
            assert_same_bits(|| {
                let mut out = randn_with_zeros(h * w, &mut 0);
                let mut buf = vec![0f32; output_scratch(t)];
                portable::inverse_output(sentinel.as_ptr(), slot, t, &mut out, w, &mut buf);
                out
            });
        }
    }

    /// Both gradient transforms, as the forward's above; the input gradient written over the
    /// plane and added onto it.
    #[test]
    fn gradient_transforms_give_the_portable_bits() {
        let mut seed = 800;
        for (h, w) in SIDES {
            let t = tiles(h, w);
            let n = t.per_image();
            let slot = Slot {
                xi_stride: 3 * n,
                base: n,
            };
            let plane = randn_with_zeros(h * w, &mut seed);
            let sentinel = randn_with_zeros(XI * 3 * n, &mut seed);
            assert_same_bits(|| {
                let mut z = sentinel.to_vec();
                let mut buf = vec![0f32; out_grad_scratch(t)];
                portable::transform_out_grad(&plane, w, t, z.as_mut_ptr(), slot, &mut buf);
                z
            });
            for accumulate in [false, true] {
                assert_same_bits(|| {
                    let mut out = plane.to_vec();
                    let mut buf = vec![f32::NAN; plane_scratch(t)];
                    portable::inverse_input(
                        sentinel.as_ptr(),
                        slot,
                        t,
                        &mut out,
                        w,
                        &mut buf,
                        accumulate,
                    );
                    out
                });
            }
        }
    }
}
