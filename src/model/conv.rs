//! 2-D convolution for training and inference on the CPU, as a candle custom op over
//! [`super::conv_kernels`] (im2col + packed GEMM for the forward, the input gradient and the
//! weight gradient). candle 0.11's own CPU backward was the bottleneck of a train step: its
//! input gradient is a direct `conv_transpose2d` loop without GEMM, and its weight gradient
//! runs a conv whose "kernel" is the whole gradient map, which degenerates into matrix-vector
//! products. The input gradient is skipped for inputs that need none (the images).
//!
//! The 3x3 stride-1 convolutions over maps with enough tiles use Winograd F(2x2, 3x3)
//! ([`super::winograd`], where [`super::winograd::pays`] says why), and F(4x4, 3x3) on larger
//! maps ([`super::winograd::f4::pays`]), in all three passes, unless [`set_winograd`] turns
//! it off (the choice is in [`dispatch`]).
//!
//! Other devices and dtypes keep candle's conv (its CUDA kernels, cuDNN when enabled).

use super::conv_kernels::ConvGeom;
use super::cpu_data::f32_slice;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

mod dispatch;

pub use dispatch::{backward_into, forward_into, input_grad_into, set_winograd, weight_grad};

/// `x` `[B, Ci, H, W]`, `w` `[Co, Ci, k, k]`, dilation 1, groups 1.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let geom = geom(x, w, padding, stride)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv2d { geom })
}

fn geom(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<ConvGeom> {
    let (b, c, h, wd) = x.dims4()?;
    let (co, ci, k0, k1) = w.dims4()?;
    ConvGeom::new([b, c, h, wd], [co, ci, k0, k1], stride, padding).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "conv2d: kernel {:?} with stride {stride}, padding {padding} does not fit input {:?}",
            w.dims(),
            x.dims()
        ))
    })
}

#[derive(Debug, Clone, Copy)]
struct Conv2d {
    geom: ConvGeom,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "drpipe-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let (x, w) = (f32_slice(xs, xl, "conv2d")?, f32_slice(ws, wl, "conv2d")?);
        let mut y = vec![0f32; g.y_len()];
        forward_into(g, x, w, &mut y);
        Ok((
            CpuStorage::F32(y),
            Shape::from((g.batch, g.cout, g.ho, g.wo)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &InputGrad { geom: self.geom })?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&grad, &WeightGrad { geom: self.geom })?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// `(dy, w) -> dx`.
#[derive(Debug, Clone, Copy)]
struct InputGrad {
    geom: ConvGeom,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "drpipe-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let (dy, w) = (f32_slice(gs, gl, "conv2d")?, f32_slice(ws, wl, "conv2d")?);
        let mut dx = vec![0f32; g.x_len()];
        input_grad_into(g, dy, w, &mut dx, false);
        Ok((CpuStorage::F32(dx), Shape::from((g.batch, g.cin, g.h, g.w))))
    }
}

/// `(x, dy) -> dw`.
#[derive(Debug, Clone, Copy)]
struct WeightGrad {
    geom: ConvGeom,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "drpipe-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let (x, dy) = (f32_slice(xs, xl, "conv2d")?, f32_slice(gs, gl, "conv2d")?);
        let dw = weight_grad(g, x, dy);
        Ok((CpuStorage::F32(dw), Shape::from((g.cout, g.cin, g.k, g.k))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::{grads_of_dot, max_diff, randn};
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn dot(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap();
        let b = b.to_dtype(DType::F64).unwrap();
        a.mul(&b).unwrap().sum_all().unwrap().to_scalar().unwrap()
    }

    /// Gradients of `<conv(x, w), up>` with respect to x and w.
    fn grads(x: &Var, w: &Var, p: usize, s: usize, up: &Tensor) -> (Tensor, Tensor) {
        let y = conv2d(x.as_tensor(), w.as_tensor(), p, s).unwrap();
        let g = grads_of_dot(&y, up);
        let gx = g.get(x.as_tensor()).unwrap().clone();
        let gw = g.get(w.as_tensor()).unwrap().clone();
        (gx, gw)
    }

    /// A random convolution: (x shape, w shape, stride, padding).
    fn random_case(r: &mut Rng, square: bool) -> ([usize; 4], [usize; 4], usize, usize) {
        let pick = |r: &mut Rng, lo: usize, hi: usize| lo + (r.next_u64() as usize) % (hi - lo + 1);
        let k = [1, 3, 5, 7][pick(r, 0, 3)];
        let s = pick(r, 1, 3);
        let p = pick(r, 0, k / 2);
        let h = pick(r, k.saturating_sub(2 * p).max(1), k + 9);
        let w = if square {
            h
        } else {
            pick(r, k.saturating_sub(2 * p).max(1), k + 9)
        };
        let (b, ci, co) = (pick(r, 1, 5), pick(r, 1, 5), pick(r, 1, 6));
        ([b, ci, h, w], [co, ci, k, k], s, p)
    }

    /// Forward equals candle's conv2d within 1e-4 (relative to the output's scale) on random
    /// shapes, strides and paddings, square or not, batch sizes that do and do not fill groups.
    #[test]
    fn forward_matches_candle_on_random_shapes() {
        let dev = Device::Cpu;
        let mut r = Rng::new(7);
        for case in 0..60 {
            let (xs, ws, s, p) = random_case(&mut r, case % 2 == 0);
            let x = Tensor::from_vec(randn(&xs, case), &xs[..], &dev).unwrap();
            let w = Tensor::from_vec(randn(&ws, 100 + case), &ws[..], &dev).unwrap();
            let ours = conv2d(&x, &w, p, s).unwrap();
            let theirs = x.conv2d(&w, p, s, 1, 1).unwrap();
            assert_eq!(
                ours.dims(),
                theirs.dims(),
                "case {case}: {xs:?} {ws:?} s{s} p{p}"
            );
            let d = max_diff(&ours, &theirs);
            assert!(
                d < 1e-4 * (ws[1] * ws[2] * ws[3]) as f32,
                "case {case}: {xs:?} {ws:?} s{s} p{p}: {d}"
            );
        }
    }

    /// Both gradients equal candle's own conv backward on square inputs (where candle's
    /// backward works: it derives the width's output padding from the height).
    #[test]
    fn gradients_match_candles_conv_backward() {
        let dev = Device::Cpu;
        let mut r = Rng::new(11);
        for case in 0..30 {
            let (xs, ws, s, p) = random_case(&mut r, true);
            let x = Var::from_vec(randn(&xs, case), &xs[..], &dev).unwrap();
            let w = Var::from_vec(randn(&ws, 50 + case), &ws[..], &dev).unwrap();
            let theirs = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
            let up =
                Tensor::from_vec(randn(theirs.dims(), 99 + case), theirs.dims(), &dev).unwrap();
            let g = grads_of_dot(&theirs, &up);
            let (gx, gw) = grads(&x, &w, p, s, &up);
            let want_x = g.get(x.as_tensor()).unwrap();
            let want_w = g.get(w.as_tensor()).unwrap();
            assert_eq!(gx.dims(), want_x.dims());
            assert_eq!(gw.dims(), want_w.dims());
            let tol = 1e-4 * (xs[0] * theirs.dims()[2] * theirs.dims()[3] * ws[0]) as f32;
            assert!(
                max_diff(&gx, want_x) < tol,
                "case {case} dx: {}",
                max_diff(&gx, want_x)
            );
            assert!(
                max_diff(&gw, want_w) < tol,
                "case {case} dw: {}",
                max_diff(&gw, want_w)
            );
        }
    }

    /// The same on the shapes a ResNet-18 meets at 64 px with batch 4 (wide channels, GEMMs
    /// big enough to take the `gemm` crate's blocked paths, groups of several images).
    #[test]
    fn gradients_match_candles_conv_backward_on_resnet_shapes() {
        let dev = Device::Cpu;
        let cases = [
            ([4, 3, 64, 64], [64, 3, 7, 7], 2, 3),
            ([4, 64, 16, 16], [64, 64, 3, 3], 1, 1),
            // 256 tiles of 4x4: Winograd F(4x4) in all three passes.
            ([16, 64, 16, 16], [64, 64, 3, 3], 1, 1),
            ([4, 64, 16, 16], [128, 64, 3, 3], 2, 1),
            ([4, 128, 8, 8], [256, 128, 1, 1], 2, 0),
            ([4, 256, 4, 4], [512, 256, 3, 3], 2, 1),
            ([4, 512, 2, 2], [512, 512, 3, 3], 1, 1),
            ([4, 64, 8, 8], [256, 64, 1, 1], 1, 0),
        ];
        for (case, (xs, ws, s, p)) in cases.into_iter().enumerate() {
            let case = case as u64;
            let x = Var::from_vec(randn(&xs, case), &xs[..], &dev).unwrap();
            let w = Var::from_vec(randn(&ws, 50 + case), &ws[..], &dev).unwrap();
            let theirs = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
            let ours = conv2d(x.as_tensor(), w.as_tensor(), p, s).unwrap();
            let scale = (ws[1] * ws[2] * ws[3]) as f32;
            assert!(
                max_diff(&ours, &theirs) < 1e-5 * scale,
                "case {case} y: {}",
                max_diff(&ours, &theirs)
            );
            let up =
                Tensor::from_vec(randn(theirs.dims(), 99 + case), theirs.dims(), &dev).unwrap();
            let g = grads_of_dot(&theirs, &up);
            let (gx, gw) = grads(&x, &w, p, s, &up);
            let want_x = g.get(x.as_tensor()).unwrap();
            let want_w = g.get(w.as_tensor()).unwrap();
            let tx = 1e-5 * (ws[0] * ws[2] * ws[3]) as f32;
            let tw = 1e-5 * (xs[0] * theirs.dims()[2] * theirs.dims()[3]) as f32;
            assert!(
                max_diff(&gx, want_x) < tx,
                "case {case} dx: {}",
                max_diff(&gx, want_x)
            );
            assert!(
                max_diff(&gw, want_w) < tw,
                "case {case} dw: {}",
                max_diff(&gw, want_w)
            );
        }
    }

    /// The loss `<conv(x, w), up>` is linear in x and in w, so a finite difference along any
    /// direction equals the directional derivative exactly (up to rounding): checks both
    /// gradients on non-square inputs too, where candle's backward cannot be compared.
    #[test]
    fn gradients_pass_finite_difference_checks() {
        let dev = Device::Cpu;
        let mut r = Rng::new(3);
        for case in 0..30 {
            let (xs, ws, s, p) = random_case(&mut r, false);
            let x = Var::from_vec(randn(&xs, case), &xs[..], &dev).unwrap();
            let w = Var::from_vec(randn(&ws, 40 + case), &ws[..], &dev).unwrap();
            let y = conv2d(x.as_tensor(), w.as_tensor(), p, s).unwrap();
            let up = Tensor::from_vec(randn(y.dims(), 77 + case), y.dims(), &dev).unwrap();
            let (gx, gw) = grads(&x, &w, p, s, &up);
            let loss = |x: &Tensor, w: &Tensor| dot(&x.conv2d(w, p, s, 1, 1).unwrap(), &up);
            let base = loss(x.as_tensor(), w.as_tensor());
            let eps = 1e-2;
            let dxv = Tensor::from_vec(randn(&xs, 500 + case), &xs[..], &dev).unwrap();
            let dwv = Tensor::from_vec(randn(&ws, 600 + case), &ws[..], &dev).unwrap();
            let fd_x = (loss(
                &(x.as_tensor() + (&dxv * eps).unwrap()).unwrap(),
                w.as_tensor(),
            ) - base)
                / eps;
            let fd_w = (loss(
                x.as_tensor(),
                &(w.as_tensor() + (&dwv * eps).unwrap()).unwrap(),
            ) - base)
                / eps;
            let (an_x, an_w) = (dot(&gx, &dxv), dot(&gw, &dwv));
            let scale = base.abs().max(an_x.abs()).max(an_w.abs()).max(1.0);
            assert!(
                (fd_x - an_x).abs() < 2e-3 * scale,
                "case {case} dx: fd {fd_x} vs {an_x}"
            );
            assert!(
                (fd_w - an_w).abs() < 2e-3 * scale,
                "case {case} dw: fd {fd_w} vs {an_w}"
            );
        }
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

    #[test]
    fn a_kernel_larger_than_the_padded_input_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 2, 2), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 2, 7, 7), DType::F32, &dev).unwrap();
        let e = conv2d(&x, &w, 1, 1).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}
