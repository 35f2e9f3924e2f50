//! Building one stage instance's entry: reuse it when committed (or built meanwhile by
//! another process), else take its lock, run the stage into `.partial`, commit atomically and
//! point the experiment's view at it. The local executor calls this in its threads; a Slurm
//! job calls it through `drpipe job`.

use super::{view, Event, Listener, Run};
use crate::cache::{manifest, Manifest};
use crate::plan::{explain, view_dir, view_link, Instance, Status};
use crate::spec::Scope;
use crate::stages::{StageCtx, Upstream};
use crate::Progress;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Ok(true) if the stage ran, Ok(false) if an existing entry was used.
pub fn run(shared: &Run, inst: &Instance, listener: &Arc<dyn Listener>) -> Result<bool> {
    let store = shared.store;
    let forced = shared.force.contains(&inst.stage);
    if inst.status == Status::Cached && store.exists(&inst.stage, &inst.key) {
        listener.event(Event::Cached { id: inst.id });
        update_view(shared, inst)?;
        return Ok(false);
    }
    let _lock = store.lock(&inst.stage, &inst.key, || {
        listener.event(Event::Waiting { id: inst.id })
    })?;
    if store.exists(&inst.stage, &inst.key) && !forced {
        // Built by another process while we waited (or between plan and run).
        listener.event(Event::Reused { id: inst.id });
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
    if inst.resumable {
        // A resumable stage (training) appends to its files as it goes: reachable from the
        // experiment's view while it runs, as `<stage>.building`.
        for link in view_links(shared, inst, BUILDING) {
            view::link(&link, &partial)?;
        }
    }
    listener.event(Event::Started {
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
    let (id, progress_to) = (inst.id, listener.clone());
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
        progress: Progress::new(move |update| progress_to.event(Event::Progress { id, update })),
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
    listener.event(Event::Finished {
        id: inst.id,
        elapsed: clock.elapsed(),
        summary,
    });
    // Committed: a view link that cannot be made is worth a note, not a failed build.
    if let Err(e) = update_view(shared, inst) {
        listener.event(Event::Note {
            message: format!("could not update the experiment's view: {e:#}"),
        });
    }
    Ok(true)
}

/// Suffix of the view link to an entry still being built.
pub const BUILDING: &str = ".building";

/// The instance's links in the experiment's view (`suffix` after the stage's name).
fn view_links(shared: &Run, inst: &Instance, suffix: &str) -> Vec<std::path::PathBuf> {
    let view = view_dir(shared.outputs, &shared.exp.name);
    let name = format!("{}{suffix}", inst.stage);
    if inst.scope == Scope::Experiment {
        vec![view_link(&view, &name, None)]
    } else {
        inst.cells
            .iter()
            .map(|c| view_link(&view, &name, Some(c)))
            .collect()
    }
}

/// Points the view at the committed entry (and drops its `.building` link).
pub fn update_view(shared: &Run, inst: &Instance) -> Result<()> {
    let entry = shared.store.entry_dir(&inst.stage, &inst.key);
    for link in view_links(shared, inst, "") {
        view::link(&link, &entry)?;
    }
    for link in view_links(shared, inst, BUILDING) {
        if link.is_symlink() {
            let _ = std::fs::remove_file(link);
        }
    }
    Ok(())
}
