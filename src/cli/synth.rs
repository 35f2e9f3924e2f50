//! `drpipe synth`: generate the synthetic fundus data set (Kaggle layout).

use super::{args::SynthArgs, CliError, CliResult, Env, EXIT_USAGE};
use crate::data::synthetic::{self, SynthSpec};

pub fn run(env: &Env, args: SynthArgs) -> CliResult {
    if args.out.exists()
        && std::fs::read_dir(&args.out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError {
            message: format!(
                "error: {} exists and is not empty; give a new folder to --out",
                args.out.display()
            ),
            code: EXIT_USAGE,
        });
    }
    if args.images < 2 || args.size < 32 {
        return Err(CliError {
            message: "error: --images must be at least 2 and --size at least 32".into(),
            code: EXIT_USAGE,
        });
    }
    let bar = super::progress_bar(env);
    let summary = synthetic::generate(
        &args.out,
        &SynthSpec {
            images: args.images,
            size: args.size,
            seed: args.seed,
        },
        &bar,
    )?;
    let c = summary.counts;
    println!(
        "{} images of {} patients in {} (grades 0-4: {} / {} / {} / {} / {}); planted {} truncated and {} corrupt file(s)",
        summary.images,
        summary.patients,
        args.out.display(),
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        summary.truncated.len(),
        summary.corrupt.len()
    );
    Ok(())
}
