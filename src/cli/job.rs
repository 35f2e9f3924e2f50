//! `drpipe job FILE --stage S --key K` (hidden): what a Slurm job runs. Exits 1 when the
//! entry could not be built, so that the scheduler records the job as failed.

use super::{args::JobArgs, load_experiment, CliResult, Env};
use crate::exec::{slurm::job::run_job, Run};
use crate::plan::{self, PlanOptions};

pub fn run(env: &Env, args: JobArgs) -> CliResult {
    let registry = crate::stages::builtin();
    let a = &args.experiment;
    let exp = load_experiment(&a.file, &a.sets, &registry)?;
    let store = env.store()?;
    let hasher = env.hasher(&store);
    let opts = PlanOptions {
        force: &a.force,
        outputs: &env.outputs,
        progress: crate::Progress::hidden(),
    };
    let p = plan::build(&exp, &registry, &store, &hasher, &opts)?;
    let run = Run {
        exp: &exp,
        plan: &p,
        registry: &registry,
        store: &store,
        hasher: &hasher,
        force: &a.force,
        outputs: &env.outputs,
    };
    run_job(&run, &args.stage, &args.key)?;
    let _ = hasher.save();
    Ok(())
}
