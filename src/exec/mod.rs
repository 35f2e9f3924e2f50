//! The executor: runs a plan's instances in dependency order (several at once with
//! `--jobs`), reusing committed entries, waiting for entries another process is building,
//! and committing each new entry atomically. It reports through [`Event`]s only.

pub mod events;
pub mod view;

pub use events::{Event, Listener};

use crate::cache::{manifest, FileHasher, Manifest, Store};
use crate::plan::{explain, view_dir, view_link, Instance, Plan, Status};
use crate::spec::{Experiment, Scope};
use crate::stages::{Registry, StageCtx, Upstream};
use crate::Progress;
use anyhow::{anyhow, Result};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime};

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
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Done,
    Failed,
}

struct Shared<'a> {
    exp: &'a Experiment,
    plan: &'a Plan,
    registry: &'a Registry,
    store: &'a Store,
    hasher: &'a FileHasher,
    opts: &'a ExecOptions<'a>,
    listener: Arc<dyn Listener>,
}

pub fn execute(
    exp: &Experiment,
    plan: &Plan,
    registry: &Registry,
    store: &Store,
    hasher: &FileHasher,
    opts: &ExecOptions,
    listener: Arc<dyn Listener>,
) -> Outcome {
    let shared = Shared {
        exp,
        plan,
        registry,
        store,
        hasher,
        opts,
        listener,
    };
    let n = plan.instances.len();
    let states = Mutex::new((vec![State::Pending; n], Outcome::default()));
    let wake = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| worker(&shared, &states, &wake));
        }
    });
    states.into_inner().expect("executor state").1
}

fn worker(shared: &Shared, states: &Mutex<(Vec<State>, Outcome)>, wake: &Condvar) {
    let instances = &shared.plan.instances;
    loop {
        let id = {
            let mut guard = states.lock().expect("executor state");
            loop {
                let (st, outcome) = &mut *guard;
                // Skip instances whose upstream failed (transitively, as ids are topological).
                for i in 0..st.len() {
                    if st[i] == State::Pending {
                        if let Some(&(bad, _)) = instances[i]
                            .upstream
                            .iter()
                            .find(|(u, _)| st[*u] == State::Failed)
                        {
                            st[i] = State::Failed;
                            outcome.skipped += 1;
                            shared.listener.event(Event::Skipped {
                                id: i,
                                failed_upstream: bad,
                            });
                        }
                    }
                }
                let ready = (0..st.len()).find(|&i| {
                    st[i] == State::Pending
                        && instances[i]
                            .upstream
                            .iter()
                            .all(|(u, _)| st[*u] == State::Done)
                });
                if let Some(i) = ready {
                    st[i] = State::Running;
                    break Some(i);
                }
                if !st.contains(&State::Pending) {
                    break None;
                }
                guard = wake.wait(guard).expect("executor state");
            }
        };
        let Some(id) = id else {
            wake.notify_all();
            return;
        };
        let result = run_one(shared, &instances[id]);
        let mut guard = states.lock().expect("executor state");
        let (st, outcome) = &mut *guard;
        match result {
            Ok(ran) => {
                st[id] = State::Done;
                if ran {
                    outcome.ran += 1
                } else {
                    outcome.cached += 1
                }
            }
            Err(e) => {
                st[id] = State::Failed;
                let msg = format!("{e:#}");
                shared.listener.event(Event::Failed {
                    id,
                    error: msg.clone(),
                });
                outcome.failed.push((id, msg));
            }
        }
        drop(guard);
        wake.notify_all();
    }
}

/// Ok(true) if the stage ran, Ok(false) if an existing entry was used.
fn run_one(shared: &Shared, inst: &Instance) -> Result<bool> {
    let store = shared.store;
    let forced = shared.opts.force.contains(&inst.stage);
    if inst.status == Status::Cached && store.exists(&inst.stage, &inst.key) {
        shared.listener.event(Event::Cached { id: inst.id });
        update_view(shared, inst)?;
        return Ok(false);
    }
    let listener = shared.listener.clone();
    let _lock = store.lock(&inst.stage, &inst.key, || {
        listener.event(Event::Waiting { id: inst.id })
    })?;
    if store.exists(&inst.stage, &inst.key) && !forced {
        // Built by another process while we waited (or between plan and run).
        shared.listener.event(Event::Reused { id: inst.id });
        update_view(shared, inst)?;
        return Ok(false);
    }
    let stage = shared
        .registry
        .get(&inst.uses)
        .ok_or_else(|| anyhow!("no stage implementation `{}`", inst.uses))?;
    let partial = store.partial_dir(&inst.stage, &inst.key);
    if !inst.resumable && partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    shared.listener.event(Event::Started {
        id: inst.id,
        reasons: inst.reasons.clone(),
    });
    let upstream = inst
        .upstream
        .iter()
        .map(|(uid, cell)| {
            let up = &shared.plan.instances[*uid];
            let varying = cell
                .as_ref()
                .and_then(|c| shared.exp.cells.iter().find(|x| &x.name == c))
                .map(|c| c.varying.clone())
                .unwrap_or_default();
            Upstream {
                stage: up.stage.clone(),
                cell: cell.clone(),
                varying,
                dir: store.entry_dir(&up.stage, &up.key),
            }
        })
        .collect();
    let (id, listener) = (inst.id, shared.listener.clone());
    let ctx = StageCtx {
        stage: &inst.stage,
        experiment: &shared.exp.name,
        params: &inst.params,
        declares_dataset: inst.declares_dataset,
        dataset: &shared.exp.dataset,
        upstream,
        out: &partial,
        store,
        hasher: shared.hasher,
        progress: Progress::new(move |update| listener.event(Event::Progress { id, update })),
    };
    let started = SystemTime::now();
    let clock = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.run(&ctx)))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(anyhow!(
                "stage `{}` panicked: {}",
                inst.stage,
                msg.unwrap_or_default()
            ))
        });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            if !inst.resumable {
                let _ = std::fs::remove_dir_all(&partial);
            }
            return Err(e.context(format!("stage `{}` failed", inst.stage)));
        }
    };
    explain::write_inputs(&partial, &inst.inputs)?;
    let m = Manifest {
        stage: inst.stage.clone(),
        uses: inst.uses.clone(),
        version: inst.version,
        key: inst.key.clone(),
        params: inst.params.clone(),
        upstream: inst.upstream_keys.clone(),
        inputs_digest: inst.inputs_digest.clone(),
        inputs_count: inst.inputs.len(),
        started: manifest::timestamp(started),
        finished: manifest::timestamp(SystemTime::now()),
        seconds: clock.elapsed().as_secs_f64(),
        drpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        summary: summary.clone(),
    };
    store.commit(&inst.stage, &inst.key, &m)?;
    shared.listener.event(Event::Finished {
        id: inst.id,
        elapsed: clock.elapsed(),
        summary,
    });
    update_view(shared, inst)?;
    Ok(true)
}

fn update_view(shared: &Shared, inst: &Instance) -> Result<()> {
    let view = view_dir(shared.opts.outputs, &shared.exp.name);
    let entry = shared.store.entry_dir(&inst.stage, &inst.key);
    if inst.scope == Scope::Experiment {
        view::link(&view_link(&view, &inst.stage, None), &entry)
    } else {
        inst.cells
            .iter()
            .try_for_each(|c| view::link(&view_link(&view, &inst.stage, Some(c)), &entry))
    }
}
