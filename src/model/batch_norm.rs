//! Batch normalisation with PyTorch's training semantics. candle-nn's BatchNorm cannot be used
//! for training here: its running statistics are not `Var`s of the `VarMap` (so they would not
//! be saved) and it does not follow PyTorch's unbiased running-variance update.
//!
//! On the CPU, training mode is one custom op (forward and backward in single passes, see
//! [`bn_kernels`]), optionally fused with the ReLU that follows, instead of a dozen
//! broadcast ops each allocating a full-size temporary.

use super::bn_kernels::{self, BnShape};
use super::cpu_data::{f32_slice, storage_f32, with_f32};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// `weight`, `bias` are parameters; `running_mean`, `running_var` are state updated in train
/// mode (in place, so the `VarMap` that owns them sees the new values and saves them).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    channels: usize,
}

impl BatchNorm {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        // A tensor from a VarMap is already a variable, so `from_tensor` shares its storage
        // and `set` below updates the VarMap's copy. From other backends (read-only weights
        // for inference) this makes a private copy, which only eval mode reads anyway.
        let running_mean =
            Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            channels,
        })
    }

    /// `x` is `[B, C, H, W]`. Train: normalise with the batch's biased variance and move the
    /// running statistics towards the batch's mean and unbiased variance (momentum 0.1).
    /// Eval: normalise with the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_fused(x, train, false)
    }

    /// `relu(self.forward(x, train))`, fused into one pass on the CPU.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_fused(x, train, true)
    }

    fn forward_fused(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!(
                "batch norm over {} channels got input {:?}",
                self.channels,
                x.shape()
            )
        }
        let shape = BnShape {
            batch: b,
            channels: c,
            plane: h * w,
        };
        if train && shape.count() < 2 {
            candle_core::bail!(
                "batch norm in train mode needs more than 1 value per channel, got input {:?}",
                x.shape()
            )
        }
        let cpu =
            x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32;
        if cpu && train {
            return self.train_cpu(&x.contiguous()?, shape, relu);
        }
        // Eval without a graph to record (inference): the fused affine kernel.
        if cpu && !x.track_op() {
            let (scale, shift) = self.eval_affine()?;
            let op = BnAffine {
                shape,
                scale,
                shift,
                relu,
            };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        let y = if train {
            self.train_generic(x)?
        } else {
            self.eval_generic(x)?
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// Batch statistics in f64 like PyTorch's CPU kernels (`acc_type<float>` is double): an
    /// f32 sum over B*H*W values loses enough precision to make training drift from PyTorch's.
    fn train_cpu(&self, x: &Tensor, shape: BnShape, relu: bool) -> Result<Tensor> {
        let (mean, var) = with_f32(x, OP, |v| bn_kernels::stats(shape, v))?;
        let invstd = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
        let n = shape.count() as f64;
        let unbiased: Vec<f32> = var.iter().map(|v| (v * n / (n - 1.0)) as f32).collect();
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let op = BnTrain {
            shape,
            mean,
            invstd,
            relu,
        };
        let y = x.apply_op3(&self.weight, &self.bias, op)?;
        let dev = x.device();
        self.update_running(
            &Tensor::from_vec(mean32, shape.channels, dev)?,
            &Tensor::from_vec(unbiased, shape.channels, dev)?,
        )?;
        Ok(y)
    }

    /// Any device and dtype, with candle's ops.
    fn train_generic(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.channels;
        let bshape = (1, c, 1, 1);
        let n = x.elem_count() / c.max(1);
        let x64 = x.to_dtype(DType::F64)?;
        let mean64 = x64.mean_keepdim((0, 2, 3))?;
        let centred64 = x64.broadcast_sub(&mean64)?;
        let var64 = centred64.sqr()?.mean_keepdim((0, 2, 3))?;
        let scale64 = self
            .weight
            .reshape(bshape)?
            .to_dtype(DType::F64)?
            .broadcast_div(&(&var64 + BN_EPS)?.sqrt()?)?;
        let y = centred64
            .broadcast_mul(&scale64)?
            .to_dtype(x.dtype())?
            .broadcast_add(&self.bias.reshape(bshape)?)?;
        let batch_mean = mean64.detach().flatten_all()?.to_dtype(x.dtype())?;
        let unbiased =
            (var64.detach().flatten_all()? * (n as f64 / (n as f64 - 1.0)))?.to_dtype(x.dtype())?;
        self.update_running(&batch_mean, &unbiased)?;
        Ok(y)
    }

    fn update_running(&self, batch_mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
        let m = BN_MOMENTUM;
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        self.running_mean
            .set(&((rm * (1.0 - m))? + (batch_mean * m)?)?)?;
        self.running_var
            .set(&((rv * (1.0 - m))? + (unbiased_var * m)?)?)
    }

    /// Eval mode's per-channel `(scale, shift)`: `y = x * scale + shift`.
    fn eval_affine(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let rm = self
            .running_mean
            .as_detached_tensor()
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let rv = self
            .running_var
            .as_detached_tensor()
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let w = self.weight.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let b = self.bias.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let scale: Vec<f64> = w
            .iter()
            .zip(&rv)
            .map(|(w, v)| w / (v + BN_EPS).sqrt())
            .collect();
        let shift = b
            .iter()
            .zip(&rm)
            .zip(&scale)
            .map(|((b, m), s)| (b - m * s) as f32)
            .collect();
        Ok((scale.into_iter().map(|s| s as f32).collect(), shift))
    }

    fn eval_generic(&self, x: &Tensor) -> Result<Tensor> {
        let bshape = (1, self.channels, 1, 1);
        let rm = self.running_mean.as_detached_tensor().reshape(bshape)?;
        let rv = self.running_var.as_detached_tensor().reshape(bshape)?;
        let scale = self
            .weight
            .reshape(bshape)?
            .broadcast_div(&(rv + BN_EPS)?.sqrt()?)?;
        x.broadcast_sub(&rm)?
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias.reshape(bshape)?)
    }
}

const OP: &str = "batch norm";

/// Training-mode batch norm (optionally followed by ReLU) with its batch statistics.
struct BnTrain {
    shape: BnShape,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    relu: bool,
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "drpipe-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (w, b) = (f32_slice(ws, wl, OP)?, f32_slice(bs, bl, OP)?);
        // Like ATen: alpha = invstd * weight, beta = bias - mean * alpha, then x * alpha + beta.
        let scale: Vec<f64> = self
            .invstd
            .iter()
            .zip(w)
            .map(|(is, &w)| is * w as f64)
            .collect();
        let shift = b
            .iter()
            .zip(&self.mean)
            .zip(&scale)
            .map(|((&b, m), s)| (b as f64 - m * s) as f32)
            .collect::<Vec<_>>();
        let scale: Vec<f32> = scale.into_iter().map(|s| s as f32).collect();
        let y = bn_kernels::affine(
            self.shape,
            f32_slice(xs, xl, OP)?,
            &scale,
            &shift,
            self.relu,
        );
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let weight = w.contiguous()?.to_vec1::<f32>()?;
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (ys, yl) = y.storage_and_layout();
        let yv = if self.relu {
            Some(storage_f32(&ys, yl, OP)?)
        } else {
            None
        };
        let (dx, dw, db) = bn_kernels::backward(
            self.shape,
            storage_f32(&xs, xl, OP)?,
            storage_f32(&gs, gl, OP)?,
            yv,
            &self.mean,
            &self.invstd,
            &weight,
        );
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, w.shape(), dev)?),
        ))
    }
}

/// `y = x * scale[c] + shift[c]` (optionally followed by ReLU): eval mode, no backward.
struct BnAffine {
    shape: BnShape,
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl CustomOp1 for BnAffine {
    fn name(&self) -> &'static str {
        "drpipe-batch-norm-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = bn_kernels::affine(
            self.shape,
            f32_slice(s, l, OP)?,
            &self.scale,
            &self.shift,
            self.relu,
        );
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::{max_diff, randn};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn train_mode_matches_hand_computation_and_updates_running_stats() {
        let dev = Device::Cpu;
        let mut vm = VarMap::new();
        let bn = BatchNorm::new(2, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        vm.set_one("weight", Tensor::new(&[2f32, 1.0], &dev).unwrap())
            .unwrap();
        vm.set_one("bias", Tensor::new(&[0f32, 1.0], &dev).unwrap())
            .unwrap();
        // Two images, two channels, 1x2 pixels. Channel 0 values: 1,3 | 5,7 -> mean 4,
        // biased var (9+1+1+9)/4 = 5, unbiased 20/3. Channel 1 all 2 -> mean 2, var 0.
        let x = Tensor::new(&[1f32, 3., 2., 2., 5., 7., 2., 2.], &dev)
            .unwrap()
            .reshape((2, 2, 1, 2))
            .unwrap();
        let y = bn
            .forward(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let s = 2.0 / (5.0f32 + 1e-5).sqrt();
        let want = [-3.0 * s, -s, 1.0, 1.0, s, 3.0 * s, 1.0, 1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        let rm = vm.data().lock().unwrap()["running_mean"]
            .to_vec1::<f32>()
            .unwrap();
        let rv = vm.data().lock().unwrap()["running_var"]
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            (rm[0] - 0.4).abs() < 1e-6 && (rm[1] - 0.2).abs() < 1e-6,
            "{rm:?}"
        );
        let want_rv0 = 0.9 + 0.1 * 20.0 / 3.0;
        assert!(
            (rv[0] - want_rv0).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6,
            "{rv:?}"
        );

        // Eval mode uses the running statistics: channel 1 -> (x - 0.2)/sqrt(0.9+eps)*1 + 1.
        let e = bn
            .forward(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want1 = (2.0 - 0.2) / (0.9f32 + 1e-5).sqrt() + 1.0;
        assert!((e[2] - want1).abs() < 1e-5, "{e:?}");
        let want0 = (1.0 - 0.4) / (want_rv0 + 1e-5).sqrt() * 2.0;
        assert!((e[0] - want0).abs() < 1e-5, "{e:?}");
    }

    #[test]
    fn single_value_per_channel_is_an_error_in_train_mode() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let bn = BatchNorm::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = Tensor::zeros((1, 3, 1, 1), DType::F32, &dev).unwrap();
        assert!(bn.forward(&x, true).is_err());
        assert!(bn.forward(&x, false).is_ok());
    }

    /// A batch norm with random affine parameters (same for equal seeds).
    fn random_bn(c: usize, seed: u64) -> (VarMap, BatchNorm) {
        let dev = Device::Cpu;
        let mut vm = VarMap::new();
        let bn = BatchNorm::new(c, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let w: Vec<f32> = randn(&[c], seed).iter().map(|v| 1.0 + 0.5 * v).collect();
        vm.set_one("weight", Tensor::new(w, &dev).unwrap()).unwrap();
        vm.set_one("bias", Tensor::new(randn(&[c], seed + 1), &dev).unwrap())
            .unwrap();
        (vm, bn)
    }

    /// The fused CPU op (with and without ReLU) gives the same output, running statistics and
    /// gradients for x, weight and bias as the same computation in candle's ops.
    #[test]
    fn cpu_kernels_match_candles_ops_forward_and_backward() {
        let dev = Device::Cpu;
        for (case, &(b, c, h, w)) in [(2, 3, 4, 5), (4, 1, 1, 3), (3, 5, 7, 7), (2, 2, 1, 1)]
            .iter()
            .enumerate()
        {
            for relu in [false, true] {
                let seed = case as u64 * 10;
                let n = b * c * h * w;
                // A large common offset: the variance must not cancel away in f32.
                let xv: Vec<f32> = randn(&[n], seed + 2)
                    .iter()
                    .map(|v| 3.0 * v + 50.0)
                    .collect();
                let x = Var::from_vec(xv, (b, c, h, w), &dev).unwrap();
                let up = Tensor::from_vec(randn(&[n], seed + 3), (b, c, h, w), &dev).unwrap();
                let (vm1, fast) = random_bn(c, seed);
                let (vm2, slow) = random_bn(c, seed);
                let y1 = fast.forward_fused(x.as_tensor(), true, relu).unwrap();
                let mut y2 = slow.train_generic(x.as_tensor()).unwrap();
                if relu {
                    y2 = y2.relu().unwrap();
                }
                assert!(
                    max_diff(&y1, &y2) < 1e-5,
                    "case {case} relu {relu}: y {}",
                    max_diff(&y1, &y2)
                );
                for name in ["running_mean", "running_var"] {
                    let (a, b) = (
                        &vm1.data().lock().unwrap()[name],
                        &vm2.data().lock().unwrap()[name],
                    );
                    assert!(max_diff(a.as_tensor(), b.as_tensor()) < 1e-4, "{name}");
                }
                let g1 = y1.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = y2.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
                let pairs = [
                    (x.as_tensor(), x.as_tensor()),
                    (&fast.weight, &slow.weight),
                    (&fast.bias, &slow.bias),
                ];
                for (k, (t1, t2)) in pairs.into_iter().enumerate() {
                    let (a, b) = (g1.get(t1).unwrap(), g2.get(t2).unwrap());
                    assert!(
                        max_diff(a, b) < 1e-4,
                        "case {case} relu {relu} grad {k}: {}",
                        max_diff(a, b)
                    );
                }
            }
        }
    }

    /// The input gradient against a central finite difference along a random direction.
    #[test]
    fn input_gradient_passes_a_finite_difference_check() {
        let dev = Device::Cpu;
        let (b, c, h, w) = (3, 4, 5, 5);
        let n = b * c * h * w;
        let x = Var::from_vec(randn(&[n], 1), (b, c, h, w), &dev).unwrap();
        let up = Tensor::from_vec(randn(&[n], 2), (b, c, h, w), &dev).unwrap();
        let dir = Tensor::from_vec(randn(&[n], 3), (b, c, h, w), &dev).unwrap();
        let (_vm, bn) = random_bn(c, 4);
        let loss = |x: &Tensor| -> f64 {
            let y = bn.forward_relu(x, true).unwrap();
            y.to_dtype(DType::F64)
                .unwrap()
                .mul(&up.to_dtype(DType::F64).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let y = bn.forward_relu(x.as_tensor(), true).unwrap();
        let g = y.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap();
        let analytic: f64 = gx
            .mul(&dir)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let eps = 1e-3;
        let plus = loss(&(x.as_tensor() + (&dir * eps).unwrap()).unwrap());
        let minus = loss(&(x.as_tensor() - (&dir * eps).unwrap()).unwrap());
        let fd = (plus - minus) / (2.0 * eps);
        assert!(
            (fd - analytic).abs() < 1e-2 * analytic.abs().max(1.0),
            "fd {fd} vs {analytic}"
        );
    }
}
