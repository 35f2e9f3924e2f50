//! F(4x4, 3x3)'s gradient transforms with AVX2: `Z = A dy Aᵀ` and the overlapping
//! `dx = Σ B dV Bᵀ`, eight tiles of a tile row at a time, the same floats as the portable
//! loops (the test below holds them to it bit for bit).

use super::{a, b, join, split};
use crate::model::winograd::f4::XI;
use crate::model::winograd::transforms::avx2::{add, from_left, last, load, store};
use crate::model::winograd::transforms::{Slot, Tiles};
use std::arch::x86_64::*;

/// [`super::super::transform_out_grad`]: `Z = A dy Aᵀ` for every tile of one `[ho, wo]` plane.
///
/// # Safety
/// AVX2 must be present; `z` and `slot` as for [`super::super::transform_out_grad`].
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd::f4::transforms) unsafe fn transform_out_grad(
    plane: &[f32],
    wo: usize,
    t: Tiles,
    z: *mut f32,
    s: Slot,
) {
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
pub(in crate::model::winograd::f4::transforms) fn acc_scratch(t: Tiles) -> usize {
    (4 * t.th + 2) * acc_width(t)
}

/// [`super::super::inverse_input`]: `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane, added onto
/// `plane` when `accumulate`. Tiles overlap by two rows and columns: each tile row adds into a
/// zero-padded plane (`acc`, [`acc_scratch`] floats), each position taking its own tile's
/// value and then its left neighbour's, as the portable loop adds them.
///
/// # Safety
/// AVX2 must be present; `dv` and `slot` as for [`super::super::inverse_input`].
#[target_feature(enable = "avx2")]
pub(in crate::model::winograd::f4::transforms) unsafe fn inverse_input(
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
    use super::super::super::{self as portable, out_grad_scratch, plane_scratch};
    use super::super::tests::for_each_plane;
    use crate::model::test_util::assert_same_bits;

    /// The input gradient written over the plane and added onto it.
    #[test]
    fn gradient_transforms_give_the_portable_bits() {
        for_each_plane(800, |w, t, slot, plane, sentinel| {
            assert_same_bits(|| {
                let mut z = sentinel.to_vec();
                let mut buf = vec![0f32; out_grad_scratch(t)];
                portable::transform_out_grad(plane, w, t, z.as_mut_ptr(), slot, &mut buf);
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
        });
    }
}
