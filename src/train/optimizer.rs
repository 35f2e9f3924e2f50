//! The optimisers a training run can use, behind one type the epoch loop drives: SGD (the
//! study's), Adam and AdamW, each with PyTorch's update rule and checkpointable state.

use super::adam::{Adam, AdamConfig};
use super::sgd::{Sgd, SgdConfig};
use super::TrainConfig;
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    AdamW,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(format!("unknown optimizer {s:?}: use sgd, adam or adamw")),
        }
    }
}

pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
}

impl Optimizer {
    /// The optimiser `cfg` asks for, over `vars`. `momentum` and `nesterov` are SGD's; Adam's
    /// betas and eps are PyTorch's defaults.
    pub fn new(vars: Vec<(String, Var)>, cfg: &TrainConfig) -> Self {
        match cfg.optimizer {
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(
                vars,
                SgdConfig {
                    lr: cfg.lr,
                    momentum: cfg.momentum,
                    dampening: 0.0,
                    weight_decay: cfg.weight_decay,
                    nesterov: cfg.nesterov,
                },
            )),
            kind => Optimizer::Adam(Adam::new(
                vars,
                AdamConfig {
                    lr: cfg.lr,
                    weight_decay: cfg.weight_decay,
                    decoupled: kind == OptimizerKind::AdamW,
                },
            )),
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Sgd(o) => o.set_lr(lr),
            Optimizer::Adam(o) => o.set_lr(lr),
        }
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.step(grads),
            Optimizer::Adam(o) => o.step(grads),
        }
    }

    /// Named state tensors, for checkpoints.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        match self {
            Optimizer::Sgd(o) => Ok(o.state().clone()),
            Optimizer::Adam(o) => o.state(),
        }
    }

    pub fn load_state(&mut self, state: BTreeMap<String, Tensor>) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.load_state(state),
            Optimizer::Adam(o) => o.load_state(state),
        }
    }
}
