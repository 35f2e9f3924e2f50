//! The files an epoch leaves behind (`last.safetensors`, `best.safetensors` when the epoch is
//! the best so far, and the checkpoint), written on a background thread while the next epoch
//! trains. Serialising and fsyncing them took about half a second an epoch of ResNet-18 on
//! the training thread (a twentieth of a quickstart epoch).
//!
//! What keeps a crash harmless: the values are copied on the training thread before it goes
//! on (a [`ModelSnapshot`] and a checkpoint [`Snapshot`]), each file is still written
//! atomically, in the same order as before (weights first, the checkpoint last, so a
//! checkpoint never names a best epoch whose weights are not on disk), and one epoch's files
//! are finished before the next epoch's are started. A run killed meanwhile resumes from the
//! previous checkpoint and redoes that epoch exactly.

use super::checkpoint::Snapshot;
use crate::model::weights_io::ModelSnapshot;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::thread::JoinHandle;

/// One epoch's files, from values already copied off the model and the optimiser.
pub struct EpochFiles {
    pub model: ModelSnapshot,
    pub num_batches_tracked: i64,
    pub last: PathBuf,
    /// `best.safetensors`, when this epoch is the best so far.
    pub best: Option<PathBuf>,
    pub checkpoint: Snapshot,
    pub work_dir: PathBuf,
}

impl EpochFiles {
    fn write(&self) -> Result<()> {
        self.model
            .write_torchvision(&self.last, self.num_batches_tracked)?;
        if let Some(best) = &self.best {
            self.model
                .write_torchvision(best, self.num_batches_tracked)?;
        }
        self.checkpoint.write(&self.work_dir, &self.model)
    }
}

/// At most one epoch's files in flight. Dropping it waits for them, so no file is being
/// written after the training returns, on success or on error.
#[derive(Default)]
pub struct EpochWriter {
    pending: Option<JoinHandle<Result<()>>>,
}

impl EpochWriter {
    /// Wait for the previous epoch's files (returning their error, if any), then start
    /// writing `files`.
    pub fn write(&mut self, files: EpochFiles) -> Result<()> {
        self.wait()?;
        let handle = std::thread::Builder::new()
            .name("drpipe-epoch-files".into())
            .spawn(move || files.write())
            .map_err(|e| anyhow!("cannot start the thread that writes the epoch's files: {e}"))?;
        self.pending = Some(handle);
        Ok(())
    }

    /// Wait until every file handed over is on disk.
    pub fn wait(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow!("the thread writing the epoch's files panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for EpochWriter {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}
