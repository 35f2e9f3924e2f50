//! A cache that notices changed numerics: every stage of the shipped pipeline runs on a tiny
//! fixed input, what it writes is hashed, and the hashes are kept in `tests/fingerprints.toml`
//! beside each stage's version. A stage whose output hash changes while its version does not
//! fails here: old cache entries would be reused as if nothing had changed. Bump
//! `Stage::version()` in `src/stages/`, then record the new hashes with
//!
//!     DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test fingerprint
//!
//! Only what a stage computes is hashed: times (`seconds` in `history.csv` and `train.json`,
//! the cache's manifests) are left out.
//!
//! Training's floats depend on the CPU model: the `gemm` crate blocks its sums by the CPU's
//! cache sizes, so the same code trains to different weights on, say, a Zen 3 and a Zen 4.
//! The stages from `train` down ([`CPU_DEPENDENT`]) are therefore recorded per CPU model
//! (`[train.hashes]`, keyed by [`cpu_model`]) and checked exactly on a model that has a
//! record; on another model their bytes cannot be checked and the test says so, while the
//! stages above them, and every stage's version, are checked everywhere. Updating with no
//! version bump at or above a stage adds this CPU model's hash; after a bump the stage's
//! record restarts with this model alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const FINGERPRINTS: &str = "tests/fingerprints.toml";

/// Stages whose output holds trained floats (see the module docs).
const CPU_DEPENDENT: [&str; 3] = ["train", "evaluate", "report"];

/// What decides gemm's blocking, and so training's rounding: the CPU's name, its cache sizes
/// and whether it has AVX-512.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut caches = Vec::new();
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            break;
        };
        let kind = match kind.trim() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        caches.push(format!("L{}{kind} {}", level.trim(), size.trim()));
    }
    let avx512 = field("flags").is_some_and(|f| f.split(' ').any(|x| x == "avx512f"));
    format!(
        "{name}; {}; {}",
        caches.join(", "),
        if avx512 { "avx512f" } else { "no avx512f" }
    )
}

/// A stage's record: its version, and its hash (CPU-independent stages) or hashes by CPU model.
#[derive(Clone, Default)]
struct Recorded {
    version: u32,
    hash: Option<String>,
    by_cpu: BTreeMap<String, String>,
}

/// The shipped pipeline's stages, upstream first.
const ORDER: [&str; 7] = [
    "dataset", "audit", "stats", "images", "train", "evaluate", "report",
];

const EXPERIMENT: &str = r#"
pipeline = "PIPELINE"

[dataset]
source = "synthetic"
images = 48
size = 48
seed = 5

[params]
model = "resnet18"
image_size = 24
batch_size = 8
epochs = 2
freeze_epochs = 0
lr = 0.01
seed = 1
"#;

/// The stage's output with volatile values blanked, file by file (relative path, bytes):
/// `tmp` (the test's folder, which entries name in their paths) becomes `$TMP`.
fn normalised_files(dir: &Path, tmp: &Path) -> BTreeMap<String, Vec<u8>> {
    let tmp = std::fs::canonicalize(tmp).unwrap().display().to_string();
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // The cache's own bookkeeping, not the stage's output.
            if name.starts_with('.') || name == "manifest.json" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            let bytes = match name.as_str() {
                // The last column is the epoch's wall time.
                "history.csv" => String::from_utf8(bytes)
                    .unwrap()
                    .lines()
                    .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string() + "\n")
                    .collect::<String>()
                    .into_bytes(),
                "train.json" => {
                    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    if let Some(f) = v.get_mut("final").and_then(|f| f.as_object_mut()) {
                        f.remove("seconds");
                    }
                    serde_json::to_vec(&v).unwrap()
                }
                _ => bytes,
            };
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => text.replace(&tmp, "$TMP").into_bytes(),
                Err(e) => e.into_bytes(),
            };
            out.insert(rel, bytes);
        }
    }
    out
}

fn hash(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = blake3::Hasher::new();
    for (name, bytes) in files {
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().to_hex()[..16].to_string()
}

#[test]
fn a_stage_whose_output_changes_bumps_its_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = repo().join("pipelines/retinopathy.toml");
    let exp = dir.join("fingerprint.toml");
    std::fs::write(
        &exp,
        EXPERIMENT.replace("PIPELINE", &pipeline.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .current_dir(dir)
        .args(["run", exp.to_str().unwrap(), "-q"])
        .env("DRPIPE_OUTPUTS", dir.join("outputs"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = dir.join("outputs/experiments/fingerprint");
    let registry = drpipe::stages::builtin();
    let mut measured = BTreeMap::new();
    for stage in ORDER {
        let entry = if stage == "report" {
            view.join("report")
        } else {
            view.join("cells/default").join(stage)
        };
        let entry =
            std::fs::canonicalize(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
        let version = registry.get(stage).unwrap().version();
        measured.insert(
            stage.to_string(),
            (version, hash(&normalised_files(&entry, dir))),
        );
    }

    let path = repo().join(FINGERPRINTS);
    let cpu = cpu_model();
    if std::env::var_os("DRPIPE_UPDATE_FINGERPRINTS").is_some() {
        let mut text = String::from(
            "# Written by `DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test fingerprint`: each \
             stage's version\n# and the hashes of what it writes on the test's tiny input, \
             per CPU model for the\n# stages that hold trained floats. See tests/fingerprint.rs.\n",
        );
        let recorded = read_recorded(&path).unwrap_or_default();
        let mut bumped_upstream = false;
        for stage in ORDER {
            let (version, hash) = &measured[stage];
            let mut r = recorded.get(stage).cloned().unwrap_or_default();
            bumped_upstream |= r.version != *version;
            text += &format!("\n[{stage}]\nversion = {version}\n");
            if CPU_DEPENDENT.contains(&stage) {
                if bumped_upstream {
                    r.by_cpu.clear();
                }
                r.by_cpu.insert(cpu.clone(), hash.clone());
                text += &format!("[{stage}.hashes]\n");
                for (model, h) in &r.by_cpu {
                    text += &format!("{} = \"{h}\"\n", toml::Value::from(model.as_str()));
                }
            } else {
                text += &format!("hash = \"{hash}\"\n");
            }
        }
        std::fs::write(&path, text).unwrap();
        return;
    }
    let recorded = read_recorded(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut problems = Vec::new();
    let mut unchecked = Vec::new();
    // A stage's output also changes when an upstream stage's does: only a change with no
    // version bump at or above it in the pipeline is a missed bump.
    let mut bumped_upstream = false;
    for stage in ORDER {
        let (version, hash) = &measured[stage];
        let Some(r) = recorded.get(stage) else {
            problems.push(format!("{stage}: not in {FINGERPRINTS}"));
            continue;
        };
        let rv = r.version;
        bumped_upstream |= rv != *version;
        let rh = if CPU_DEPENDENT.contains(&stage) {
            match r.by_cpu.get(&cpu) {
                Some(h) => h.clone(),
                None => {
                    if rv != *version {
                        problems.push(format!("{stage}: version {rv} -> {version}: record it"));
                    } else {
                        unchecked.push(stage);
                    }
                    continue;
                }
            }
        } else {
            r.hash.clone().unwrap_or_default()
        };
        if rh != *hash && !bumped_upstream {
            problems.push(format!(
                "{stage}: output changed ({rh} -> {hash}) but its version is still {version}: \
                 bump {stage}'s Stage::version() so that cached entries rerun (no stage \
                 upstream of it was bumped either)"
            ));
        } else if rh != *hash || rv != *version {
            problems.push(format!(
                "{stage}: version {rv} -> {version}, hash {rh} -> {hash}: record it"
            ));
        }
    }
    if !unchecked.is_empty() {
        eprintln!(
            "fingerprint: {} not checked: no hash recorded for this CPU model ({cpu}); \
             training rounds differently per model. Record it with \
             DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test fingerprint",
            unchecked.join(", ")
        );
    }
    assert!(
        problems.is_empty(),
        "{}\n(after bumping, update with DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test \
         fingerprint)",
        problems.join("\n")
    );
}

/// Each stage's record (`hash = "..."`, or `[stage.hashes]` by CPU model).
fn read_recorded(path: &Path) -> Result<BTreeMap<String, Recorded>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let mut out = BTreeMap::new();
    for (stage, r) in &table {
        let version = r
            .get("version")
            .and_then(|v| v.as_integer())
            .ok_or(format!("[{stage}] has no integer version"))? as u32;
        let hash = r.get("hash").and_then(|h| h.as_str()).map(str::to_string);
        let mut by_cpu = BTreeMap::new();
        if let Some(t) = r.get("hashes").and_then(|h| h.as_table()) {
            for (model, h) in t {
                let h = h
                    .as_str()
                    .ok_or(format!("[{stage}.hashes] {model:?} is not a string"))?;
                by_cpu.insert(model.clone(), h.to_string());
            }
        }
        if hash.is_none() && by_cpu.is_empty() {
            return Err(format!("[{stage}] has neither hash nor hashes"));
        }
        out.insert(
            stage.clone(),
            Recorded {
                version,
                hash,
                by_cpu,
            },
        );
    }
    Ok(out)
}
