//! `drpipe plan FILE`: what `run` would do and why, without running anything.

use super::{args::PlanArgs, load_experiment, CliResult, Env};
use crate::plan::{self, PlanOptions, Status};

pub fn run(env: &Env, args: PlanArgs) -> CliResult {
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
    let _ = hasher.save();
    let rows = p.rows();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    println!(
        "{}: {} cell(s), {} of {} stage instance(s) to run",
        exp.name,
        exp.cells.len(),
        p.to_run(),
        rows.len()
    );
    let width = rows.iter().map(|r| label(r).len()).max().unwrap_or(0);
    for r in &rows {
        let status = match r.status {
            Status::Cached => "cached",
            Status::Run => "run   ",
        };
        let reason = if r.status == Status::Cached {
            String::new()
        } else {
            format!("  {}", r.reason)
        };
        println!("  {status}  {:width$}  {}{reason}", label(r), &r.key[..12]);
    }
    Ok(())
}

fn label(r: &plan::PlanRow) -> String {
    match (r.cell, r.cells.len()) {
        (Some(c), _) => format!("{} [{c}]", r.stage),
        (None, n) if n > 1 => format!("{} [{n} cells]", r.stage),
        _ => r.stage.to_string(),
    }
}
