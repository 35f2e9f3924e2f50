use super::*;
use crate::spec::diagnostic::SourceText;
use crate::spec::tree::parse_document;

fn parse_text(text: &str) -> Result<ExecutorSpec, SpecError> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("e.toml");
    std::fs::write(&p, text).unwrap();
    let doc = parse_document(&SourceText::read(&p)?)?;
    parse(doc.get("executor"))
}

fn err(text: &str) -> String {
    let e = parse_text(text).unwrap_err();
    format!(
        "{}: {} ({})",
        e.location,
        e.message,
        e.help.unwrap_or_default()
    )
}

#[test]
fn stage_resources_override_the_defaults() {
    let s = parse_text(
        r#"
[executor]
kind = "slurm"
[executor.slurm]
partition = "cpu"
time = "01:00:00"
cpus = 4
extra = ["--qos=normal"]
retries = 3
max_queued = 10
[executor.slurm.stages.train]
partition = "gpu"
gpus = "a100:2"
extra = ["--constraint=a100"]
"#,
    )
    .unwrap();
    assert_eq!(s.kind, Some(ExecutorKind::Slurm));
    assert_eq!((s.slurm.retries, s.slurm.max_queued), (3, 10));
    let train = s.slurm.resources("train");
    assert_eq!(train.partition.as_deref(), Some("gpu"));
    assert_eq!(train.time.as_deref(), Some("01:00:00"));
    assert_eq!(train.cpus, Some(4));
    assert_eq!(train.gpu_count(), 2);
    assert_eq!(train.extra, ["--qos=normal", "--constraint=a100"]);
    let audit = s.slurm.resources("audit");
    assert_eq!(
        (audit.partition.as_deref(), audit.gpu_count()),
        (Some("cpu"), 0)
    );
    assert_eq!(parse_text("x = 1\n").unwrap(), ExecutorSpec::default());
}

#[test]
fn managed_flags_and_unknown_keys_are_refused_by_name() {
    let e = err("[executor.slurm]\nextra = [\"--qos=x\", \"--output=/tmp/x\"]\n");
    assert!(
        e.contains("e.toml:2") && e.contains("`--output=/tmp/x` sets --output"),
        "{e}"
    );
    let e = err("[executor.slurm]\nextra = [\"-J\", \"name\"]\n");
    assert!(e.contains("sets -J"), "{e}");
    let e = err("[executor.slurm.stages.train]\nextra = [\"--gres=gpu:1\"]\n");
    assert!(e.contains("gpus = \"1\""), "{e}");
    let e = err("[executor.slurm]\npartiton = \"gpu\"\n");
    assert!(e.contains("unknown key `executor.slurm.partiton`"), "{e}");
    let e = err("[executor]\nkind = \"pbs\"\n");
    assert!(e.contains("executors: local, slurm"), "{e}");
    assert_eq!(managed_flag("--exclusive"), None);
    assert_eq!(managed_flag("-ofile"), Some("-o"));
    assert_eq!(managed_flag("--dependency=afterok:1"), Some("--dependency"));
}

#[test]
fn signal_before_is_per_stage_and_the_raw_flag_is_refused() {
    let s = parse_text(
        "[executor.slurm]\nsignal_before = 120\n[executor.slurm.stages.train]\nsignal_before = 600\n",
    )
    .unwrap();
    assert_eq!(s.slurm.resources("train").signal_before, Some(600));
    assert_eq!(s.slurm.resources("audit").signal_before, Some(120));
    let e = err("[executor.slurm]\nextra = [\"--signal=USR1@60\"]\n");
    assert!(
        e.contains("sets --signal") && e.contains("signal_before"),
        "{e}"
    );
    let e = err("[executor.slurm]\nsignal_before = 0\n");
    assert!(e.contains("at least 1"), "{e}");
    let e = err("[executor.slurm]\nsignal_before = 70000\n");
    assert!(e.contains("65535"), "{e}");
}
