//! Inference helpers for the evaluate stage and the predict command.

use super::weights_io::{assign, read_tensors};
use super::{Arch, ResNet};
use crate::data::NUM_CLASSES;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::path::Path;

/// Images per forward pass: bounds memory whatever the number of images asked for.
const CHUNK: usize = 32;

/// A `NUM_CLASSES`-way model of `arch` with every tensor (fc included) from `weights`
/// (`.safetensors` written by training, or a torchvision `.pth`).
pub fn load_for_inference(arch: Arch, weights: &Path, device: &Device) -> Result<ResNet> {
    let varmap = VarMap::new();
    let model = ResNet::new(
        arch,
        NUM_CLASSES,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    let tensors = read_tensors(weights)?;
    assign(&varmap, &tensors, |_| false, weights)
        .with_context(|| format!("cannot load {arch} weights from {}", weights.display()))?;
    Ok(model)
}

/// Eval-mode logits for `n` images `[n, 3, size, size]` (row-major, normalised). With
/// `tta_hflip` the logits of each image and its horizontal mirror are averaged.
pub fn predict_logits(
    model: &ResNet,
    images: &[f32],
    n: usize,
    size: usize,
    device: &Device,
    tta_hflip: bool,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    run(model, images, n, size, device, tta_hflip, false)
}

/// Softmax probabilities, as [`predict_logits`]; with `tta_hflip` the probabilities of the
/// image and its mirror are averaged.
pub fn predict_probs(
    model: &ResNet,
    images: &[f32],
    n: usize,
    size: usize,
    device: &Device,
    tta_hflip: bool,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    run(model, images, n, size, device, tta_hflip, true)
}

fn run(
    model: &ResNet,
    images: &[f32],
    n: usize,
    size: usize,
    device: &Device,
    tta_hflip: bool,
    softmax: bool,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    let per = 3 * size * size;
    if images.len() != n * per {
        bail!(
            "expected {n} images of 3x{size}x{size} ({} values), got {} values",
            n * per,
            images.len()
        );
    }
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        let x = Tensor::from_slice(
            &images[start * per..(start + m) * per],
            (m, 3, size, size),
            device,
        )?;
        let score = |x: &Tensor| -> Result<Tensor> {
            let logits = model.forward(x, false)?;
            Ok(if softmax {
                candle_nn::ops::softmax(&logits, 1)?
            } else {
                logits
            })
        };
        let mut s = score(&x)?;
        if tta_hflip {
            s = ((s + score(&x.flip(&[3])?)?)? * 0.5)?;
        }
        for row in s
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?
        {
            let arr: [f32; NUM_CLASSES] = row.as_slice().try_into().with_context(|| {
                format!("model has {} outputs, expected {NUM_CLASSES}", row.len())
            })?;
            out.push(arr);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_weights, save_torchvision};

    #[test]
    fn saved_model_predicts_the_same_after_reloading() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let model = ResNet::new(Arch::ResNet18, NUM_CLASSES, vb).unwrap();
        init_weights(&vm, Arch::ResNet18, 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        save_torchvision(&vm, &p, 0).unwrap();
        let reloaded = load_for_inference(Arch::ResNet18, &p, &dev).unwrap();

        let mut r = crate::rng::Rng::new(1);
        let n = 3;
        let images: Vec<f32> = (0..n * 3 * 16 * 16).map(|_| r.normal() as f32).collect();
        let a = predict_logits(&model, &images, n, 16, &dev, false).unwrap();
        let b = predict_logits(&reloaded, &images, n, 16, &dev, false).unwrap();
        assert_eq!(a, b);
        let p = predict_probs(&reloaded, &images, n, 16, &dev, true).unwrap();
        for row in &p {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
        // Mirror TTA differs from plain prediction on non-symmetric images.
        assert_ne!(
            p,
            predict_probs(&reloaded, &images, n, 16, &dev, false).unwrap()
        );
        assert!(predict_probs(&reloaded, &images[1..], n, 16, &dev, false).is_err());
        assert!(load_for_inference(
            Arch::ResNet50,
            dir.path().join("m.safetensors").as_path(),
            &dev
        )
        .is_err());
    }
}
