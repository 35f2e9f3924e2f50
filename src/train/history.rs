//! `history.csv`: one row per epoch, appended as soon as the epoch is measured so that a
//! crashed or running training can be inspected.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// "freeze" (only `fc` trains) or "finetune" (all layers).
    pub phase: String,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    /// Validation split, NaN without one.
    #[serde(deserialize_with = "null_as_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub val_acc: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub val_qwk: f64,
    /// Test split, NaN unless `checkpoint = "best_test"` (the study's choice) asked the loop
    /// to read it every epoch; otherwise only the evaluate stage reads the test split, once.
    #[serde(deserialize_with = "null_as_nan")]
    pub test_loss: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub test_acc: f64,
    pub seconds: f64,
}

/// JSON has no NaN: serde_json writes an unmeasured value as `null`, read back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub const HEADER: &str =
    "epoch,phase,lr,train_loss,train_acc,val_loss,val_acc,val_qwk,test_loss,test_acc,seconds";
const FIELDS: usize = 11;

impl EpochRecord {
    pub fn to_csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{:.3}",
            self.epoch,
            self.phase,
            self.lr,
            self.train_loss,
            self.train_acc,
            self.val_loss,
            self.val_acc,
            self.val_qwk,
            self.test_loss,
            self.test_acc,
            self.seconds
        )
    }
}

/// Append one record, writing the header first if the file is new.
pub fn append(path: &Path, record: &EpochRecord) -> Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if new {
        writeln!(f, "{HEADER}")?;
    }
    writeln!(f, "{}", record.to_csv_row())?;
    f.sync_data()?;
    Ok(())
}

/// Read a history file written by [`append`].
pub fn read(path: &Path) -> Result<Vec<EpochRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = || {
            format!(
                "{}:{}: malformed history row {line:?}",
                path.display(),
                i + 1
            )
        };
        if f.len() != FIELDS {
            anyhow::bail!(bad());
        }
        let num = |s: &str| s.parse::<f64>().with_context(bad);
        out.push(EpochRecord {
            epoch: f[0].parse().with_context(bad)?,
            phase: f[1].to_string(),
            lr: num(f[2])?,
            train_loss: num(f[3])?,
            train_acc: num(f[4])?,
            val_loss: num(f[5])?,
            val_acc: num(f[6])?,
            val_qwk: num(f[7])?,
            test_loss: num(f[8])?,
            test_acc: num(f[9])?,
            seconds: num(f[10])?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_read_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.csv");
        let r = |e| EpochRecord {
            epoch: e,
            phase: "freeze".into(),
            lr: 1e-3,
            train_loss: 0.5 / e as f64,
            train_acc: 0.7,
            val_loss: 0.65,
            val_acc: 0.69,
            val_qwk: 0.4,
            test_loss: f64::NAN,
            test_acc: f64::NAN,
            seconds: 1.5,
        };
        append(&p, &r(1)).unwrap();
        append(&p, &r(2)).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.len(), 2);
        // NaN != NaN: compare the rows as written.
        assert_eq!(back[1].to_csv_row(), r(2).to_csv_row());
        assert!(back[0].test_acc.is_nan() && back[0].val_qwk == 0.4);
    }
}
