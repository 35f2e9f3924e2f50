//! One training step's forward, loss and gradients: on the CPU through the layer-level
//! [`Engine`], on other devices through candle's autograd over [`ResNet`].

use super::config::TrainConfig;
use super::measure::{batch_loss, to_tensor};
use crate::data::Batch;
use crate::model::{Engine, ResNet};
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

pub(super) enum Stepper {
    Engine(Box<Engine>),
    Autograd,
}

/// A step's forward pass: the logits, the loss, and what its backward needs.
pub(super) struct Forward {
    pub logits: Tensor,
    pub loss: Tensor,
    /// The engine's logits as a graph leaf, whose gradient the loss's backward gives.
    leaf: Option<Var>,
}

impl Stepper {
    /// The engine on the CPU, candle's autograd elsewhere. (No switch: the two round
    /// differently, and the train stage's cache key does not say which ran.)
    pub fn new(cfg: &TrainConfig, device: &Device, varmap: &VarMap) -> Result<Stepper> {
        if device.is_cpu() {
            Ok(Stepper::Engine(Box::new(Engine::new(cfg.arch, varmap)?)))
        } else {
            Ok(Stepper::Autograd)
        }
    }

    /// The train-mode forward of `batch` and its configured loss. With `freeze` the backbone
    /// takes no gradient (its batch norms still use and move batch statistics).
    pub fn forward(
        &mut self,
        model: &ResNet,
        batch: &Batch,
        cfg: &TrainConfig,
        device: &Device,
        freeze: bool,
    ) -> Result<Forward> {
        match self {
            Stepper::Engine(e) => {
                let s = batch.size;
                let logits = e
                    .forward(&batch.images, [batch.len(), 3, s, s], true)
                    .context("training step")?;
                let leaf = Var::from_tensor(&logits)?;
                let loss = batch_loss(leaf.as_tensor(), batch, cfg)?;
                Ok(Forward {
                    logits,
                    loss,
                    leaf: Some(leaf),
                })
            }
            Stepper::Autograd => {
                let x = to_tensor(batch, device)?;
                let features = model.features(&x, true)?;
                // Frozen backbone: cutting the graph here means no backbone gradient is
                // computed, so the optimiser skips those parameters (no decay, no momentum),
                // as PyTorch does with requires_grad=False.
                let features = if freeze { features.detach() } else { features };
                let logits = model.head(&features)?;
                let loss = batch_loss(&logits, batch, cfg)?;
                Ok(Forward {
                    logits,
                    loss,
                    leaf: None,
                })
            }
        }
    }

    /// The gradients of `fwd`'s loss: of `fc` alone with `freeze`, as the forward was told.
    pub fn backward(&mut self, fwd: &Forward, batch: &Batch, freeze: bool) -> Result<GradStore> {
        let grads = fwd.loss.backward()?;
        match (self, &fwd.leaf) {
            (Stepper::Engine(e), Some(leaf)) => {
                let dlogits = grads
                    .get(leaf.as_tensor())
                    .context("the loss does not depend on the logits")?;
                Ok(e.backward(&batch.images, dlogits, freeze)?)
            }
            _ => Ok(grads),
        }
    }
}
