//! The kernel transforms of F(2x2, 3x3): `U = G g Gᵀ` for every 3x3 kernel, and the weight
//! gradient's way back, `dw = Gᵀ dU G`.

use super::transforms::XI;
use crate::model::conv_kernels::SendPtr;
use rayon::prelude::*;

/// `U [16, Co, Ci] = G g Gᵀ` for every 3x3 kernel `g` of `w [Co, Ci, 3, 3]`.
pub(super) fn transform_weights(w: &[f32]) -> Vec<f32> {
    transform_weights_as(w, None)
}

/// [`transform_weights`] laid out `[16, Ci, Co]`: the input gradient's `U[xi]ᵀ` as plain
/// row-major matrices, which `gemm` reads faster than a transposed view.
pub(super) fn transform_weights_t(w: &[f32], cin: usize) -> Vec<f32> {
    transform_weights_as(w, Some(cin))
}

/// `U` as `[16, Co, Ci]`, or as `[16, Ci, Co]` when given `Ci`.
fn transform_weights_as(w: &[f32], transpose: Option<usize>) -> Vec<f32> {
    let plane = w.len() / 9;
    // Kernel kc = (co, ci) goes to column kc, or to column ci * Co + co when transposed.
    let col = |kc: usize| match transpose {
        None => kc,
        Some(cin) => (kc % cin) * (plane / cin) + kc / cin,
    };
    let mut u = vec![0f32; XI * plane];
    let up = SendPtr(u.as_mut_ptr());
    // G f = (f0, (f0 + f1 + f2)/2, (f0 - f1 + f2)/2, f2).
    let gf = |f: [f32; 3]| {
        [
            f[0],
            0.5 * (f[0] + f[1] + f[2]),
            0.5 * (f[0] - f[1] + f[2]),
            f[2],
        ]
    };
    // Kernels in parallel: each writes its own column of the 16 matrices.
    w.par_chunks_exact(9).enumerate().for_each(|(kc, k)| {
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| gf([k[j], k[3 + j], k[6 + j]]));
        let rows: [[f32; 4]; 4] = std::array::from_fn(|i| gf([cols[0][i], cols[1][i], cols[2][i]]));
        for (i, row) in rows.into_iter().enumerate() {
            for (j, v) in row.into_iter().enumerate() {
                // SAFETY: index (4i + j, col(kc)) is inside u and written by kernel kc alone.
                unsafe { *up.get().add((4 * i + j) * plane + col(kc)) = v };
            }
        }
    });
    u
}

/// `dw [Co, Ci, 3, 3] = Gᵀ dU G` for `dU [16, Co, Ci]`.
pub(super) fn inverse_weights(du: &[f32]) -> Vec<f32> {
    let plane = du.len() / XI;
    // Gᵀ e = (e0 + (e1 + e2)/2, (e1 - e2)/2, (e1 + e2)/2 + e3).
    let gt = |e: [f32; 4]| {
        let (s, d) = (0.5 * (e[1] + e[2]), 0.5 * (e[1] - e[2]));
        [e[0] + s, d, s + e[3]]
    };
    let mut dw = vec![0f32; 9 * plane];
    dw.par_chunks_exact_mut(9)
        .enumerate()
        .for_each(|(kc, out)| {
            let at = |i: usize, j: usize| du[(4 * i + j) * plane + kc];
            let rows: [[f32; 3]; 4] =
                std::array::from_fn(|i| gt([at(i, 0), at(i, 1), at(i, 2), at(i, 3)]));
            for j in 0..3 {
                let col = gt([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
                for (i, v) in col.into_iter().enumerate() {
                    out[3 * i + j] = v;
                }
            }
        });
    dw
}
