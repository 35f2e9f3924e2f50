use super::demo::{cell, eight_cells};
use super::table::{shorten, METRICS};
use super::*;
use polars::prelude::*;

fn two_cells() -> Vec<CellResult> {
    // "weighted" has lower accuracy but higher recall on grades 1 and 3, like the study's
    // class-weighted run.
    vec![
        cell(
            "plain",
            "resnet18",
            &[("weights", "none")],
            [0.97, 0.05, 0.5, 0.2, 0.4],
            3,
            1,
        ),
        cell(
            "weighted",
            "resnet18",
            &[("weights", "inv")],
            [0.80, 0.35, 0.5, 0.5, 0.4],
            3,
            2,
        ),
    ]
}

#[test]
fn summary_frame_values_equal_the_input_metrics() {
    let cells = eight_cells(4);
    let df = summary_frame(&cells).unwrap();
    assert_eq!(df.height(), cells.len());
    let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
    assert_eq!(
        &names[..5],
        ["cell", "model", "pretrained", "class_weights", "replicates"]
    );
    for (i, c) in cells.iter().enumerate() {
        let s = |col: &str| {
            df.column(col)
                .unwrap()
                .str()
                .unwrap()
                .get(i)
                .unwrap()
                .to_string()
        };
        let f = |col: &str| df.column(col).unwrap().f64().unwrap().get(i).unwrap();
        assert_eq!(s("cell"), c.name);
        assert_eq!(s("pretrained"), c.params[1].1);
        let n = df.column("n").unwrap().u64().unwrap().get(i).unwrap();
        assert_eq!(n as usize, c.metrics.n);
        let m = &c.metrics;
        assert_eq!(f("accuracy"), m.accuracy);
        assert_eq!(f("balanced_accuracy"), m.balanced_accuracy);
        assert_eq!(f("macro_f1"), m.macro_f1);
        assert_eq!(f("qwk"), m.qwk);
        for g in 0..5 {
            assert_eq!(f(&format!("recall_{g}")), m.recall[g]);
        }
        assert_eq!(f("referable_sens"), m.referable_sensitivity);
        assert_eq!(f("referable_spec"), m.referable_specificity);
        assert_eq!(f("referable_auc"), m.referable_auc);
        let best = c
            .history
            .iter()
            .max_by(|a, b| a.val_acc.total_cmp(&b.val_acc))
            .unwrap();
        assert_eq!(f("best_held_out_acc"), best.val_acc);
        let be = df
            .column("best_epoch")
            .unwrap()
            .u64()
            .unwrap()
            .get(i)
            .unwrap();
        assert_eq!(be as usize, best.epoch);
    }
}

#[test]
fn summary_frame_handles_missing_and_clashing_params_and_no_history() {
    let mut cells = two_cells();
    cells[0].params.push(("accuracy".into(), "x".into()));
    cells[1].history.clear();
    let df = summary_frame(&cells).unwrap();
    let clash = df.column("param_accuracy").unwrap().str().unwrap();
    assert_eq!(clash.get(0), Some("x"));
    assert_eq!(clash.get(1), None);
    assert_eq!(df.column("best_epoch").unwrap().u64().unwrap().get(1), None);
    assert_eq!(
        df.column("best_held_out_acc")
            .unwrap()
            .f64()
            .unwrap()
            .get(1),
        None
    );
    assert_eq!(summary_frame(&[]).unwrap().height(), 0);
}

#[test]
fn best_epoch_takes_the_first_maximum() {
    let mut h = cell("a", "m", &[], [0.5; 5], 4, 3).history;
    for (r, acc) in h.iter_mut().zip([0.70, 0.80, 0.80, f64::NAN]) {
        r.val_acc = acc;
    }
    assert_eq!(table::best_epoch(&h), Some((2, 0.80)));
    // Without a validation split the held-out curve is the test split's (best_test).
    for (r, acc) in h.iter_mut().zip([0.75, 0.70, 0.76, 0.6]) {
        r.val_acc = f64::NAN;
        r.test_acc = acc;
    }
    assert_eq!(table::best_epoch(&h), Some((3, 0.76)));
    assert_eq!(table::best_epoch(&[]), None);
}

#[test]
fn terminal_table_fits_100_columns_and_marks_the_best() {
    let mut cells = eight_cells(3);
    cells[3].name = format!("{}-{}", "x".repeat(80), "tail-differs");
    let text = terminal_table(&cells).unwrap();
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} chars: {line}",
            line.chars().count()
        );
    }
    assert!(
        text.contains("tail-differs"),
        "shortening keeps the end of the name"
    );
    // Too long to fit: rows are numbered and every full name is in the key.
    assert!(text.starts_with('#'));
    for c in &cells[..3] {
        assert!(text.contains(&c.name), "{} missing", c.name);
    }

    let cells = two_cells();
    let text = terminal_table(&cells).unwrap();
    // The table's rows follow its header line, named or numbered.
    let row = |name: &str| {
        let i = cells.iter().position(|c| c.name == name).unwrap();
        text.lines().nth(1 + i).unwrap().to_string()
    };
    let acc = |c: &CellResult| format!("{:.1}", c.metrics.accuracy * 100.0);
    assert!(cells[0].metrics.accuracy > cells[1].metrics.accuracy);
    assert!(row("plain").contains(&format!("{}*", acc(&cells[0]))));
    assert!(!row("weighted").contains(&format!("{}*", acc(&cells[1]))));
    let r1 = |c: &CellResult| format!("{:.1}*", c.metrics.recall[1] * 100.0);
    assert!(row("weighted").contains(&r1(&cells[1])));
    // One cell: nothing to compare, nothing marked.
    let one = terminal_table(&cells[..1]).unwrap();
    assert!(!one.lines().nth(1).unwrap().contains('*'), "{one}");
}

#[test]
fn markdown_bolds_the_best_value_per_metric() {
    let cells = two_cells();
    let md = table::markdown("t", &cells);
    let acc0 = format!("**{:.1} [", cells[0].metrics.accuracy * 100.0);
    let acc1 = format!("**{:.1} [", cells[1].metrics.accuracy * 100.0);
    let plain = md.lines().find(|l| l.starts_with("| plain")).unwrap();
    let weighted = md.lines().find(|l| l.starts_with("| weighted")).unwrap();
    assert!(plain.contains(&acc0));
    assert!(!weighted.contains(&acc1));
    // Every row has as many cells as the header.
    let bars = |l: &str| l.matches(" | ").count();
    assert_eq!(bars(plain), bars(md.lines().nth(2).unwrap()));
    assert_eq!(METRICS.len(), 13);
}

#[test]
fn shorten_keeps_both_ends() {
    assert_eq!(shorten("abcdefghij", 10), "abcdefghij");
    assert_eq!(shorten("abcdefghij", 5), "ab…ij");
    assert_eq!(shorten("abcdefghij", 1), "…");
    assert_eq!(shorten("abc", 0), "");
}

#[test]
fn file_stems_are_safe_and_unique() {
    assert_eq!(file_stem("lr=0.1 / seed 2"), "lr-0.1---seed-2");
    assert_eq!(file_stem(".hidden"), "_hidden");
    assert_eq!(file_stem(""), "_");
    assert_eq!(
        unique_stems(["a:b", "a=b", "A-B", "c"]),
        ["a-b", "a-b-2", "A-B-3", "c"]
    );
}

fn assert_png_drawn(path: &Path) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    assert!(
        img.width() >= 300 && img.height() >= 300,
        "{}",
        path.display()
    );
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let share = ink as f64 / (img.width() * img.height()) as f64;
    assert!(
        share > 0.005,
        "{} is nearly blank ({share:.4} drawn)",
        path.display()
    );
}

/// Every `src="..."` and `href="..."` target in the page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            out.push(part.split('"').next().unwrap().to_string());
        }
    }
    out
}

#[test]
fn write_report_writes_every_listed_file_and_links_only_existing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cells = two_cells();
    cells.push(cell(
        "r50",
        "resnet50",
        &[("weights", "none")],
        [0.9; 5],
        3,
        3,
    ));
    let out = write_report("Test <report>", &cells, dir.path()).unwrap();
    assert!(!out.table_text.is_empty());
    let names: Vec<String> = out
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "summary.csv",
        "summary.parquet",
        "summary.md",
        "index.html",
        "accuracy-resnet18.png",
        "accuracy-resnet50.svg",
        "loss.png",
        "recall.png",
        "confusion-plain.png",
        "confusion-weighted.svg",
        "confusion-r50.png",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for p in &out.files {
        assert!(p.starts_with(dir.path()));
        assert!(
            std::fs::metadata(p).unwrap().len() > 0,
            "{} is empty",
            p.display()
        );
        if p.extension().is_some_and(|e| e == "png") {
            assert_png_drawn(p);
        }
        if p.extension().is_some_and(|e| e == "svg") {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<text"),
                "{}",
                p.display()
            );
        }
    }
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    // Every PNG is shown once, with a caption; the guide explains the metrics.
    let pngs = names.iter().filter(|n| n.ends_with(".png")).count();
    assert_eq!(html.matches("<figure>").count(), pngs);
    assert_eq!(html.matches("<figcaption>").count(), pngs);
    assert!(html.contains("How to read this") && html.contains("QWK"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("Test &lt;report&gt;"));
    let targets = links(&html);
    assert!(targets.len() >= 12);
    for t in targets {
        assert!(
            !t.contains('/') && !t.contains(':'),
            "not a relative file link: {t}"
        );
        assert!(
            dir.path().join(&t).is_file(),
            "index.html links to missing {t}"
        );
    }
    // The parquet file holds the summary frame.
    let file = std::fs::File::open(dir.path().join("summary.parquet")).unwrap();
    let back = ParquetReader::new(file).finish().unwrap();
    assert!(back.equals_missing(&summary_frame(&cells).unwrap()));
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + cells.len());
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .starts_with("cell,weights,replicates,n,accuracy,accuracy_lo,accuracy_hi,"));
}

#[test]
fn one_cell_one_epoch_and_no_history_still_report() {
    let dir = tempfile::tempdir().unwrap();
    let cells = vec![cell(
        "only",
        "resnet18",
        &[],
        [0.9, 0.1, 0.5, 0.2, 0.3],
        1,
        4,
    )];
    let out = write_report("one", &cells, dir.path()).unwrap();
    assert!(dir.path().join("accuracy-resnet18.png").is_file());
    for p in out
        .files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
    {
        assert_png_drawn(p);
    }

    let dir = tempfile::tempdir().unwrap();
    let mut cells = cells;
    cells[0].history.clear();
    let out = write_report("no history", &cells, dir.path()).unwrap();
    assert!(!dir.path().join("accuracy-resnet18.png").exists());
    assert!(!dir.path().join("loss.png").exists());
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    for t in links(&html) {
        assert!(
            dir.path().join(&t).is_file(),
            "index.html links to missing {t}"
        );
    }
    assert!(out.files.iter().all(|p| p.is_file()));
}

#[test]
fn write_report_refuses_no_cells() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_report("empty", &[], dir.path()).unwrap_err();
    assert!(err.to_string().contains("no cells"), "{err}");
}
