//! `drpipe audit ROOT`: the audit stage on its own, on a data folder. The user's files are
//! only read; repaired copies and audit.csv go to `--report DIR`, or to a temporary folder
//! that is removed on the way out.

use super::{args::AuditArgs, CliError, CliResult, Env, EXIT_USAGE};
use crate::cache::FileHasher;
use crate::data::audit;
use crate::data::layout::{self, presets, Dataset, LayoutKind};

fn load(args: &AuditArgs) -> Result<(String, Dataset), CliError> {
    let name = match &args.source {
        None => {
            let kind = layout::detect(&args.root).map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}; for a public set, say which: --source {}",
                    presets::NAMES.join("|")
                )
            })?;
            return Ok((kind.to_string(), layout::load(&args.root, kind)?));
        }
        Some(s) => s.trim().to_ascii_lowercase(),
    };
    if let Some(csv) = presets::preset(&name) {
        return Ok((name, layout::csv::load(&args.root, &csv)?));
    }
    match name.parse::<LayoutKind>() {
        Ok(k @ (LayoutKind::Lab | LayoutKind::Kaggle)) => Ok((name, layout::load(&args.root, k)?)),
        _ => Err(CliError {
            message: format!(
                "error: unknown --source {name:?}: expected lab, kaggle, {} (a csv layout is \
                 described in an experiment file and audited by `drpipe run`)",
                presets::NAMES.join(", ")
            ),
            code: EXIT_USAGE,
        }),
    }
}

/// A folder removed when dropped: on success and on error alike.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(env: &Env, args: AuditArgs) -> CliResult {
    let (kind, data) = load(&args)?;
    let scratch;
    let work = match &args.report {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            dir.clone()
        }
        None => {
            scratch =
                Scratch(std::env::temp_dir().join(format!("drpipe-audit-{}", std::process::id())));
            std::fs::create_dir_all(&scratch.0).map_err(anyhow::Error::from)?;
            scratch.0.clone()
        }
    };
    let store = env.store()?;
    let hasher = FileHasher::load(&store.root().join("file-hashes.tsv"));
    let hash_of = |p: &std::path::Path| hasher.hash(p);
    let train: Vec<_> = data.train.iter().chain(&data.val).cloned().collect();
    let mut report = audit::audit(
        &train,
        &data.test,
        &work,
        &store.memo_dir("audit"),
        args.min_size,
        &hash_of,
        &super::progress_bar(env),
    )?;
    let excluded: Vec<_> = data.excluded.iter().map(|(s, _)| s.clone()).collect();
    if !excluded.is_empty() {
        report.add_excluded(&excluded, &work)?;
    }
    let _ = hasher.save();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{} ({kind} layout)", args.root.display());
        println!("{}", report.summary());
        match &args.report {
            Some(dir) => println!("per-image report: {}", dir.join("audit.csv").display()),
            None => {
                println!("per-image report and repaired copies: pass --report DIR to keep them")
            }
        }
    }
    Ok(())
}
