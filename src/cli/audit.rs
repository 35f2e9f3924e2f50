//! `drpipe audit ROOT`: the audit stage on its own, on a data folder (layout detected).
//! Repaired copies and the report go to a temporary folder; the user's files are only read.

use super::{args::AuditArgs, CliResult, Env};
use crate::cache::FileHasher;
use crate::data::{audit, layout};

pub fn run(env: &Env, args: AuditArgs) -> CliResult {
    let kind = layout::detect(&args.root)?;
    let data = layout::load(&args.root, kind)?;
    let work = std::env::temp_dir().join(format!("drpipe-audit-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(anyhow::Error::from)?;
    let store = env.store()?;
    let hasher = FileHasher::load(&store.root().join("file-hashes.tsv"));
    let hash_of = |p: &std::path::Path| hasher.hash(p);
    let report = audit::audit(
        &data.train,
        &data.test,
        &work,
        &store.memo_dir("audit"),
        args.min_size,
        &hash_of,
        &super::progress_bar(env),
    )?;
    let _ = hasher.save();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{} ({kind} layout)", args.root.display());
        println!("{}", report.summary());
        println!("per-image report: {}", work.join("audit.csv").display());
    }
    Ok(())
}
