//! Batch normalisation with PyTorch's training semantics. candle-nn's BatchNorm cannot be used
//! for training here: its running statistics are not `Var`s of the `VarMap` (so they would not
//! be saved) and it does not follow PyTorch's unbiased running-variance update.
//!
//! On the CPU, training mode is one custom op (forward and backward in single passes, see
//! [`bn_kernels`]), optionally fused with the ReLU that follows, instead of a dozen
//! broadcast ops each allocating a full-size temporary.

use super::bn_kernels::{self, BnShape, Relu};
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
        let stats = with_f32(x, OP, |v| BatchStats::of(shape, v))?;
        let op = BnTrain {
            shape,
            mean: stats.mean.clone(),
            invstd: stats.invstd.clone(),
            relu,
        };
        let y = x.apply_op3(&self.weight, &self.bias, op)?;
        stats.update_running(&self.running_mean, &self.running_var)?;
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
        update_running(
            &self.running_mean,
            &self.running_var,
            batch_mean,
            unbiased_var,
        )
    }

    /// Eval mode's per-channel `(scale, shift)`: `y = x * scale + shift`.
    fn eval_affine(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let v = |t: &Tensor| t.to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok(eval_affine(
            &v(self.running_mean.as_tensor())?,
            &v(self.running_var.as_tensor())?,
            &v(&self.weight)?,
            &v(&self.bias)?,
        ))
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

/// A training-mode batch norm's statistics of one batch: mean and `1 / sqrt(var + eps)` in
/// f64 for the transform and its backward, mean and unbiased variance in f32 for the running
/// statistics.
pub(crate) struct BatchStats {
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
    mean32: Vec<f32>,
    unbiased: Vec<f32>,
}

impl BatchStats {
    pub fn of(shape: BnShape, x: &[f32]) -> BatchStats {
        let (mean, var) = bn_kernels::stats(shape, x);
        let invstd = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
        let n = shape.count() as f64;
        let unbiased = var.iter().map(|v| (v * n / (n - 1.0)) as f32).collect();
        let mean32 = mean.iter().map(|&m| m as f32).collect();
        BatchStats {
            mean,
            invstd,
            mean32,
            unbiased,
        }
    }

    /// Moves the running statistics towards this batch's (momentum [`BN_MOMENTUM`]).
    pub fn update_running(self, running_mean: &Var, running_var: &Var) -> Result<()> {
        let (c, dev) = (self.mean32.len(), running_mean.device());
        update_running(
            running_mean,
            running_var,
            &Tensor::from_vec(self.mean32, c, dev)?,
            &Tensor::from_vec(self.unbiased, c, dev)?,
        )
    }
}

/// `running = (1 - momentum) * running + momentum * batch`, in place on the variables.
fn update_running(rm: &Var, rv: &Var, batch_mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
    let m = BN_MOMENTUM;
    let (old_m, old_v) = (rm.as_detached_tensor(), rv.as_detached_tensor());
    rm.set(&((old_m * (1.0 - m))? + (batch_mean * m)?)?)?;
    rv.set(&((old_v * (1.0 - m))? + (unbiased_var * m)?)?)
}

/// Eval mode's per-channel `(scale, shift)` from the running statistics, in f64:
/// `scale = weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`.
pub(crate) fn eval_affine(
    running_mean: &[f32],
    running_var: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f64> = weight
        .iter()
        .zip(running_var)
        .map(|(&w, &v)| w as f64 / (v as f64 + BN_EPS).sqrt())
        .collect();
    let shift = bias
        .iter()
        .zip(running_mean)
        .zip(&scale)
        .map(|((&b, &m), s)| (b as f64 - m as f64 * s) as f32)
        .collect();
    (scale.into_iter().map(|s| s as f32).collect(), shift)
}

/// The per-channel `(scale, shift)` of a training-mode batch norm, like ATen:
/// `alpha = invstd * weight`, `beta = bias - mean * alpha` (in f64), then `x * alpha + beta`.
pub(crate) fn train_affine(
    mean: &[f64],
    invstd: &[f64],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f64> = invstd
        .iter()
        .zip(weight)
        .map(|(is, &w)| is * w as f64)
        .collect();
    let shift = bias
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, m), s)| (b as f64 - m * s) as f32)
        .collect();
    (scale.into_iter().map(|s| s as f32).collect(), shift)
}

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
        let (scale, shift) = train_affine(&self.mean, &self.invstd, w, b);
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
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let weight = w.contiguous()?.to_vec1::<f32>()?;
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        // The fused ReLU's mask is computed again from `x` and the forward's affine map.
        let affine = if self.relu {
            let beta = b.contiguous()?.to_vec1::<f32>()?;
            Some(train_affine(&self.mean, &self.invstd, &weight, &beta))
        } else {
            None
        };
        let (dx, dw, db) = bn_kernels::backward(
            self.shape,
            storage_f32(&xs, xl, OP)?,
            storage_f32(&gs, gl, OP)?,
            affine.as_ref().map(|(scale, shift)| Relu { scale, shift }),
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
mod tests;
