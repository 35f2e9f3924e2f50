//! ResNet's stem max-pool (3x3, stride 2, padding 1) from plain tensor ops. candle's
//! `max_pool2d` backward only supports kernel == stride, so instead we take the nine shifted
//! stride-2 views of the padded input and reduce them with `max`, whose backward candle has.
//! Pure tensor ops, so it runs on any device. On the CPU (f32) a direct loop with
//! PyTorch's tie rule (the first maximum of a window takes the gradient) replaces it: the
//! tensor-op backward was ~15% of a ResNet-18 training step.

use super::cpu_data::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

mod rows;

use rows::{pool_row, RowScratch};

/// `x`: `[B, C, H, W]` -> `[B, C, Ho, Wo]` with `Ho = (H - 1) / 2 + 1` (PyTorch's size for
/// kernel 3, stride 2, padding 1).
pub fn max_pool_3x3_s2_p1(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(MaxPoolCpu)
    } else {
        max_pool_tensor_ops(x)
    }
}

/// The device-independent formulation. Padding never wins: it is -inf. Ties within a window
/// all receive the gradient (candle's `max` backward) where PyTorch gives it to the first
/// maximum only; after a ReLU, ties are in practice zeros with a negative pre-activation,
/// whose gradient the ReLU backward masks anyway.
pub fn max_pool_tensor_ops(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Pad to an even size 2*(Ho+1) so that a reshape splits each axis into (pair, parity):
    // padded row 2*i + d == pair i + d/2, parity d%2.
    let padded = pad_neg_inf(x, 2, 1, 2 * ho + 1 - h)?;
    let padded = pad_neg_inf(&padded, 3, 1, 2 * wo + 1 - w)?;
    let split = padded.reshape((b, c, ho + 1, 2, wo + 1, 2))?;
    let mut views = Vec::with_capacity(9);
    for di in 0..3 {
        for dj in 0..3 {
            views.push(
                split
                    .narrow(2, di / 2, ho)?
                    .narrow(3, di % 2, 1)?
                    .narrow(4, dj / 2, wo)?
                    .narrow(5, dj % 2, 1)?,
            );
        }
    }
    // [B, C, Ho, 9, Wo, 1] -> max over the 9 window positions.
    Tensor::cat(&views, 3)?.max(3)?.squeeze(D::Minus1)
}

/// Index in the plane of window (i, j)'s first maximum (row-major), NaN winning as in
/// PyTorch. Every window of this pool overlaps the input, so one is always found.
#[inline]
fn argmax_window(x: &[f32], h: usize, w: usize, i: usize, j: usize) -> usize {
    if i > 0 && j > 0 && 2 * i + 1 < h && 2 * j + 1 < w {
        return argmax_interior(x, w, 2 * i - 1, 2 * j - 1);
    }
    let mut best = usize::MAX;
    let mut max = f32::NEG_INFINITY;
    for y in (2 * i).saturating_sub(1)..(2 * i + 2).min(h) {
        for xx in (2 * j).saturating_sub(1)..(2 * j + 2).min(w) {
            let v = x[y * w + xx];
            if best == usize::MAX || v > max || v.is_nan() {
                best = y * w + xx;
                max = v;
                if v.is_nan() {
                    return best;
                }
            }
        }
    }
    best
}

/// [`argmax_window`] of a window inside the plane, at `(y0, x0)`: the same rule (first
/// maximum in row-major order, the first NaN winning) without bounds or early exits.
#[inline(always)]
fn argmax_interior(x: &[f32], w: usize, y0: usize, x0: usize) -> usize {
    let mut best = y0 * w + x0;
    let mut max = x[best];
    for dy in 0..3 {
        let row = (y0 + dy) * w + x0;
        for dx in 0..3 {
            let v = x[row + dx];
            if v > max || (v.is_nan() && !max.is_nan()) {
                best = row + dx;
                max = v;
            }
        }
    }
    best
}

/// Output size `(Ho, Wo)` of the pool for an `h x w` plane.
pub fn out_size(h: usize, w: usize) -> (usize, usize) {
    ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
}

/// The pool over contiguous `h x w` planes of `x` into `out` (the planes' [`out_size`]).
pub fn forward_into(x: &[f32], h: usize, w: usize, out: &mut [f32]) {
    let (ho, wo) = out_size(h, w);
    assert_eq!(x.len() / (h * w) * ho * wo, out.len());
    out.par_chunks_mut((ho * wo).max(1))
        .zip(x.par_chunks(h * w))
        .for_each_init(
            || (RowScratch::default(), vec![0u32; wo]),
            |(s, idx), (o, plane)| {
                for (i, o) in o.chunks_exact_mut(wo).enumerate() {
                    pool_row(plane, h, w, i, o, idx, s);
                }
            },
        );
}

/// The input gradient `gx` (every value overwritten) for output gradient `g`: each output's
/// gradient goes to its window's first maximum in `x`.
pub fn backward_into(x: &[f32], g: &[f32], h: usize, w: usize, gx: &mut [f32]) {
    let (ho, wo) = out_size(h, w);
    assert_eq!((x.len(), x.len() / (h * w) * ho * wo), (gx.len(), g.len()));
    gx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(g.par_chunks((ho * wo).max(1)))
        .for_each(|((gplane, plane), gout)| {
            gplane.fill(0.0);
            for i in 0..ho {
                for j in 0..wo {
                    gplane[argmax_window(plane, h, w, i, j)] += gout[i * wo + j];
                }
            }
        });
}

/// [`forward_into`], also writing the plane index of each output's window maximum into
/// `idx`, for [`backward_indexed`]: the backward then scatters instead of searching every
/// window again.
pub fn forward_indexed(x: &[f32], h: usize, w: usize, out: &mut [f32], idx: &mut [u32]) {
    let (ho, wo) = out_size(h, w);
    assert_eq!(x.len() / (h * w) * ho * wo, out.len());
    assert_eq!(out.len(), idx.len());
    let n = (ho * wo).max(1);
    out.par_chunks_mut(n)
        .zip(idx.par_chunks_mut(n))
        .zip(x.par_chunks(h * w))
        .for_each_init(RowScratch::default, |s, ((o, ix), plane)| {
            let rows = o.chunks_exact_mut(wo).zip(ix.chunks_exact_mut(wo));
            for (i, (o, ix)) in rows.enumerate() {
                pool_row(plane, h, w, i, o, ix, s);
            }
        });
}

/// The input gradient `gx` (every value overwritten) for output gradient `g`, from the
/// indices [`forward_indexed`] wrote.
pub fn backward_indexed(g: &[f32], idx: &[u32], h: usize, w: usize, gx: &mut [f32]) {
    let (ho, wo) = out_size(h, w);
    assert_eq!(gx.len() / (h * w) * ho * wo, g.len());
    assert_eq!(g.len(), idx.len());
    let n = (ho * wo).max(1);
    gx.par_chunks_mut(h * w)
        .zip(g.par_chunks(n).zip(idx.par_chunks(n)))
        .for_each(|(gplane, (gout, ix))| {
            gplane.fill(0.0);
            for (&v, &at) in gout.iter().zip(ix) {
                gplane[at as usize] += v;
            }
        });
}

struct MaxPoolCpu;

impl CustomOp1 for MaxPoolCpu {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2-p1"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "max-pool input")?;
        let (b, c, h, w) = l.shape().dims4()?;
        let (ho, wo) = out_size(h, w);
        let mut out = vec![0f32; b * c * ho * wo];
        forward_into(x, h, w, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolCpuBwd)?,
        ))
    }
}

/// (input, output gradient) -> input gradient: each output's gradient goes to its window's
/// first maximum.
struct MaxPoolCpuBwd;

impl CustomOp2 for MaxPoolCpuBwd {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2-p1-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "max-pool input")?;
        let g = f32_slice(s2, l2, "max-pool gradient")?;
        let (_, _, h, w) = l1.shape().dims4()?;
        let mut gx = vec![0f32; x.len()];
        backward_into(x, g, h, w, &mut gx);
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

fn pad_neg_inf(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    let pad = |n: usize, shape: &mut Vec<usize>| -> Result<Tensor> {
        shape[dim] = n;
        Tensor::full(f32::NEG_INFINITY, shape.as_slice(), x.device())?.to_dtype(x.dtype())
    };
    let l = pad(left, &mut shape)?;
    let r = pad(right, &mut shape)?;
    Tensor::cat(&[&l, x, &r], dim)
}

/// Direct loop over the windows: the reference the tests compare against.
#[cfg(test)]
fn naive(x: &[f32], b: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut out = vec![f32::NEG_INFINITY; b * c * ho * wo];
    for p in 0..b * c {
        for i in 0..ho {
            for j in 0..wo {
                for di in 0..3 {
                    for dj in 0..3 {
                        let (y, x_) = ((2 * i + di) as isize - 1, (2 * j + dj) as isize - 1);
                        if y < 0 || x_ < 0 || y >= h as isize || x_ >= w as isize {
                            continue;
                        }
                        let v = x[p * h * w + y as usize * w + x_ as usize];
                        let o = &mut out[p * ho * wo + i * wo + j];
                        *o = o.max(v);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn forward_matches_naive_loop_for_even_and_odd_sizes() {
        for (h, w) in [(8, 8), (7, 9), (1, 2), (5, 4)] {
            let (b, c) = (2, 3);
            let data = random(b * c * h * w, (h * 10 + w) as u64);
            let x = Tensor::from_vec(data.clone(), (b, c, h, w), &Device::Cpu).unwrap();
            for pool in [max_pool_3x3_s2_p1, max_pool_tensor_ops] {
                let y = pool(&x).unwrap();
                assert_eq!(y.dims(), &[b, c, (h - 1) / 2 + 1, (w - 1) / 2 + 1]);
                let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(got, naive(&data, b, c, h, w), "size {h}x{w}");
            }
        }
    }

    /// The indexed forward and backward equal the searching ones, ties and NaNs included.
    #[test]
    fn indexed_passes_equal_the_searching_ones() {
        for (h, w, seed) in [(7, 7, 1), (8, 6, 2), (1, 5, 3), (64, 64, 4)] {
            let mut x = random(3 * h * w, seed);
            // Ties (ReLU zeros) and a NaN.
            for v in x.iter_mut().step_by(3) {
                *v = v.max(0.0);
            }
            x[h * w / 2] = f32::NAN;
            let (ho, wo) = out_size(h, w);
            let g = random(3 * ho * wo, seed + 10);
            let (mut a, mut b) = (vec![0f32; g.len()], vec![0f32; g.len()]);
            let mut idx = vec![0u32; g.len()];
            forward_into(&x, h, w, &mut a);
            forward_indexed(&x, h, w, &mut b, &mut idx);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{h}x{w}");
            let (mut ga, mut gb) = (vec![1f32; x.len()], vec![2f32; x.len()]);
            backward_into(&x, &g, h, w, &mut ga);
            backward_indexed(&g, &idx, h, w, &mut gb);
            assert_eq!(bits(&ga), bits(&gb), "{h}x{w}");
        }
    }

    /// The row-at-a-time forward finds each window's first maximum where the per-window
    /// search does: ties, a NaN and windows of -inf only, on odd and even sizes.
    #[test]
    fn row_pool_finds_the_searched_maximum() {
        let sizes = [
            (1, 1),
            (1, 2),
            (2, 1),
            (3, 3),
            (7, 9),
            (8, 8),
            (9, 4),
            (33, 32),
        ];
        for (k, (h, w)) in sizes.into_iter().enumerate() {
            let mut x = random(h * w, k as u64);
            for v in x.iter_mut().step_by(2) {
                *v = v.max(0.0);
            }
            // The top-left window all -inf (the first row, two columns of the second).
            x[..w].fill(f32::NEG_INFINITY);
            x[w..(2 * w).min(h * w)]
                .iter_mut()
                .take(2)
                .for_each(|v| *v = f32::NEG_INFINITY);
            x[(7 * k + 5) % (h * w)] = f32::NAN;
            let (ho, wo) = out_size(h, w);
            let (mut out, mut idx) = (vec![0f32; ho * wo], vec![0u32; ho * wo]);
            forward_indexed(&x, h, w, &mut out, &mut idx);
            for i in 0..ho {
                for j in 0..wo {
                    let want = argmax_window(&x, h, w, i, j);
                    assert_eq!(idx[i * wo + j] as usize, want, "{h}x{w} window ({i}, {j})");
                    assert_eq!(out[i * wo + j].to_bits(), x[want].to_bits());
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(max_pool_3x3_s2_p1);
        check_gradient(max_pool_tensor_ops);
    }

    #[test]
    fn cpu_ties_give_the_gradient_to_the_first_maximum_like_pytorch() {
        let x = Var::zeros((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = max_pool_3x3_s2_p1(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(g, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    fn check_gradient(pool: fn(&Tensor) -> Result<Tensor>) {
        let (b, c, h, w) = (1, 2, 6, 5);
        // Distinct values at least 0.1 apart, so a +-eps nudge never changes which one wins.
        let mut data: Vec<f32> = (0..b * c * h * w).map(|i| i as f32 * 0.1 - 3.0).collect();
        Rng::new(11).shuffle(&mut data);
        let x = Var::from_vec(data.clone(), (b, c, h, w), &Device::Cpu).unwrap();
        let ho = (h - 1) / 2 + 1;
        let wo = (w - 1) / 2 + 1;
        // A weighted sum so every output has a distinct upstream gradient.
        let wts: Vec<f32> = (0..b * c * ho * wo)
            .map(|i| 0.5 + i as f32 * 0.25)
            .collect();
        let wt = Tensor::from_vec(wts.clone(), (b, c, ho, wo), &Device::Cpu).unwrap();
        let loss = pool(x.as_tensor())
            .unwrap()
            .mul(&wt)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |d: &[f32]| -> f64 {
            naive(d, b, c, h, w)
                .iter()
                .zip(&wts)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let eps = 1e-2f32;
        for i in 0..data.len() {
            let mut p = data.clone();
            p[i] += eps;
            let mut m = data.clone();
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-2,
                "element {i}: fd {fd} vs autograd {}",
                g[i]
            );
        }
    }
}
