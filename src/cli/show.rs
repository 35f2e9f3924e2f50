//! `drpipe show [NAME]`: an experiment's results table, or the list of experiments.

use super::{args::ShowArgs, CliError, CliResult, Env, EXIT_USAGE};
use std::path::Path;

/// The report stage writes its terminal table here.
pub use crate::report::TABLE_FILE;

pub fn report_table(view: &Path) -> Option<String> {
    report_table_in(&view.join("report"))
}

/// The table of a report entry.
pub fn report_table_in(report: &Path) -> Option<String> {
    std::fs::read_to_string(report.join(TABLE_FILE)).ok()
}

pub fn run(env: &Env, args: ShowArgs) -> CliResult {
    let root = env.outputs.join("experiments");
    let names: Vec<String> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let Some(name) = args.name else {
        if names.is_empty() {
            println!("no experiments have run under {} yet: try `drpipe run experiments/quickstart.toml`", env.outputs.display());
        }
        let mut names = names;
        names.sort();
        for n in names {
            let cells = std::fs::read_dir(root.join(&n).join("cells"))
                .map(|rd| rd.count())
                .unwrap_or(0);
            let has_report = report_table(&root.join(&n)).is_some();
            println!(
                "{n:30} {cells} cell(s){}",
                if has_report { "" } else { "  (no report yet)" }
            );
        }
        return Ok(());
    };
    match report_table(&root.join(&name)) {
        Some(t) => {
            println!("{t}");
            println!(
                "report: {}",
                root.join(&name).join("report").join("index.html").display()
            );
            Ok(())
        }
        None => Err(CliError {
            message: format!(
                "error: no report for experiment `{name}` under {}{}",
                root.display(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (experiments: {})", names.join(", "))
                }
            ),
            code: EXIT_USAGE,
        }),
    }
}
