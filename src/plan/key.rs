//! Cache keys: blake3 over a canonical JSON encoding (object keys sorted, numbers in their
//! shortest round-trip form) of exactly what a stage instance depends on.

use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Hex digits kept from the hash: 128 bits, collision-free in practice, short in paths.
const KEY_HEX: usize = 32;

pub fn cache_key(
    stage: &str,
    uses: &str,
    version: u32,
    params: &BTreeMap<String, Json>,
    upstream: &BTreeMap<String, String>,
    inputs_digest: &str,
) -> String {
    let canonical = json!({
        "stage": stage,
        "uses": uses,
        "version": version,
        "params": params,
        "upstream": upstream,
        "inputs": inputs_digest,
    });
    // serde_json's Map is a BTreeMap here (no preserve_order), so keys are sorted.
    let text = serde_json::to_string(&canonical).expect("JSON values serialise");
    blake3::hash(text.as_bytes()).to_hex()[..KEY_HEX].to_string()
}

/// One digest over (path, content hash) pairs, in the order given.
pub fn inputs_digest(inputs: &[(PathBuf, String)]) -> String {
    if inputs.is_empty() {
        return String::new();
    }
    let mut h = blake3::Hasher::new();
    for (p, hash) in inputs {
        h.update(p.to_string_lossy().as_bytes());
        h.update(b"\t");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..KEY_HEX].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn key_depends_on_exactly_its_ingredients() {
        let p = params(&[("lr", json!(0.001)), ("model", json!("resnet18"))]);
        let up = BTreeMap::from([("audit".to_string(), "k1".to_string())]);
        let base = cache_key("train", "train", 1, &p, &up, "d");
        assert_eq!(base.len(), KEY_HEX);
        assert_eq!(
            base,
            cache_key("train", "train", 1, &p, &up, "d"),
            "deterministic"
        );
        assert_ne!(base, cache_key("train", "train", 2, &p, &up, "d"));
        assert_ne!(base, cache_key("fit", "train", 1, &p, &up, "d"));
        assert_ne!(
            base,
            cache_key(
                "train",
                "train",
                1,
                &params(&[("lr", json!(0.01)), ("model", json!("resnet18"))]),
                &up,
                "d"
            )
        );
        assert_ne!(
            base,
            cache_key(
                "train",
                "train",
                1,
                &p,
                &BTreeMap::from([("audit".to_string(), "k2".to_string())]),
                "d"
            )
        );
        assert_ne!(base, cache_key("train", "train", 1, &p, &up, "e"));
        // Insertion order of parameters does not matter.
        let mut q = BTreeMap::new();
        q.insert("model".to_string(), json!("resnet18"));
        q.insert("lr".to_string(), json!(0.001));
        assert_eq!(base, cache_key("train", "train", 1, &q, &up, "d"));
    }

    #[test]
    fn inputs_digest_sees_content_and_names() {
        let a = vec![(PathBuf::from("a.jpeg"), "h1".to_string())];
        let b = vec![(PathBuf::from("a.jpeg"), "h2".to_string())];
        let c = vec![(PathBuf::from("b.jpeg"), "h1".to_string())];
        assert_ne!(inputs_digest(&a), inputs_digest(&b));
        assert_ne!(inputs_digest(&a), inputs_digest(&c));
        assert_eq!(inputs_digest(&[]), "");
    }
}
