//! torchvision's ResNet initialisation drawn from our own seeded generator, so a seed gives
//! the same initial weights on every machine and device:
//! - convs: kaiming normal, mode fan_out, relu gain (std = sqrt(2 / (out_channels * k * k)));
//! - batch norm: weight 1, bias 0, running mean 0, running var 1;
//! - fc (nn.Linear's default): weight and bias uniform in +-1/sqrt(in_features).
//!
//! Each tensor draws from its own stream derived from (seed, hash of its name), so the values
//! do not depend on the order in which tensors are visited.

use super::{all_vars_sorted, Arch};
use crate::rng::Rng;
use candle_core::{Result, Tensor};
use candle_nn::VarMap;

fn name_stream(name: &str) -> u64 {
    let h = blake3::hash(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// (Re)initialise every tensor of `varmap`, which must hold a [`super::ResNet`] of `arch`.
pub fn init_weights(varmap: &VarMap, arch: Arch, seed: u64) -> Result<()> {
    for (name, var) in all_vars_sorted(varmap) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let mut rng = Rng::derive(seed, name_stream(&name));
        let values: Vec<f32> = if name.starts_with("fc.") {
            let bound = 1.0 / (arch.feature_dim() as f64).sqrt();
            (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect()
        } else if name.ends_with(".running_var") {
            vec![1.0; n]
        } else if name.ends_with(".running_mean") || name.ends_with(".bias") {
            vec![0.0; n]
        } else if dims.len() == 1 {
            // batch-norm weight
            vec![1.0; n]
        } else if dims.len() == 4 {
            let fan_out = (dims[0] * dims[2] * dims[3]) as f64;
            let std = (2.0 / fan_out).sqrt();
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        } else {
            candle_core::bail!("init_weights: unexpected tensor {name} of shape {dims:?}")
        };
        let t = Tensor::from_vec(values, dims, &candle_core::Device::Cpu)?
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResNet;
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn model(seed: u64) -> VarMap {
        let vm = VarMap::new();
        ResNet::new(
            Arch::ResNet18,
            5,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        init_weights(&vm, Arch::ResNet18, seed).unwrap();
        vm
    }

    fn get(vm: &VarMap, name: &str) -> Vec<f32> {
        vm.data().lock().unwrap()[name]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn statistics_follow_torchvision_and_seed_is_reproducible() {
        let a = model(1);
        // layer3.0.conv2: 256 x 256 x 3 x 3, fan_out 256*9 -> std sqrt(2/2304).
        let w = get(&a, "layer3.0.conv2.weight");
        let mean = w.iter().map(|v| *v as f64).sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64;
        let want = 2.0 / 2304.0;
        assert!(
            mean.abs() < 1e-3 && (var / want - 1.0).abs() < 0.02,
            "mean {mean} var {var}"
        );
        let fc = get(&a, "fc.weight");
        let bound = 1.0 / 512f32.sqrt();
        assert!(fc.iter().all(|v| v.abs() <= bound));
        assert!(fc.iter().any(|v| v.abs() > bound * 0.9));
        assert!(get(&a, "fc.bias").iter().any(|v| *v != 0.0));
        assert!(get(&a, "layer1.1.bn2.weight").iter().all(|v| *v == 1.0));
        assert!(get(&a, "bn1.bias").iter().all(|v| *v == 0.0));
        assert!(get(&a, "layer2.0.downsample.1.running_var")
            .iter()
            .all(|v| *v == 1.0));
        assert_eq!(get(&a, "conv1.weight"), get(&model(1), "conv1.weight"));
        assert_ne!(get(&a, "conv1.weight"), get(&model(2), "conv1.weight"));
    }
}
