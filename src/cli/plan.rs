//! `drpipe plan FILE`: what `run` would do and why, without running anything.

use super::args::{ExperimentArgs, PlanArgs};
use super::{load_experiment, CliError, CliResult, Env, EXIT_USAGE};
use crate::cache::{FileHasher, Store};
use crate::exec::Run;
use crate::plan::{self, Plan, PlanOptions, Status};
use crate::spec::Experiment;
use crate::stages::Registry;

/// Plan with a progress bar for input hashing (a first run on a large data set hashes every
/// image); planning fails only on bad input (a missing data folder, a malformed list file, an
/// unknown --force stage), so its errors exit with the usage status.
pub fn build_plan(
    env: &Env,
    exp: &Experiment,
    registry: &Registry,
    store: &Store,
    hasher: &FileHasher,
    force: &[String],
) -> Result<Plan, CliError> {
    let opts = PlanOptions {
        force,
        outputs: &env.outputs,
        progress: super::progress_bar(env),
    };
    let p = plan::build(exp, registry, store, hasher, &opts).map_err(|e| CliError {
        message: format!("error: {e:#}"),
        code: EXIT_USAGE,
    })?;
    if let Err(e) = hasher.save() {
        eprintln!("warning: could not save the file-hash memo: {e:#}");
    }
    Ok(p)
}

/// An experiment planned against the cache: what `run`, `status` and `job` start from.
pub struct Planned {
    pub registry: Registry,
    pub exp: Experiment,
    pub store: Store,
    pub hasher: FileHasher,
    pub plan: Plan,
    pub force: Vec<String>,
    pub outputs: std::path::PathBuf,
}

impl Planned {
    pub fn load(env: &Env, a: &ExperimentArgs) -> Result<Planned, CliError> {
        let registry = crate::stages::builtin();
        let exp = load_experiment(&a.file, &a.sets, &registry)?;
        let store = env.store()?;
        let hasher = env.hasher(&store);
        let plan = build_plan(env, &exp, &registry, &store, &hasher, &a.force)?;
        Ok(Planned {
            registry,
            exp,
            store,
            hasher,
            plan,
            force: a.force.clone(),
            outputs: env.outputs.clone(),
        })
    }

    /// What an executor needs to run this plan.
    pub fn run(&self) -> Run<'_> {
        Run {
            exp: &self.exp,
            plan: &self.plan,
            registry: &self.registry,
            store: &self.store,
            hasher: &self.hasher,
            force: &self.force,
            outputs: &self.outputs,
        }
    }
}

pub fn run(env: &Env, args: PlanArgs) -> CliResult {
    let registry = crate::stages::builtin();
    let a = &args.experiment;
    let exp = load_experiment(&a.file, &a.sets, &registry)?;
    let store = env.store()?;
    let hasher = env.hasher(&store);
    let p = build_plan(env, &exp, &registry, &store, &hasher, &a.force)?;
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
