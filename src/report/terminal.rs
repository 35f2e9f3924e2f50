//! The summary table as printed in a terminal.

use super::table::{
    best_flags, differences, holds, interval, selection, shorten, DIFF_KEYS, METRICS,
};
use super::CellResult;
use anyhow::Result;

/// The terminal table's width budget.
const TERMINAL_WIDTH: usize = 100;

/// The table printed in the terminal: one line per cell, fits in 100 columns, `*` marks the
/// best value of each metric. When a cell name does not fit, rows are numbered and the full
/// names follow the table.
pub fn terminal_table(cells: &[CellResult]) -> Result<String> {
    if cells.is_empty() {
        return Ok("(no cells)\n".into());
    }
    let flags: Vec<Vec<bool>> = METRICS.iter().map(|m| best_flags(cells, m)).collect();
    let mark = |s: String, best: bool| format!("{s}{}", if best { "*" } else { " " });

    // Columns after the name: (header, values), right-aligned.
    let mut cols: Vec<(String, Vec<String>)> = Vec::new();
    let same_n = cells.iter().all(|c| c.metrics.n == cells[0].metrics.n);
    if !same_n {
        cols.push((
            "n".into(),
            cells.iter().map(|c| c.metrics.n.to_string()).collect(),
        ));
    }
    for (m, f) in METRICS.iter().zip(&flags) {
        let vals = cells
            .iter()
            .zip(f)
            .map(|(c, &b)| mark(format!("{}{}", m.fmt.show((m.get)(c)), holds(c, m)), b))
            .collect();
        cols.push((format!("{} ", m.short), vals));
    }
    cols.push((
        "selected ".into(),
        cells.iter().map(|c| format!("{} ", selection(c))).collect(),
    ));

    let widths: Vec<usize> = cols
        .iter()
        .map(|(h, v)| {
            v.iter()
                .chain([h])
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rest: usize = widths.iter().map(|w| w + 1).sum();
    let room = TERMINAL_WIDTH.saturating_sub(rest);
    let longest = cells
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    // Names that do not fit are replaced by row numbers with a key below: shortened names
    // of a grid often become indistinguishable (they differ in the middle).
    let numbered = longest > room;
    let labels: Vec<String> = if numbered {
        (1..=cells.len()).map(|i| i.to_string()).collect()
    } else {
        cells.iter().map(|c| c.name.clone()).collect()
    };
    let head = if numbered { "#" } else { "cell" };
    let name_w = labels
        .iter()
        .map(|l| l.chars().count())
        .chain([head.len()])
        .max()
        .unwrap_or(1);

    let mut out = String::new();
    let mut line = format!("{head:<name_w$} ");
    for ((h, _), w) in cols.iter().zip(&widths) {
        line += &format!("{h:>w$} ");
    }
    out += line.trim_end();
    out.push('\n');
    for (i, label) in labels.iter().enumerate() {
        let mut line = format!("{label:<name_w$} ");
        for ((_, v), w) in cols.iter().zip(&widths) {
            line += &format!("{:>w$} ", v[i]);
        }
        out += line.trim_end();
        out.push('\n');
    }
    if numbered {
        out.push('\n');
        for (label, c) in labels.iter().zip(cells) {
            let name = shorten(&c.name, TERMINAL_WIDTH - name_w - 2);
            out += &format!("{label:>name_w$}  {name}\n");
        }
        out.push('\n');
    }
    if same_n {
        out += &format!("n = {} test images. ", cells[0].metrics.n);
    }
    out += "acc, bal(anced acc), r0-r4 (recall per grade), r1-4 (their mean over\n\
            grades 1-4), sens/spec (referable DR, grade >= 2) in %; mF1 = macro F1, QWK =\n\
            quadratic weighted kappa, AUC = referable ROC AUC; selected = epoch whose weights\n\
            were tested (TEST: selected on the test split, optimistic)";
    out += if cells.len() > 1 {
        "; * = best across cells; ↑/↓ = paired\ndifference from the reference excludes zero.\n"
    } else {
        ".\n"
    };

    // Intervals of the headline metrics, one line per row.
    out += "\n95% intervals (bootstrap over test patients)";
    out += if cells.iter().any(|c| c.replicates > 1) {
        "; mean ± sd over seeds:\n"
    } else {
        ":\n"
    };
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    for (label, c) in labels.iter().zip(cells) {
        // Two lines a row, three metrics each, to stay within the width.
        for (half, keys) in DIFF_KEYS.chunks(3).enumerate() {
            let lead = if half == 0 { label.as_str() } else { "" };
            let mut line = format!("{lead:<label_w$} ");
            for &key in keys {
                let m = METRICS.iter().find(|m| m.key == key).expect("a metric");
                let sd = match c.spread.get(key) {
                    Some(sd) if c.replicates > 1 => format!("±{}", m.fmt.show(*sd)),
                    _ => String::new(),
                };
                line += &format!(
                    " {} {}{sd} {}",
                    m.short,
                    m.fmt.show((m.get)(c)),
                    interval(c, m).unwrap_or_default()
                );
            }
            out += line.trim_end();
            out.push('\n');
        }
    }
    if let Some(d) = differences(cells) {
        out += &format!(
            "\nPaired differences, {} (95% interval; * = excludes zero):\n",
            d.headers[0]
        );
        let widths: Vec<usize> = (0..d.headers.len())
            .map(|k| {
                d.rows
                    .iter()
                    .map(|r| r[k].0.chars().count() + 1)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &d.rows {
            let name = labels[cells.iter().position(|c| c.name == row[0].0).unwrap_or(0)].clone();
            let parts: Vec<String> = row
                .iter()
                .enumerate()
                .skip(1)
                .map(|(k, (text, holds))| {
                    let m = METRICS
                        .iter()
                        .find(|m| m.key == DIFF_KEYS[k - 1])
                        .expect("a metric");
                    let cell = format!("{text}{}", if *holds { "*" } else { " " });
                    format!(" {}: {cell:<w$}", m.short, w = widths[k])
                })
                .collect();
            for (half, chunk) in parts.chunks(3).enumerate() {
                let lead = if half == 0 { name.as_str() } else { "" };
                let line = format!("{lead:<label_w$} {}", chunk.concat());
                out += line.trim_end();
                out.push('\n');
            }
        }
    }
    Ok(out)
}
