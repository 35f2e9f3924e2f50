//! What the researcher reads: the cells of an experiment side by side, on the metrics that
//! accuracy hides (per-class recall, balanced accuracy, QWK, referable DR).
//!
//! [`write_report`] writes, into one folder:
//! - `summary.csv`, `summary.parquet`: [`summary_frame`], one row per cell;
//! - `summary.md`: the same table in markdown, the best value of each metric in bold;
//! - figures, each as PNG and SVG: `accuracy-<model>` (train and test accuracy per epoch, the
//!   study's comparison figure), `loss`, `recall` (per-class recall, grouped by grade) and
//!   `confusion-<cell>` (normalised confusion matrix);
//! - `index.html`: self-contained page with the table, every figure and a reading guide.

mod figures;
mod html;
pub mod rows;
mod table;
mod terminal;

pub use rows::{rows, Replicate};
pub use table::summary_frame;
pub use terminal::terminal_table;

use crate::metrics::bootstrap::{Difference, Interval};
use crate::metrics::Metrics;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of the report: a cell of the experiment, or the replicates of one configuration
/// (cells that differ only in seed), with its results and how sure they are.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    pub name: String,
    /// The params that vary across rows, in axis order (seed left out for replicates).
    pub params: Vec<(String, String)>,
    /// Test-set metrics of the evaluated model; for replicates, the mean of theirs.
    pub metrics: Metrics,
    /// Per-epoch training history; accuracies are fractions in `[0, 1]`. May be empty. For
    /// replicates, the per-epoch mean.
    pub history: Vec<EpochRecord>,
    /// Architecture, e.g. "resnet18": one accuracy figure is drawn per model.
    pub model: String,
    /// How many cells (seeds) this row is the mean of.
    pub replicates: usize,
    /// Their cell names and seeds (under `cells/`).
    pub members: Vec<String>,
    pub seeds: Vec<String>,
    /// Standard deviation over the replicates per headline metric; empty for one.
    pub spread: BTreeMap<String, f64>,
    /// Per-epoch standard deviation over the replicates; empty for one.
    pub history_sd: Vec<EpochRecord>,
    /// 95% patient-bootstrap interval per headline metric (of the replicate mean).
    pub ci: BTreeMap<String, Interval>,
    /// Paired difference from the reference row on the same test patients; `None` for the
    /// reference, or when the two were tested on different images.
    pub vs_reference: Option<BTreeMap<String, Difference>>,
    pub reference: bool,
    /// "validation", "test" (the study's selection on the test split) or "last epoch".
    pub selected_on: String,
    /// The epoch whose weights were evaluated (one replicate only).
    pub selected_epoch: Option<usize>,
}

impl CellResult {
    /// A row of one cell without intervals (tests, demos): the interval of every headline
    /// metric is the point itself.
    pub fn single(
        name: &str,
        params: Vec<(String, String)>,
        metrics: Metrics,
        history: Vec<EpochRecord>,
        model: &str,
    ) -> CellResult {
        let ci = crate::metrics::bootstrap::headline(&metrics)
            .iter()
            .map(|(k, v)| (k.to_string(), Interval { lo: *v, hi: *v }))
            .collect();
        CellResult {
            name: name.into(),
            params,
            metrics,
            history,
            model: model.into(),
            replicates: 1,
            members: vec![name.into()],
            seeds: Vec::new(),
            spread: BTreeMap::new(),
            history_sd: Vec::new(),
            ci,
            vs_reference: None,
            reference: false,
            selected_on: "validation".into(),
            selected_epoch: None,
        }
    }
}

/// The terminal table as the report stage keeps it, for `drpipe show`.
pub const TABLE_FILE: &str = "table.txt";

/// What [`write_report`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// The terminal table ([`terminal_table`]).
    pub table_text: String,
    /// Every file written, in `out_dir`.
    pub files: Vec<PathBuf>,
}

/// Write the whole report for `cells` into `out_dir` (created if missing; files already
/// there with the same names are replaced). Fails on an empty `cells`: there is nothing to
/// compare.
pub fn write_report(title: &str, cells: &[CellResult], out_dir: &Path) -> Result<ReportFiles> {
    anyhow::ensure!(
        !cells.is_empty(),
        "no cells to report on: run the experiment's train and evaluate stages first"
    );
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create report folder {}", out_dir.display()))?;
    let mut files = Vec::new();

    let mut frame = summary_frame(cells)?;
    files.push(table::write_csv(&mut frame, &out_dir.join("summary.csv"))?);
    files.push(table::write_parquet(
        &mut frame,
        &out_dir.join("summary.parquet"),
    )?);
    let md_path = out_dir.join("summary.md");
    write_text(&md_path, &table::markdown(title, cells))?;
    files.push(md_path);

    let figures = figures::draw_all(cells, out_dir)?;
    for fig in &figures {
        files.push(out_dir.join(&fig.png));
        files.push(out_dir.join(&fig.svg));
    }

    let html_path = out_dir.join("index.html");
    write_text(&html_path, &html::page(title, cells, &figures))?;
    files.push(html_path);

    Ok(ReportFiles {
        table_text: terminal_table(cells)?,
        files,
    })
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A file-name-safe form of `name`: ASCII letters, digits, `.`, `_` and `-` are kept,
/// anything else becomes `-`; never empty, never starting with a dot.
fn file_stem(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// [`file_stem`] of every name, with `-2`, `-3`... added where two names collide once made
/// safe (for example `lr=0.1` and `lr:0.1`).
fn unique_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for name in names {
        let base = file_stem(name);
        let mut stem = base.clone();
        let mut k = 2;
        while !seen.insert(stem.to_lowercase()) {
            stem = format!("{base}-{k}");
            k += 1;
        }
        out.push(stem);
    }
    out
}

#[cfg(test)]
mod demo;
#[cfg(test)]
mod tests;
