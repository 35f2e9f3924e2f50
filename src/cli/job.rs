//! `drpipe job FILE --stage S --key K` (hidden): what a Slurm job runs. Exits 1 when the
//! entry could not be built, so that the scheduler records the job as failed.

use super::{args::JobArgs, plan::Planned, CliResult, Env};
use crate::exec::slurm::job::run_job;

pub fn run(env: &Env, args: JobArgs) -> CliResult {
    let planned = Planned::load(env, &args.experiment)?;
    run_job(&planned.run(), &args.stage, &args.key)?;
    let _ = planned.hasher.save();
    Ok(())
}
