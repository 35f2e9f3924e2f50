//! `manifest.json`: what an entry was built from, so that `plan` can explain a rerun and a
//! person can trace any artifact back to its parameters.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The pipeline's stage name and its built-in implementation.
    pub stage: String,
    pub uses: String,
    pub version: u32,
    pub key: String,
    pub params: BTreeMap<String, Json>,
    /// Upstream stage instances: "stage" or "stage@cell" -> key.
    pub upstream: BTreeMap<String, String>,
    /// Digest over all input files, and their count.
    pub inputs_digest: String,
    pub inputs_count: usize,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub drpipe_version: String,
    /// The stage's own one-line summary.
    pub summary: String,
}

impl Manifest {
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        super::write_atomic(&dir.join(FILE), text.as_bytes())
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("malformed {}", path.display()))
    }

    #[cfg(test)]
    pub fn for_test(stage: &str, key: &str) -> Manifest {
        Manifest {
            stage: stage.into(),
            uses: stage.into(),
            version: 1,
            key: key.into(),
            params: BTreeMap::new(),
            upstream: BTreeMap::new(),
            inputs_digest: String::new(),
            inputs_count: 0,
            started: String::new(),
            finished: String::new(),
            seconds: 0.0,
            drpipe_version: env!("CARGO_PKG_VERSION").into(),
            summary: String::new(),
        }
    }
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (no date crate needed).
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(timestamp(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::for_test("audit", "k1");
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    }
}
