//! Training checkpoints: one safetensors file holding the model (`model/<name>`, running
//! statistics included), the optimiser's state (`optim/<key>`: SGD's momentum buffers by
//! parameter name, Adam's `<name>/exp_avg`, `<name>/exp_avg_sq`, `<name>/step`) and the loop state as
//! JSON metadata. One file, written atomically, so a checkpoint is always complete: either the
//! previous epoch's or this one's.

use super::measure::Totals;
use super::EpochRecord;
use crate::model::weights_io::{
    read_metadata, read_tensors, write_views, HostTensor, ModelSnapshot,
};
use crate::model::Arch;
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const STATE_KEY: &str = "drpipe_train_state";
const MODEL_PREFIX: &str = "model/";
const OPTIM_PREFIX: &str = "optim/";

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub arch: Arch,
    /// Epochs completed (the next epoch to run, 0-based).
    pub epochs_done: usize,
    /// Train-mode forward passes so far (each batch norm's `num_batches_tracked`).
    pub num_batches_tracked: i64,
    /// 1-based epoch of the best selection score; 0 while no epoch is done.
    pub best_epoch: usize,
    pub best_score: f64,
    pub history: Vec<EpochRecord>,
    /// Describes the configuration that wrote the checkpoint; resuming under another one
    /// would silently mix two experiments, so it is refused.
    pub config: String,
    /// Set when a signal stopped the run inside epoch `epochs_done`: the steps already taken
    /// and their running totals. Absent from every end-of-epoch checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
}

/// Part of an epoch, taken before a stop. An epoch's batch order and augmentation depend on
/// the epoch alone, so a resumed run skips `steps` batches and continues exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub(crate) steps: usize,
    /// The running totals of those steps.
    pub(crate) totals: Totals,
    pub(crate) seconds: f64,
}

/// A training stopped by [`crate::interrupt`] after writing a mid-epoch checkpoint.
#[derive(Debug)]
pub struct Interrupted {
    pub epoch: usize,
    pub step: usize,
    pub checkpoint: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by a signal at epoch {} step {}; checkpoint {} written, and the next run \
             of this stage resumes there",
            self.epoch,
            self.step,
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}

pub struct Checkpoint {
    pub state: LoopState,
    pub model: HashMap<String, Tensor>,
    pub optimizer: BTreeMap<String, Tensor>,
}

pub fn path_in(work_dir: &Path) -> PathBuf {
    work_dir.join(CHECKPOINT_FILE)
}

pub fn save(
    work_dir: &Path,
    varmap: &VarMap,
    optimizer: &BTreeMap<String, Tensor>,
    state: &LoopState,
) -> Result<()> {
    snapshot(optimizer, state)?.write(work_dir, &ModelSnapshot::of(varmap)?)
}

/// The optimiser's state and the loop's, copied to the host: with a [`ModelSnapshot`], a
/// whole checkpoint that can be written while the next epoch trains.
pub struct Snapshot {
    optimizer: Vec<(String, HostTensor)>,
    meta: HashMap<String, String>,
}

pub fn snapshot(optimizer: &BTreeMap<String, Tensor>, state: &LoopState) -> Result<Snapshot> {
    let mut tensors = Vec::new();
    for (name, buf) in optimizer {
        tensors.push((
            format!("{OPTIM_PREFIX}{name}"),
            HostTensor::from_tensor(buf)?,
        ));
    }
    let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
    Ok(Snapshot {
        optimizer: tensors,
        meta,
    })
}

impl Snapshot {
    pub fn write(&self, work_dir: &Path, model: &ModelSnapshot) -> Result<()> {
        let views = model
            .tensors()
            .iter()
            .map(|(name, t)| (format!("{MODEL_PREFIX}{name}"), t))
            .chain(self.optimizer.iter().map(|(name, t)| (name.clone(), t)));
        write_views(&path_in(work_dir), views, Some(self.meta.clone()))
    }
}

/// The checkpoint in `work_dir`, or `None` if there is none.
pub fn load(work_dir: &Path) -> Result<Option<Checkpoint>> {
    let path = path_in(work_dir);
    if !path.exists() {
        return Ok(None);
    }
    let fix = "delete it to start the training afresh";
    let meta = read_metadata(&path)
        .with_context(|| format!("unreadable checkpoint {} ({fix})", path.display()))?;
    let Some(json) = meta.get(STATE_KEY) else {
        bail!(
            "{} is not a drpipe training checkpoint ({fix})",
            path.display()
        );
    };
    let state: LoopState = serde_json::from_str(json)
        .with_context(|| format!("checkpoint {} has unreadable state ({fix})", path.display()))?;
    let mut model = HashMap::new();
    let mut optimizer = BTreeMap::new();
    for (name, t) in read_tensors(&path)? {
        if let Some(n) = name.strip_prefix(MODEL_PREFIX) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM_PREFIX) {
            optimizer.insert(n.to_string(), t);
        }
    }
    Ok(Some(Checkpoint {
        state,
        model,
        optimizer,
    }))
}
