//! The driver's looks at its jobs: exit records first (the truth), then the queue; and
//! what follows from them: done, retried (with the descendants that waited on the job), or
//! failed (its descendants skipped, its cell alone).

use super::commands::{self, QueueEntry};
use super::{Driver, Queued, Slot, Try};
use crate::cache::Manifest;
use crate::exec::journal;
use crate::exec::Event;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Job states after which a job that wrote no exit record will not write one.
fn retry_reason(q: &QueueEntry) -> String {
    match q.state.as_str() {
        "NODE_FAIL" => format!("its node {} failed", q.node),
        "OUT_OF_MEMORY" => "it ran out of memory (raise mem)".into(),
        "TIMEOUT" => "it reached its time limit (raise time)".into(),
        "CANCELLED" => "it was cancelled".into(),
        s => format!("it ended {s}"),
    }
}

/// Jobs one attempt may hand on to the next through `signal_before`.
const MAX_RESUMES: u32 = 100;

/// How long a job Slurm killed may take to show a committed entry.
const KILLED_GRACE: Duration = Duration::from_secs(5);

impl Driver<'_> {
    /// One look: exit records first (the truth), then the queue for the rest.
    pub(super) fn look(&mut self, ids: &[String]) -> bool {
        let mut queue = match commands::queue(ids) {
            Ok(q) => q,
            Err(e) => {
                // The scheduler not answering is no news about the jobs.
                self.listener.event(Event::Note {
                    message: format!("{e:#}; looking again later"),
                });
                return false;
            }
        };
        self.ask_accounting(ids, &mut queue);
        let mut changed = false;
        let grace = Duration::from_secs_f64(self.cfg.spec.lost_after_seconds);
        for id in 0..self.slots.len() {
            let Slot::Queued(q) = self.slots[id].clone() else {
                continue;
            };
            let inst = self.inst(id);
            let dir =
                journal::job_dir(self.run.outputs, &self.run.exp.name, &inst.stage, &inst.key);
            let exit: Option<journal::Exit> =
                journal::read_record(&dir, "exit.json").filter(|e: &journal::Exit| e.job == q.job);
            let committed = self.run.store.exists(&inst.stage, &inst.key);
            let log = dir.join(format!("slurm-{}.log", q.job));
            match exit {
                Some(e) if e.ok && committed => {
                    self.finish(id, e.seconds);
                    changed = true;
                    continue;
                }
                Some(e) if !e.ok && e.resumable && q.tr.resumes < MAX_RESUMES => {
                    self.listener.event(Event::Resuming {
                        id,
                        job: q.job.clone(),
                    });
                    let next = Try {
                        resumes: q.tr.resumes + 1,
                        ..q.tr.clone()
                    };
                    self.resubmit(id, next);
                    changed = true;
                    continue;
                }
                Some(e) if !e.ok => {
                    self.retry_or_fail(
                        id,
                        &q,
                        format!("{} (log: {})", e.error, log.display()),
                        None,
                    );
                    changed = true;
                    continue;
                }
                _ => {}
            }
            let entry = queue.get(&q.job);
            if let Some(entry) = entry.filter(|e| e.alive()) {
                if entry.state == "RUNNING" && !q.running_seen {
                    self.listener.event(Event::Started {
                        id,
                        reasons: vec![format!("job {} on {}", q.job, entry.node)],
                    });
                    if let Slot::Queued(q) = &mut self.slots[id] {
                        q.running_seen = true;
                    }
                    changed = true;
                }
                continue;
            }
            // Out of the queue or finished, without a whole exit record and entry yet: the
            // shared filesystem may show them late, so wait `lost_after_seconds`. A job Slurm
            // says was cancelled, timed out, ran out of memory or lost its node wrote no exit
            // record: a few seconds for its entry to show is enough.
            let since = q.gone_since.unwrap_or_else(Instant::now);
            if let Slot::Queued(slot) = &mut self.slots[id] {
                slot.gone_since = Some(since);
            }
            // A job that ended while a parent is not committed was cancelled with it (or
            // before it could start): its parent's retry or failure decides, not its own.
            let waiting_on_parent = self
                .inst(id)
                .upstream
                .iter()
                .any(|(u, _)| !matches!(self.slots[*u], Slot::Done));
            if waiting_on_parent {
                self.slots[id] = Slot::Pending(q.tr.clone());
                changed = true;
                continue;
            }
            let killed = entry.is_some_and(|e| e.state != "COMPLETED" && e.state != "FAILED");
            let wait = if killed {
                grace.min(KILLED_GRACE)
            } else {
                grace
            };
            if since.elapsed() < wait {
                continue;
            }
            changed = true;
            let reason = match entry {
                Some(e) if e.state == "COMPLETED" => {
                    "it completed but left no exit record and no committed entry".to_string()
                }
                Some(e) => retry_reason(e),
                None => format!(
                    "lost: it left the queue {}s ago without an exit record",
                    since.elapsed().as_secs()
                ),
            };
            let entry = entry.cloned();
            self.retry_or_fail(
                id,
                &q,
                format!("job {}: {reason} (log: {})", q.job, log.display()),
                entry.as_ref(),
            );
        }
        changed
    }

    /// Jobs `squeue` has forgotten, from `sacct` where the cluster keeps accounting: how
    /// they ended (out of memory, node failure) decides their retry, not "lost".
    fn ask_accounting(&mut self, ids: &[String], queue: &mut HashMap<String, QueueEntry>) {
        let forgotten: Vec<String> = ids
            .iter()
            .filter(|id| !queue.contains_key(*id))
            .cloned()
            .collect();
        if !self.accounting || forgotten.is_empty() {
            return;
        }
        match commands::accounting(&forgotten) {
            Ok(Some(ended)) => queue.extend(ended),
            Ok(None) => self.accounting = false,
            Err(e) => self.listener.event(Event::Note {
                message: format!("{e:#}; asking again later"),
            }),
        }
    }

    fn finish(&mut self, id: usize, seconds: f64) {
        let inst = self.inst(id);
        let summary = Manifest::read(&self.run.store.entry_dir(&inst.stage, &inst.key))
            .map(|m| m.summary)
            .unwrap_or_default();
        self.slots[id] = Slot::Done;
        self.outcome.ran += 1;
        self.listener.event(Event::Finished {
            id,
            elapsed: Duration::from_secs_f64(seconds.max(0.0)),
            summary,
        });
        self.view(id);
    }

    /// `ended`: the job's state in the queue, when that is how it ended (its node is then
    /// avoided after NODE_FAIL, its memory raised after OUT_OF_MEMORY).
    fn retry_or_fail(&mut self, id: usize, q: &Queued, reason: String, ended: Option<&QueueEntry>) {
        if q.tr.attempt > self.cfg.spec.retries {
            self.fail(id, reason);
            return;
        }
        self.listener.event(Event::Retrying {
            id,
            attempt: q.tr.attempt + 1,
            reason,
        });
        let mut next = Try {
            attempt: q.tr.attempt + 1,
            ..q.tr.clone()
        };
        match ended {
            Some(e) if e.state == "NODE_FAIL" => next.exclude.push(e.node.clone()),
            Some(e) if e.state == "OUT_OF_MEMORY" => next.mem_scale *= self.cfg.spec.oom_mem_factor,
            _ => {}
        }
        self.resubmit(id, next);
    }

    /// `id` to be submitted again as `next`.
    fn resubmit(&mut self, id: usize, next: Try) {
        // Queued descendants wait on the old job id, which will never be ok: cancel them and
        // submit them again after the new one.
        for d in self.descendants(id) {
            if let Slot::Queued(dq) = self.slots[d].clone() {
                commands::cancel(std::slice::from_ref(&dq.job));
                self.slots[d] = Slot::Pending(dq.tr);
            }
        }
        self.slots[id] = Slot::Pending(next);
    }

    pub(super) fn fail(&mut self, id: usize, error: String) {
        self.slots[id] = Slot::Failed;
        self.listener.event(Event::Failed {
            id,
            error: error.clone(),
        });
        self.outcome.failed.push((id, error));
        for d in self.descendants(id) {
            if let Slot::Queued(dq) = &self.slots[d] {
                commands::cancel(std::slice::from_ref(&dq.job));
            }
            if matches!(self.slots[d], Slot::Queued(_) | Slot::Pending(_)) {
                self.skip(d, id);
            }
        }
    }

    pub(super) fn skip(&mut self, id: usize, failed_upstream: usize) {
        self.slots[id] = Slot::Failed;
        self.outcome.skipped += 1;
        self.listener.event(Event::Skipped {
            id,
            failed_upstream,
        });
    }

    /// Every instance downstream of `id`, in plan (topological) order.
    fn descendants(&self, id: usize) -> Vec<usize> {
        let mut seen = vec![false; self.slots.len()];
        let mut stack = vec![id];
        while let Some(i) = stack.pop() {
            for &c in &self.children[i] {
                if !seen[c] {
                    seen[c] = true;
                    stack.push(c);
                }
            }
        }
        (0..seen.len()).filter(|&i| seen[i]).collect()
    }
}
