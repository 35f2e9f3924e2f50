//! `drpipe run FILE`: plan, execute, then print the report table.

use super::{args::RunArgs, load_experiment, CliError, CliResult, Env, EXIT_FAILED};
use crate::exec::{self, ExecOptions};
use crate::plan::{self, PlanOptions};
use crate::reporter::{TerminalReporter, Verbosity};
use std::sync::Arc;
use std::time::Instant;

pub fn run(env: &Env, args: RunArgs) -> CliResult {
    let clock = Instant::now();
    let registry = crate::stages::builtin();
    let a = &args.experiment;
    let exp = load_experiment(&a.file, &a.sets, &registry)?;
    let store = env.store()?;
    let hasher = env.hasher(&store);
    let p = plan::build(
        &exp,
        &registry,
        &store,
        &hasher,
        &PlanOptions {
            force: &a.force,
            outputs: &env.outputs,
        },
    )?;
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
    if let Some(table) = super::show::report_table(&view) {
        // The table is the result: printed even with -q.
        if env.verbosity >= Verbosity::Quiet {
            println!("{table}");
        }
    }
    Ok(())
}
