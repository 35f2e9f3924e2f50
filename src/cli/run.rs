//! `drpipe run FILE`: plan, execute, then print the report table.

use super::{args::RunArgs, load_experiment, CliError, CliResult, Env, EXIT_FAILED};
use crate::exec::{self, ExecOptions};
use crate::plan;
use crate::reporter::TerminalReporter;
use std::sync::Arc;
use std::time::Instant;

pub fn run(env: &Env, args: RunArgs) -> CliResult {
    let clock = Instant::now();
    let registry = crate::stages::builtin();
    let a = &args.experiment;
    let exp = load_experiment(&a.file, &a.sets, &registry)?;
    let store = env.store()?;
    let hasher = env.hasher(&store);
    let p = super::plan::build_plan(env, &exp, &registry, &store, &hasher, &a.force)?;
    let to_run = p.to_run();
    env.say(format!(
        "{}: {} cell(s), {} stage instance(s), {} to run",
        exp.name,
        exp.cells.len(),
        p.instances.len(),
        to_run
    ));
    let reporter = Arc::new(TerminalReporter::new(&p, env.verbosity));
    let opts = ExecOptions {
        jobs: args.jobs,
        force: &a.force,
        outputs: &env.outputs,
    };
    let outcome = exec::execute(&exp, &p, &registry, &store, &hasher, &opts, reporter);
    if let Err(e) = hasher.save() {
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
    env.say(format!(
        "done in {:.1}s: {} ran, {} cached. Results: {}",
        clock.elapsed().as_secs_f64(),
        outcome.ran,
        outcome.cached,
        view.display()
    ));
    prune_stale_cells(&view, &exp);
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
