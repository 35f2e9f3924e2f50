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
//! A stage may have several recorded hashes, one per CPU model it was recorded on: the `gemm`
//! crate blocks its sums by the CPU's cache sizes, so the same code trains to different floats
//! on, say, a Zen 3 and a Zen 4 (train, and so evaluate and report, differ; the stages above
//! them do not). Updating with no version bump at or above a stage adds this machine's hash to
//! the stage's list; after a bump the list restarts with this machine's hash alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const FINGERPRINTS: &str = "tests/fingerprints.toml";
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
    if std::env::var_os("DRPIPE_UPDATE_FINGERPRINTS").is_some() {
        let mut text = String::from(
            "# Written by `DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test fingerprint`: each \
             stage's version\n# and the hashes of what it writes on the test's tiny input, \
             one per CPU model whose\n# rounding differs. See tests/fingerprint.rs.\n",
        );
        let recorded = read_recorded(&path).unwrap_or_default();
        let mut bumped_upstream = false;
        for stage in ORDER {
            let (version, hash) = &measured[stage];
            let (rv, mut hashes) = recorded.get(stage).cloned().unwrap_or((0, Vec::new()));
            bumped_upstream |= rv != *version;
            if bumped_upstream {
                hashes.clear();
            }
            if !hashes.contains(hash) {
                hashes.push(hash.clone());
            }
            let list = hashes.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>();
            text += &format!(
                "\n[{stage}]\nversion = {version}\nhashes = [{}]\n",
                list.join(", ")
            );
        }
        std::fs::write(&path, text).unwrap();
        return;
    }
    let recorded = read_recorded(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut problems = Vec::new();
    // A stage's output also changes when an upstream stage's does: only a change with no
    // version bump at or above it in the pipeline is a missed bump.
    let mut bumped_upstream = false;
    for stage in ORDER {
        let (version, hash) = &measured[stage];
        let Some(r) = recorded.get(stage) else {
            problems.push(format!("{stage}: not in {FINGERPRINTS}"));
            continue;
        };
        let (rv, hashes) = r;
        let rh = hashes.join(" or ");
        let known = hashes.contains(hash);
        bumped_upstream |= rv != version;
        if !known && !bumped_upstream {
            problems.push(format!(
                "{stage}: output changed ({rh} -> {hash}) but its version is still {version}: \
                 bump {stage}'s Stage::version() so that cached entries rerun (no stage \
                 upstream of it was bumped either). If no code changed and only the CPU \
                 did (the stages above it matched), this CPU model rounds training's sums \
                 differently: record its hashes beside the others"
            ));
        } else if !known || rv != version {
            problems.push(format!(
                "{stage}: version {rv} -> {version}, hash {rh} -> {hash}: record it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(after bumping, update with DRPIPE_UPDATE_FINGERPRINTS=1 cargo test --test \
         fingerprint)",
        problems.join("\n")
    );
}

/// Each stage's recorded version and hashes (`hashes = [...]`; `hash = "..."` as written
/// before stages could have several).
fn read_recorded(path: &Path) -> Result<BTreeMap<String, (u32, Vec<String>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let mut out = BTreeMap::new();
    for (stage, r) in &table {
        let version = r["version"].as_integer().ok_or("version is not an integer")? as u32;
        let hashes = match (r.get("hashes"), r.get("hash")) {
            (Some(list), _) => list
                .as_array()
                .ok_or("hashes is not a list")?
                .iter()
                .map(|h| h.as_str().map(str::to_string).ok_or("a hash is not a string"))
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(h)) => vec![h.as_str().ok_or("hash is not a string")?.to_string()],
            (None, None) => return Err(format!("[{stage}] has no hashes")),
        };
        out.insert(stage.clone(), (version, hashes));
    }
    Ok(out)
}
