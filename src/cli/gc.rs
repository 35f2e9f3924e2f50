//! `drpipe gc`: delete cache entries no experiment file references.

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
            },
        ) {
            Ok(p) => keep.extend(p.instances.iter().map(|i| (i.stage.clone(), i.key.clone()))),
            Err(e) => {
                // E.g. its real data is not mounted here: it cannot say what it needs now, so
                // keep whatever its last run produced.
                eprintln!(
                    "warning: cannot plan {} ({e:#}); keeping the entries its last run linked",
                    f.display()
                );
                keep.extend(linked_entries(&plan::view_dir(&env.outputs, &exp.name)));
            }
        }
    }
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

/// (stage, key) of every cache entry an experiment's view links to.
fn linked_entries(view: &std::path::Path) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut dirs = vec![view.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if let Ok(target) = std::fs::read_link(&p) {
                let mut parts = target.components().rev();
                if let (Some(key), Some(stage)) = (parts.next(), parts.next()) {
                    links.push((
                        stage.as_os_str().to_string_lossy().into_owned(),
                        key.as_os_str().to_string_lossy().into_owned(),
                    ));
                }
            } else if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    links
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
