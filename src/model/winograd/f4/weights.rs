//! F(4x4, 3x3)'s kernel transform, `U = G g Gᵀ`, and the weight gradient's way back,
//! `dw = Gᵀ dU G` (see [`super`] for `G`), on blocks of kernels as F(2x2)'s are.

use super::XI;
use crate::model::conv_kernels::Pooled;
use crate::model::winograd::weight_transforms::{
    inverse_weights_with, transform_weights_t_with, transform_weights_with, Lanes, LANES,
};

/// `G k` for one column (or row) `k` of 3x3 kernels, lane by lane, into `out`.
#[inline(always)]
fn g(k0: &Lanes, k1: &Lanes, k2: &Lanes, out: &mut [Lanes]) {
    let [o0, o1, o2, o3, o4, o5] = out else {
        unreachable!("G has 6 rows")
    };
    for l in 0..LANES {
        let s = k0[l] + k2[l];
        o0[l] = 0.25 * k0[l];
        o1[l] = -(s + k1[l]) / 6.0;
        o2[l] = -(s - k1[l]) / 6.0;
        o3[l] = k0[l] / 24.0 + k1[l] / 12.0 + k2[l] / 6.0;
        o4[l] = k0[l] / 24.0 - k1[l] / 12.0 + k2[l] / 6.0;
        o5[l] = k2[l];
    }
}

/// `Gᵀ e` for one column (or row) `e` of six transformed values, lane by lane, into `out`.
#[inline(always)]
fn gt(e: [&Lanes; 6], out: [&mut Lanes; 3]) {
    let [o0, o1, o2] = out;
    for l in 0..LANES {
        let (s12, d12) = (e[1][l] + e[2][l], e[1][l] - e[2][l]);
        let (s34, d34) = (e[3][l] + e[4][l], e[3][l] - e[4][l]);
        o0[l] = 0.25 * e[0][l] - s12 / 6.0 + s34 / 24.0;
        o1[l] = -d12 / 6.0 + d34 / 12.0;
        o2[l] = (s34 - s12) / 6.0 + e[5][l];
    }
}

/// `G g Gᵀ` of a block's kernels, `k[t][l]` tap `t` of lane `l`'s kernel, into `u[xi][l]`
/// (written in place, as F(2x2)'s are: see its `transform_block`).
#[inline(always)]
fn transform_block(k: &[Lanes; 9], u: &mut [Lanes; XI]) {
    // Column j of every kernel, then each row of the results.
    let mut cols = [[[0f32; LANES]; 6]; 3];
    for (j, col) in cols.iter_mut().enumerate() {
        g(&k[j], &k[3 + j], &k[6 + j], col);
    }
    for (i, row) in u.chunks_exact_mut(6).enumerate() {
        g(&cols[0][i], &cols[1][i], &cols[2][i], row);
    }
}

/// `Gᵀ e G` of a block's 36 values, into `dw[t][l]`, tap `t` of lane `l`'s kernel.
#[inline(always)]
fn inverse_block(e: &[Lanes; XI], dw: &mut [Lanes; 9]) {
    // Each row i of 6: Gᵀ of its six values; then Gᵀ of each column j of 3.
    let mut rows = [[[0f32; LANES]; 3]; 6];
    for (i, [r0, r1, r2]) in rows.iter_mut().enumerate() {
        let r = &e[6 * i..6 * i + 6];
        gt([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]], [r0, r1, r2]);
    }
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8] = dw;
    for (j, [a, b, c]) in [[t0, t3, t6], [t1, t4, t7], [t2, t5, t8]]
        .into_iter()
        .enumerate()
    {
        let col = std::array::from_fn(|i| &rows[i][j]);
        gt(col, [a, b, c]);
    }
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
    use crate::model::winograd::weight_transforms::{
        assert_blocks_are_one_kernel_at_a_time, Blocked,
    };

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

    /// `G g Gᵀ` of one kernel, one value at a time, in the block functions' order of sums.
    fn kernel_u(k: &[f32]) -> [f32; XI] {
        let gf = |f: [f32; 3]| {
            let s = f[0] + f[2];
            [
                0.25 * f[0],
                -(s + f[1]) / 6.0,
                -(s - f[1]) / 6.0,
                f[0] / 24.0 + f[1] / 12.0 + f[2] / 6.0,
                f[0] / 24.0 - f[1] / 12.0 + f[2] / 6.0,
                f[2],
            ]
        };
        let cols: [[f32; 6]; 3] = std::array::from_fn(|j| gf([k[j], k[3 + j], k[6 + j]]));
        std::array::from_fn(|xi| gf([cols[0][xi / 6], cols[1][xi / 6], cols[2][xi / 6]])[xi % 6])
    }

    /// `Gᵀ e G` of one kernel's 36 values, in the block functions' order of sums.
    fn kernel_dw(e: [f32; XI]) -> [f32; 9] {
        let gt = |e: [f32; 6]| {
            let (s12, d12, s34, d34) = (e[1] + e[2], e[1] - e[2], e[3] + e[4], e[3] - e[4]);
            [
                0.25 * e[0] - s12 / 6.0 + s34 / 24.0,
                -d12 / 6.0 + d34 / 12.0,
                (s34 - s12) / 6.0 + e[5],
            ]
        };
        let rows: [[f32; 3]; 6] =
            std::array::from_fn(|i| gt(std::array::from_fn(|j| e[6 * i + j])));
        std::array::from_fn(|t| gt(std::array::from_fn(|i| rows[i][t % 3]))[t / 3])
    }

    /// The blocked transforms give, bit for bit, what one kernel at a time does, in both
    /// layouts and back, on channel counts that fill blocks of 16 and ones that do not.
    #[test]
    fn blocks_give_the_floats_of_one_kernel_at_a_time() {
        let shapes = [(1, 1), (3, 5), (16, 16), (17, 33), (40, 7)];
        let blocked: Blocked = (transform_weights, transform_weights_t, inverse_weights);
        assert_blocks_are_one_kernel_at_a_time(blocked, kernel_u, kernel_dw, &shapes, 200);
    }
}
