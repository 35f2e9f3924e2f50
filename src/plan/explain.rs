//! Why an instance must run: compared with the entry the experiment's view last pointed to.

use super::Instance;
use crate::cache::{Manifest, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const INPUTS_FILE: &str = "inputs.tsv";

/// Reasons, most specific first; never empty.
pub fn why(inst: &Instance, link: &Path, store: &Store) -> Vec<String> {
    let Some(previous) = std::fs::read_link(link).ok().map(|t| resolve(link, &t)) else {
        return vec!["new: never run for this cell".into()];
    };
    let Ok(old) = Manifest::read(&previous) else {
        return vec![
            if previous.file_name().is_some_and(|k| k == inst.key.as_str()) {
                "cache entry was deleted".into()
            } else {
                "new: the previous result is gone from the cache".into()
            },
        ];
    };
    if old.key == inst.key {
        return vec![if store.exists(&inst.stage, &inst.key) {
            "cache entry present".into()
        } else {
            "cache entry was deleted".into()
        }];
    }
    let mut reasons = Vec::new();
    if old.version != inst.version {
        reasons.push(format!(
            "implementation changed (v{} -> v{})",
            old.version, inst.version
        ));
    }
    let keys: std::collections::BTreeSet<&String> =
        old.params.keys().chain(inst.params.keys()).collect();
    for k in keys {
        let (a, b) = (old.params.get(k), inst.params.get(k));
        if a != b {
            let show = |v: Option<&serde_json::Value>| {
                v.map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into())
            };
            reasons.push(format!("param {k} changed: {} -> {}", show(a), show(b)));
        }
    }
    let mut changed_upstream: Vec<&str> = inst
        .upstream_keys
        .iter()
        .filter(|(label, key)| old.upstream.get(*label) != Some(key))
        .map(|(label, _)| label.as_str())
        .collect();
    changed_upstream.extend(
        old.upstream
            .keys()
            .filter(|l| !inst.upstream_keys.contains_key(*l))
            .map(|l| l.as_str()),
    );
    if !changed_upstream.is_empty() {
        let stages: std::collections::BTreeSet<&str> = changed_upstream
            .iter()
            .map(|l| l.split('@').next().unwrap_or(l))
            .collect();
        let n = changed_upstream.len();
        let list = stages.into_iter().collect::<Vec<_>>().join(", ");
        reasons.push(if n == 1 {
            format!("upstream {list} changed")
        } else {
            format!("upstream {list} changed ({n} entries)")
        });
    }
    if old.inputs_digest != inst.inputs_digest {
        reasons.push(describe_input_change(&previous, &inst.inputs));
    }
    if reasons.is_empty() {
        reasons.push("key changed".into());
    }
    reasons
}

fn resolve(link: &Path, target: &Path) -> PathBuf {
    if target.is_absolute() {
        target.to_path_buf()
    } else {
        link.parent().unwrap_or(Path::new(".")).join(target)
    }
}

fn describe_input_change(previous: &Path, now: &[(PathBuf, String)]) -> String {
    let Ok(text) = std::fs::read_to_string(previous.join(INPUTS_FILE)) else {
        return "input files changed".into();
    };
    let old: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let now_map: BTreeMap<String, &str> = now
        .iter()
        .map(|(p, h)| (p.display().to_string(), h.as_str()))
        .collect();
    let changed: Vec<&String> = now_map
        .iter()
        .filter(|(p, h)| old.get(p.as_str()).is_some_and(|o| o != *h))
        .map(|(p, _)| p)
        .collect();
    let added = now_map
        .keys()
        .filter(|p| !old.contains_key(p.as_str()))
        .count();
    let removed = old.keys().filter(|p| !now_map.contains_key(**p)).count();
    let mut parts = Vec::new();
    if !changed.is_empty() {
        let names: Vec<String> = changed.iter().take(3).map(|p| p.to_string()).collect();
        let more = if changed.len() > 3 {
            format!(" and {} more", changed.len() - 3)
        } else {
            String::new()
        };
        parts.push(format!("input changed: {}{more}", names.join(", ")));
    }
    if added > 0 {
        parts.push(format!("{added} input file(s) added"));
    }
    if removed > 0 {
        parts.push(format!("{removed} input file(s) removed"));
    }
    if parts.is_empty() {
        "input files changed".into()
    } else {
        parts.join(", ")
    }
}

/// Record the inputs of an entry so a later plan can name what changed.
pub fn write_inputs(dir: &Path, inputs: &[(PathBuf, String)]) -> anyhow::Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    let text: String = inputs
        .iter()
        .map(|(p, h)| format!("{}\t{h}\n", p.display()))
        .collect();
    std::fs::write(dir.join(INPUTS_FILE), text)?;
    Ok(())
}
