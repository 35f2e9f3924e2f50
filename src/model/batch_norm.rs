//! Batch normalisation with PyTorch's training semantics. candle-nn's BatchNorm cannot be used
//! for training here: its running statistics are not `Var`s of the `VarMap` (so they would not
//! be saved) and it does not follow PyTorch's unbiased running-variance update.

use candle_core::{Result, Tensor, Var};
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
        let c = self.channels;
        let bshape = (1, c, 1, 1);
        let weight = self.weight.reshape(bshape)?;
        let bias = self.bias.reshape(bshape)?;
        if !train {
            let rm = self.running_mean.as_detached_tensor().reshape(bshape)?;
            let rv = self.running_var.as_detached_tensor().reshape(bshape)?;
            let scale = weight.broadcast_div(&(rv + BN_EPS)?.sqrt()?)?;
            return x
                .broadcast_sub(&rm)?
                .broadcast_mul(&scale)?
                .broadcast_add(&bias);
        }
        let n = x.elem_count() / c.max(1);
        if n < 2 {
            candle_core::bail!(
                "batch norm in train mode needs more than 1 value per channel, got input {:?}",
                x.shape()
            )
        }
        // Statistics in f64, like PyTorch's CPU kernels (acc_type<float> is double): an f32
        // sum over B*H*W values loses enough precision to make training drift from PyTorch's.
        let x64 = x.to_dtype(candle_core::DType::F64)?;
        let mean64 = x64.mean_keepdim((0, 2, 3))?;
        let centred64 = x64.broadcast_sub(&mean64)?;
        let var64 = centred64.sqr()?.mean_keepdim((0, 2, 3))?;
        let mean = mean64.to_dtype(x.dtype())?;
        let var = var64.to_dtype(x.dtype())?;
        let scale64 = weight
            .to_dtype(candle_core::DType::F64)?
            .broadcast_div(&(&var64 + BN_EPS)?.sqrt()?)?;
        let y = centred64
            .broadcast_mul(&scale64)?
            .to_dtype(x.dtype())?
            .broadcast_add(&bias)?;

        let m = BN_MOMENTUM;
        let batch_mean = mean.detach().flatten_all()?;
        let unbiased = (var.detach().flatten_all()? * (n as f64 / (n as f64 - 1.0)))?;
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        self.running_mean
            .set(&((rm * (1.0 - m))? + (batch_mean * m)?)?)?;
        self.running_var
            .set(&((rv * (1.0 - m))? + (unbiased * m)?)?)?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
