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
