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
pub(super) const METRICS: [MetricCol; 13] = [
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
    col!("recall_1_4", "r1-4", "mean recall 1-4 %", Percent, |c| c
        .metrics
        .recall[1..]
        .iter()
        .sum::<f64>()
        / 4.0),
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

/// The held-out accuracy of an epoch: validation when the run had a validation split, test
/// otherwise (`checkpoint = "best_test"` without one); NaN when neither was measured.
pub(super) fn held_out_acc(r: &EpochRecord) -> f64 {
    if r.val_acc.is_finite() {
        r.val_acc
    } else {
        r.test_acc
    }
}

/// Which split [`held_out_acc`] reads for this history: "val", "test", or `None`.
pub(super) fn held_out_split(history: &[EpochRecord]) -> Option<&'static str> {
    if history.iter().any(|r| r.val_acc.is_finite()) {
        Some("val")
    } else if history.iter().any(|r| r.test_acc.is_finite()) {
        Some("test")
    } else {
        None
    }
}

/// The epoch with the highest held-out accuracy (the first on ties) and that accuracy;
/// `None` without a finite record.
pub(super) fn best_epoch(history: &[EpochRecord]) -> Option<(usize, f64)> {
    history
        .iter()
        .filter(|r| held_out_acc(r).is_finite())
        .fold(None, |best: Option<&EpochRecord>, r| match best {
            Some(b) if held_out_acc(b) >= held_out_acc(r) => Some(b),
            _ => Some(r),
        })
        .map(|r| (r.epoch, held_out_acc(r)))
}

/// How the evaluated weights were chosen, e.g. "ep 5 (val)", "ep 6 (TEST)", "last".
pub(super) fn selection(c: &CellResult) -> String {
    let on = match c.selected_on.as_str() {
        "validation" => "val",
        // The study's choice: shout it, the test metrics are optimistic.
        "test" => "TEST",
        _ => "last",
    };
    match c.selected_epoch {
        Some(e) if on != "last" => format!("ep {e} ({on})"),
        Some(e) => format!("ep {e} (last)"),
        None => on.to_string(),
    }
}

/// A metric as the tables show it: the value, or for replicates mean ± sd.
pub(super) fn shown(c: &CellResult, m: &MetricCol) -> String {
    let v = m.fmt.show((m.get)(c));
    match c.spread.get(m.key) {
        Some(sd) if c.replicates > 1 => format!("{v}±{}", m.fmt.show(*sd)),
        _ => v,
    }
}

/// The 95% interval of a metric as the tables show it, e.g. "[70.1, 76.4]".
pub(super) fn interval(c: &CellResult, m: &MetricCol) -> Option<String> {
    c.ci.get(m.key)
        .map(|i| format!("[{}, {}]", m.fmt.show(i.lo), m.fmt.show(i.hi)))
}

/// `↑` / `↓` when the row's paired difference from the reference excludes zero.
pub(super) fn holds(c: &CellResult, m: &MetricCol) -> &'static str {
    match c.vs_reference.as_ref().and_then(|d| d.get(m.key)) {
        Some(d) if d.interval().excludes_zero() && d.estimate > 0.0 => "↑",
        Some(d) if d.interval().excludes_zero() => "↓",
        _ => "",
    }
}

/// Metrics of the paired-difference table.
pub(super) const DIFF_KEYS: [&str; 6] = [
    "accuracy",
    "balanced_accuracy",
    "qwk",
    "recall_1_4",
    "referable_sens",
    "referable_auc",
];

/// The paired-difference table (rows against the reference): `None` with a single row.
pub(super) fn differences(cells: &[CellResult]) -> Option<Display> {
    let reference = cells.iter().find(|c| c.reference)?;
    if cells.len() < 2 {
        return None;
    }
    let cols: Vec<&MetricCol> = DIFF_KEYS
        .iter()
        .filter_map(|k| METRICS.iter().find(|m| m.key == *k))
        .collect();
    let mut headers = vec![format!("cell − {}", reference.name)];
    headers.extend(cols.iter().map(|m| format!("Δ {}", m.long)));
    let rows = cells
        .iter()
        .filter(|c| !c.reference)
        .map(|c| {
            let mut row = vec![(c.name.clone(), false)];
            for m in &cols {
                row.push(match c.vs_reference.as_ref().and_then(|d| d.get(m.key)) {
                    Some(d) => (
                        format!(
                            "{} [{}, {}]",
                            signed(m.fmt, d.estimate),
                            signed(m.fmt, d.lo),
                            signed(m.fmt, d.hi)
                        ),
                        d.interval().excludes_zero(),
                    ),
                    None => ("n/a (other test images)".into(), false),
                });
            }
            row
        })
        .collect();
    Some(Display { headers, rows })
}

/// A difference with its sign: "+3.2", "−0.041".
pub(super) fn signed(fmt: Fmt, v: f64) -> String {
    let s = fmt.show(v.abs());
    if fmt.show(v) == fmt.show(0.0) || s.chars().all(|c| c == '0' || c == '.') {
        s
    } else if v > 0.0 {
        format!("+{s}")
    } else {
        format!("−{s}")
    }
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

/// One row per report row: `cell`, the varying params (strings, null where a row lacks one;
/// a param whose name clashes with a metric column is prefixed `param_`), `replicates`, `n`,
/// each metric as a fraction with its 95% interval (`_lo`, `_hi`), its standard deviation over
/// replicates (`_sd`, null for one) and its paired difference from the reference row
/// (`_diff`, `_diff_lo`, `_diff_hi`, null for the reference), then `selected_on`,
/// `selected_epoch`, and `best_epoch` / `best_held_out_acc` from the history.
pub fn summary_frame(cells: &[CellResult]) -> Result<DataFrame> {
    let mut columns = vec![Column::new(
        "cell".into(),
        cells.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
    )];
    let reserved = |k: &str| {
        [
            "cell",
            "n",
            "replicates",
            "best_epoch",
            "best_held_out_acc",
            "selected_on",
            "selected_epoch",
        ]
        .contains(&k)
            || METRICS.iter().any(|m| k.starts_with(m.key))
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
        "replicates".into(),
        cells
            .iter()
            .map(|c| c.replicates as u64)
            .collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "n".into(),
        cells.iter().map(|c| c.metrics.n as u64).collect::<Vec<_>>(),
    ));
    for m in &METRICS {
        let ci = |c: &CellResult| c.ci.get(m.key).copied();
        let diff = |c: &CellResult| c.vs_reference.as_ref().and_then(|d| d.get(m.key).copied());
        columns.push(Column::new(
            m.key.into(),
            cells.iter().map(m.get).collect::<Vec<f64>>(),
        ));
        let opt = |suffix: &str, f: &dyn Fn(&CellResult) -> Option<f64>| {
            Column::new(
                format!("{}_{suffix}", m.key).as_str().into(),
                cells.iter().map(f).collect::<Vec<Option<f64>>>(),
            )
        };
        columns.push(opt("lo", &|c| ci(c).map(|i| i.lo)));
        columns.push(opt("hi", &|c| ci(c).map(|i| i.hi)));
        columns.push(opt("sd", &|c| {
            (c.replicates > 1)
                .then(|| c.spread.get(m.key).copied())
                .flatten()
        }));
        columns.push(opt("diff", &|c| diff(c).map(|d| d.estimate)));
        columns.push(opt("diff_lo", &|c| diff(c).map(|d| d.lo)));
        columns.push(opt("diff_hi", &|c| diff(c).map(|d| d.hi)));
    }
    columns.push(Column::new(
        "selected_on".into(),
        cells
            .iter()
            .map(|c| c.selected_on.clone())
            .collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "selected_epoch".into(),
        cells
            .iter()
            .map(|c| c.selected_epoch.map(|e| e as u64))
            .collect::<Vec<_>>(),
    ));
    let best: Vec<_> = cells.iter().map(|c| best_epoch(&c.history)).collect();
    columns.push(Column::new(
        "best_epoch".into(),
        best.iter()
            .map(|b| b.map(|(e, _)| e as u64))
            .collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "best_held_out_acc".into(),
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
    headers.push("weights selected".into());
    let flags: Vec<Vec<bool>> = METRICS.iter().map(|m| best_flags(cells, m)).collect();
    let rows = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![(c.name.clone(), false)];
            row.extend(
                keys.iter()
                    .map(|k| (param_value(c, k).unwrap_or("").to_string(), false)),
            );
            let n = if c.replicates > 1 {
                format!("{} × {} seeds", c.metrics.n, c.replicates)
            } else {
                c.metrics.n.to_string()
            };
            row.push((n, false));
            for (m, f) in METRICS.iter().zip(&flags) {
                let mut text = format!("{}{}", shown(c, m), holds(c, m));
                if let Some(ci) = interval(c, m) {
                    text = format!("{text} {ci}");
                }
                row.push((text, f[i]));
            }
            row.push((selection(c), false));
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
    out += "\nBold: the best value of each metric across cells. Brackets: 95% bootstrap \
            interval over test patients (both eyes resampled together). ± : standard deviation \
            over seeds. ↑/↓: the paired difference from the reference cell excludes zero. \
            Percentages are of the test images; recall k = share of grade-k eyes graded k; \
            referable = grade 2 or worse. Weights selected on TEST (the study's choice) make the \
            test metrics optimistic.\n";
    if let Some(d) = differences(cells) {
        out += "\n## Paired differences from the reference cell\n\n";
        out += &format!(
            "| {} |\n|{}\n",
            d.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(d.headers.len())
        );
        for row in &d.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|(s, holds)| {
                    if *holds {
                        format!("**{}**", esc(s))
                    } else {
                        esc(s)
                    }
                })
                .collect();
            out += &format!("| {} |\n", cells.join(" | "));
        }
        out += "\nEach difference is cell minus reference on the same test patients, with its \
                paired-bootstrap 95% interval; bold: the interval excludes zero.\n";
    }
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
