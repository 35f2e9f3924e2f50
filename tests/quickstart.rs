//! The whole path a new user takes, at tiny scale, through the real binary and the shipped
//! pipeline: synthetic data -> audit -> stats -> images -> train -> evaluate -> report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The quickstart experiment with every size turned down.
fn tiny_experiment(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("experiments/quickstart.toml")).unwrap();
    let pipeline = repo().join("pipelines/retinopathy.toml");
    let text = text
        .replace(
            "\"../pipelines/retinopathy.toml\"",
            &format!("{:?}", pipeline.display().to_string()),
        )
        .replace("images = 400", "images = 60")
        .replace("size = 128", "size = 64")
        .replace("image_size = 64", "image_size = 32")
        .replace("batch_size = 32", "batch_size = 8")
        .replace("epochs = 6", "epochs = 2");
    assert!(
        text.contains("images = 60") && text.contains("epochs = 2"),
        "quickstart.toml changed shape: update this test"
    );
    let path = dir.join("quickstart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn drpipe(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .current_dir(dir)
        .args(args)
        .env("DRPIPE_OUTPUTS", dir.join("outputs"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    out
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drpipe failed: {}\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

fn plan_json(dir: &Path, exp: &Path, sets: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["plan", exp.to_str().unwrap(), "--json"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = drpipe(dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn to_run(plan: &[serde_json::Value]) -> Vec<String> {
    plan.iter()
        .filter(|r| r["status"] == "run")
        .map(|r| {
            format!(
                "{}{}",
                r["stage"].as_str().unwrap(),
                r["cell"]
                    .as_str()
                    .map(|c| format!("@{c}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn quickstart_end_to_end_then_cached_then_partial_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = tiny_experiment(dir);
    let exp_s = exp.to_str().unwrap();

    ok(drpipe(dir, &["run", exp_s, "-q"]));
    let view = dir.join("outputs/experiments/quickstart");
    let cells = ["cw_none", "cw_inverse_frequency"];
    for cell in cells {
        for (stage, file) in [
            ("dataset", "dataset.json"),
            ("audit", "audit.csv"),
            ("stats", "split.csv"),
            ("images", "train/index.csv"),
            ("train", "history.csv"),
            ("train", "best.safetensors"),
            ("evaluate", "predictions.csv"),
            ("evaluate", "metrics.json"),
        ] {
            let p = view.join("cells").join(cell).join(stage).join(file);
            assert!(p.is_file(), "missing {}", p.display());
        }
    }
    // The synthetic set plants broken files; the audit must have found them.
    let audit = std::fs::read_to_string(view.join("cells/cw_none/audit/audit.csv")).unwrap();
    assert!(
        audit.contains(",repaired,") && audit.contains(",dropped,"),
        "{audit}"
    );

    // The report's numbers are each cell's metrics.json.
    let report = view.join("report");
    let summary = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let acc_col = header
        .iter()
        .position(|h| *h == "accuracy")
        .expect("accuracy column");
    let cell_col = header
        .iter()
        .position(|h| *h == "cell")
        .expect("cell column");
    for line in summary.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                view.join("cells")
                    .join(f[cell_col])
                    .join("evaluate/metrics.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let reported: f64 = f[acc_col].parse().unwrap();
        assert!(
            (reported - m["accuracy"].as_f64().unwrap()).abs() < 1e-9,
            "{line}"
        );
    }
    assert_eq!(summary.lines().count(), 3);
    // Every file index.html references exists.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let mut refs = 0;
    for part in html
        .split("src=\"")
        .skip(1)
        .chain(html.split("href=\"").skip(1))
    {
        let target = part.split('"').next().unwrap();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        refs += 1;
        assert!(
            report.join(target).is_file(),
            "index.html references missing {target}"
        );
    }
    assert!(refs >= 4, "index.html should show the figures");

    // Unchanged: everything cached.
    assert!(to_run(&plan_json(dir, &exp, &[])).is_empty());
    let again = ok(drpipe(dir, &["run", exp_s]));
    assert!(again.contains("0 ran"), "{again}");

    // A report-only change reruns only the report; a training change reruns train, evaluate
    // and the report for every cell, and nothing upstream of training.
    assert_eq!(to_run(&plan_json(dir, &exp, &["title=Tiny"])), ["report"]);
    let mut lr = to_run(&plan_json(dir, &exp, &["lr=0.05"]));
    lr.sort();
    assert_eq!(
        lr,
        [
            "evaluate@cw_inverse_frequency",
            "evaluate@cw_none",
            "report",
            "train@cw_inverse_frequency",
            "train@cw_none"
        ]
    );
    let plan = plan_json(dir, &exp, &["lr=0.05"]);
    let train = plan.iter().find(|r| r["stage"] == "train").unwrap();
    assert_eq!(train["reason"], "param lr changed: 0.02 -> 0.05");
    ok(drpipe(dir, &["run", exp_s, "--set", "title=Tiny", "-q"]));
    assert!(to_run(&plan_json(dir, &exp, &["title=Tiny"])).is_empty());
    let shown = ok(drpipe(dir, &["show", "quickstart"]));
    assert!(shown.contains("cw_inverse_frequency"), "{shown}");
}

#[test]
fn malformed_experiment_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = tiny_experiment(dir);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("model = \"resnet18\"", "model = \"resnet19\"");
    std::fs::write(&exp, text).unwrap();
    let out = drpipe(dir, &["run", exp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quickstart.toml:") && err.contains("resnet19") && err.contains("resnet18"),
        "{err}"
    );
    assert!(
        !dir.join("outputs/cache/dataset").exists(),
        "nothing may run"
    );
}
