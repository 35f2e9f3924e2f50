//! The Slurm executor: one job per stage instance that misses the cache, submitted as soon
//! as its parents are queued (`afterok` on those still queued or running,
//! `--kill-on-invalid-dep=yes`), each running `drpipe job` on a node that sees the same
//! outputs folder. The filesystem is the truth (the committed entry, the job's exit record);
//! the scheduler only says which jobs are alive, through one `squeue` for all ids per look,
//! backing off while nothing changes. The run journal lets a restarted driver adopt live jobs
//! instead of submitting them again. Retries are drpipe's alone (`--no-requeue` unless the
//! experiment asks): a job that failed, ran out of time or memory, died with its node, was
//! cancelled or was lost is resubmitted up to `retries` times, with its queued descendants.

pub mod commands;
pub mod job;
mod track;

use super::journal::{self, Journal, Known, Record};
use super::{instance, Event, Executor, Listener, Outcome, Run};
use crate::plan::Instance;
use crate::spec::executor::SlurmSpec;
use anyhow::Result;
use commands::Submission;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Slurm {
    pub spec: SlurmSpec,
    /// Submit everything and return; a later `drpipe run` or `drpipe status` picks it up.
    pub detach: bool,
    /// `drpipe job`'s command line without `--stage` and `--key`: the binary, `--outputs`,
    /// `job`, the experiment file (absolute), its `--set`s and `--force`s.
    pub job_argv: Vec<String>,
}

/// One submission of an instance: which attempt, the nodes to avoid (after NODE_FAIL) and
/// the memory factor (after OUT_OF_MEMORY, with `oom_mem_factor`).
#[derive(Debug, Clone)]
struct Try {
    attempt: u32,
    exclude: Vec<String>,
    mem_scale: f64,
    /// `sbatch` calls that failed for this attempt.
    submit_errors: u32,
    /// Jobs of this attempt that stopped themselves ahead of their time limit to be resumed
    /// (`signal_before`): not failures, but bounded, in case none gets anywhere.
    resumes: u32,
}

/// `sbatch` failures of one attempt before it counts as failed.
const SUBMIT_TRIES: u32 = 3;

impl Try {
    fn first() -> Try {
        Try {
            attempt: 1,
            exclude: Vec::new(),
            mem_scale: 1.0,
            submit_errors: 0,
            resumes: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Queued {
    job: String,
    running_seen: bool,
    /// Since when the job has been out of the queue (or finished) without an exit record.
    gone_since: Option<Instant>,
    tr: Try,
}

impl Queued {
    fn new(job: String, tr: Try) -> Queued {
        Queued {
            job,
            running_seen: false,
            gone_since: None,
            tr,
        }
    }
}

#[derive(Debug, Clone)]
enum Slot {
    Pending(Try),
    Queued(Queued),
    Done,
    Failed,
}

/// The first looks at the queue come quickly (short stages), then back off.
const FIRST_POLL: Duration = Duration::from_millis(500);

struct Driver<'a> {
    run: &'a Run<'a>,
    cfg: &'a Slurm,
    listener: &'a Arc<dyn Listener>,
    journal: Journal,
    slots: Vec<Slot>,
    children: Vec<Vec<usize>>,
    outcome: Outcome,
    /// Whether `sacct` may know more than `squeue` (false once it said accounting is off).
    accounting: bool,
}

impl Executor for Slurm {
    fn execute(&self, run: &Run, listener: Arc<dyn Listener>) -> Outcome {
        let n = run.plan.instances.len();
        if n == 0 {
            return Outcome::default();
        }
        let mut children = vec![Vec::new(); n];
        for inst in &run.plan.instances {
            for (u, _) in &inst.upstream {
                children[*u].push(inst.id);
            }
        }
        let journal = match Journal::open(run.outputs, &run.exp.name) {
            Ok(j) => j,
            Err(e) => {
                let mut o = Outcome::default();
                o.failed.push((0, format!("{e:#}")));
                return o;
            }
        };
        let mut d = Driver {
            run,
            cfg: self,
            listener: &listener,
            journal,
            slots: vec![Slot::Pending(Try::first()); n],
            children,
            outcome: Outcome::default(),
            accounting: true,
        };
        d.drive();
        d.outcome
    }
}

impl Driver<'_> {
    fn inst(&self, id: usize) -> &Instance {
        &self.run.plan.instances[id]
    }

    fn forced(&self, id: usize) -> bool {
        self.run.force.contains(&self.inst(id).stage)
    }

    fn comment(inst: &Instance) -> String {
        format!("drpipe:{}:{}", inst.stage, inst.key)
    }

    fn drive(&mut self) {
        self.take_cached();
        if let Err(e) = self.adopt() {
            // Submitting without knowing which jobs still run would run them twice.
            let message = format!(
                "could not read the run journal or the queue to adopt live jobs ({e:#}); \
                 nothing submitted: run again once squeue answers"
            );
            for id in 0..self.slots.len() {
                if matches!(self.slots[id], Slot::Pending(_)) {
                    self.slots[id] = Slot::Failed;
                    self.outcome.failed.push((id, message.clone()));
                }
            }
            self.listener.event(Event::Note { message });
            return;
        }
        let mut delay = FIRST_POLL;
        loop {
            let mut changed = self.submit_ready();
            let queued = self.queued_ids();
            let pending = self.slots.iter().any(|s| matches!(s, Slot::Pending(_)));
            if self.cfg.detach || (queued.is_empty() && !pending) {
                self.outcome.detached = queued.len();
                self.outcome.unsubmitted = self
                    .slots
                    .iter()
                    .filter(|s| matches!(s, Slot::Pending(_)))
                    .count();
                return;
            }
            std::thread::sleep(delay);
            changed |= self.look(&queued);
            delay = if changed {
                FIRST_POLL
            } else {
                delay
                    .mul_f64(1.5)
                    .min(Duration::from_secs_f64(self.cfg.spec.poll_seconds))
            };
        }
    }

    /// Committed entries need no job.
    fn take_cached(&mut self) {
        for id in 0..self.slots.len() {
            let inst = self.inst(id);
            if !self.forced(id) && self.run.store.exists(&inst.stage, &inst.key) {
                self.slots[id] = Slot::Done;
                self.outcome.cached += 1;
                self.listener.event(Event::Cached { id });
                self.view(id);
            }
        }
    }

    /// Jobs a previous driver submitted and that are still alive are taken over, not
    /// submitted again.
    fn adopt(&mut self) -> Result<()> {
        let known = self.journal.known()?;
        let mut candidates: Vec<(usize, String, u32)> = Vec::new();
        for id in 0..self.slots.len() {
            if !matches!(self.slots[id], Slot::Pending(_)) {
                continue;
            }
            let inst = self.inst(id);
            match known.get(&inst.key) {
                Some(Known::Submitted { job, attempt }) => {
                    candidates.push((id, job.clone(), *attempt))
                }
                Some(Known::Intended) => {
                    for job in commands::find_by_comment(&Self::comment(inst))? {
                        candidates.push((id, job, 1));
                    }
                }
                None => {}
            }
        }
        let ids: Vec<String> = candidates.iter().map(|c| c.1.clone()).collect();
        let alive = commands::queue(&ids)?;
        for (id, job, attempt) in candidates {
            if alive.get(&job).is_some_and(|q| q.alive())
                && matches!(self.slots[id], Slot::Pending(_))
            {
                self.listener.event(Event::Submitted {
                    id,
                    job: job.clone(),
                    adopted: true,
                });
                let tr = Try {
                    attempt,
                    ..Try::first()
                };
                self.slots[id] = Slot::Queued(Queued::new(job, tr));
            }
        }
        Ok(())
    }

    fn queued_ids(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Queued(q) => Some(q.job.clone()),
                _ => None,
            })
            .collect()
    }

    /// Submits every pending instance whose parents are done or queued, in plan order, up
    /// to `max_queued` jobs in the queue; skips those whose parents failed.
    fn submit_ready(&mut self) -> bool {
        let mut changed = false;
        let mut queued = self.queued_ids().len();
        for id in 0..self.slots.len() {
            let Slot::Pending(tr) = self.slots[id].clone() else {
                continue;
            };
            let ups: Vec<usize> = self.inst(id).upstream.iter().map(|(u, _)| *u).collect();
            if let Some(&bad) = ups.iter().find(|u| matches!(self.slots[**u], Slot::Failed)) {
                self.skip(id, bad);
                changed = true;
                continue;
            }
            let mut after = Vec::new();
            let mut ready = true;
            for u in &ups {
                match &self.slots[*u] {
                    Slot::Done => {}
                    // A parent whose job has ended without its entry is being judged:
                    // afterok on that job would never be satisfied.
                    Slot::Queued(q) if q.gone_since.is_none() => after.push(q.job.clone()),
                    _ => ready = false,
                }
            }
            if !ready || queued >= self.cfg.spec.max_queued {
                continue;
            }
            changed = true;
            match self.submit(id, after, &tr) {
                Ok(job) => {
                    self.slots[id] = Slot::Queued(Queued::new(job, tr));
                    queued += 1;
                }
                // sbatch can fail for a moment (slurmctld busy, a parent that ended between
                // the look and the submit): tried again on the next looks, then given up.
                Err(e) if tr.submit_errors < SUBMIT_TRIES => {
                    self.listener.event(Event::Note {
                        message: format!("{e:#}; trying again"),
                    });
                    self.slots[id] = Slot::Pending(Try {
                        submit_errors: tr.submit_errors + 1,
                        ..tr
                    });
                }
                Err(e) => self.fail(id, format!("{e:#}")),
            }
        }
        changed
    }

    fn submit(&self, id: usize, after: Vec<String>, tr: &Try) -> Result<String> {
        let inst = self.inst(id);
        let exp = &self.run.exp.name;
        let dir = journal::job_dir(self.run.outputs, exp, &inst.stage, &inst.key);
        std::fs::create_dir_all(&dir)?;
        let mut resources = self.cfg.spec.resources(&inst.stage);
        if tr.mem_scale != 1.0 {
            resources.mem = resources
                .mem
                .as_deref()
                .and_then(|m| commands::scale_mem(m, tr.mem_scale));
        }
        let mut argv = self.cfg.job_argv.clone();
        argv.extend([
            "--stage".into(),
            inst.stage.clone(),
            "--key".into(),
            inst.key.clone(),
        ]);
        // A record of an earlier job of this entry must not be read as this one's (job ids
        // restart with a fresh slurmctld).
        for old in ["exit.json", "running.json"] {
            let _ = std::fs::remove_file(dir.join(old));
        }
        let script = dir.join("job.sh");
        let comment = Self::comment(inst);
        commands::write_script(&script, &comment, &argv, resources.gpu_count())?;
        // stage.cell.experiment; stage.experiment for what serves several cells.
        let name = match inst.cell_label() {
            Some(cell) => format!("{}.{cell}.{exp}", inst.stage),
            None => format!("{}.{exp}", inst.stage),
        };
        let s = Submission {
            name,
            comment,
            log: dir.join("slurm-%j.log"),
            script,
            after,
            resources,
            requeue: self.cfg.spec.requeue,
            exclude: tr.exclude.clone(),
        };
        self.journal.append(&Record::Intent {
            stage: inst.stage.clone(),
            key: inst.key.clone(),
            cell: inst.cell_label().map(str::to_string),
        })?;
        let job = commands::submit(&s)?;
        self.journal.append(&Record::Submitted {
            stage: inst.stage.clone(),
            key: inst.key.clone(),
            job: job.clone(),
            attempt: tr.attempt,
        })?;
        self.listener.event(Event::Submitted {
            id,
            job: job.clone(),
            adopted: false,
        });
        Ok(job)
    }

    fn view(&self, id: usize) {
        if let Err(e) = instance::update_view(self.run, self.inst(id)) {
            self.listener.event(Event::Note {
                message: format!("could not update the experiment's view: {e:#}"),
            });
        }
    }
}
