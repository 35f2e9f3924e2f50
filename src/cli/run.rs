//! `drpipe run FILE`: plan, execute, then print the report table.

use super::{args::RunArgs, plan::Planned, CliError, CliResult, Env, EXIT_FAILED};
use crate::exec::local::Local;
use crate::exec::slurm::Slurm;
use crate::exec::Executor;
use crate::plan;
use crate::reporter::TerminalReporter;
use crate::spec::executor::ExecutorKind;
use std::sync::Arc;
use std::time::Instant;

pub fn run(env: &Env, args: RunArgs) -> CliResult {
    let clock = Instant::now();
    let a = &args.experiment;
    let planned = Planned::load(env, a)?;
    let (exp, p, store) = (&planned.exp, &planned.plan, &planned.store);
    let to_run = p.to_run();
    env.say(format!(
        "{}: {} cell(s), {} stage instance(s), {} to run",
        exp.name,
        exp.cells.len(),
        p.instances.len(),
        to_run
    ));
    let reporter = Arc::new(TerminalReporter::new(p, env.verbosity));
    let run = planned.run();
    let kind = args.executor.or(exp.executor.kind).unwrap_or_default();
    if args.detach && kind != ExecutorKind::Slurm {
        return Err(CliError {
            message: "error: --detach needs a scheduler: add --executor slurm".into(),
            code: super::EXIT_USAGE,
        });
    }
    let executor: Box<dyn Executor> = match kind {
        ExecutorKind::Local => Box::new(Local { jobs: args.jobs }),
        ExecutorKind::Slurm => Box::new(Slurm {
            spec: exp.executor.slurm.clone(),
            detach: args.detach,
            job_argv: job_argv(env, a)?,
        }),
    };
    let outcome = executor.execute(&run, reporter);
    if let Err(e) = planned.hasher.save() {
        eprintln!("warning: could not save the file-hash memo: {e:#}");
    }
    let view = plan::view_dir(&env.outputs, &exp.name);
    if !outcome.failed.is_empty() {
        let mut msg = format!(
            "error: {} stage instance(s) failed ({} ran, {} cached, {} skipped). Completed stages are kept in the cache; fix the cause and run again.",
            outcome.failed.len(),
            outcome.ran,
            outcome.cached,
            outcome.skipped
        );
        for (id, e) in &outcome.failed {
            let inst = &p.instances[*id];
            msg.push_str(&format!(
                "\n  {}{}: {e}",
                inst.stage,
                inst.cell_label()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default()
            ));
        }
        return Err(CliError {
            message: msg,
            code: EXIT_FAILED,
        });
    }
    if outcome.detached > 0 {
        let held = match outcome.unsubmitted {
            0 => String::new(),
            n => format!(" ({n} more wait for room under executor.slurm.max_queued)"),
        };
        env.say(format!(
            "{} job(s) queued{held}; follow them with `drpipe status {}`; `drpipe run` again \
             picks the run up (it adopts the live jobs and submits the rest)",
            outcome.detached,
            a.file.display()
        ));
        return Ok(());
    }
    env.say(format!(
        "done in {:.1}s: {} ran, {} cached. Results: {}",
        clock.elapsed().as_secs_f64(),
        outcome.ran,
        outcome.cached,
        view.display()
    ));
    prune_stale_cells(&view, exp);
    // This run's own report (the view may meanwhile point at a concurrent run's).
    let report = p.instances.iter().find(|i| i.uses == "report");
    if let Some(table) =
        report.and_then(|r| super::show::report_table_in(&store.entry_dir(&r.stage, &r.key)))
    {
        println!("{table}"); // the result: printed even with -q
    }
    Ok(())
}

/// Remove view links of cells the experiment no longer has (their cache entries stay until
/// `drpipe gc`).
fn prune_stale_cells(view: &std::path::Path, exp: &crate::spec::Experiment) {
    let Ok(dirs) = std::fs::read_dir(view.join("cells")) else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if !exp.cells.iter().any(|c| c.name == name) {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

/// The command line a Slurm job runs: this binary, the same outputs folder and experiment
/// (absolute: the job may start elsewhere), the same `--set`s and `--force`s.
fn job_argv(env: &Env, a: &super::args::ExperimentArgs) -> Result<Vec<String>, CliError> {
    let exe = std::env::current_exe().map_err(anyhow::Error::from)?;
    let file = crate::spec::dataset::absolute_path(&a.file);
    let mut argv = vec![
        exe.display().to_string(),
        "--outputs".into(),
        env.outputs.display().to_string(),
        "job".into(),
        file.display().to_string(),
    ];
    for s in &a.sets {
        argv.extend(["--set".into(), s.clone()]);
    }
    for f in &a.force {
        argv.extend(["--force".into(), f.clone()]);
    }
    Ok(argv)
}
