//! Where every stage instance of a plan stands, for `drpipe status`, under any executor:
//! committed, queued or running as a job (from the run journal and one `squeue`), failed
//! (the job's exit record and log), being built here (a `.partial` with a live lock), or
//! still to run. A training in progress also shows its epoch, last losses and an ETA from
//! the `history.csv` it appends to as it goes.

use super::journal::{self, Exit, Journal, Known, Running};
use super::{slurm::commands, Run};
use crate::plan::Instance;
use crate::train::EpochRecord;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Cached,
    Queued {
        job: String,
    },
    Running {
        job: String,
        node: String,
    },
    Failed {
        job: String,
        error: String,
        log: PathBuf,
    },
    /// A job that left the queue with neither an entry nor an exit record.
    Lost {
        job: String,
        log: PathBuf,
    },
    /// Started here or elsewhere and not committed (a `.partial` folder exists).
    Partial,
    ToRun,
}

#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub id: usize,
    pub state: State,
    /// Epochs of a training not yet committed, as far as they went.
    pub history: Vec<EpochRecord>,
    pub epochs: Option<u64>,
    /// Where that history is, so it can be followed as it grows.
    pub history_file: Option<PathBuf>,
}

/// The state of every instance of `run.plan`.
pub fn statuses(run: &Run) -> Vec<InstanceStatus> {
    let known = Journal::at(run.outputs, &run.exp.name)
        .known()
        .unwrap_or_default();
    let jobs: Vec<String> = run
        .plan
        .instances
        .iter()
        .filter_map(|i| match known.get(&i.key) {
            Some(Known::Submitted { job, .. }) => Some(job.clone()),
            _ => None,
        })
        .collect();
    // No Slurm here (or none of its jobs left): what the files say is still shown.
    let queue = commands::queue(&jobs).unwrap_or_default();
    run.plan
        .instances
        .iter()
        .map(|inst| {
            let dir = journal::job_dir(run.outputs, &run.exp.name, &inst.stage, &inst.key);
            let state = if run.store.exists(&inst.stage, &inst.key) {
                State::Cached
            } else if let Some(Known::Submitted { job, .. }) = known.get(&inst.key) {
                let log = dir.join(format!("slurm-{job}.log"));
                let exit: Option<Exit> =
                    journal::read_record::<Exit>(&dir, "exit.json").filter(|e| &e.job == job);
                match (exit, queue.get(job)) {
                    (Some(e), _) if !e.ok => State::Failed {
                        job: job.clone(),
                        error: e.error,
                        log,
                    },
                    (_, Some(q)) if q.state == "RUNNING" => State::Running {
                        job: job.clone(),
                        node: q.node.clone(),
                    },
                    (_, Some(q)) if q.alive() => State::Queued { job: job.clone() },
                    (_, Some(q)) => State::Failed {
                        job: job.clone(),
                        error: format!("the job ended {}", q.state),
                        log,
                    },
                    _ => match journal::read_record::<Running>(&dir, "running.json") {
                        Some(r) if r.job == *job && partial(run, inst).is_dir() => State::Partial,
                        _ => State::Lost {
                            job: job.clone(),
                            log,
                        },
                    },
                }
            } else if partial(run, inst).is_dir() {
                State::Partial
            } else {
                State::ToRun
            };
            let history_file = (inst.uses == "train" && state != State::Cached)
                .then(|| partial(run, inst).join("history.csv"))
                .filter(|p| p.is_file());
            InstanceStatus {
                id: inst.id,
                history: history_file
                    .as_deref()
                    .and_then(|p| crate::train::history::read(p).ok())
                    .unwrap_or_default(),
                epochs: inst.params.get("epochs").and_then(|e| e.as_u64()),
                history_file,
                state,
            }
        })
        .collect()
}

fn partial(run: &Run, inst: &Instance) -> PathBuf {
    run.store.partial_dir(&inst.stage, &inst.key)
}

/// Seconds left for a training with `history` of `epochs` done so far, at its mean pace.
pub fn eta_seconds(history: &[EpochRecord], epochs: u64) -> Option<f64> {
    let last = history.last()?;
    let done = last.epoch as f64;
    let mean = history.iter().map(|r| r.seconds).sum::<f64>() / history.len() as f64;
    Some(((epochs as f64 - done).max(0.0)) * mean)
}
