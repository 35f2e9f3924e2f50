//! Executors: run a plan's instances in dependency order, reusing committed entries, and
//! report through [`Event`]s only. [`local`] runs them in this process (several at once with
//! `--jobs`); [`slurm`] submits each as a Slurm job that runs `drpipe job` on a node seeing
//! the same outputs folder. Both build an entry the same way ([`instance::run`]). `exec/` is
//! the only place that knows which executor runs: plan, cache and stages do not.

pub mod events;
pub mod instance;
pub mod journal;
pub mod local;
pub mod slurm;
pub mod status;
pub mod view;

pub use events::{Event, Listener};

use crate::cache::{FileHasher, Store};
use crate::plan::Plan;
use crate::spec::Experiment;
use crate::stages::Registry;
use std::path::Path;
use std::sync::Arc;

pub struct ExecOptions<'a> {
    pub jobs: usize,
    pub force: &'a [String],
    pub outputs: &'a Path,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub ran: usize,
    pub cached: usize,
    pub failed: Vec<(usize, String)>,
    pub skipped: usize,
    /// Submitted to a scheduler and not finished when the executor returned (`--detach`).
    pub detached: usize,
    /// Not submitted yet when it returned (held back by `max_queued`).
    pub unsubmitted: usize,
}

/// Everything an executor needs to run one plan.
pub struct Run<'a> {
    pub exp: &'a Experiment,
    pub plan: &'a Plan,
    pub registry: &'a Registry,
    pub store: &'a Store,
    pub hasher: &'a FileHasher,
    pub force: &'a [String],
    pub outputs: &'a Path,
}

/// One way of running a plan: in this process, or through a scheduler.
pub trait Executor {
    fn execute(&self, run: &Run, listener: Arc<dyn Listener>) -> Outcome;
}

/// Runs the plan in this process with `opts.jobs` instances at once.
pub fn execute(
    exp: &Experiment,
    plan: &Plan,
    registry: &Registry,
    store: &Store,
    hasher: &FileHasher,
    opts: &ExecOptions,
    listener: Arc<dyn Listener>,
) -> Outcome {
    let run = Run {
        exp,
        plan,
        registry,
        store,
        hasher,
        force: opts.force,
        outputs: opts.outputs,
    };
    local::Local { jobs: opts.jobs }.execute(&run, listener)
}
