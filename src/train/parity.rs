//! Writes the fixture that `tests/fixtures/torch_parity.py` compares against PyTorch /
//! torchvision (not installed here): weights, an input batch, our eval logits, train-mode
//! losses and the weights after two SGD steps. Run with
//! `DRPIPE_PARITY_DIR=/tmp/parity cargo test --lib write_torch_parity_fixture -- --ignored`,
//! then `python tests/fixtures/torch_parity.py /tmp/parity`.

#[cfg(test)]
mod tests {
    use crate::model::weights_io::{write_safetensors, HostTensor};
    use crate::model::{
        all_vars_sorted, init_weights, save_torchvision, trainable_vars, Arch, ResNet,
    };
    use crate::rng::Rng;
    use crate::train::loss::cross_entropy;
    use crate::train::sgd::{Sgd, SgdConfig};
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use std::path::Path;

    pub const LABELS: [u32; 4] = [0, 1, 3, 4];
    pub const CLASS_WEIGHTS: [f32; 5] = [1.0, 2.0, 1.5, 3.0, 1.0];
    pub const SMOOTHING: f64 = 0.1;
    pub const SGD: SgdConfig = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: false,
    };

    /// Batch-norm tensors away from their trivial init, so eval mode exercises them.
    fn perturb_batch_norms(vm: &VarMap) {
        for (name, var) in all_vars_sorted(vm) {
            if var.rank() != 1 || name.starts_with("fc.") {
                continue;
            }
            let n = var.elem_count();
            let f = |g: &dyn Fn(f32) -> f32| (0..n).map(|i| g(i as f32)).collect::<Vec<f32>>();
            let v = if name.ends_with(".running_mean") {
                f(&|i| 0.05 * (0.5 * i).sin())
            } else if name.ends_with(".running_var") {
                f(&|i| 1.0 + 0.2 * i.cos().abs())
            } else if name.ends_with(".weight") {
                f(&|i| 1.0 + 0.1 * i.sin())
            } else {
                f(&|i| 0.1 * i.cos())
            };
            var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap())
                .unwrap();
        }
    }

    fn write_one(arch: Arch, dir: &Path) {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let model = ResNet::new(arch, 5, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        init_weights(&vm, arch, 0).unwrap();
        perturb_batch_norms(&vm);
        save_torchvision(&vm, &dir.join(format!("{arch}_init.safetensors")), 0).unwrap();

        let mut r = Rng::new(1);
        let x: Vec<f32> = (0..4 * 3 * 32 * 32).map(|_| r.normal() as f32).collect();
        let x = Tensor::from_vec(x, (4, 3, 32, 32), &dev).unwrap();
        let eval_logits = model.forward(&x, false).unwrap();
        let mut opt = Sgd::new(trainable_vars(&vm, false), SGD);
        let mut losses = Vec::new();
        let mut train_logits = None;
        for _ in 0..2 {
            let logits = model.forward(&x, true).unwrap();
            let loss = cross_entropy(&logits, &LABELS, &CLASS_WEIGHTS, SMOOTHING).unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            opt.step(&loss.backward().unwrap()).unwrap();
            train_logits.get_or_insert(logits.detach());
        }
        let labels = Tensor::new(&LABELS.map(|l| l as i64), &dev).unwrap();
        let io = [
            ("x", x),
            ("labels", labels),
            ("eval_logits", eval_logits),
            ("train_logits_step1", train_logits.unwrap()),
            ("losses", Tensor::new(losses.as_slice(), &dev).unwrap()),
            ("class_weights", Tensor::new(&CLASS_WEIGHTS, &dev).unwrap()),
        ];
        let io: Vec<(String, HostTensor)> = io
            .iter()
            .map(|(n, t)| (n.to_string(), HostTensor::from_tensor(t).unwrap()))
            .collect();
        write_safetensors(&dir.join(format!("{arch}_io.safetensors")), &io, None).unwrap();
        save_torchvision(&vm, &dir.join(format!("{arch}_after.safetensors")), 2).unwrap();
    }

    #[test]
    #[ignore = "writes the PyTorch parity fixture into $DRPIPE_PARITY_DIR"]
    fn write_torch_parity_fixture() {
        let dir = std::env::var_os("DRPIPE_PARITY_DIR").expect("set DRPIPE_PARITY_DIR");
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        for arch in [Arch::ResNet18, Arch::ResNet50] {
            write_one(arch, dir);
        }
        assert!(dir.join("resnet50_after.safetensors").exists());
    }
}
