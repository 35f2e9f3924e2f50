//! `drpipe audit ROOT`: the audit stage on its own, on a data folder (layout detected).
//! Repaired copies and the report go to a temporary folder; the user's files are only read.

use super::{args::AuditArgs, CliResult, Env};
use crate::cache::FileHasher;
use crate::data::{audit, layout};
use crate::reporter::Verbosity;
use crate::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};

/// A progress bar on stderr for one-off commands (hidden with -q).
pub fn bar(env: &Env) -> Progress {
    if env.verbosity == Verbosity::Quiet {
        return Progress::hidden();
    }
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
    Progress::new(move |u| {
        let mut b = bar.lock().expect("bar");
        match u {
            crate::progress::ProgressUpdate::Start { label, total } => {
                let pb = ProgressBar::new(total);
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {wide_bar} {pos}/{len} {per_sec} eta {eta}",
                    )
                    .expect("template"),
                );
                pb.set_prefix(label);
                *b = Some(pb);
            }
            crate::progress::ProgressUpdate::Inc(n) => b.iter().for_each(|pb| pb.inc(n)),
            crate::progress::ProgressUpdate::Message(m) => {
                b.iter().for_each(|pb| pb.set_message(m.clone()))
            }
            crate::progress::ProgressUpdate::Finish => {
                if let Some(pb) = b.take() {
                    pb.finish_and_clear()
                }
            }
        }
    })
}

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
        &bar(env),
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
