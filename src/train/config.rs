//! What a training run is asked to do: the study's recipe and its variations, checked before
//! anything runs.

use super::optimizer::OptimizerKind;
use super::schedule::Schedule;
use crate::data::NUM_CLASSES;
use crate::model::{Arch, Pretrained};
use anyhow::{bail, Result};

/// Which weights the run keeps as `best.safetensors`, and so which split it reads per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Best `selection_metric` on the validation split; the test split is not read.
    Best,
    /// Best test accuracy, read every epoch: the study's choice, which selects on the test
    /// split (its reported test metrics are optimistic). Labelled as such in the report.
    BestTest,
    /// No selection: the last epoch.
    Last,
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(Checkpoint::Best),
            "best_test" => Ok(Checkpoint::BestTest),
            "last" => Ok(Checkpoint::Last),
            _ => Err(format!(
                "unknown checkpoint {s:?}: use best, best_test or last"
            )),
        }
    }
}

impl Checkpoint {
    /// The weight file the evaluate stage reads.
    pub fn file(self) -> &'static str {
        match self {
            Checkpoint::Last => "last.safetensors",
            _ => "best.safetensors",
        }
    }

    /// How the report labels the selection.
    pub fn selected_on(self) -> &'static str {
        match self {
            Checkpoint::Best => "validation",
            Checkpoint::BestTest => "test",
            Checkpoint::Last => "last epoch",
        }
    }
}

/// The validation metric `checkpoint = "best"` and early stopping follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionMetric {
    Qwk,
    Accuracy,
    Loss,
}

impl std::str::FromStr for SelectionMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "val_qwk" => Ok(SelectionMetric::Qwk),
            "val_acc" => Ok(SelectionMetric::Accuracy),
            "val_loss" => Ok(SelectionMetric::Loss),
            _ => Err(format!(
                "unknown selection_metric {s:?}: use val_qwk, val_acc or val_loss"
            )),
        }
    }
}

impl SelectionMetric {
    /// The epoch's score, higher is better.
    pub fn score(self, r: &super::EpochRecord) -> f64 {
        match self {
            SelectionMetric::Qwk => r.val_qwk,
            SelectionMetric::Accuracy => r.val_acc,
            SelectionMetric::Loss => -r.val_loss,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub arch: Arch,
    pub pretrained: Pretrained,
    /// All epochs, feature extraction included.
    pub epochs: usize,
    /// Leading epochs in which only `fc` trains.
    pub freeze_epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub schedule: Schedule,
    pub warmup_epochs: usize,
    pub label_smoothing: f64,
    pub class_weights: [f32; NUM_CLASSES],
    pub seed: u64,
    /// "auto", "cpu" or "cuda:N" (see [`crate::model::select_device`]).
    pub device: String,
    pub checkpoint: Checkpoint,
    pub selection_metric: SelectionMetric,
    /// Stop after this many epochs without a better selection score; 0: never.
    pub early_stopping_patience: usize,
}

impl TrainConfig {
    /// The study's recipe for `arch` (batch 64 for ResNet-18, 16 for ResNet-50).
    pub fn study(arch: Arch) -> Self {
        TrainConfig {
            arch,
            pretrained: Pretrained::Hub,
            epochs: 25,
            freeze_epochs: 5,
            batch_size: if arch == Arch::ResNet18 { 64 } else { 16 },
            optimizer: OptimizerKind::Sgd,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            label_smoothing: 0.0,
            class_weights: [1.0; NUM_CLASSES],
            seed: 0,
            device: "auto".into(),
            checkpoint: Checkpoint::BestTest,
            selection_metric: SelectionMetric::Accuracy,
            early_stopping_patience: 0,
        }
    }

    /// Reject settings PyTorch would reject or that cannot train (checked by [`train`]).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        if self.freeze_epochs > self.epochs {
            bail!(
                "freeze_epochs ({}) exceeds epochs ({})",
                self.freeze_epochs,
                self.epochs
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr must be a positive number, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("momentum must be in [0, 1), got {}", self.momentum);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("weight_decay must be >= 0, got {}", self.weight_decay);
        }
        if self.nesterov && self.optimizer != OptimizerKind::Sgd {
            bail!(
                "nesterov is SGD's: it has no meaning with {:?}",
                self.optimizer
            );
        }
        if self.nesterov && self.momentum == 0.0 {
            bail!("nesterov momentum requires momentum > 0 (as in PyTorch)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            );
        }
        if let Schedule::Step { step_epochs: 0, .. } = self.schedule {
            bail!("a step schedule needs step_epochs >= 1");
        }
        if self.early_stopping_patience > 0 && self.checkpoint != Checkpoint::Best {
            bail!(
                "early_stopping_patience follows the validation split: it needs \
                 checkpoint = \"best\" (stopping on the test split would select on it)"
            );
        }
        Ok(())
    }

    /// The same, knowing whether there is a validation split.
    pub fn validate_with(&self, has_val: bool) -> Result<()> {
        self.validate()?;
        if self.checkpoint == Checkpoint::Best && !has_val {
            bail!(
                "checkpoint = \"best\" selects on the validation split, and this data set has \
                 none: set dataset.val_fraction (e.g. 0.15), or checkpoint = \"last\", or \
                 checkpoint = \"best_test\" (the study's choice, selected on the test split)"
            );
        }
        Ok(())
    }

    /// What a checkpoint must agree with to be resumed (the device may change).
    pub(super) fn fingerprint(&self) -> String {
        format!(
            "{:?}",
            TrainConfig {
                device: String::new(),
                ..self.clone()
            }
        )
    }
}
