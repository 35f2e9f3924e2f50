//! `drpipe gc`: delete cache entries that neither an experiment file's current plan nor an
//! experiment's last run (its view under outputs/experiments) references.

use super::{args::GcArgs, CliError, CliResult, Env, EXIT_USAGE};
use crate::cache::gc;
use crate::plan::{self, PlanOptions};
use std::collections::HashSet;

pub fn run(env: &Env, args: GcArgs) -> CliResult {
    let registry = crate::stages::builtin();
    let store = env.store()?;
    let hasher = env.hasher(&store);
    let mut files: Vec<_> = std::fs::read_dir(&args.experiments)
        .map_err(|e| CliError {
            message: format!("error: cannot read {}: {e}", args.experiments.display()),
            code: EXIT_USAGE,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut keep = HashSet::new();
    for f in &files {
        let exp = super::load_experiment(f, &[], &registry)?;
        match plan::build(
            &exp,
            &registry,
            &store,
            &hasher,
            &PlanOptions {
                force: &[],
                outputs: &env.outputs,
                progress: super::progress_bar(env),
            },
        ) {
            Ok(p) => keep.extend(p.instances.iter().map(|i| (i.stage.clone(), i.key.clone()))),
            // E.g. its real data is not mounted here: it cannot say what it needs now; what its
            // last run linked is kept below.
            Err(e) => eprintln!(
                "warning: cannot plan {} ({e:#}); keeping what its last run produced",
                f.display()
            ),
        }
    }
    // What the last run of each experiment produced stays too, with or without --set: gc
    // removes what has been superseded, never the results a person is looking at.
    keep.extend(gc::linked_entries(&env.outputs.join("experiments")));
    let _ = hasher.save();
    let report = gc::collect(&store, &keep, args.dry_run)?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for (stage, key, bytes) in &report.removed {
        env.say(format!("  {verb} {stage}/{key} ({})", human(*bytes)));
    }
    println!(
        "{verb} {} entr{} ({}); kept {} referenced by {} experiment file(s)",
        report.removed.len(),
        if report.removed.len() == 1 {
            "y"
        } else {
            "ies"
        },
        human(report.freed_bytes),
        report.kept,
        files.len()
    );
    Ok(())
}

pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = bytes as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}
