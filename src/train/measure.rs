//! The running totals of a pass over a split, and the eval-mode measurement of one.

use super::config::TrainConfig;
use super::loss::{correct, cross_entropy};
use crate::data::Batch;
use crate::model::ResNet;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// Sums over the images seen so far: loss times batch size, correct answers, images. A
/// mid-epoch checkpoint keeps them, so they serialise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Totals {
    pub loss: f64,
    pub correct: usize,
    pub n: usize,
}

impl Totals {
    pub fn new() -> Self {
        Totals {
            loss: 0.0,
            correct: 0,
            n: 0,
        }
    }
    pub fn loss(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.loss / self.n as f64
        }
    }
    pub fn acc(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.correct as f64 / self.n as f64
        }
    }
}

pub(super) fn to_tensor(b: &Batch, device: &Device) -> Result<Tensor> {
    let (n, s) = (b.len(), b.size);
    if b.images.len() != n * 3 * s * s {
        bail!(
            "batch of {n} images of size {s} has {} values, expected {}",
            b.images.len(),
            n * 3 * s * s
        );
    }
    Ok(Tensor::from_slice(&b.images, (n, 3, s, s), device)?)
}

/// Loss, accuracy and QWK of one split, in eval mode.
pub(super) struct Measured {
    pub loss: f64,
    pub acc: f64,
    pub qwk: f64,
}

pub(super) fn measure(
    model: &ResNet,
    batches: Box<dyn Iterator<Item = Batch> + Send + '_>,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Measured> {
    let mut t = Totals::new();
    let (mut truth, mut preds) = (Vec::new(), Vec::new());
    for batch in batches {
        let x = to_tensor(&batch, device)?;
        let logits = model.forward(&x, false)?;
        let loss = batch_loss(&logits, &batch, cfg)?;
        t.loss += loss.to_scalar::<f32>()? as f64 * batch.len() as f64;
        t.correct += correct(&logits, &batch.labels)?;
        t.n += batch.len();
        truth.extend(batch.labels.iter().map(|&l| l as u8));
        preds.extend(
            logits
                .argmax(1)?
                .to_dtype(DType::U32)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|p| p as u8),
        );
    }
    Ok(Measured {
        loss: t.loss(),
        acc: t.acc(),
        qwk: crate::metrics::quadratic_weighted_kappa(&truth, &preds),
    })
}

/// The configured loss (class weights, label smoothing) of one batch's logits.
pub(super) fn batch_loss(logits: &Tensor, batch: &Batch, cfg: &TrainConfig) -> Result<Tensor> {
    Ok(cross_entropy(
        logits,
        &batch.labels,
        &cfg.class_weights,
        cfg.label_smoothing,
    )?)
}
