//! `index.html`: one self-contained page (inline CSS, relative links only) that opens from
//! disk: the summary table with the best values marked, every figure with a caption, and a
//! short guide to the metrics.

use super::figures::{Figure, Kind};
use super::table::{differences, display, Display};
use super::CellResult;

/// HTML-escape text for element content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape a relative file name for an `href`/`src`: our names are already file-name-safe
/// (see `file_stem`), so escaping `%` and HTML specials is enough.
fn href(name: &str) -> String {
    esc(&name.replace('%', "%25"))
}

const CSS: &str = "
body{font-family:'DejaVu Sans',system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;
max-width:1180px;padding:0 1.2rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}.meta{color:#666;margin-top:0}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.88rem;white-space:nowrap}
th,td{padding:.3rem .55rem;border-bottom:1px solid #e4e4e4;text-align:right}
th{background:#f4f6f8;position:sticky;top:0;font-weight:600}
td:first-child,th:first-child{text-align:left;max-width:22rem;overflow:hidden;text-overflow:ellipsis}
td.param{text-align:left;color:#444}tr:hover td{background:#fafbfc}
td.best{font-weight:700;background:#e8f3e8}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.92rem;margin-top:.3rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
dl dt{font-weight:600;margin-top:.5rem}dl dd{margin-left:1.2rem}
a{color:#1f5fa8}footer{margin-top:3rem;color:#888;font-size:.85rem}
";

const GUIDE: &[(&str, &str)] = &[
    (
        "accuracy",
        "Share of test images graded exactly right. In the study's data 73.5% of \
      eyes are grade 0, so always answering 0 scores 73.5%: read accuracy next to the metrics \
      below.",
    ),
    (
        "balanced accuracy",
        "Mean of the per-grade recalls: every grade counts the same, \
      however rare; always answering grade 0 scores 20%.",
    ),
    (
        "macro F1",
        "Mean over grades of F1, the harmonic mean of precision (how often a \
      prediction of that grade is right) and recall.",
    ),
    (
        "QWK",
        "Quadratic weighted kappa, the Kaggle 2015 score: agreement with the true grade \
      beyond chance, where a miss by two grades costs four times a miss by one. 1 is perfect, \
      0 is chance.",
    ),
    (
        "recall k",
        "Share of the images of true grade k graded k (the diagonal of the \
      confusion matrix).",
    ),
    (
        "referable sens. / spec.",
        "Referable DR is grade 2 or worse, the clinical threshold for \
      referral. Sensitivity: share of referable eyes the model refers; specificity: share of \
      the others it does not.",
    ),
    (
        "referable AUC",
        "Area under the ROC curve of the predicted probability of grade 2 or \
      worse: how well the model ranks referable eyes above the others, at any threshold.",
    ),
    (
        "[lo, hi]",
        "The 95% bootstrap interval: the test patients resampled 10,000 times (both eyes of a \
      patient together), the metric recomputed each time. A difference between two cells \
      inside both intervals may be noise: read the paired differences below.",
    ),
    (
        "± and × seeds",
        "A row of several seeds (replicates) shows the mean ± the standard deviation over \
      seeds; its interval is that of the mean.",
    ),
    (
        "↑ / ↓",
        "The paired difference from the reference cell, on the same test patients, has a 95% \
      interval that excludes zero.",
    ),
    (
        "weights selected",
        "The epoch whose weights were evaluated and the split that chose it: val (the \
      validation split, held out from training), TEST (the study's choice: best test \
      accuracy, which makes the test metrics optimistic), or last.",
    ),
];

pub(super) fn page(title: &str, cells: &[CellResult], figures: &[Figure]) -> String {
    let mut h = String::new();
    h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    h += &format!(
        "<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    );
    h += &format!("<h1>{}</h1>\n", esc(title));
    let n = cells.first().map(|c| c.metrics.n).unwrap_or(0);
    let same_n = cells.iter().all(|c| c.metrics.n == n);
    h += &format!(
        "<p class=\"meta\">{} cell{}{}. Highlighted: the best value of each metric across \
         cells.</p>\n",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" },
        if same_n {
            format!(", {n} test images each")
        } else {
            String::new()
        }
    );

    h += "<h2>Summary</h2>\n";
    h += &summary_table(cells);
    if let Some(d) = differences(cells) {
        h += "<h2>Paired differences from the reference cell</h2>\n";
        h += "<p class=\"meta\">Each row minus the reference on the same test patients, \
              with the paired-bootstrap 95% interval; highlighted: the interval excludes \
              zero (the difference holds).</p>\n";
        h += &plain_table(&d);
    }
    h += "<p>Download: <a href=\"summary.csv\">summary.csv</a> · \
          <a href=\"summary.parquet\">summary.parquet</a> · \
          <a href=\"summary.md\">summary.md</a></p>\n";

    h += "<h2>How to read this</h2>\n<dl>\n";
    for (term, text) in GUIDE {
        h += &format!("<dt>{}</dt><dd>{}</dd>\n", esc(term), esc(text));
    }
    h += "</dl>\n";

    let sections = [
        (Kind::Accuracy, "Accuracy per epoch", false),
        (Kind::Loss, "Loss per epoch", false),
        (Kind::Recall, "Recall per grade", false),
        (Kind::Confusion, "Confusion matrices", true),
    ];
    for (kind, heading, grid) in sections {
        let figs: Vec<&Figure> = figures.iter().filter(|f| f.kind == kind).collect();
        if figs.is_empty() {
            continue;
        }
        h += &format!("<h2>{heading}</h2>\n");
        if grid {
            h += "<div class=\"grid\">\n";
        }
        for f in figs {
            h += &format!(
                "<figure><a href=\"{png}\"><img src=\"{png}\" alt=\"{alt}\" loading=\"lazy\"></a>\
                 <figcaption>{cap} <a href=\"{svg}\">SVG</a></figcaption></figure>\n",
                png = href(&f.png),
                svg = href(&f.svg),
                alt = esc(&f.caption),
                cap = esc(&f.caption),
            );
        }
        if grid {
            h += "</div>\n";
        }
    }
    h += "<footer>Written by drpipe.</footer>\n</body>\n</html>\n";
    h
}

fn plain_table(t: &Display) -> String {
    let mut h = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for head in &t.headers {
        h += &format!("<th>{}</th>", esc(head));
    }
    h += "</tr></thead>\n<tbody>\n";
    for row in &t.rows {
        h += "<tr>";
        for (text, mark) in row {
            let class = if *mark { " class=\"best\"" } else { "" };
            h += &format!("<td{class}>{}</td>", esc(text));
        }
        h += "</tr>\n";
    }
    h += "</tbody></table></div>\n";
    h
}

fn summary_table(cells: &[CellResult]) -> String {
    let t = display(cells);
    let n_params = t.headers.len() - 2 - super::table::METRICS.len() - 1;
    let mut h = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for head in &t.headers {
        h += &format!("<th>{}</th>", esc(head));
    }
    h += "</tr></thead>\n<tbody>\n";
    for row in &t.rows {
        h += "<tr>";
        for (i, (text, best)) in row.iter().enumerate() {
            let class = if *best {
                " class=\"best\""
            } else if (1..=n_params).contains(&i) {
                " class=\"param\""
            } else {
                ""
            };
            let title = if i == 0 {
                format!(" title=\"{}\"", esc(text))
            } else {
                String::new()
            };
            h += &format!("<td{class}{title}>{}</td>", esc(text));
        }
        h += "</tr>\n";
    }
    h += "</tbody></table></div>\n";
    h
}
