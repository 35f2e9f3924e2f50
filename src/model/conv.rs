//! 2-D convolution with a faster CPU backward. candle computes the input gradient with
//! `conv_transpose2d`, whose CPU kernel is ~7x slower than its im2col `conv2d` and dominated
//! training time; it also computes that gradient for the input images, which need none.
//! Here the input gradient is the equivalent `conv2d` of the (stride-dilated) output gradient
//! with the flipped, transposed kernel, and is skipped for inputs that do not track gradients.
//!
//! The forward is candle's own `conv2d` on detached inputs; a `CustomOp3` then re-attaches
//! the result to the graph with the gradients above. That keeps a second copy of each conv
//! output alive during backward, so it is used on the CPU only; other devices keep candle's
//! conv (their transposed convs are fast).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// `x` `[B, Ci, H, W]`, `w` `[Co, Ci, k, k]`, dilation 1, groups 1.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let y = x.detach().conv2d(&w.detach(), padding, stride, 1, 1)?;
    if !(x.track_op() || w.track_op()) {
        return Ok(y);
    }
    y.apply_op3(x, w, Conv2dGrad { padding, stride })
}

#[derive(Debug, Clone, Copy)]
struct Conv2dGrad {
    padding: usize,
    stride: usize,
}

impl CustomOp3 for Conv2dGrad {
    fn name(&self) -> &'static str {
        "conv2d-fast-bwd"
    }

    /// Passes the already computed output (argument 1) through.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if !l1.is_contiguous() || l1.start_offset() != 0 {
            candle_core::bail!("conv2d-fast-bwd expects a fresh contiguous conv output")
        }
        Ok((s1.try_clone(l1)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (p, s) = (self.padding, self.stride);
        let grad_x = if x.track_op() {
            Some(input_grad(x, w, grad, p, s)?)
        } else {
            None
        };
        // The kernel gradient exactly as candle computes it (its conv2d path is fast).
        let gw = x
            .transpose(0, 1)?
            .conv2d(&grad.transpose(0, 1)?, p, 1, s, 1)?
            .transpose(0, 1)?;
        let (_, _, k0, k1) = w.dims4()?;
        let gw = gw.narrow(2, 0, k0)?.narrow(3, 0, k1)?;
        Ok((None, grad_x, Some(gw)))
    }
}

/// d(loss)/dx for `y = conv2d(x, w, padding p, stride s)` as a stride-1 conv2d.
fn input_grad(x: &Tensor, w: &Tensor, grad: &Tensor, p: usize, s: usize) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, k, _) = w.dims4()?;
    if k < p + 1 {
        candle_core::bail!("conv2d-fast-bwd: padding {p} too large for kernel {k}")
    }
    let mut g = grad.contiguous()?;
    if s > 1 {
        g = dilate(&g, 3, s)?;
        g = dilate(&g, 2, s)?;
    }
    // Rows/columns of x that no output window reached get zero gradient.
    let (gh, gw) = (g.dim(2)?, g.dim(3)?);
    let extra_h = h + 2 * p + 1 - k - gh;
    let extra_w = wd + 2 * p + 1 - k - gw;
    let g = g
        .pad_with_zeros(2, 0, extra_h)?
        .pad_with_zeros(3, 0, extra_w)?;
    let wt = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
    g.conv2d(&wt, k - 1 - p, 1, 1, 1)
}

/// Insert `s - 1` zeros between consecutive elements along `dim` (the last or second-last).
fn dilate(g: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    let n = g.dim(dim)?;
    let g1 = g.unsqueeze(dim + 1)?;
    let mut zshape = g1.dims().to_vec();
    zshape[dim + 1] = s - 1;
    let z = Tensor::zeros(zshape, g.dtype(), g.device())?;
    let mut shape = g.dims().to_vec();
    shape[dim] = n * s;
    Tensor::cat(&[&g1, &z], dim + 1)?
        .reshape(shape)?
        .narrow(dim, 0, (n - 1) * s + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..shape.iter().product())
            .map(|_| r.normal() as f32)
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Same outputs and gradients as candle's own conv2d backward (conv_transpose2d based),
    /// for the kernel/stride/padding combinations of ResNet and odd/even sizes. Square
    /// inputs only: candle's backward fails on stride-2 inputs whose height and width differ
    /// in parity (it derives the width's output padding from the height).
    #[test]
    fn gradients_match_candles_conv_backward() {
        let dev = Device::Cpu;
        for (i, &(k, s, p, h, w)) in [
            (3, 1, 1, 6, 6),
            (3, 2, 1, 7, 7),
            (3, 2, 1, 8, 8),
            (1, 2, 0, 7, 7),
            (1, 1, 0, 4, 4),
            (7, 2, 3, 9, 9),
        ]
        .iter()
        .enumerate()
        {
            let xs = [2, 3, h, w];
            let ws = [4, 3, k, k];
            let x = Var::from_vec(randn(&xs, i as u64), &xs[..], &dev).unwrap();
            let wv = Var::from_vec(randn(&ws, 10 + i as u64), &ws[..], &dev).unwrap();
            let ours = conv2d(x.as_tensor(), wv.as_tensor(), p, s).unwrap();
            let theirs = x.as_tensor().conv2d(wv.as_tensor(), p, s, 1, 1).unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0);
            // A non-uniform upstream gradient.
            let up = Tensor::from_vec(randn(theirs.dims(), 99), theirs.dims(), &dev).unwrap();
            let g1 = ours
                .mul(&up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = theirs
                .mul(&up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &wv] {
                let (a, b) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                assert_eq!(a.dims(), b.dims());
                assert!(max_diff(a, b) < 1e-4, "case {i}: {}", max_diff(a, b));
            }
        }
    }

    /// Conv is linear in x, so <conv(x), u> = <x, d<conv(x), u>/dx> for any u: checks the
    /// input gradient on non-square inputs, where candle's own backward cannot be compared.
    #[test]
    fn input_gradient_is_the_adjoint_on_non_square_inputs() {
        let dev = Device::Cpu;
        for (i, &(k, s, p, h, w)) in [(3, 2, 1, 7, 8), (1, 2, 0, 6, 9), (7, 2, 3, 10, 7)]
            .iter()
            .enumerate()
        {
            let xs = [2, 3, h, w];
            let x = Var::from_vec(randn(&xs, i as u64), &xs[..], &dev).unwrap();
            let wt = Tensor::from_vec(randn(&[4, 3, k, k], 5), (4, 3, k, k), &dev).unwrap();
            let y = conv2d(x.as_tensor(), &wt, p, s).unwrap();
            let up = Tensor::from_vec(randn(y.dims(), 7), y.dims(), &dev).unwrap();
            let lhs: f32 = y.mul(&up).unwrap().sum_all().unwrap().to_scalar().unwrap();
            let g = lhs_grad(&y, &up, &x);
            let rhs: f32 = x
                .as_tensor()
                .mul(&g)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "case {i}: {lhs} vs {rhs}"
            );
        }
    }

    fn lhs_grad(y: &Tensor, up: &Tensor, x: &Var) -> Tensor {
        let g = y.mul(up).unwrap().sum_all().unwrap().backward().unwrap();
        g.get(x.as_tensor()).unwrap().clone()
    }

    #[test]
    fn no_input_gradient_for_plain_inputs() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(randn(&[1, 2, 5, 5], 1), (1, 2, 5, 5), &dev).unwrap();
        let w = Var::from_vec(randn(&[3, 2, 3, 3], 2), (3, 2, 3, 3), &dev).unwrap();
        let g = conv2d(&x, w.as_tensor(), 1, 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(w.as_tensor()).is_some());
    }
}
