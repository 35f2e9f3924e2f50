//! F(4x4, 3x3)'s kernel transform, `U = G g Gᵀ`, and the weight gradient's way back,
//! `dw = Gᵀ dU G` (see [`super`] for `G`), on blocks of kernels as F(2x2)'s are.

use super::XI;
use crate::model::conv_kernels::Pooled;
use crate::model::winograd::weight_transforms::{
    inverse_weights_with, transform_weights_t_with, transform_weights_with, Lanes,
};

/// `G k` for one column (or row) `k` of 3x3 kernels, lane by lane.
#[inline(always)]
fn g(k: [&Lanes; 3]) -> [Lanes; 6] {
    let [k0, k1, k2] = k;
    let s: Lanes = std::array::from_fn(|l| k0[l] + k2[l]);
    [
        std::array::from_fn(|l| 0.25 * k0[l]),
        std::array::from_fn(|l| -(s[l] + k1[l]) / 6.0),
        std::array::from_fn(|l| -(s[l] - k1[l]) / 6.0),
        std::array::from_fn(|l| k0[l] / 24.0 + k1[l] / 12.0 + k2[l] / 6.0),
        std::array::from_fn(|l| k0[l] / 24.0 - k1[l] / 12.0 + k2[l] / 6.0),
        *k2,
    ]
}

/// `Gᵀ e` for one column (or row) `e` of six transformed values, lane by lane.
#[inline(always)]
fn gt(e: [&Lanes; 6]) -> [Lanes; 3] {
    let (s12, d12, s34, d34): (Lanes, Lanes, Lanes, Lanes) = (
        std::array::from_fn(|l| e[1][l] + e[2][l]),
        std::array::from_fn(|l| e[1][l] - e[2][l]),
        std::array::from_fn(|l| e[3][l] + e[4][l]),
        std::array::from_fn(|l| e[3][l] - e[4][l]),
    );
    [
        std::array::from_fn(|l| 0.25 * e[0][l] - s12[l] / 6.0 + s34[l] / 24.0),
        std::array::from_fn(|l| -d12[l] / 6.0 + d34[l] / 12.0),
        std::array::from_fn(|l| (s34[l] - s12[l]) / 6.0 + e[5][l]),
    ]
}

/// `G g Gᵀ` of a block's kernels, `k[t][l]` tap `t` of lane `l`'s kernel: `u[xi][l]`.
#[inline(always)]
fn transform_block(k: &[Lanes; 9]) -> [Lanes; XI] {
    // Column j of every kernel, then each row of the results.
    let cols: [[Lanes; 6]; 3] = std::array::from_fn(|j| g([&k[j], &k[3 + j], &k[6 + j]]));
    let rows: [[Lanes; 6]; 6] = std::array::from_fn(|i| g([&cols[0][i], &cols[1][i], &cols[2][i]]));
    std::array::from_fn(|xi| rows[xi / 6][xi % 6])
}

/// `Gᵀ e G` of a block's 36 values: `dw[t][l]`, tap `t` of lane `l`'s kernel.
#[inline(always)]
fn inverse_block(e: &[Lanes; XI]) -> [Lanes; 9] {
    // Each row i of 6: Gᵀ of its six values; then Gᵀ of each column j of 3.
    let rows: [[Lanes; 3]; 6] = std::array::from_fn(|i| gt(std::array::from_fn(|j| &e[6 * i + j])));
    let cols: [[Lanes; 3]; 3] = std::array::from_fn(|j| gt(std::array::from_fn(|i| &rows[i][j])));
    std::array::from_fn(|t| cols[t % 3][t / 3])
}

/// `U [36, Co, Ci] = G g Gᵀ` for every 3x3 kernel `g` of `w [Co, Ci, 3, 3]`.
pub(super) fn transform_weights(w: &[f32]) -> Pooled {
    transform_weights_with(w, transform_block)
}

/// [`transform_weights`] laid out `[36, Ci, Co]`: the input gradient's `U[xi]ᵀ`.
pub(super) fn transform_weights_t(w: &[f32], cin: usize) -> Pooled {
    transform_weights_t_with(w, cin, transform_block)
}

/// `dw [Co, Ci, 3, 3] = Gᵀ dU G` for `dU [36, Co, Ci]`.
pub(super) fn inverse_weights(du: &[f32]) -> Vec<f32> {
    inverse_weights_with(du, inverse_block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::randn;

    /// `G` of F(4x4, 3x3), as a matrix.
    const GM: [[f64; 3]; 6] = [
        [0.25, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];

    /// Both directions against the matrix products in f64, in both layouts, on channel
    /// counts that fill blocks of 16 and ones that do not; and `dw` is `U`'s adjoint:
    /// `<U(w), dU> = <w, dw(dU)>`.
    #[test]
    fn blocks_are_the_matrix_products() {
        for (seed, (co, ci)) in [(1, 1), (3, 5), (16, 16), (17, 33), (40, 7)]
            .into_iter()
            .enumerate()
        {
            let w = randn(&[co * ci * 9], seed as u64);
            let plane = co * ci;
            let (u, ut) = (transform_weights(&w), transform_weights_t(&w, ci));
            let du = randn(&[XI * plane], 50 + seed as u64);
            let dw = inverse_weights(&du);
            let (mut lhs, mut rhs) = (0f64, 0f64);
            for (kc, k) in w.chunks_exact(9).enumerate() {
                let (o, i) = (kc / ci, kc % ci);
                for xi in 0..XI {
                    let (r, c) = (xi / 6, xi % 6);
                    let mut want = 0f64;
                    for a in 0..3 {
                        for b in 0..3 {
                            want += GM[r][a] * k[3 * a + b] as f64 * GM[c][b];
                        }
                    }
                    let got = u[xi * plane + kc];
                    assert!((got as f64 - want).abs() < 1e-6, "U {co}x{ci} {kc} {xi}");
                    assert_eq!(got.to_bits(), ut[xi * plane + i * co + o].to_bits());
                    lhs += got as f64 * du[xi * plane + kc] as f64;
                }
                for t in 0..9 {
                    let (a, b) = (t / 3, t % 3);
                    let mut want = 0f64;
                    for xi in 0..XI {
                        want += GM[xi / 6][a] * du[xi * plane + kc] as f64 * GM[xi % 6][b];
                    }
                    assert!(
                        (dw[9 * kc + t] as f64 - want).abs() < 1e-5,
                        "dw {co}x{ci} {kc}"
                    );
                    rhs += k[t] as f64 * dw[9 * kc + t] as f64;
                }
            }
            assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} {rhs}");
        }
    }
}
