//! The F(2x2, 3x3) tile transforms with AVX2, eight tiles of a tile row at a time held in
//! registers: from the plane straight to the runs (masked loads give the zero padding,
//! masked stores the last tiles of a row), with no row scratch in between.
//!
//! The portable loops work on whole tile rows of 8 to 28 tiles, so most of their time went
//! on setting up short loops (deinterleaving into scratch, alias checks, remainders), not on
//! the arithmetic; compiled for AVX2 they ran no faster. Every value here takes the same
//! operations in the same order as in the portable loops, so the floats are theirs (the
//! tests below hold them to it bit for bit).

use super::{Slot, Tiles};
use std::arch::x86_64::*;

/// Lanes `l` with `0 <= lo + l < len`, as a mask for `maskload`/`maskstore`.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes_within(lo: isize, len: usize) -> __m256i {
    let idx = _mm256_add_epi32(
        _mm256_set1_epi32(lo as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let from = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1));
    let below = _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), idx);
    _mm256_and_si256(from, below)
}

/// `row[lo .. lo + 8]`, zero outside `row[0 .. len]`.
///
/// # Safety
/// `row[0 .. len]` must be readable; lanes outside it are not read.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) unsafe fn load(row: *const f32, lo: isize, len: usize) -> __m256 {
    // SAFETY: inside row[0..len], or masked to the lanes that are.
    unsafe {
        if lo >= 0 && lo as usize + 8 <= len {
            _mm256_loadu_ps(row.offset(lo))
        } else {
            _mm256_maskload_ps(row.wrapping_offset(lo), lanes_within(lo, len))
        }
    }
}

/// Stores the lanes of `v` that fall inside `dst[0 .. len]` at `dst[lo ..]`.
///
/// # Safety
/// `dst[0 .. len]` must be writable; lanes outside it are not written.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) unsafe fn store(dst: *mut f32, lo: isize, len: usize, v: __m256) {
    // SAFETY: inside dst[0..len], or masked to the lanes that are. (A masked store is
    // slow on AMD's cores: only the ends of rows take one.)
    unsafe {
        if lo >= 0 && lo as usize + 8 <= len {
            _mm256_storeu_ps(dst.offset(lo), v)
        } else {
            _mm256_maskstore_ps(dst.wrapping_offset(lo), lanes_within(lo, len), v)
        }
    }
}

/// The even and the odd elements of the sixteen floats `a`, `b`.
#[inline]
#[target_feature(enable = "avx2")]
fn even_odd(a: __m256, b: __m256) -> (__m256, __m256) {
    let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    (order(e), order(o))
}

/// Sixteen floats `e0, o0, e1, o1, ...` from the evens `e` and odds `o`, as two vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn interleave(e: __m256, o: __m256) -> (__m256, __m256) {
    let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
    (
        _mm256_permute2f128_ps::<0x20>(lo, hi),
        _mm256_permute2f128_ps::<0x31>(lo, hi),
    )
}

#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) fn add(a: __m256, b: __m256) -> __m256 {
    _mm256_add_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) fn sub(a: __m256, b: __m256) -> __m256 {
    _mm256_sub_ps(a, b)
}

/// `-a`: the sign bit flipped, as Rust's negation does.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) fn neg(a: __m256) -> __m256 {
    _mm256_xor_ps(a, _mm256_set1_ps(-0.0))
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
            // Padded column 2tx + j of tile tx is the plane's column 2tx - 1 + j.
            let c0 = 2 * tx0 as isize - 1;
            // x[i][j]: padded row 2ty + i, column 2tx + j, for the eight tiles.
            let mut x = [[_mm256_setzero_ps(); 4]; 4];
            for (i, xi) in x.iter_mut().enumerate() {
                let Some(y) = (2 * ty + i).checked_sub(1).filter(|&y| y < h) else {
                    continue;
                };
                let row = plane[y * w..].as_ptr();
                // SAFETY: row[0..w] is the plane's row y.
                let (a, b, c, d) = unsafe {
                    (
                        load(row, c0, w),
                        load(row, c0 + 8, w),
                        load(row, c0 + 2, w),
                        load(row, c0 + 10, w),
                    )
                };
                let ((d0, d1), (d2, d3)) = (even_odd(a, b), even_odd(c, d));
                *xi = [d0, d1, d2, d3];
            }
            // Bᵀ down the columns: (r0 - r2, r1 + r2, r2 - r1, r1 - r3). (Column j of four
            // rows: an index reads it more plainly than iterators would.)
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                let [r0, r1, r2, r3] = [x[0][j], x[1][j], x[2][j], x[3][j]];
                x[0][j] = sub(r0, r2);
                x[1][j] = add(r1, r2);
                x[2][j] = sub(r2, r1);
                x[3][j] = sub(r1, r3);
            }
            // B along the rows: (c0 - c2, c1 + c2, c2 - c1, c1 - c3).
            let (lo, len) = (tx0 as isize, t.tw);
            for (i, &[c0, c1, c2, c3]) in x.iter().enumerate() {
                let out = |j: usize| v.wrapping_add(s.run(t, ty, 4 * i + j));
                // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
                unsafe {
                    store(out(0), lo, len, sub(c0, c2));
                    store(out(1), lo, len, add(c1, c2));
                    store(out(2), lo, len, sub(c2, c1));
                    store(out(3), lo, len, sub(c1, c3));
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
            let c0 = 2 * tx0 as isize;
            // Rows 2ty and 2ty + 1 of dy, columns 2tx (even) and 2tx + 1 (odd).
            let mut rows = [(_mm256_setzero_ps(), _mm256_setzero_ps()); 2];
            for (r, eo) in rows.iter_mut().enumerate() {
                let y = 2 * ty + r;
                if y < ho {
                    let row = plane[y * wo..].as_ptr();
                    // SAFETY: row[0..wo] is dy's row y.
                    let (a, b) = unsafe { (load(row, c0, wo), load(row, c0 + 8, wo)) };
                    *eo = even_odd(a, b);
                }
            }
            let [(e0, o0), (e1, o1)] = rows;
            // A down the columns: (a, a + b, a - b, -b), for the even and the odd columns.
            let down = |a, b| [a, add(a, b), sub(a, b), neg(b)];
            let (ve, vo) = (down(e0, e1), down(o0, o1));
            // A along the rows: (e, e + o, e - o, -o).
            let (lo, len) = (tx0 as isize, t.tw);
            for (i, (&e, &o)) in ve.iter().zip(&vo).enumerate() {
                let out = |j: usize| z.wrapping_add(s.run(t, ty, 4 * i + j));
                // SAFETY: as in transform_input.
                unsafe {
                    store(out(0), lo, len, e);
                    store(out(1), lo, len, add(e, o));
                    store(out(2), lo, len, sub(e, o));
                    store(out(3), lo, len, neg(o));
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
            // SAFETY: the runs of tile row ty hold t.tw floats each (the caller's slot).
            let mut mr = [_mm256_setzero_ps(); 16];
            for (xi, v) in mr.iter_mut().enumerate() {
                *v = unsafe { load(m.add(s.run(t, ty, xi)), lo, len) };
            }
            // Aᵀ down the columns: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, per column j.
            let (mut s0, mut s1) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
            for j in 0..4 {
                s0[j] = add(add(mr[j], mr[4 + j]), mr[8 + j]);
                s1[j] = sub(sub(mr[4 + j], mr[8 + j]), mr[12 + j]);
            }
            for (r, sr) in [s0, s1].iter().enumerate() {
                let y = 2 * ty + r;
                if y >= ho {
                    break;
                }
                // Aᵀ along the rows, then each tile's two pixels side by side.
                let y0 = add(add(sr[0], sr[1]), sr[2]);
                let y1 = sub(sub(sr[1], sr[2]), sr[3]);
                let (first, second) = interleave(y0, y1);
                let row = plane[y * wo..].as_mut_ptr();
                let c0 = 2 * tx0 as isize;
                // SAFETY: row[0..wo] is the plane's row y.
                unsafe {
                    store(row, c0, wo, first);
                    store(row, c0 + 8, wo, second);
                }
            }
        }
    }
}

/// Lane `l` of the result is lane `l - 1` of `cur`, and lane 0 is lane 7 of `prev`: a row of
/// tiles' values moved one tile right, the eight tiles before them supplying the first.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) fn from_left(cur: __m256, prev: __m256) -> __m256 {
    let rot = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
    let (c, p) = (
        _mm256_permutevar8x32_ps(cur, rot),
        _mm256_permutevar8x32_ps(prev, rot),
    );
    _mm256_blend_ps::<1>(c, p)
}

/// Lane 7 of `v`.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd) fn last(v: __m256) -> f32 {
    _mm_cvtss_f32(_mm256_castps256_ps128(_mm256_permutevar8x32_ps(
        v,
        _mm256_set1_epi32(7),
    )))
}

/// [`super::inverse_input`]: `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane, added onto
/// `plane` when `accumulate`. Tiles overlap by two rows and columns: each tile row adds into
/// a zero-padded plane kept as even and odd columns (`acc`, [`acc_scratch`] floats), each
/// position taking its own tile's value and then its left neighbour's, as the portable loop
/// adds them.
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
    for ty in 0..t.th {
        // The right-hand columns (r2, r3) of the tiles left of the current eight, per row.
        let mut left = [[_mm256_setzero_ps(); 2]; 4];
        for tx0 in (0..tw).step_by(8) {
            let (lo, len) = (tx0 as isize, tw);
            // SAFETY: as in inverse_output.
            let mut d = [_mm256_setzero_ps(); 16];
            for (xi, v) in d.iter_mut().enumerate() {
                *v = unsafe { load(dv.add(s.run(t, ty, xi)), lo, len) };
            }
            // B along the rows: (d0, d1 - d2 + d3, d1 + d2 - d0, -d3), per tile row i.
            let mut hb = [[_mm256_setzero_ps(); 4]; 4];
            for (i, hi) in hb.iter_mut().enumerate() {
                let [d0, d1, d2, d3] = [d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]];
                *hi = [d0, add(sub(d1, d2), d3), sub(add(d1, d2), d0), neg(d3)];
            }
            // B down the columns: rows (h0, h1 - h2 + h3, h1 + h2 - h0, -h3), per column j.
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                let [h0, h1, h2, h3] = [hb[0][j], hb[1][j], hb[2][j], hb[3][j]];
                hb[1][j] = add(sub(h1, h2), h3);
                hb[2][j] = sub(add(h1, h2), h0);
                hb[3][j] = neg(h3);
            }
            // Row i of tile tx adds at padded row 2ty + i: even[tx] += r0, odd[tx] += r1,
            // even[tx + 1] += r2, odd[tx + 1] += r3.
            for (i, &[r0, r1, r2, r3]) in hb.iter().enumerate() {
                let row = 2 * ty + i;
                let [l2, l3] = left[i];
                // SAFETY: tx0 + 8 <= n (acc_width), inside padded rows 2 row, 2 row + 1.
                unsafe {
                    let even = base.add(2 * row * n + tx0);
                    let odd = base.add((2 * row + 1) * n + tx0);
                    let e = add(_mm256_loadu_ps(even), r0);
                    _mm256_storeu_ps(even, add(e, from_left(r2, l2)));
                    let o = add(_mm256_loadu_ps(odd), r1);
                    _mm256_storeu_ps(odd, add(o, from_left(r3, l3)));
                }
                left[i] = [r2, r3];
            }
        }
        // With tw a multiple of 8, column tw (the last tile's right-hand side) is past the
        // last eight: it takes that tile's r2, r3 alone.
        if tw % 8 == 0 {
            for (i, [l2, l3]) in left.iter().enumerate() {
                let row = 2 * ty + i;
                // SAFETY: tw < n, inside padded rows 2 row, 2 row + 1.
                unsafe {
                    *base.add(2 * row * n + tw) += last(*l2);
                    *base.add((2 * row + 1) * n + tw) += last(*l3);
                }
            }
        }
    }
    // Plane pixel (y, x) is padded (y + 1, x + 1): x even -> odd[x/2], x odd -> even[x/2 + 1].
    for y in 0..h {
        let (even, odd) = (2 * (y + 1) * n, (2 * y + 3) * n);
        let row = plane[y * w..].as_mut_ptr();
        for k0 in (0..w.div_ceil(2)).step_by(8) {
            // SAFETY: k0 + 9 <= n (acc_width), and the row's w floats are the plane's.
            unsafe {
                let (first, second) = interleave(
                    _mm256_loadu_ps(base.add(odd + k0)),
                    _mm256_loadu_ps(base.add(even + k0 + 1)),
                );
                let x0 = 2 * k0 as isize;
                if accumulate {
                    store(row, x0, w, add(load(row, x0, w), first));
                    store(row, x0 + 8, w, add(load(row, x0 + 8, w), second));
                } else {
                    store(row, x0, w, first);
                    store(row, x0 + 8, w, second);
                }
            }
        }
    }
}

/// Floats per even or odd row of [`inverse_input`]'s padded plane: the `tw` tiles rounded
/// up to whole vectors, and one vector more for column `tw` and the interleave's load of
/// `even[k0 + 1 ..]`.
pub(super) fn acc_width(t: Tiles) -> usize {
    t.tw.div_ceil(8) * 8 + 8
}

/// Scratch floats of [`inverse_input`].
pub(super) fn acc_scratch(t: Tiles) -> usize {
    2 * (2 * t.th + 2) * acc_width(t)
}

#[cfg(test)]
mod tests {
    use super::super::{self as portable, Slot, Tiles, XI};
    use crate::model::test_util::{assert_same_bits, randn_with_zeros};

    /// Plane sides around whole vectors of tiles (8 tiles = 16 pixels), odd and even, with
    /// the sides of ResNet's maps at 64, 128 and 224 px.
    const SIDES: [(usize, usize); 12] = [
        (1, 1),
        (2, 3),
        (3, 2),
        (5, 7),
        (7, 14),
        (8, 8),
        (15, 16),
        (16, 17),
        (17, 33),
        (32, 32),
        (28, 28),
        (56, 56),
    ];

    /// A plane's slot in a `[XI, 3, n]` buffer, as the plane in the middle of three, so that
    /// writes past its runs would land in its neighbours' (which the tests check stay put).
    fn slot_of(t: Tiles) -> (Slot, usize) {
        let n = t.per_image();
        let slot = Slot {
            xi_stride: 3 * n,
            base: n,
        };
        (slot, XI * 3 * n)
    }

    /// Runs `f(h, w, tiles, slot, plane, sentinel)` for each of [`SIDES`]: a random plane
    /// and random data around its slot (the other planes' runs), seeded from `seed`.
    fn for_each_plane(mut seed: u64, f: impl Fn(usize, usize, Tiles, Slot, &[f32], &[f32])) {
        for (h, w) in SIDES {
            let t = Tiles::of(h, w);
            let (slot, len) = slot_of(t);
            let plane = randn_with_zeros(h * w, &mut seed);
            let sentinel = randn_with_zeros(len, &mut seed);
            f(h, w, t, slot, &plane, &sentinel);
        }
    }

    #[test]
    fn forward_transforms_give_the_portable_bits() {
        for_each_plane(500, |h, w, t, slot, plane, sentinel| {
            assert_same_bits(|| {
                let mut v = sentinel.to_vec();
                let mut buf = vec![0f32; t.row_scratch()];
                portable::transform_input(plane, w, t, v.as_mut_ptr(), slot, &mut buf);
                v
            });
            assert_same_bits(|| {
                let mut out = sentinel[..h * w].to_vec();
                let mut buf = vec![0f32; t.row_scratch()];
                portable::inverse_output(sentinel.as_ptr(), slot, t, &mut out, w, &mut buf);
                out
            });
        });
    }

    #[test]
    fn gradient_transforms_give_the_portable_bits() {
        for_each_plane(600, |_, w, t, slot, plane, sentinel| {
            assert_same_bits(|| {
                let mut z = sentinel.to_vec();
                let mut buf = vec![0f32; t.row_scratch()];
                portable::transform_out_grad(plane, w, t, z.as_mut_ptr(), slot, &mut buf);
                z
            });
            for accumulate in [false, true] {
                assert_same_bits(|| {
                    let mut out = plane.to_vec();
                    let mut buf = vec![f32::NAN; t.plane_scratch()];
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
        });
    }
}
