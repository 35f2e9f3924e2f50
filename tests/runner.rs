//! The runner core (spec -> plan -> exec -> cache) with small test-only stages, so that
//! caching, reasons, locking and failure handling are checked in milliseconds.

use drpipe::cache::{FileHasher, Store};
use drpipe::exec::{self, Event, ExecOptions, Outcome};
use drpipe::plan::{self, Plan, PlanOptions, Status};
use drpipe::stages::{Registry, Stage, StageCtx};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Counts how often each (stage, key-ish) ran, across threads.
type Runs = Arc<Mutex<BTreeMap<String, usize>>>;

struct TestStage {
    name: &'static str,
    runs: Runs,
    delay_ms: u64,
}

impl Stage for TestStage {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn run(&self, ctx: &StageCtx) -> anyhow::Result<String> {
        std::thread::sleep(std::time::Duration::from_millis(self.delay_ms));
        if ctx.params.get("lr").and_then(|v| v.as_f64()) == Some(6.66) {
            anyhow::bail!("lr 6.66 is cursed");
        }
        let upstream: Vec<String> = ctx
            .upstream
            .iter()
            .map(|u| std::fs::read_to_string(u.dir.join("out.txt")).unwrap())
            .collect();
        let text = format!("{}({:?})<-[{}]", self.name, ctx.params, upstream.join(","));
        std::fs::write(ctx.out.join("out.txt"), &text)?;
        *self
            .runs
            .lock()
            .unwrap()
            .entry(self.name.to_string())
            .or_default() += 1;
        Ok(text.len().to_string())
    }
}

fn registry(runs: &Runs, delay_ms: u64) -> Registry {
    Registry::new(
        ["gen", "fit", "eval", "summary"]
            .into_iter()
            .map(|name| {
                Box::new(TestStage {
                    name,
                    runs: runs.clone(),
                    delay_ms,
                }) as Box<dyn Stage>
            })
            .collect(),
    )
}

const PIPELINE: &str = r#"
[stages.gen]
scope = "dataset"
params = ["dataset"]
[stages.fit]
after = ["gen"]
params = ["model", "lr"]
[stages.eval]
after = ["fit"]
params = ["tta"]
[stages.summary]
after = ["eval"]
scope = "experiment"
params = ["title"]
"#;

const EXPERIMENT: &str = r#"
pipeline = "p.toml"
[dataset]
source = "synthetic"
[params]
lr = 0.1
[matrix]
model = ["resnet18", "resnet50"]
"#;

struct World {
    dir: tempfile::TempDir,
    runs: Runs,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), PIPELINE).unwrap();
        std::fs::write(dir.path().join("e.toml"), EXPERIMENT).unwrap();
        World {
            dir,
            runs: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn outputs(&self) -> PathBuf {
        self.dir.path().join("outputs")
    }

    fn plan(&self, sets: &[&str]) -> Plan {
        let reg = registry(&self.runs, 0);
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let exp = drpipe::spec::load(&self.dir.path().join("e.toml"), &sets, &reg.names()).unwrap();
        let store = Store::open(&self.outputs()).unwrap();
        plan::build(
            &exp,
            &reg,
            &store,
            &FileHasher::in_memory(),
            &PlanOptions {
                force: &[],
                outputs: &self.outputs(),
                progress: drpipe::Progress::hidden(),
            },
        )
        .unwrap()
    }

    fn run(&self, sets: &[&str]) -> (Outcome, Vec<Event>) {
        run_in(self.dir.path(), &self.outputs(), &self.runs, sets, 0)
    }

    fn take_runs(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.runs.lock().unwrap())
    }
}

fn run_in(
    dir: &Path,
    outputs: &Path,
    runs: &Runs,
    sets: &[&str],
    delay_ms: u64,
) -> (Outcome, Vec<Event>) {
    let reg = registry(runs, delay_ms);
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let exp = drpipe::spec::load(&dir.join("e.toml"), &sets, &reg.names()).unwrap();
    let store = Store::open(outputs).unwrap();
    let hasher = FileHasher::in_memory();
    let p = plan::build(
        &exp,
        &reg,
        &store,
        &hasher,
        &PlanOptions {
            force: &[],
            outputs,
            progress: drpipe::Progress::hidden(),
        },
    )
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let listener = Arc::new(move |e: Event| sink.lock().unwrap().push(e));
    let outcome = exec::execute(
        &exp,
        &p,
        &reg,
        &store,
        &hasher,
        &ExecOptions {
            jobs: 2,
            force: &[],
            outputs,
        },
        listener,
    );
    let events = events.lock().unwrap().clone();
    (outcome, events)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn reasons(p: &Plan) -> Vec<(String, Option<String>, String)> {
    p.rows()
        .into_iter()
        .filter(|r| r.status == Status::Run)
        .map(|r| (r.stage.to_string(), r.cell.map(String::from), r.reason))
        .collect()
}

#[test]
fn second_run_is_all_cached() {
    let w = World::new();
    let (o, _) = w.run(&[]);
    assert_eq!((o.ran, o.cached, o.failed.len()), (6, 0, 0));
    // gen is shared by both cells: built once.
    assert_eq!(
        w.take_runs(),
        counts(&[("eval", 2), ("fit", 2), ("gen", 1), ("summary", 1)])
    );
    assert!(w
        .plan(&[])
        .instances
        .iter()
        .all(|i| i.status == Status::Cached));
    let (o, _) = w.run(&[]);
    assert_eq!((o.ran, o.cached), (0, 6));
    assert!(w.take_runs().is_empty());
    // The experiment's view links each cell's stages and the summary.
    let view = w.outputs().join("experiments/e");
    assert!(view.join("cells/resnet18/fit/out.txt").is_file());
    assert!(view.join("cells/resnet50/gen/manifest.json").is_file());
    assert!(std::fs::read_to_string(view.join("summary/out.txt"))
        .unwrap()
        .starts_with("summary"));
}

#[test]
fn changing_one_matrix_value_reruns_only_that_cell_and_the_summary() {
    let w = World::new();
    w.run(&[]);
    w.take_runs();
    let sets = ["matrix.model=[\"resnet18\", \"resnet34\"]"];
    // resnet34 is not a model: the spec refuses it before anything runs.
    let reg = registry(&w.runs, 0);
    let err = drpipe::spec::load(
        &w.dir.path().join("e.toml"),
        &[sets[0].to_string()],
        &reg.names(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("resnet34"));
    let sets = ["lr=0.1", "matrix.model=[\"resnet18\"]", "matrix.seed=[0]"];
    let p = w.plan(&sets);
    assert_eq!(p.to_run(), 1, "{:?}", reasons(&p)); // same cells, one fewer: only the summary
    let p = w.plan(&["matrix.lr=[0.1, 0.2]"]);
    let r = reasons(&p);
    // 4 cells now (model x lr); the two lr=0.1 cells are cached under new names.
    assert!(r.iter().all(|(stage, _, _)| stage != "gen"), "{r:?}");
    let fits: Vec<_> = r.iter().filter(|(s, _, _)| s == "fit").collect();
    assert_eq!(fits.len(), 2, "{r:?}");
    let (o, _) = w.run(&["matrix.lr=[0.1, 0.2]"]);
    assert_eq!(o.failed.len(), 0);
    assert_eq!(
        w.take_runs(),
        counts(&[("eval", 2), ("fit", 2), ("summary", 1)])
    );
}

#[test]
fn plan_names_the_changed_param_and_upstream() {
    let w = World::new();
    w.run(&[]);
    w.take_runs();
    let p = w.plan(&["lr=0.2"]);
    let r = reasons(&p);
    let fit = r
        .iter()
        .find(|(s, c, _)| s == "fit" && c.as_deref() == Some("resnet18"))
        .unwrap();
    assert_eq!(fit.2, "param lr changed: 0.1 -> 0.2");
    let eval = r.iter().find(|(s, _, _)| s == "eval").unwrap();
    assert_eq!(eval.2, "upstream fit changed");
    assert!(
        r.iter()
            .any(|(s, _, why)| s == "summary" && why.contains("upstream eval changed (2 entries)")),
        "{r:?}"
    );
    assert!(!r.iter().any(|(s, _, _)| s == "gen"));
}

#[test]
fn report_only_param_reruns_only_the_report_and_undeclared_params_change_nothing() {
    let w = World::new();
    w.run(&[]);
    w.take_runs();
    // `momentum` is declared by no test stage: nothing reruns.
    assert_eq!(w.plan(&["momentum=0.5"]).to_run(), 0);
    let p = w.plan(&["title=\"Class weights\""]);
    assert_eq!(
        reasons(&p),
        vec![(
            "summary".to_string(),
            None,
            "param title changed: \"e\" -> \"Class weights\"".to_string()
        )]
    );
    w.run(&["title=\"Class weights\""]);
    assert_eq!(w.take_runs(), counts(&[("summary", 1)]));
}

#[test]
fn deleting_an_entry_reruns_it_and_only_what_it_feeds() {
    let w = World::new();
    w.run(&[]);
    w.take_runs();
    let p = w.plan(&[]);
    let fit = p
        .instances
        .iter()
        .find(|i| i.stage == "fit" && i.cells == ["resnet50"])
        .unwrap();
    std::fs::remove_dir_all(w.outputs().join("cache/fit").join(&fit.key)).unwrap();
    let p = w.plan(&[]);
    assert_eq!(
        reasons(&p),
        vec![(
            "fit".to_string(),
            Some("resnet50".to_string()),
            "cache entry was deleted".to_string()
        )]
    );
    w.run(&[]);
    // Same inputs, same key: its dependents' keys are unchanged, so they stay cached.
    assert_eq!(w.take_runs(), counts(&[("fit", 1)]));
}

#[test]
fn two_overlapping_runs_build_each_entry_once() {
    let w = World::new();
    let (dir, out) = (w.dir.path().to_path_buf(), w.outputs());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (dir, out, runs) = (dir.clone(), out.clone(), w.runs.clone());
            std::thread::spawn(move || run_in(&dir, &out, &runs, &[], 150))
        })
        .collect();
    let results: Vec<(Outcome, Vec<Event>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (o, _) in &results {
        assert!(o.failed.is_empty(), "{:?}", o.failed);
        assert_eq!(o.ran + o.cached, 6);
    }
    assert_eq!(
        results.iter().map(|(o, _)| o.ran).sum::<usize>(),
        6,
        "each entry built exactly once"
    );
    assert_eq!(
        w.take_runs(),
        counts(&[("eval", 2), ("fit", 2), ("gen", 1), ("summary", 1)])
    );
    let waited = results
        .iter()
        .flat_map(|(_, e)| e)
        .any(|e| matches!(e, Event::Waiting { .. }));
    assert!(waited, "one run must have waited on the other's lock");
}

#[test]
fn a_failing_cell_keeps_the_others_and_reruns_alone_later() {
    let w = World::new();
    let (o, events) = w.run(&["matrix.lr=[0.1, 6.66]", "matrix.model=[\"resnet18\"]"]);
    assert_eq!(o.failed.len(), 1);
    assert!(
        o.failed[0].1.contains("lr 6.66 is cursed"),
        "{:?}",
        o.failed
    );
    // Its eval and the summary are skipped; the good cell completes.
    assert_eq!(o.skipped, 2);
    assert!(events.iter().any(|e| matches!(e, Event::Skipped { .. })));
    assert_eq!(
        w.take_runs(),
        counts(&[("eval", 1), ("fit", 1), ("gen", 1)])
    );
    assert!(
        !w.outputs()
            .join("cache/fit")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial")),
        "no half-written entry"
    );
    w.run(&["matrix.lr=[0.1, 0.5]", "matrix.model=[\"resnet18\"]"]);
    assert_eq!(
        w.take_runs(),
        counts(&[("eval", 1), ("fit", 1), ("summary", 1)])
    );
}
