//! Inside a job: `drpipe job FILE --stage S --key K` plans the experiment again (the plan is
//! a function of the file, its `--set`s and the cache), finds the instance with that key,
//! checks its parents are committed, builds the entry as the local executor would, and
//! writes its exit record. Nothing here needs the driver to be alive.

use super::super::journal::{self, Exit, Running};
use super::super::{instance, Event, Listener, Run};
use anyhow::{anyhow, bail, Result};
use std::sync::Arc;
use std::time::Instant;

/// How long a job waits to see its parent's committed entry.
const PARENT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The job's id and host, as Slurm gives them (or "local" when run by hand).
fn whoami() -> (String, String) {
    let job = std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| "local".into());
    let host = std::env::var("SLURMD_NODENAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    (job, host)
}

/// A job that asked for GPUs and was given none must not train on the CPU for a day.
pub fn check_gpus(asked: u32, visible: Option<&str>) -> Result<()> {
    if asked > 0 && visible.is_none_or(|v| v.trim().is_empty()) {
        bail!(
            "this job asked for {asked} GPU(s) but CUDA_VISIBLE_DEVICES is empty: the node gave \
             it none. Check the gpus / gpu_flag settings under [executor.slurm] against how \
             this cluster names its GPUs (sinfo -o '%P %G')"
        );
    }
    Ok(())
}

/// Runs stage instance (`stage`, `key`) of `run.plan` and records how it ended.
pub fn run_job(run: &Run, stage: &str, key: &str) -> Result<()> {
    let (job, host) = whoami();
    let dir = journal::job_dir(run.outputs, &run.exp.name, stage, key);
    journal::write_record(
        &dir,
        "running.json",
        &Running {
            job: job.clone(),
            host: host.clone(),
            pid: std::process::id(),
            started: crate::cache::manifest::timestamp(std::time::SystemTime::now()),
        },
    )?;
    let clock = Instant::now();
    let uses = run
        .plan
        .instances
        .iter()
        .find(|i| i.stage == stage && i.key == key)
        .map(|i| i.uses.as_str());
    if uses == Some("train") {
        // A training checkpoints mid-epoch when Slurm ends the job (time limit, scancel,
        // preemption) or warns it (`signal_before`); other stages are short and atomic.
        crate::interrupt::listen()?;
    }
    let result = build(run, stage, key);
    let exit = Exit {
        job,
        ok: result.is_ok(),
        error: result
            .as_ref()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default(),
        host,
        seconds: clock.elapsed().as_secs_f64(),
        resumable: result.is_err() && crate::interrupt::planned(),
    };
    journal::write_record(&dir, "exit.json", &exit)?;
    result
}

fn build(run: &Run, stage: &str, key: &str) -> Result<()> {
    let asked = std::env::var("DRPIPE_JOB_GPUS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    check_gpus(asked, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref())?;
    let inst = run
        .plan
        .instances
        .iter()
        .find(|i| i.stage == stage && i.key == key)
        .ok_or_else(|| {
            anyhow!(
                "the plan has no `{stage}` with key {key}: the experiment file, its --set \
                 values or the data changed since this job was submitted; run `drpipe run` \
                 again to submit the current plan"
            )
        })?;
    for (u, _) in &inst.upstream {
        let up = &run.plan.instances[*u];
        // Slurm started this job because its parent's job ended well; a shared filesystem
        // may show the parent's commit on this node a little later.
        let clock = Instant::now();
        while !run.store.exists(&up.stage, &up.key) && clock.elapsed() < PARENT_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if !run.store.exists(&up.stage, &up.key) {
            bail!(
                "its input `{}` ({}) is not in the cache: the job ran before its parent \
                 committed (is the outputs folder shared with this node?)",
                up.stage,
                run.store.entry_dir(&up.stage, &up.key).display()
            );
        }
    }
    let listener: Arc<dyn Listener> = Arc::new(|e: Event| match e {
        Event::Started { .. } => println!("drpipe job: building the entry"),
        Event::Finished { summary, .. } => println!("drpipe job: committed: {summary}"),
        Event::Reused { .. } | Event::Cached { .. } => {
            println!("drpipe job: already committed, nothing to do")
        }
        _ => {}
    });
    instance::run(run, inst, &listener)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_job_without_a_visible_gpu_fails_at_once() {
        assert!(check_gpus(0, None).is_ok());
        assert!(check_gpus(1, Some("0")).is_ok());
        let e = check_gpus(2, Some("")).unwrap_err().to_string();
        assert!(
            e.contains("asked for 2 GPU(s)") && e.contains("CUDA_VISIBLE_DEVICES"),
            "{e}"
        );
        assert!(check_gpus(1, None).is_err());
    }
}
