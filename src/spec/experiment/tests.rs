use super::*;
use crate::spec::dataset::Source;

const IMPLS: &[&str] = &["audit", "train", "report"];
const PIPELINE: &str = "[stages.audit]\nscope = \"dataset\"\nparams = [\"dataset\"]\n[stages.train]\nafter = [\"audit\"]\nparams = [\"model\", \"lr\"]\n[stages.report]\nafter = [\"train\"]\nscope = \"experiment\"\nparams = [\"title\"]\n";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), PIPELINE).unwrap();
        Fixture { dir }
    }

    fn load(&self, text: &str, sets: &[&str]) -> Result<Experiment, SpecError> {
        let path = self.dir.path().join("exp.toml");
        std::fs::write(&path, text).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load(&path, &sets, IMPLS).map_err(|mut e| {
            e.location = e
                .location
                .replace(&self.dir.path().display().to_string(), "DIR");
            e
        })
    }
}

const GOOD: &str = "pipeline = \"p.toml\"\n[dataset]\nsource = \"synthetic\"\nimages = 40\n[params]\nlr = 0.01\n[matrix]\nmodel = [\"resnet18\", \"resnet50\"]\n";

#[test]
fn loads_a_valid_experiment() {
    let f = Fixture::new();
    let e = f.load(GOOD, &[]).unwrap();
    assert_eq!(e.name, "exp");
    assert_eq!(e.cells.len(), 2);
    assert_eq!(e.cells[1].name, "resnet50");
    assert_eq!(e.params["lr"], serde_json::json!(0.01));
    assert_eq!(e.dataset.images, 40);
    assert_eq!(e.pipeline.stages.len(), 3);
}

#[test]
fn set_overrides_params_dataset_and_matrix() {
    let f = Fixture::new();
    let e = f
        .load(GOOD, &["lr=0.5", "dataset.images=80", "matrix.seed=[1, 2]"])
        .unwrap();
    assert_eq!(e.params["lr"], serde_json::json!(0.5));
    assert_eq!(e.dataset.images, 80);
    assert_eq!(e.cells.len(), 4);
    assert_eq!(e.cells[0].name, "resnet18-seed1");
    // Pinning an axis removes it.
    let e = f.load(GOOD, &["model=resnet50"]).unwrap();
    assert_eq!(e.cells.len(), 1);
    assert_eq!(e.cells[0].params["model"], serde_json::json!("resnet50"));
    // Real data with no edit of the file.
    let e = f
        .load(
            GOOD,
            &["dataset.source=kaggle", "dataset.root=/data/eyepacs"],
        )
        .unwrap();
    assert_eq!(e.dataset.root.as_deref(), Some(Path::new("/data/eyepacs")));
}

fn err(text: &str, sets: &[&str]) -> SpecError {
    Fixture::new().load(text, sets).unwrap_err()
}

#[test]
fn each_malformed_case_names_file_line_column() {
    let e = err(&GOOD.replace("lr = 0.01", "lrr = 0.01"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:6:1");
    assert!(e.message.contains("unknown parameter `lrr`") && e.help.unwrap().contains("`lr`"));

    let e = err(&GOOD.replace("lr = 0.01", "lr = \"fast\""), &[]);
    assert_eq!(e.location, "DIR/exp.toml:6:6");
    assert!(e.message.contains("must be a number"), "{e}");

    let e = err(&GOOD.replace("\"resnet50\"", "\"resnet51\""), &[]);
    assert_eq!(e.location, "DIR/exp.toml:8:22");
    assert!(e.help.unwrap().contains("resnet50"));

    let e = err(&format!("{GOOD}class_weights = [\"inverse\"]\n"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:9:18");
    assert!(e.help.unwrap().contains("inverse_frequency"));

    let e = err(&GOOD.replace("[\"resnet18\", \"resnet50\"]", "[]"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:8:9");
    assert!(e.message.contains("empty"));

    let e = err(&GOOD.replace("p.toml", "missing.toml"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:1:12");
    assert!(e.message.contains("pipeline file not found"));

    let e = err(&format!("colour = 1\n{GOOD}"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:1:1");

    let e = err(&GOOD.replace("images = 40", "imgs = 40"), &[]);
    assert_eq!(e.location, "DIR/exp.toml:4:1");
    assert!(e.help.unwrap().contains("images"));

    let e = err(
        &GOOD.replace("source = \"synthetic\"", "source = \"kaggle\""),
        &[],
    );
    assert!(e.message.contains("dataset.root is required"), "{e}");
}

#[test]
fn bad_set_arguments_are_named() {
    let e = err(GOOD, &["lrr=0.1"]);
    assert_eq!(e.location, "--set lrr=0.1");
    assert!(e.help.unwrap().contains("`lr`"));
    let e = err(GOOD, &["dataset.rot=/x"]);
    assert!(e.message.contains("dataset.rot") && e.help.unwrap().contains("root"));
    let e = err(GOOD, &["batch_size=0"]);
    assert_eq!(e.location, "--set batch_size=0");
    let e = err(GOOD, &["lr"]);
    assert!(e.message.contains("KEY=VALUE"));
}

#[test]
fn experiment_scope_stage_cannot_read_a_varying_param() {
    let e = err(&format!("{GOOD}title = [\"a\", \"b\"]\n"), &[]);
    assert!(e.message.contains("varies across cells"), "{e}");
}

#[test]
fn csv_source_and_presets_parse_into_layouts() {
    use crate::data::layout::csv::Column;
    let f = Fixture::new();
    let csv = GOOD.replace(
        "source = \"synthetic\"\nimages = 40",
        "source = \"csv\"\nroot = \"data\"\nlabels = \"meta.csv\"\nimages = \"photos\"\n\
         image_column = \"file\"\nlabel_column = \"dr\"\nsplit_column = \"set\"\nextension = \".tif\"\n\
         exclude_labels = [5, 6]",
    );
    let e = f.load(&csv, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.dataset.source, Source::Csv);
    assert_eq!(
        e.dataset.root.as_deref(),
        Some(f.dir.path().join("data").as_path())
    );
    let l = e.dataset.csv.as_ref().unwrap();
    assert_eq!(l.tables[0].labels, Path::new("meta.csv"));
    assert_eq!(l.tables[0].images, Path::new("photos"));
    assert_eq!(l.image_column, Column::Named("file".into()));
    assert_eq!(l.split_column, Some(Column::Named("set".into())));
    assert_eq!(l.extension.as_deref(), Some("tif"));
    assert_eq!(l.exclude_labels, [5, 6]);
    // The layout enters the cache key.
    let other = f.load(&csv.replace("\"dr\"", "\"grade\""), &[]).unwrap();
    assert_ne!(e.dataset.canonical(), other.dataset.canonical());

    // A preset is two --set flags away from the synthetic quickstart.
    let e = f
        .load(
            GOOD,
            &["dataset.source=ddr", "dataset.root=/data/DR_grading"],
        )
        .unwrap();
    assert_eq!(e.dataset.source, Source::Preset("ddr"));
    assert_eq!(e.dataset.csv.as_ref().unwrap().exclude_labels, [5]);
    let e = f
        .load(
            GOOD,
            &[
                "dataset.source=aptos",
                "dataset.root=/a",
                "dataset.exclude_labels=[4]",
            ],
        )
        .unwrap();
    assert_eq!(e.dataset.csv.as_ref().unwrap().exclude_labels, [4]);
}

#[test]
fn csv_keys_are_checked_and_named() {
    let csv = GOOD.replace(
        "source = \"synthetic\"\nimages = 40",
        "source = \"csv\"\nroot = \"/d\"\nlabels = \"m.csv\"\nimages = \"img\"\nimage_column = \"f\"",
    );
    let e = err(&csv, &[]);
    assert!(e.message.contains("needs dataset.label_column"), "{e}");
    assert_eq!(e.location, "DIR/exp.toml:2:1");

    let e = err(
        &format!("{csv}\nlabel_column = \"g\"").replace("images = \"img\"", "images = 3"),
        &[],
    );
    assert!(
        e.message.contains("dataset.images is the images folder"),
        "{e}"
    );
    assert_eq!(e.location, "DIR/exp.toml:6:10");

    let e = err(
        &GOOD.replace("images = 40", "images = 40\nlabel_column = \"g\""),
        &[],
    );
    assert!(e.message.contains("read only with source = \"csv\""), "{e}");

    let e = err(
        &GOOD.replace("images = 40", "images = 40\nexclude_labels = [5]"),
        &[],
    );
    assert!(
        e.message
            .contains("exclude_labels is read only by csv sources"),
        "{e}"
    );

    let e = err(GOOD, &["dataset.source=aptos"]);
    assert!(
        e.message.contains("dataset.root is required for aptos"),
        "{e}"
    );
}

#[test]
fn pretrained_paths_resolve_like_the_dataset_root() {
    let f = Fixture::new();
    let text = GOOD.replace(
        "lr = 0.01",
        "lr = 0.01\npretrained = \"w/imagenet.safetensors\"",
    ) + "[[matrix.include]]\nmodel = \"resnet18\"\npretrained = \"../x.pth\"\n";
    let e = f.load(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let want = f
        .dir
        .path()
        .join("w/imagenet.safetensors")
        .display()
        .to_string();
    assert_eq!(
        e.params["pretrained"],
        serde_json::json!(want),
        "against the experiment file"
    );
    let inc = f
        .dir
        .path()
        .parent()
        .unwrap()
        .join("x.pth")
        .display()
        .to_string();
    let cells: Vec<_> = e
        .cells
        .iter()
        .map(|c| c.params["pretrained"].clone())
        .collect();
    assert!(
        cells.contains(&serde_json::json!(inc)),
        "matrix.include too: {cells:?}"
    );
    let cwd = std::env::current_dir().unwrap();
    let e = f.load(GOOD, &["pretrained=rel.pth"]).unwrap();
    assert_eq!(
        e.params["pretrained"],
        serde_json::json!(cwd.join("rel.pth").display().to_string()),
        "--set: cwd"
    );
    let e = f
        .load(
            GOOD,
            &[
                "pretrained=true",
                "matrix.pretrained=[false, \"/abs/w.safetensors\"]",
            ],
        )
        .unwrap();
    let values: Vec<_> = e
        .cells
        .iter()
        .map(|c| c.params["pretrained"].clone())
        .collect();
    assert!(
        values.contains(&serde_json::json!("/abs/w.safetensors")),
        "{values:?}"
    );
}

#[test]
fn set_reaches_into_the_executor_table() {
    use crate::spec::executor::ExecutorKind;
    let f = Fixture::new();
    let with_slurm = format!("{GOOD}[executor.slurm]\npartition = \"cpu\"\naccount = \"lab\"\n");
    let e = f
        .load(
            &with_slurm,
            &[
                "executor.kind=slurm",
                "executor.slurm.partition=gpu",
                "executor.slurm.stages.train.gpus=\"a100:1\"",
                "executor.slurm.retries=3",
            ],
        )
        .unwrap();
    assert_eq!(e.executor.kind, Some(ExecutorKind::Slurm));
    let train = e.executor.slurm.resources("train");
    assert_eq!(train.partition.as_deref(), Some("gpu"));
    assert_eq!(
        train.account.as_deref(),
        Some("lab"),
        "the file's other keys stay"
    );
    assert_eq!(train.gpus.as_deref(), Some("a100:1"));
    assert_eq!(e.executor.slurm.resources("audit").gpus, None);
    assert_eq!(e.executor.slurm.retries, 3);
    // A file without [executor] gets the tables on the way.
    let e = f.load(GOOD, &["executor.slurm.mem=\"8G\""]).unwrap();
    assert_eq!(e.executor.slurm.defaults.mem.as_deref(), Some("8G"));
    // A misspelt key is refused by the executor's parser, naming the argument.
    let err = f.load(GOOD, &["executor.slurm.partiton=gpu"]).unwrap_err();
    assert!(err.message.contains("partiton"), "{err:?}");
    assert_eq!(err.location, "--set executor.slurm.partiton=gpu");
    // A path through a value that is not a table.
    let err = f
        .load(&with_slurm, &["executor.slurm.partition.name=x"])
        .unwrap_err();
    assert!(err.message.contains("not a table"), "{err:?}");
    let err = f.load(GOOD, &["executor..kind=slurm"]).unwrap_err();
    assert!(err.message.contains("empty part"), "{err:?}");
}
