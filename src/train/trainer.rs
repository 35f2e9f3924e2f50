//! The epoch loop: feature extraction (only `fc` trains) for `freeze_epochs`, then fine-tuning
//! of every layer, with a checkpoint after every epoch so an interrupted run resumes exactly.

use super::checkpoint::{self, Interrupted, LoopState, PartialEpoch};
use super::config::{Checkpoint, TrainConfig};
use super::finite::first_non_finite;
use super::loss::correct;
use super::measure::{measure, Totals};
use super::optimizer::Optimizer;
use super::persist::{EpochFiles, EpochWriter};
use super::schedule::lr_at;
use super::step::Stepper;
use super::{history, EpochRecord};
use crate::data::{Batch, NUM_CLASSES};
use crate::model::weights_io::{assign, ModelSnapshot};
use crate::model::{
    init_weights, load_pretrained, resolve_pretrained, select_device, trainable_vars, ResNet,
    TORCH_FILE_NOTE,
};
use crate::Progress;
use anyhow::{bail, Context, Result};
use candle_core::DType;
use candle_nn::{VarBuilder, VarMap};
use std::path::Path;
use std::time::Instant;

/// Where batches come from. Batches are built by the data module (augmentation, batching);
/// `epoch` is 0-based and must fully determine the training order and augmentation, so that
/// a resumed run sees the same batches.
pub trait BatchSource {
    fn train_batches(&self, epoch: usize) -> Box<dyn Iterator<Item = Batch> + Send + '_>;
    /// The validation split in the test transform, or `None` without one.
    fn val_batches(&self) -> Option<Box<dyn Iterator<Item = Batch> + Send + '_>>;
    /// Read only when `checkpoint = "best_test"` asks for per-epoch test scores.
    fn test_batches(&self) -> Box<dyn Iterator<Item = Batch> + Send + '_>;
    fn train_len(&self) -> usize;
    fn test_len(&self) -> usize;
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    /// 1-based epoch of the best selection score (first occurrence); the last epoch with
    /// `checkpoint = "last"`.
    pub best_epoch: usize,
    /// Its score: the validation metric, or test accuracy for `best_test`.
    pub best_score: f64,
    /// Whether early stopping ended the run before `epochs`.
    pub stopped_early: bool,
    /// Epochs already done when this call found a checkpoint.
    pub resumed_from: Option<usize>,
}

/// Train per `cfg`, resuming from `work_dir`'s checkpoint if there is one. Writes
/// `out_dir/{history.csv, best.safetensors, last.safetensors, train.json}`; the weight files
/// carry torchvision's names (see [`TORCH_FILE_NOTE`]).
pub fn train(
    cfg: &TrainConfig,
    data: &dyn BatchSource,
    work_dir: &Path,
    out_dir: &Path,
    progress: &Progress,
) -> Result<TrainOutcome> {
    train_until(
        cfg,
        data,
        work_dir,
        out_dir,
        progress,
        &crate::interrupt::requested,
    )
}

/// [`train`], looking at `stop` after every step: once it answers true, the run writes a
/// mid-epoch checkpoint and returns [`Interrupted`]; called again, it resumes there.
pub fn train_until(
    cfg: &TrainConfig,
    data: &dyn BatchSource,
    work_dir: &Path,
    out_dir: &Path,
    progress: &Progress,
    stop: &dyn Fn() -> bool,
) -> Result<TrainOutcome> {
    cfg.validate_with(data.val_batches().is_some())?;
    for d in [work_dir, out_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let device = select_device(&cfg.device)?;
    let varmap = VarMap::new();
    let model = ResNet::new(
        cfg.arch,
        NUM_CLASSES,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    init_weights(&varmap, cfg.arch, cfg.seed)?;
    let mut opt = Optimizer::new(trainable_vars(&varmap, false), cfg);
    let mut stepper = Stepper::new(cfg, &device, &varmap)?;
    let ckpt_path = checkpoint::path_in(work_dir);
    let history_path = out_dir.join("history.csv");
    let mut state = match checkpoint::load(work_dir)? {
        Some(ck) => {
            if ck.state.config != cfg.fingerprint() {
                bail!(
                    "checkpoint {} was written by a different training configuration; delete it \
                     (or use another work folder) to start afresh",
                    ckpt_path.display()
                );
            }
            assign(&varmap, &ck.model, |_| false, &ckpt_path)?;
            opt.load_state(ck.optimizer)?;
            // history.csv may hold rows of an epoch that finished after the checkpoint was
            // written; rewrite it from the checkpoint so both agree.
            if history_path.exists() {
                std::fs::remove_file(&history_path)
                    .with_context(|| format!("cannot rewrite {}", history_path.display()))?;
            }
            for r in &ck.state.history {
                history::append(&history_path, r)?;
            }
            ck.state
        }
        None => {
            if let Some(path) = resolve_pretrained(&cfg.pretrained, cfg.arch)? {
                load_pretrained(&varmap, &path)?;
            }
            if history_path.exists() {
                std::fs::remove_file(&history_path)
                    .with_context(|| format!("cannot replace {}", history_path.display()))?;
            }
            LoopState {
                arch: cfg.arch,
                epochs_done: 0,
                num_batches_tracked: 0,
                best_epoch: 0,
                best_score: f64::MIN,
                history: Vec::new(),
                config: cfg.fingerprint(),
                partial: None,
            }
        }
    };
    let resumed_from = (state.epochs_done > 0).then_some(state.epochs_done);

    let mut stopped_early = false;
    let mut writer = EpochWriter::default();
    for epoch in state.epochs_done..cfg.epochs {
        // Decided from the saved state alone, so a run killed after its stopping epoch's
        // checkpoint stops at the same epoch when resumed.
        let patience = cfg.early_stopping_patience;
        if patience > 0 && state.best_epoch > 0 && epoch - state.best_epoch >= patience {
            stopped_early = true;
            break;
        }
        let started = Instant::now();
        let freeze = epoch < cfg.freeze_epochs;
        let lr = lr_at(cfg.lr, &cfg.schedule, epoch, cfg.epochs, cfg.warmup_epochs);
        opt.set_lr(lr);
        progress.start(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            data.train_len() as u64,
        );
        // A run stopped inside this epoch: its steps are skipped, its totals carried on.
        let (skip, mut tr, seconds_before) = match state.partial.take() {
            Some(p) => (p.steps, p.totals, p.seconds),
            None => (0, Totals::new(), 0.0),
        };
        let skip_seen = tr.n;
        progress.inc(skip_seen as u64);
        for (step, batch) in data.train_batches(epoch).enumerate().skip(skip) {
            let fwd = stepper.forward(&model, &batch, cfg, &device, freeze)?;
            let value = fwd.loss.to_scalar::<f32>()? as f64;
            let kept = || {
                if state.epochs_done > 0 {
                    format!("the last good checkpoint {} is kept", ckpt_path.display())
                } else {
                    "no checkpoint was written yet".to_string()
                }
            };
            if !value.is_finite() {
                bail!(
                    "training diverged: loss is {value} at epoch {} step {}; stopping, {} \
                     (try a lower lr)",
                    epoch + 1,
                    step + 1,
                    kept()
                );
            }
            opt.step(&stepper.backward(&fwd, &batch, freeze)?)?;
            // candle's ReLU maps NaN to 0 (PyTorch's keeps it), so NaN weights or inputs
            // need not reach the loss: check the parameters and running statistics too.
            if let Some(name) = first_non_finite(&varmap)? {
                bail!(
                    "training diverged: {name} holds NaN/inf after epoch {} step {} (loss \
                     {value}; check the input images and lower the lr); stopping, {}",
                    epoch + 1,
                    step + 1,
                    kept()
                );
            }
            state.num_batches_tracked += 1;
            tr.loss += value * batch.len() as f64;
            tr.correct += correct(&fwd.logits, &batch.labels)?;
            tr.n += batch.len();
            progress.inc(batch.len() as u64);
            let rate = (tr.n - skip_seen) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.message(format!(
                "loss {:.4} acc {:.3} {rate:.1} img/s",
                tr.loss(),
                tr.acc()
            ));
            if stop() {
                writer.wait()?;
                state.partial = Some(PartialEpoch {
                    steps: step + 1,
                    totals: tr,
                    seconds: seconds_before + started.elapsed().as_secs_f64(),
                });
                checkpoint::save(work_dir, &varmap, &opt.state()?, &state)?;
                progress.finish();
                return Err(Interrupted {
                    epoch: epoch + 1,
                    step: step + 1,
                    checkpoint: ckpt_path.clone(),
                }
                .into());
            }
        }
        progress.finish();

        let val = match data.val_batches() {
            Some(batches) => Some(measure(&model, batches, cfg, &device)?),
            None => None,
        };
        let test = if cfg.checkpoint == Checkpoint::BestTest {
            Some(measure(&model, data.test_batches(), cfg, &device)?)
        } else {
            None
        };
        let nan = f64::NAN;
        let record = EpochRecord {
            epoch: epoch + 1,
            phase: if freeze { "freeze" } else { "finetune" }.into(),
            lr,
            train_loss: tr.loss(),
            train_acc: tr.acc(),
            val_loss: val.as_ref().map_or(nan, |v| v.loss),
            val_acc: val.as_ref().map_or(nan, |v| v.acc),
            val_qwk: val.as_ref().map_or(nan, |v| v.qwk),
            test_loss: test.as_ref().map_or(nan, |t| t.loss),
            test_acc: test.as_ref().map_or(nan, |t| t.acc),
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        };
        history::append(&history_path, &record)?;
        let score = match cfg.checkpoint {
            Checkpoint::Best => cfg.selection_metric.score(&record),
            Checkpoint::BestTest => record.test_acc,
            Checkpoint::Last => record.epoch as f64,
        };
        // NaN (a metric that could not be measured) never wins; kept finite so that the
        // checkpoint's JSON state round-trips.
        let score = if score.is_nan() { f64::MIN } else { score };
        let mut best = None;
        if state.best_epoch == 0 || score > state.best_score {
            state.best_score = score;
            state.best_epoch = epoch + 1;
            if cfg.checkpoint != Checkpoint::Last {
                best = Some(out_dir.join("best.safetensors"));
            }
        }
        state.history.push(record);
        state.epochs_done = epoch + 1;
        writer.write(EpochFiles {
            model: ModelSnapshot::of(&varmap)?,
            num_batches_tracked: state.num_batches_tracked,
            last: out_dir.join("last.safetensors"),
            best,
            checkpoint: checkpoint::snapshot(&opt.state()?, &state)?,
            work_dir: work_dir.to_path_buf(),
        })?;
    }
    writer.wait()?;

    let summary = serde_json::json!({
        "arch": cfg.arch.to_string(),
        "epochs": cfg.epochs,
        "freeze_epochs": cfg.freeze_epochs,
        "best_epoch": state.best_epoch,
        "best_score": state.best_score,
        "checkpoint": format!("{:?}", cfg.checkpoint),
        "selected_on": cfg.checkpoint.selected_on(),
        "selection_metric": match cfg.checkpoint {
            Checkpoint::Best => format!("{:?}", cfg.selection_metric),
            Checkpoint::BestTest => "test accuracy".into(),
            Checkpoint::Last => String::new(),
        },
        "stopped_early": stopped_early,
        "final": state.history.last(),
        "resumed_from": resumed_from,
        "num_batches_tracked": state.num_batches_tracked,
        "device": format!("{device:?}"),
        "weights": TORCH_FILE_NOTE,
    });
    let json_path = out_dir.join("train.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    Ok(TrainOutcome {
        history: state.history,
        best_epoch: state.best_epoch,
        best_score: state.best_score,
        stopped_early,
        resumed_from,
    })
}

#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;
