//! F(4x4, 3x3)'s kernel transform, `U = G g Gᵀ` (see [`super`] for `G`).

use super::XI;
use crate::model::conv_kernels::{Pooled, SendPtr};
use rayon::prelude::*;

/// `G k` for one column (or row) `k` of a 3x3 kernel.
#[inline(always)]
fn g(k: [f32; 3]) -> [f32; 6] {
    let (s, m) = (k[0] + k[2], k[1]);
    [
        0.25 * k[0],
        -(s + m) / 6.0,
        -(s - m) / 6.0,
        k[0] / 24.0 + m / 12.0 + k[2] / 6.0,
        k[0] / 24.0 - m / 12.0 + k[2] / 6.0,
        k[2],
    ]
}

/// `G g Gᵀ` of one 3x3 kernel `k`: column `j` of `k`, then each row of the results.
#[inline(always)]
fn kernel_u(k: &[f32]) -> [f32; XI] {
    let cols: [[f32; 6]; 3] = std::array::from_fn(|j| g([k[j], k[3 + j], k[6 + j]]));
    let rows: [[f32; 6]; 6] = std::array::from_fn(|i| g([cols[0][i], cols[1][i], cols[2][i]]));
    std::array::from_fn(|xi| rows[xi / 6][xi % 6])
}

/// `U [36, Co, Ci] = G g Gᵀ` for every 3x3 kernel `g` of `w [Co, Ci, 3, 3]`, in blocks of 16
/// consecutive kernels so that every matrix is written a cache line at a time (as F(2x2)'s
/// `weight_transforms` do; one kernel at a time, each of its 36 values went to a different
/// matrix).
pub(super) fn transform_weights(w: &[f32]) -> Pooled {
    const LANES: usize = 16;
    let plane = w.len() / 9;
    let mut u = Pooled::any(XI * plane);
    let up = SendPtr(u.as_mut_ptr());
    (0..plane.div_ceil(LANES)).into_par_iter().for_each(|b| {
        let (k0, len) = (b * LANES, LANES.min(plane - b * LANES));
        let mut block = [[0f32; LANES]; XI];
        for (l, k) in w[9 * k0..9 * (k0 + len)].chunks_exact(9).enumerate() {
            for (xi, v) in kernel_u(k).into_iter().enumerate() {
                block[xi][l] = v;
            }
        }
        for (xi, v) in block.iter().enumerate() {
            // SAFETY: columns k0..k0 + len of matrix xi are this block's alone.
            unsafe {
                std::ptr::copy_nonoverlapping(v.as_ptr(), up.get().add(xi * plane + k0), len)
            };
        }
    });
    u
}
