//! The kernel transforms of the Winograd variants, `U = G g Gᵀ` for every 3x3 kernel, and the
//! weight gradient's way back, `dw = Gᵀ dU G`: the drivers, generic in a variant's
//! transform of one block of kernels, and F(2x2, 3x3)'s blocks.
//!
//! Both work on blocks of [`LANES`] kernels whose values sit side by side in each of the
//! `N` matrices, so every matrix is read or written a cache line at a time. One kernel at a
//! time, each of its 16 values went to a different matrix, and the matrices (`Co x Ci`
//! floats, a multiple of 4 KB) all start in the same cache set: on 512 x 512 kernels `U`
//! took 17 ms, about 1 GB/s. The arithmetic of each kernel is the same, in the same order.

use super::transforms::XI;
use crate::model::conv_kernels::{Pooled, SendPtr};
use rayon::prelude::*;

/// Kernels per block: one cache line of each matrix.
pub(super) const LANES: usize = 16;

/// One value of each of a block's kernels.
pub(super) type Lanes = [f32; LANES];

/// `G f = (f0, (f0 + f1 + f2)/2, (f0 - f1 + f2)/2, f2)`, lane by lane, into `out`.
#[inline(always)]
fn g(f0: &Lanes, f1: &Lanes, f2: &Lanes, out: &mut [Lanes]) {
    let [o0, o1, o2, o3] = out else {
        unreachable!("G has 4 rows")
    };
    for l in 0..LANES {
        o0[l] = f0[l];
        o1[l] = 0.5 * (f0[l] + f1[l] + f2[l]);
        o2[l] = 0.5 * (f0[l] - f1[l] + f2[l]);
        o3[l] = f2[l];
    }
}

/// `Gᵀ e = (e0 + (e1 + e2)/2, (e1 - e2)/2, (e1 + e2)/2 + e3)`, lane by lane, into `out`.
#[inline(always)]
fn gt(e: [&Lanes; 4], out: [&mut Lanes; 3]) {
    let [o0, o1, o2] = out;
    for l in 0..LANES {
        let s = 0.5 * (e[1][l] + e[2][l]);
        o0[l] = e[0][l] + s;
        o1[l] = 0.5 * (e[1][l] - e[2][l]);
        o2[l] = s + e[3][l];
    }
}

/// F(2x2)'s `G g Gᵀ` of a block's kernels, `k[t][l]` tap `t` of lane `l`'s kernel, into
/// `u[xi][l]`.
///
/// The block functions write into the caller's arrays with plain loops over the lanes:
/// built as values with `std::array::from_fn`, the nested arrays were copied through
/// out-of-line `memcpy` calls, and `U` of 256 x 256 kernels took 2.3 ms instead of 0.75
/// (in ResNet-50's steps its 256-channel convolution took 1.1 ms longer, both directions).
#[inline(always)]
fn transform_block(k: &[Lanes; 9], u: &mut [Lanes; XI]) {
    // Column j of every kernel, then each row of the results.
    let mut cols = [[[0f32; LANES]; 4]; 3];
    for (j, col) in cols.iter_mut().enumerate() {
        g(&k[j], &k[3 + j], &k[6 + j], col);
    }
    for (i, row) in u.chunks_exact_mut(4).enumerate() {
        g(&cols[0][i], &cols[1][i], &cols[2][i], row);
    }
}

/// F(2x2)'s `Gᵀ e G` of a block's 16 values, into `dw[t][l]`, tap `t` of lane `l`'s kernel.
#[inline(always)]
fn inverse_block(e: &[Lanes; XI], dw: &mut [Lanes; 9]) {
    // Each row i of 4: Gᵀ of its four values; then Gᵀ of each column j of 3.
    let mut rows = [[[0f32; LANES]; 3]; 4];
    for (i, [r0, r1, r2]) in rows.iter_mut().enumerate() {
        gt(
            [&e[4 * i], &e[4 * i + 1], &e[4 * i + 2], &e[4 * i + 3]],
            [r0, r1, r2],
        );
    }
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8] = dw;
    for (j, [a, b, c]) in [[t0, t3, t6], [t1, t4, t7], [t2, t5, t8]]
        .into_iter()
        .enumerate()
    {
        gt(
            [&rows[0][j], &rows[1][j], &rows[2][j], &rows[3][j]],
            [a, b, c],
        );
    }
}

/// Writes the first `len` lanes of `v` at `dst`: a whole block as one 64-byte copy.
///
/// # Safety
/// `dst` is valid for `len` floats.
#[inline(always)]
unsafe fn store(v: &Lanes, dst: *mut f32, len: usize) {
    if len == LANES {
        std::ptr::write_unaligned(dst.cast::<Lanes>(), *v);
    } else {
        std::ptr::copy_nonoverlapping(v.as_ptr(), dst, len);
    }
}

/// `U [16, Co, Ci] = G g Gᵀ` for every 3x3 kernel `g` of `w [Co, Ci, 3, 3]`.
pub(super) fn transform_weights(w: &[f32]) -> Pooled {
    transform_weights_with(w, transform_block)
}

/// [`transform_weights`] laid out `[16, Ci, Co]`: the input gradient's `U[xi]ᵀ` as plain
/// row-major matrices, which `gemm` reads faster than a transposed view.
pub(super) fn transform_weights_t(w: &[f32], cin: usize) -> Pooled {
    transform_weights_t_with(w, cin, transform_block)
}

/// `dw [Co, Ci, 3, 3] = Gᵀ dU G` for `dU [16, Co, Ci]`.
pub(super) fn inverse_weights(du: &[f32]) -> Vec<f32> {
    inverse_weights_with(du, inverse_block)
}

/// `U [N, Co, Ci]` for every 3x3 kernel of `w [Co, Ci, 3, 3]`, `f` transforming a block.
pub(super) fn transform_weights_with<const N: usize>(
    w: &[f32],
    f: impl Fn(&[Lanes; 9], &mut [Lanes; N]) + Sync,
) -> Pooled {
    let plane = w.len() / 9;
    let mut u = Pooled::any(N * plane);
    let up = SendPtr(u.as_mut_ptr());
    // Blocks of consecutive kernels: consecutive columns of every matrix.
    (0..plane.div_ceil(LANES)).into_par_iter().for_each(|b| {
        let (k0, len) = (b * LANES, LANES.min(plane - b * LANES));
        let mut k = [[0f32; LANES]; 9];
        for (l, kernel) in w[9 * k0..9 * (k0 + len)].chunks_exact(9).enumerate() {
            for t in 0..9 {
                k[t][l] = kernel[t];
            }
        }
        let mut block = [[0f32; LANES]; N];
        f(&k, &mut block);
        for (xi, v) in block.iter().enumerate() {
            // SAFETY: columns k0..k0 + len of matrix xi are this block's alone.
            unsafe { store(v, up.get().add(xi * plane + k0), len) };
        }
    });
    u
}

/// [`transform_weights_with`] laid out `[N, Ci, Co]`.
pub(super) fn transform_weights_t_with<const N: usize>(
    w: &[f32],
    cin: usize,
    f: impl Fn(&[Lanes; 9], &mut [Lanes; N]) + Sync,
) -> Pooled {
    let plane = w.len() / 9;
    let cout = plane / cin;
    let mut u = Pooled::any(N * plane);
    let up = SendPtr(u.as_mut_ptr());
    // A task is LANES input channels by LANES output channels, the latter one block of lanes:
    // it reads LANES runs of LANES kernels and writes, for each input channel, a line of one
    // row of every U[xi]ᵀ. Output-channel blocks vary fastest, so consecutive tasks continue
    // the same rows.
    let co_blocks = cout.div_ceil(LANES);
    (0..cin.div_ceil(LANES) * co_blocks)
        .into_par_iter()
        .for_each(|task| {
            let (cb, ob) = (task / co_blocks, task % co_blocks);
            let (c0, len) = (ob * LANES, LANES.min(cout - ob * LANES));
            let mut k = [[0f32; LANES]; 9];
            for ci in cb * LANES..cin.min((cb + 1) * LANES) {
                for l in 0..len {
                    let kernel = &w[9 * ((c0 + l) * cin + ci)..][..9];
                    for t in 0..9 {
                        k[t][l] = kernel[t];
                    }
                }
                let mut block = [[0f32; LANES]; N];
                f(&k, &mut block);
                for (xi, v) in block.iter().enumerate() {
                    let at = xi * plane + ci * cout + c0;
                    // SAFETY: row ci, columns c0..c0 + len of matrix xi are this task's alone.
                    unsafe { store(v, up.get().add(at), len) };
                }
            }
        });
    u
}

/// `dw [Co, Ci, 3, 3]` for `dU [N, Co, Ci]`, `f` taking a block back.
pub(super) fn inverse_weights_with<const N: usize>(
    du: &[f32],
    f: impl Fn(&[Lanes; N], &mut [Lanes; 9]) + Sync,
) -> Vec<f32> {
    let plane = du.len() / N;
    let mut dw = vec![0f32; 9 * plane];
    dw.par_chunks_mut(9 * LANES)
        .enumerate()
        .for_each(|(b, out)| {
            let (k0, len) = (b * LANES, out.len() / 9);
            let mut e = [[0f32; LANES]; N];
            for (xi, lanes) in e.iter_mut().enumerate() {
                lanes[..len].copy_from_slice(&du[xi * plane + k0..][..len]);
            }
            let mut taps = [[0f32; LANES]; 9];
            f(&e, &mut taps);
            for (l, kernel) in out.chunks_exact_mut(9).enumerate() {
                for (t, v) in kernel.iter_mut().enumerate() {
                    *v = taps[t][l];
                }
            }
        });
    dw
}

/// A variant's blocked kernel transforms, `(U, Uᵀ, dw)`, as its tests take them.
#[cfg(test)]
pub(super) type Blocked = (
    fn(&[f32]) -> Pooled,
    fn(&[f32], usize) -> Pooled,
    fn(&[f32]) -> Vec<f32>,
);

/// Asserts that a variant's blocked transforms give, bit for bit, what its one-kernel
/// versions `kernel_u` and `kernel_dw` give, on kernels of each `(Co, Ci)` in `shapes`
/// (random, seeded from `seed`).
#[cfg(test)]
pub(super) fn assert_blocks_are_one_kernel_at_a_time<const N: usize>(
    (u_of, ut_of, dw_of): Blocked,
    kernel_u: fn(&[f32]) -> [f32; N],
    kernel_dw: fn([f32; N]) -> [f32; 9],
    shapes: &[(usize, usize)],
    seed: u64,
) {
    use crate::model::test_util::randn;
    for (s, &(co, ci)) in shapes.iter().enumerate() {
        let w = randn(&[co * ci * 9], seed + s as u64);
        let plane = co * ci;
        let (u, ut) = (u_of(&w), ut_of(&w, ci));
        for (kc, k) in w.chunks_exact(9).enumerate() {
            let (o, i) = (kc / ci, kc % ci);
            for (xi, v) in kernel_u(k).into_iter().enumerate() {
                let (got, got_t) = (u[xi * plane + kc], ut[xi * plane + i * co + o]);
                assert_eq!(got.to_bits(), v.to_bits(), "U {co}x{ci} {kc} {xi}");
                assert_eq!(got_t.to_bits(), v.to_bits(), "Ut {co}x{ci} {kc} {xi}");
            }
        }
        let du = randn(&[N * plane], seed + 100 + s as u64);
        let dw = dw_of(&du);
        for kc in 0..plane {
            let want = kernel_dw(std::array::from_fn(|xi| du[xi * plane + kc]));
            let got: Vec<u32> = dw[9 * kc..9 * kc + 9].iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "dw {co}x{ci} {kc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `G g Gᵀ` of one kernel, written out one value at a time.
    fn kernel_u(k: &[f32]) -> [f32; XI] {
        let gf = |f: [f32; 3]| {
            [
                f[0],
                0.5 * (f[0] + f[1] + f[2]),
                0.5 * (f[0] - f[1] + f[2]),
                f[2],
            ]
        };
        let cols: [[f32; 4]; 3] = std::array::from_fn(|j| gf([k[j], k[3 + j], k[6 + j]]));
        std::array::from_fn(|xi| gf([cols[0][xi / 4], cols[1][xi / 4], cols[2][xi / 4]])[xi % 4])
    }

    /// `Gᵀ e G` of one kernel's 16 values.
    fn kernel_dw(e: [f32; XI]) -> [f32; 9] {
        let gt = |e: [f32; 4]| {
            let (s, d) = (0.5 * (e[1] + e[2]), 0.5 * (e[1] - e[2]));
            [e[0] + s, d, s + e[3]]
        };
        let rows: [[f32; 3]; 4] =
            std::array::from_fn(|i| gt(std::array::from_fn(|j| e[4 * i + j])));
        std::array::from_fn(|t| gt(std::array::from_fn(|i| rows[i][t % 3]))[t / 3])
    }

    /// The blocked transforms give, bit for bit, what one kernel at a time does, in both
    /// layouts and back, on channel counts that fill blocks of 16 and ones that do not.
    #[test]
    fn blocks_give_the_floats_of_one_kernel_at_a_time() {
        let shapes = [(1, 1), (3, 5), (16, 16), (17, 33), (64, 48), (40, 7)];
        let blocked: Blocked = (transform_weights, transform_weights_t, inverse_weights);
        assert_blocks_are_one_kernel_at_a_time(blocked, kernel_u, kernel_dw, &shapes, 0);
    }
}
