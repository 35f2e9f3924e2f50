//! The whole path a new user takes, at tiny scale, through the real binary and the shipped
//! pipeline: synthetic data -> audit -> stats -> images -> train -> evaluate -> report.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{drpipe, ok, tiny_experiment};

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
        // The link to a training in progress goes once it is committed.
        let building = view.join("cells").join(cell).join("train.building");
        assert!(!building.is_symlink(), "{} left behind", building.display());
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
    assert_eq!(train["reason"], "param lr changed: 0.0003 -> 0.05");
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

/// "done in 1.2s: 3 ran, 8 cached" -> (3, 8)
fn ran_cached(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("done in"))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    // "done in 1.2s: 3 ran, 8 cached. Results: /path" (the path may hold digits too)
    let counts = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(". Results")
        .next()
        .unwrap();
    let num = |word: &str| -> usize {
        let part = counts
            .split(", ")
            .find(|p| p.ends_with(word))
            .unwrap_or_else(|| panic!("{line}"));
        part.split(' ').next().unwrap().parse().unwrap()
    };
    (num("ran"), num("cached"))
}

#[test]
fn two_runs_started_together_both_succeed_and_build_each_entry_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = tiny_experiment(dir);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_drpipe"))
            .current_dir(dir)
            .args(["run", exp.to_str().unwrap()])
            .env("DRPIPE_OUTPUTS", dir.join("outputs"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ea, eb) = (
        String::from_utf8_lossy(&a.stderr).into_owned(),
        String::from_utf8_lossy(&b.stderr).into_owned(),
    );
    assert!(a.status.success() && b.status.success(), "{ea}\n---\n{eb}");
    let ((ran_a, cached_a), (ran_b, cached_b)) = (ran_cached(&ea), ran_cached(&eb));
    let instances = plan_json(dir, &exp, &[]).len();
    assert_eq!(ran_a + cached_a, instances);
    assert_eq!(ran_b + cached_b, instances);
    assert_eq!(
        ran_a + ran_b,
        instances,
        "every entry built by exactly one of the two runs\n{ea}\n---\n{eb}"
    );
    assert!(
        ea.contains("waiting")
            || eb.contains("waiting")
            || ea.contains("reused")
            || eb.contains("reused"),
        "{ea}\n---\n{eb}"
    );
}

#[test]
fn predict_grades_good_images_and_reports_broken_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = tiny_experiment(dir);
    ok(drpipe(
        dir,
        &[
            "run",
            exp.to_str().unwrap(),
            "-q",
            "--set",
            "matrix.class_weights=[\"none\"]",
        ],
    ));
    let cell = dir.join("outputs/experiments/quickstart/cells/default");
    // Two good images from the generated set, one broken file, one missing.
    let images = cell.join("dataset/data/train");
    let audit = std::fs::read_to_string(cell.join("audit/audit.csv")).unwrap();
    let ok_names: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains(",ok,"))
        .map(|l| l.split(',').next().unwrap())
        .take(2)
        .collect();
    let good: Vec<PathBuf> = ok_names
        .iter()
        .map(|n| images.join(format!("{n}.jpeg")))
        .collect();
    let broken = dir.join("broken.jpeg");
    std::fs::write(&broken, b"\xFF\xD8 this is not a picture").unwrap();
    let missing = dir.join("missing.jpeg");
    let args: Vec<String> = ["predict", "--cell", cell.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .chain(
            [&good[0], &broken, &good[1], &missing]
                .iter()
                .map(|p| p.display().to_string()),
        )
        .collect();
    let out = drpipe(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken images make the exit status non-zero"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows[0], "image,pred,p0,p1,p2,p3,p4");
    assert_eq!(rows.len(), 3, "a row for each good image only: {stdout}");
    for (row, path) in rows[1..].iter().zip(&good) {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[0], path.display().to_string());
        let p: Vec<f64> = f[2..].iter().map(|x| x.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row}");
        let pred: usize = f[1].parse().unwrap();
        assert!(p.iter().all(|&x| x <= p[pred]), "pred is the argmax: {row}");
    }
    assert!(
        stderr.contains("broken.jpeg") && stderr.contains("missing.jpeg"),
        "{stderr}"
    );
    // --logits prints raw logits instead.
    let out = drpipe(
        dir,
        &[
            "predict",
            "--cell",
            cell.to_str().unwrap(),
            "--logits",
            good[0].to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("image,pred,logit0,logit1,logit2,logit3,logit4\n"));
}

#[test]
fn the_user_config_is_read_and_its_mistakes_name_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = tiny_experiment(dir);
    let config = dir.join("config.toml");
    std::fs::write(&config, "[executor.slurm]\npartiton = \"gpu\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .current_dir(dir)
        .args(["plan", exp.to_str().unwrap()])
        .env("DRPIPE_OUTPUTS", dir.join("outputs"))
        .env("DRPIPE_CONFIG", &config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("config.toml:2") && stderr.contains("executor.slurm.partiton"),
        "{stderr}"
    );
}
