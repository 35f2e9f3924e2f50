//! The summary table in its four forms: a polars frame (CSV, parquet), the terminal table,
//! markdown, and the rows the HTML page renders.

use super::CellResult;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use polars::prelude::{Column, CsvWriter, DataFrame, ParquetWriter, SerWriter};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Fmt {
    /// A fraction shown as a percentage with one decimal.
    Percent,
    /// A score shown with three decimals (F1, kappa, AUC).
    Score,
}

impl Fmt {
    pub(in crate::report) fn show(self, v: f64) -> String {
        match self {
            Fmt::Percent => format!("{:.1}", v * 100.0),
            Fmt::Score => format!("{v:.3}"),
        }
    }
}

/// One metric column: its frame name, its headers, and how to read it off a cell.
pub(super) struct MetricCol {
    pub key: &'static str,
    pub short: &'static str,
    pub long: &'static str,
    pub fmt: Fmt,
    pub get: fn(&CellResult) -> f64,
}

macro_rules! col {
    ($key:literal, $short:literal, $long:literal, $fmt:ident, |$c:ident| $e:expr) => {
        MetricCol {
            key: $key,
            short: $short,
            long: $long,
            fmt: Fmt::$fmt,
            get: |$c: &CellResult| $e,
        }
    };
}

/// Every metric column, in table order. Higher is better for all of them.
pub(super) const METRICS: [MetricCol; 12] = [
    col!("accuracy", "acc", "accuracy %", Percent, |c| c
        .metrics
        .accuracy),
    col!(
        "balanced_accuracy",
        "bal",
        "balanced acc. %",
        Percent,
        |c| c.metrics.balanced_accuracy
    ),
    col!("macro_f1", "mF1", "macro F1", Score, |c| c.metrics.macro_f1),
    col!("qwk", "QWK", "QWK", Score, |c| c.metrics.qwk),
    col!("recall_0", "r0", "recall 0 %", Percent, |c| c
        .metrics
        .recall[0]),
    col!("recall_1", "r1", "recall 1 %", Percent, |c| c
        .metrics
        .recall[1]),
    col!("recall_2", "r2", "recall 2 %", Percent, |c| c
        .metrics
        .recall[2]),
    col!("recall_3", "r3", "recall 3 %", Percent, |c| c
        .metrics
        .recall[3]),
    col!("recall_4", "r4", "recall 4 %", Percent, |c| c
        .metrics
        .recall[4]),
    col!(
        "referable_sens",
        "sens",
        "referable sens. %",
        Percent,
        |c| c.metrics.referable_sensitivity
    ),
    col!(
        "referable_spec",
        "spec",
        "referable spec. %",
        Percent,
        |c| c.metrics.referable_specificity
    ),
    col!("referable_auc", "AUC", "referable AUC", Score, |c| c
        .metrics
        .referable_auc),
];

/// The epoch with the highest test accuracy (the first on ties) and that accuracy; `None`
/// without a finite record.
pub(super) fn best_epoch(history: &[EpochRecord]) -> Option<(usize, f64)> {
    history
        .iter()
        .filter(|r| r.test_acc.is_finite())
        .fold(None, |best: Option<&EpochRecord>, r| match best {
            Some(b) if b.test_acc >= r.test_acc => Some(b),
            _ => Some(r),
        })
        .map(|r| (r.epoch, r.test_acc))
}

/// Parameter names across cells in first-seen order (axis order when every cell lists them
/// the same way).
pub(super) fn param_keys(cells: &[CellResult]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in cells.iter().flat_map(|c| &c.params) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

pub(super) fn param_value<'a>(cell: &'a CellResult, key: &str) -> Option<&'a str> {
    cell.params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Which cells hold the best value of `col`, judged on the value as displayed so that the
/// mark agrees with what the reader sees. With one cell nothing is marked: there is no
/// comparison to win.
pub(super) fn best_flags(cells: &[CellResult], col: &MetricCol) -> Vec<bool> {
    best_of(cells.iter().map(|c| Some((col.get)(c))).collect(), col.fmt)
}

/// As [`best_flags`] for the best test accuracy during training (absent without history).
pub(super) fn best_acc_flags(cells: &[CellResult]) -> Vec<bool> {
    best_of(
        cells
            .iter()
            .map(|c| best_epoch(&c.history).map(|(_, a)| a))
            .collect(),
        Fmt::Percent,
    )
}

fn best_of(values: Vec<Option<f64>>, fmt: Fmt) -> Vec<bool> {
    let max = values
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 || !max.is_finite() {
        return vec![false; values.len()];
    }
    let shown = fmt.show(max);
    values
        .iter()
        .map(|v| v.is_some_and(|v| fmt.show(v) == shown))
        .collect()
}

/// One row per cell: `cell`, the varying params (strings, null where a cell lacks one; a
/// param whose name clashes with a metric column is prefixed `param_`), `n`, the metrics as
/// fractions, `best_epoch` and `best_test_acc` (null without history).
pub fn summary_frame(cells: &[CellResult]) -> Result<DataFrame> {
    let mut columns = vec![Column::new(
        "cell".into(),
        cells.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
    )];
    let reserved = |k: &str| {
        ["cell", "n", "best_epoch", "best_test_acc"].contains(&k)
            || METRICS.iter().any(|m| m.key == k)
    };
    for key in param_keys(cells) {
        let name = if reserved(&key) {
            format!("param_{key}")
        } else {
            key.clone()
        };
        let values: Vec<Option<String>> = cells
            .iter()
            .map(|c| param_value(c, &key).map(str::to_string))
            .collect();
        columns.push(Column::new(name.as_str().into(), values));
    }
    columns.push(Column::new(
        "n".into(),
        cells.iter().map(|c| c.metrics.n as u64).collect::<Vec<_>>(),
    ));
    for m in &METRICS {
        columns.push(Column::new(
            m.key.into(),
            cells.iter().map(m.get).collect::<Vec<f64>>(),
        ));
    }
    let best: Vec<_> = cells.iter().map(|c| best_epoch(&c.history)).collect();
    columns.push(Column::new(
        "best_epoch".into(),
        best.iter()
            .map(|b| b.map(|(e, _)| e as u64))
            .collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "best_test_acc".into(),
        best.iter().map(|b| b.map(|(_, a)| a)).collect::<Vec<_>>(),
    ));
    DataFrame::new(cells.len(), columns).context("building the summary table")
}

pub(super) fn write_csv(frame: &mut DataFrame, path: &Path) -> Result<PathBuf> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    CsvWriter::new(file)
        .finish(frame)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}

pub(super) fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<PathBuf> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    ParquetWriter::new(file)
        .finish(frame)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// The display table shared by markdown and HTML: headers, then per row `(text, is_best)`.
pub(super) struct Display {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<(String, bool)>>,
}

pub(super) fn display(cells: &[CellResult]) -> Display {
    let keys = param_keys(cells);
    let mut headers = vec!["cell".to_string()];
    headers.extend(keys.iter().cloned());
    headers.push("n".into());
    headers.extend(METRICS.iter().map(|m| m.long.to_string()));
    headers.push("best test acc. % (epoch)".into());
    let flags: Vec<Vec<bool>> = METRICS.iter().map(|m| best_flags(cells, m)).collect();
    let acc_flags = best_acc_flags(cells);
    let rows = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![(c.name.clone(), false)];
            row.extend(
                keys.iter()
                    .map(|k| (param_value(c, k).unwrap_or("").to_string(), false)),
            );
            row.push((c.metrics.n.to_string(), false));
            for (m, f) in METRICS.iter().zip(&flags) {
                row.push((m.fmt.show((m.get)(c)), f[i]));
            }
            row.push(match best_epoch(&c.history) {
                Some((e, a)) => (format!("{} ({e})", Fmt::Percent.show(a)), acc_flags[i]),
                None => ("n/a".into(), false),
            });
            row
        })
        .collect();
    Display { headers, rows }
}

/// `summary.md`: a title, the table with each metric's best value in bold, and a key.
pub(super) fn markdown(title: &str, cells: &[CellResult]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let t = display(cells);
    let mut out = format!("# {}\n\n", esc(title));
    out += &format!(
        "| {} |\n",
        t.headers
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out += &format!("|{}\n", "---|".repeat(t.headers.len()));
    for row in &t.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|(s, best)| {
                if *best {
                    format!("**{}**", esc(s))
                } else {
                    esc(s)
                }
            })
            .collect();
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out += "\nBold: the best value of each metric across cells. Percentages are of the test \
            images; recall k = share of grade-k eyes graded k; referable = grade 2 or worse.\n";
    out
}

/// `s` cut to at most `max` characters by replacing its middle with `…`: cell names often
/// differ only at the end, so both ends are kept.
pub(super) fn shorten(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    if max <= 1 {
        return "…".chars().take(max).collect();
    }
    let keep = max - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}
