//! Parity with torchvision: weights and inputs defined by a formula both sides compute
//! (tests/fixtures/torch_parity.py regenerates the expected values with PyTorch), so the
//! fixture is a few kilobytes and no weights are committed.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use drpipe::model::conv_kernels::ConvGeom;
use drpipe::model::{all_vars_sorted, trainable_vars, Arch, Engine, ResNet};
use drpipe::train::loss::cross_entropy;
use drpipe::train::sgd::{Sgd, SgdConfig};

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/parity.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expected(f: &serde_json::Value, key: &str) -> Vec<f32> {
    f[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// torch_parity.py's u(i, salt): splitmix64's finaliser, uniform in [-1, 1), exact in integers.
fn u(i: usize, salt: u64) -> f64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The formula of torch_parity.py.
fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = name.bytes().map(|b| b as u64).sum::<u64>() % 97;
    (0..n)
        .map(|j| {
            let s = u(j, h);
            let v = if name.ends_with("running_var") {
                1.0 + 0.5 * s.abs()
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                0.1 * s
            } else if shape.len() == 1 {
                1.0 + 0.1 * s
            } else if name == "fc.weight" {
                0.01 * s
            } else {
                s * (6.0 / (n / shape[0]) as f64).sqrt()
            };
            v as f32
        })
        .collect()
}

fn build(arch: Arch) -> (VarMap, ResNet) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = ResNet::new(arch, 5, vb).unwrap();
    for (name, var) in all_vars_sorted(&varmap) {
        let shape = var.dims().to_vec();
        var.set(&Tensor::from_vec(formula(&name, &shape), shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    (varmap, net)
}

fn batch(b: usize, size: usize, step: usize) -> (Tensor, Vec<u32>) {
    let x: Vec<f32> = (0..b * 3 * size * size)
        .map(|j| u(j, 1000 + step as u64) as f32)
        .collect();
    (
        Tensor::from_vec(x, (b, 3, size, size), &Device::Cpu).unwrap(),
        (0..b as u32).map(|i| i % 5).collect(),
    )
}

/// Within `tol` times the largest expected magnitude, or times `floor` if that is larger
/// (floor 0: relative, as for logits; floor 1: absolute for the small running statistics).
fn assert_close(got: &[f32], want: &[f32], tol: f32, floor: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, torchvision {w} (tolerance {tol} x {scale})"
        );
    }
}

#[test]
fn eval_logits_match_torchvision() {
    let f = fixture();
    for (arch, key) in [
        (Arch::ResNet18, "resnet18_eval_logits"),
        (Arch::ResNet50, "resnet50_eval_logits"),
    ] {
        let (_vm, net) = build(arch);
        let (x, _) = batch(2, 32, 0);
        let logits: Vec<f32> = net
            .forward(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_close(&logits, &expected(&f, key), 1e-4, 0.0, key);
    }
}

/// One train step's gradients of the cross-entropy loss: through candle's autograd over
/// `ResNet`, or through the layer-level engine the trainer uses on the CPU.
fn step_grads(
    net: &ResNet,
    engine: Option<&mut Engine>,
    x: &Tensor,
    y: &[u32],
) -> (f32, candle_core::backprop::GradStore) {
    match engine {
        None => {
            let loss = cross_entropy(&net.forward(x, true).unwrap(), y, &[1.0; 5], 0.0).unwrap();
            (loss.to_scalar().unwrap(), loss.backward().unwrap())
        }
        Some(e) => {
            let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let dims: [usize; 4] = x.dims().try_into().unwrap();
            let logits = Var::from_tensor(&e.forward(&xv, dims, true).unwrap()).unwrap();
            let loss = cross_entropy(logits.as_tensor(), y, &[1.0; 5], 0.0).unwrap();
            let dl = loss.backward().unwrap();
            let dl = dl.get(logits.as_tensor()).unwrap();
            (
                loss.to_scalar().unwrap(),
                e.backward(&xv, dl, false).unwrap(),
            )
        }
    }
}

#[test]
fn three_training_steps_match_torchvision() {
    three_training_steps(false, 4, "resnet18");
}

#[test]
fn three_engine_training_steps_match_torchvision() {
    three_training_steps(true, 4, "resnet18");
}

/// At a batch of 16, layer1's 16x16 maps take the forward's Winograd F(4x4), whose rounding
/// error is ten to twenty times F(2x2)'s.
#[test]
fn three_engine_training_steps_with_f4_match_torchvision() {
    let layer1 = ConvGeom::new([16, 64, 16, 16], [64, 64, 3, 3], 1, 1).unwrap();
    assert!(drpipe::model::winograd::f4::pays(&layer1));
    three_training_steps(true, 16, "resnet18_b16");
}

/// Three SGD steps of a batch of `b` at 64 px against the fixture's keys under `prefix`.
fn three_training_steps(use_engine: bool, b: usize, prefix: &str) {
    let f = fixture();
    let (varmap, net) = build(Arch::ResNet18);
    let mut engine = use_engine.then(|| Engine::new(Arch::ResNet18, &varmap).unwrap());
    let cfg = SgdConfig {
        lr: 0.001,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut sgd = Sgd::new(trainable_vars(&varmap, false), cfg);
    let mut losses = Vec::new();
    for step in 0..3 {
        let (x, y) = batch(b, 64, step);
        let (loss, grads) = step_grads(&net, engine.as_mut(), &x, &y);
        losses.push(loss);
        sgd.step(&grads).unwrap();
    }
    let want = expected(&f, &format!("{prefix}_train_losses"));
    for (g, w) in losses.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5,
            "losses {losses:?} vs torchvision {want:?}"
        );
    }
    let vars: std::collections::HashMap<String, candle_core::Var> =
        all_vars_sorted(&varmap).into_iter().collect();
    for name in [
        "bn1.running_mean",
        "bn1.running_var",
        "layer4.1.bn2.running_mean",
        "layer4.1.bn2.running_var",
    ] {
        let got: Vec<f32> = vars[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_close(
            &got,
            &expected(&f, &format!("{prefix}_after3_{name}")),
            1e-5,
            1.0,
            name,
        );
    }
    let fc: Vec<f32> = vars["fc.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_close(
        &fc[..40],
        &expected(&f, &format!("{prefix}_after3_fc.weight")),
        1e-5,
        1.0,
        "fc.weight after 3 steps",
    );
}

/// Our saved weights load by name into candle-transformers' (inference-only) ResNets, and
/// both give the same eval-mode logits: an independent implementation of the same layout.
#[test]
fn saved_weights_run_in_candle_transformers_resnet() {
    use candle_transformers::models::resnet;
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        let (varmap, net) = build(arch);
        let path = dir.path().join(format!("{arch}.safetensors"));
        drpipe::model::save_torchvision(&varmap, &path, 0).unwrap();
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu).unwrap()
        };
        let reference = match arch {
            Arch::ResNet18 => resnet::resnet18(5, vb),
            Arch::ResNet50 => resnet::resnet50(5, vb),
        }
        .unwrap();
        let (x, _) = batch(2, 32, 0);
        let ours: Vec<f32> = net
            .forward(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = x
            .apply(&reference)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_close(
            &ours,
            &theirs,
            1e-4,
            0.0,
            &format!("{arch} vs candle-transformers"),
        );
    }
}
