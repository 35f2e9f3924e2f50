//! The summary table as printed in a terminal.

use super::table::{best_acc_flags, best_epoch, best_flags, shorten, Fmt, METRICS};
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
    let acc_flags = best_acc_flags(cells);
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
            .map(|(c, &b)| mark(m.fmt.show((m.get)(c)), b))
            .collect();
        cols.push((format!("{} ", m.short), vals));
    }
    let ep_w = cells
        .iter()
        .filter_map(|c| best_epoch(&c.history))
        .map(|(e, _)| e.to_string().len())
        .max()
        .unwrap_or(1);
    let best_vals = cells
        .iter()
        .zip(&acc_flags)
        .map(|(c, &b)| match best_epoch(&c.history) {
            Some((e, a)) => mark(format!("{:>5}@{e:<ep_w$}", Fmt::Percent.show(a)), b),
            None => "- ".into(),
        })
        .collect();
    cols.push(("best@ep ".into(), best_vals));

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
    out += "acc, bal(anced acc), r0-r4 (recall per grade), sens/spec (referable DR,\n\
            grade >= 2) in %; mF1 = macro F1, QWK = quadratic weighted kappa, AUC = referable ROC AUC;\n\
            best@ep = highest test accuracy during training @ its epoch";
    out += if cells.len() > 1 {
        "; * = best across cells.\n"
    } else {
        ".\n"
    };
    Ok(out)
}
