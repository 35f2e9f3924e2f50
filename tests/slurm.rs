//! `--executor slurm` against a real Slurm: `.ci/run` starts one on the CI machine
//! (`.ci/slurm-localhost.sh`) and sets DRPIPE_SLURM_TESTS=1, and then these tests fail when
//! Slurm is missing rather than skip. Without that variable they say they were skipped: a
//! developer's machine may be a cluster's login node, and tests must not submit jobs there.
//! The tests share the one node, so they take turns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::{drpipe, ok, tiny_experiment};

static NODE: Mutex<()> = Mutex::new(());

fn slurm_or_skip(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if std::env::var("DRPIPE_SLURM_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "{test}: skipped, DRPIPE_SLURM_TESTS is not 1 (.ci/run sets it after starting Slurm)"
        );
        return None;
    }
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    assert!(
        up,
        "DRPIPE_SLURM_TESTS=1 but Slurm does not answer (sinfo failed): start it with \
         `.ci/slurm-localhost.sh install && .ci/slurm-localhost.sh start` and export SLURM_CONF"
    );
    Some(NODE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The tiny two-cell quickstart, with a Slurm section that looks at the queue often.
fn experiment(dir: &Path, extra: &str) -> PathBuf {
    let exp = tiny_experiment(dir);
    let mut text = std::fs::read_to_string(&exp).unwrap();
    text.push_str(&format!(
        "\n[executor.slurm]\npoll_seconds = 1\nlost_after_seconds = 3\nretries = 1\n{extra}\n"
    ));
    std::fs::write(&exp, text).unwrap();
    exp
}

fn summary(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("outputs/experiments/quickstart/report/summary.csv")).unwrap()
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let p = dir.join("outputs/jobs/quickstart/journal.jsonl");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (stage, job id) of every submission, in order.
fn submissions(dir: &Path) -> Vec<(String, String)> {
    journal(dir)
        .iter()
        .filter(|r| r["event"] == "submitted")
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["job"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .current_dir(dir)
        .args(args)
        .env("DRPIPE_OUTPUTS", dir.join("outputs"))
        .env("HF_HUB_OFFLINE", "1")
        .env("DRPIPE_CONFIG", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn state(job: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%T", "-j", job])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until a `train` job of this run is RUNNING; returns its id.
fn running_train(dir: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Some((_, job)) = submissions(dir)
            .into_iter()
            .find(|(s, job)| s == "train" && state(job) == "RUNNING")
        {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no train job ran: {:?}",
            journal(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn local_summary(tmp: &Path) -> String {
    let local = tmp.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let exp = experiment(&local, "");
    ok(drpipe(&local, &["run", exp.to_str().unwrap()]));
    summary(&local)
}

#[test]
fn two_cells_through_slurm_equal_the_local_run_and_a_cached_rerun_submits_nothing() {
    let Some(_node) = slurm_or_skip("two_cells_through_slurm") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let expected = local_summary(tmp.path());
    let dir = tmp.path().join("slurm");
    std::fs::create_dir_all(&dir).unwrap();
    let exp = experiment(&dir, "");
    let e = exp.to_str().unwrap();
    let out = ok(drpipe(&dir, &["run", e, "--executor", "slurm"]));
    assert!(out.contains("as job"), "{out}");
    assert_eq!(summary(&dir), expected, "Slurm and local runs disagree");
    let jobs = submissions(&dir);
    // dataset, audit, stats, images once; train and evaluate per cell; the report.
    assert_eq!(jobs.len(), 9, "{jobs:?}");
    let names: String = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%j|%k", "-j"])
        .arg(
            jobs.iter()
                .map(|j| j.1.clone())
                .collect::<Vec<_>>()
                .join(","),
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    assert!(
        names.contains("train.cw_none.quickstart|drpipe:train:"),
        "{names}"
    );

    let again = ok(drpipe(&dir, &["run", e, "--executor", "slurm"]));
    assert!(!again.contains("as job"), "{again}");
    assert_eq!(submissions(&dir).len(), 9, "a cached run submitted jobs");
}

#[test]
fn a_killed_driver_adopts_its_jobs_and_a_cancelled_job_is_retried() {
    let Some(_node) = slurm_or_skip("a_killed_driver_adopts_its_jobs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let expected = local_summary(tmp.path());
    let dir = tmp.path().join("slurm");
    std::fs::create_dir_all(&dir).unwrap();
    let exp = experiment(&dir, "");
    let e = exp.to_str().unwrap();
    let mut driver = spawn(&dir, &["run", e, "--executor", "slurm"]);
    let first = running_train(&dir);
    driver.kill().unwrap(); // SIGKILL: no clean-up runs
    driver.wait().unwrap();
    let before = submissions(&dir);

    let driver = spawn(&dir, &["run", e, "--executor", "slurm"]);
    // Cancel a training job of the new driver's run: it must be submitted again.
    std::thread::sleep(Duration::from_millis(500));
    let victim = running_train(&dir);
    Command::new("scancel").arg(&victim).status().unwrap();
    let out = driver.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("adopted"),
        "the restarted driver adopted nothing:\n{text}"
    );
    assert!(text.contains("retry"), "{text}");
    assert_eq!(summary(&dir), expected);

    let after = submissions(&dir);
    // Each stage instance submitted once, except the cancelled training (twice) and what
    // waited on it (its evaluation and the report, cancelled with it and submitted again).
    let mut per_key = std::collections::BTreeMap::new();
    for r in journal(&dir).iter().filter(|r| r["event"] == "submitted") {
        let k = (
            r["stage"].as_str().unwrap().to_string(),
            r["key"].as_str().unwrap().to_string(),
        );
        *per_key.entry(k).or_insert(0) += 1;
    }
    let times = |stage: &str| -> Vec<i32> {
        let mut v: Vec<i32> = per_key
            .iter()
            .filter(|((s, _), _)| s == stage)
            .map(|(_, n)| *n)
            .collect();
        v.sort();
        v
    };
    for stage in ["dataset", "audit", "stats", "images"] {
        assert_eq!(
            times(stage),
            [1],
            "{stage}: {per_key:?}\nbefore the kill: {before:?}"
        );
    }
    assert_eq!(
        times("train"),
        [1, 2],
        "{per_key:?}\nbefore the kill: {before:?}"
    );
    assert!(times("evaluate").iter().all(|n| *n <= 2) && times("report").iter().all(|n| *n <= 2));
    assert!(after.iter().any(|(_, j)| *j == first), "{after:?}");
    assert_eq!(state(&victim), "CANCELLED");
}

#[test]
fn a_failing_cell_fails_alone_and_a_gpu_request_reaches_a_gres_node() {
    let Some(_node) = slurm_or_skip("a_failing_cell_fails_alone") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not weights at all").unwrap();
    // The GPU request: the node has two fake GPUs; the job sees one and trains on the CPU
    // (this build has no CUDA), which is what `device = "auto"` does there.
    let exp = experiment(dir, "[executor.slurm.stages.train]\ngpus = \"1\"\n");
    let set = format!("matrix.pretrained=[false, {:?}]", bad.display().to_string());
    let out = drpipe(
        dir,
        &[
            "run",
            exp.to_str().unwrap(),
            "--executor",
            "slurm",
            "--set",
            "matrix.class_weights=[\"none\"]",
            "--set",
            &set,
        ],
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED") && text.contains("log:"), "{text}");
    let trains: Vec<_> = submissions(dir)
        .into_iter()
        .filter(|(s, _)| s == "train")
        .collect();
    // The good cell once; the bad one once plus its retry.
    assert_eq!(trains.len(), 3, "{trains:?}\n{text}");
    let good = dir.join("outputs/experiments/quickstart/cells");
    let evaluated: Vec<_> = std::fs::read_dir(&good)
        .unwrap()
        .flatten()
        .filter(|c| c.path().join("evaluate/metrics.json").is_file())
        .collect();
    assert_eq!(
        evaluated.len(),
        1,
        "the good cell was not evaluated:\n{text}"
    );
    // The failed training's partial entry stays reachable from its cell's view.
    let building = std::fs::read_dir(&good)
        .unwrap()
        .flatten()
        .filter(|c| c.path().join("train.building").is_dir())
        .count();
    assert_eq!(building, 1, "{text}");
    let logs: String = std::fs::read_dir(dir.join("outputs/jobs/quickstart"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("train-"))
        .flat_map(|d| std::fs::read_to_string(d.path().join("job.sh")))
        .collect();
    assert!(logs.contains("DRPIPE_JOB_GPUS=1"), "{logs}");
}

#[test]
fn detach_returns_at_once_and_a_later_run_picks_the_jobs_up() {
    let Some(_node) = slurm_or_skip("detach") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = experiment(dir, "max_queued = 4");
    let e = exp.to_str().unwrap();
    let out = ok(drpipe(dir, &["run", e, "--executor", "slurm", "--detach"]));
    assert!(out.contains("4 job(s) queued (5 more wait"), "{out}");
    assert_eq!(submissions(dir).len(), 4);
    let status = ok(drpipe(dir, &["status", e]));
    assert!(
        status.contains("queued") || status.contains("running"),
        "{status}"
    );
    let out = ok(drpipe(dir, &["run", e, "--executor", "slurm"]));
    assert!(out.contains("adopted"), "{out}");
    assert_eq!(submissions(dir).len(), 9);
    let status = ok(drpipe(dir, &["status", e]));
    assert!(status.contains("9 of 9 cached"), "{status}");
}

#[test]
fn a_job_killed_on_its_node_is_retried_with_what_waited_on_it() {
    let Some(_node) = slurm_or_skip("a_job_killed_on_its_node") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exp = experiment(dir, "");
    let e = exp.to_str().unwrap();
    let one = "matrix.class_weights=[\"none\"]";
    ok(drpipe(
        dir,
        &["run", e, "--executor", "slurm", "--detach", "--set", one],
    ));
    running_train(dir);
    // The job's process dies (OOM killer, a crash): Slurm says FAILED, no exit record, and
    // Slurm cancels the evaluation waiting on it; the driver must not count that as the
    // evaluation's own failure.
    let pid = loop {
        let out = Command::new("pgrep")
            .args(["-f", &format!("job {e} .*--stage train")])
            .output()
            .unwrap();
        if let Some(p) = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
        {
            break p.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    let out = ok(drpipe(
        dir,
        &["run", e, "--executor", "slurm", "--set", one],
    ));
    // Seen dead by the new driver (submitted again) or while it watched (a retry, whose
    // reason may quote Slurm's FAILED state): no instance failed or was skipped.
    let failed_or_skipped = out.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("FAILED") || l.starts_with("skipped")
    });
    assert!(!failed_or_skipped, "{out}");
    let stages: Vec<String> = submissions(dir).into_iter().map(|(s, _)| s).collect();
    let count = |s: &str| stages.iter().filter(|x| *x == s).count();
    assert_eq!(
        (count("train"), count("evaluate"), count("report")),
        (2, 2, 2),
        "{stages:?}"
    );
}

#[test]
fn a_training_warned_before_its_time_limit_checkpoints_and_the_next_job_resumes_it() {
    let Some(_node) = slurm_or_skip("a_training_warned_before_its_time_limit") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that the warning lands mid-training.
    let sets = [
        "--set",
        "matrix.class_weights=[\"none\"]",
        "--set",
        "epochs=12",
    ];
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let exp = experiment(&local, "");
    let mut args = vec!["run", exp.to_str().unwrap()];
    args.extend(sets);
    ok(drpipe(&local, &args));
    let expected = summary(&local);

    let dir = tmp.path().join("slurm");
    std::fs::create_dir_all(&dir).unwrap();
    let exp = experiment(&dir, "");
    let mut args = vec!["run", exp.to_str().unwrap(), "--executor", "slurm"];
    args.extend(sets);
    // No retries: handing the training on to the next job must not count as one.
    args.extend(["--set", "executor.slurm.retries=0"]);
    let driver = spawn(&dir, &args);
    let job = running_train(&dir);
    // Once an epoch is done (its history row), send what `signal_before` makes Slurm send.
    let cells = dir.join("outputs/experiments/quickstart/cells");
    let start = Instant::now();
    while !std::fs::read_dir(&cells)
        .map(|d| {
            d.flatten()
                .any(|c| c.path().join("train.building/history.csv").is_file())
        })
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &job])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = driver.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("resume") && text.contains(&format!("job {job} checkpointed")),
        "{text}"
    );
    let trains: Vec<String> = submissions(&dir)
        .into_iter()
        .filter(|(s, _)| s == "train")
        .map(|(_, j)| j)
        .collect();
    assert_eq!(trains.len(), 2, "{trains:?}");
    let log = std::fs::read_dir(dir.join("outputs/jobs/quickstart"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join(format!("slurm-{}.log", trains[1])))
        .find(|p| p.is_file())
        .expect("the second training job's log");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("resumed after epoch"), "{log}");
    assert_eq!(summary(&dir), expected);
}
