//! The image audit: every listed image is ok, repaired or dropped, with the reason written
//! down. Formats are told by content (JPEG, PNG, TIFF; anything else is dropped).
//!
//! A JPEG that does not end with the EOI marker `FF D9` is truncated (the study's download
//! damage), and so is a PNG without its `IEND` chunk. The repair is a copy under
//! `out_dir/repaired/` with the marker appended, and the copy must then decode fully; a PNG
//! cut inside its image data or failing a chunk CRC is dropped (see [`judge_png`]), as is a
//! TIFF that does not decode. The user's files are only ever read. Verdicts are memoised in
//! `memo_dir` by (content hash, min_size), so re-auditing a grown folder decodes only new files.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::csv_text::field as csv_field;
use super::format::{self, Format};
use super::Sample;
use crate::Progress;
use judge::{judge, repaired_bytes, Verdict};

/// Bump when the rules change so old memo entries are not trusted.
const MEMO_VERSION: &str = "audit-v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatus {
    Ok,
    Repaired,
    Dropped,
}

impl fmt::Display for AuditStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuditStatus::Ok => "ok",
            AuditStatus::Repaired => "repaired",
            AuditStatus::Dropped => "dropped",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub image: String,
    pub split: String,
    pub status: AuditStatus,
    pub reason: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub hash: String,
    /// The file to decode from now on: the user's file, or the repaired copy.
    pub path: PathBuf,
    pub label: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditReport {
    pub records: Vec<AuditRecord>,
    pub ok: usize,
    pub repaired: usize,
    pub dropped: usize,
    /// Byte-identical files present in both train and test: (train name, test name).
    pub cross_split_duplicates: Vec<(String, String)>,
    /// Files read and judged (decoded at most once each) by this run; the rest were answered
    /// from the memo.
    pub decoded: usize,
}

impl AuditReport {
    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "audit: {} images, {} ok, {} repaired, {} dropped",
            self.records.len(),
            self.ok,
            self.repaired,
            self.dropped
        );
        let mut reasons: Vec<(String, usize)> = Vec::new();
        for r in self
            .records
            .iter()
            .filter(|r| r.status == AuditStatus::Dropped)
        {
            let kind = r.reason.split(':').next().unwrap_or("").to_string();
            match reasons.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => reasons.push((kind, 1)),
            }
        }
        for (kind, n) in reasons {
            s.push_str(&format!("\n  dropped {n}: {kind}"));
        }
        if !self.cross_split_duplicates.is_empty() {
            s.push_str(&format!(
                "\n  warning: {} byte-identical file(s) in both train and test (e.g. {} = {})",
                self.cross_split_duplicates.len(),
                self.cross_split_duplicates[0].0,
                self.cross_split_duplicates[0].1
            ));
        }
        s
    }

    /// Rows the layout left out before any file was read (`dataset.exclude_labels`): listed
    /// as dropped, so that `audit.csv` accounts for every row of the user's label files.
    /// Rewrites `out_dir/audit.csv`.
    pub fn add_excluded(&mut self, excluded: &[Sample], out_dir: &Path) -> Result<()> {
        for s in excluded {
            let mut rec = dropped_record(s, "");
            rec.reason = format!("excluded: label {} is in dataset.exclude_labels", s.label);
            self.records.push(rec);
            self.dropped += 1;
        }
        write_csv(&out_dir.join("audit.csv"), &self.records)
    }

    /// The usable samples of one split, pointing at the file to decode (repaired copy or not).
    #[cfg(test)]
    pub fn kept(&self, split: &str) -> Vec<Sample> {
        self.records
            .iter()
            .filter(|r| r.split == split && r.status != AuditStatus::Dropped)
            .map(|r| Sample::new(r.image.clone(), r.label, r.path.clone()))
            .collect()
    }
}

struct Memo<'a> {
    dir: &'a Path,
    min_size: u32,
}

impl Memo<'_> {
    fn file(&self, hash: &str) -> PathBuf {
        let key = blake3::hash(format!("{MEMO_VERSION}:{hash}:{}", self.min_size).as_bytes());
        self.dir.join(format!("{}.json", key.to_hex()))
    }

    /// A missing or unreadable entry is a miss, never an error.
    fn get(&self, hash: &str) -> Option<Verdict> {
        serde_json::from_slice(&std::fs::read(self.file(hash)).ok()?).ok()
    }

    /// Best effort: a memo that cannot be written only costs a decode next time.
    fn put(&self, hash: &str, v: &Verdict) {
        let path = self.file(hash);
        let tmp = crate::cache::temp_sibling(&path);
        if let Ok(json) = serde_json::to_vec(v) {
            if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// A record for `s` that says dropped, with no reason or size yet.
fn dropped_record(s: &Sample, split: &str) -> AuditRecord {
    AuditRecord {
        image: s.name.clone(),
        split: split.to_string(),
        status: AuditStatus::Dropped,
        reason: String::new(),
        width: 0,
        height: 0,
        bytes: 0,
        hash: String::new(),
        path: s.path.clone(),
        label: s.label,
    }
}

fn audit_one(
    s: &Sample,
    split: &str,
    repaired_dir: &Path,
    memo: &Memo,
    hash_of: &HashFn<'_>,
    decoded: &AtomicUsize,
) -> AuditRecord {
    let mut rec = dropped_record(s, split);
    let meta = match std::fs::metadata(&s.path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return with_reason(rec, "not a file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return with_reason(rec, "missing: no such file")
        }
        Err(e) => return with_reason(rec, format!("unreadable: {e}")),
    };
    rec.bytes = meta.len();
    if rec.bytes == 0 {
        return with_reason(rec, "empty: the file has 0 bytes");
    }
    match hash_of(&s.path) {
        Ok(h) => rec.hash = h,
        Err(e) => return with_reason(rec, format!("unreadable: {e:#}")),
    }
    let mut content = None;
    let verdict = match memo.get(&rec.hash) {
        Some(v) => v,
        None => {
            let bytes = match std::fs::read(&s.path) {
                Ok(b) => b,
                Err(e) => return with_reason(rec, format!("unreadable: {e}")),
            };
            decoded.fetch_add(1, Ordering::Relaxed);
            let v = judge(&bytes, memo.min_size);
            memo.put(&rec.hash, &v);
            content = Some(bytes);
            v
        }
    };
    (rec.status, rec.reason, rec.width, rec.height) = (
        verdict.status,
        verdict.reason,
        verdict.width,
        verdict.height,
    );
    if rec.status == AuditStatus::Repaired {
        // The copy is cheap to rebuild, so a memo hit still writes it into this run's folder.
        let bytes = match content.map_or_else(|| std::fs::read(&s.path), Ok) {
            Ok(b) => b,
            Err(e) => return with_reason(rec, format!("unreadable: {e}")),
        };
        let copy = repaired_dir.join(copy_name(s));
        let format = format::sniff(&bytes).unwrap_or(Format::Jpeg);
        if let Err(e) = std::fs::write(&copy, repaired_bytes(&bytes, format)) {
            return with_reason(
                rec,
                format!(
                    "repair copy could not be written to {}: {e}",
                    copy.display()
                ),
            );
        }
        rec.path = copy;
    }
    rec
}

fn with_reason(mut rec: AuditRecord, reason: impl Into<String>) -> AuditRecord {
    rec.status = AuditStatus::Dropped;
    rec.reason = reason.into();
    rec
}

type HashFn<'a> = dyn Fn(&Path) -> Result<String> + Sync + 'a;

/// Audits `train` then `test`, writes `out_dir/audit.csv` and repaired copies under
/// `out_dir/repaired/`. Errors only when `out_dir` cannot be written; bad images are verdicts.
/// The bytes the stages would read for a file with this content: the bytes themselves when
/// the audit passes them, its repaired copy's when it would repair them, and the audit's
/// reason as the error when it would drop them. `drpipe predict` grades through this, so an
/// image is read the same way there as in training and evaluation.
pub fn as_audited(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let v = judge(&bytes, 1);
    match v.status {
        AuditStatus::Ok => Ok(bytes),
        AuditStatus::Repaired => {
            let format = format::sniff(&bytes).unwrap_or(Format::Jpeg);
            Ok(repaired_bytes(&bytes, format))
        }
        AuditStatus::Dropped => Err(v.reason),
    }
}

/// The repaired copy's file name: the sample's name (unique, unlike file names across
/// IDRiD's two folders) with the file's extension unless the name already ends in it.
fn copy_name(s: &Sample) -> String {
    let ext = s.path.extension().map(|e| e.to_string_lossy().into_owned());
    match ext {
        Some(e)
            if !s
                .name
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", e.to_ascii_lowercase())) =>
        {
            format!("{}.{e}", s.name)
        }
        Some(_) => s.name.clone(),
        None => format!("{}.jpeg", s.name),
    }
}

pub fn audit(
    train: &[Sample],
    test: &[Sample],
    out_dir: &Path,
    memo_dir: &Path,
    min_size: u32,
    hash_of: &HashFn<'_>,
    progress: &Progress,
) -> Result<AuditReport> {
    let repaired_dir = out_dir.join("repaired");
    std::fs::create_dir_all(&repaired_dir)
        .with_context(|| format!("cannot create {}", repaired_dir.display()))?;
    std::fs::create_dir_all(memo_dir)
        .with_context(|| format!("cannot create audit memo folder {}", memo_dir.display()))?;
    let memo = Memo {
        dir: memo_dir,
        min_size,
    };
    let decoded = AtomicUsize::new(0);
    let all: Vec<(&Sample, &str)> = train
        .iter()
        .map(|s| (s, "train"))
        .chain(test.iter().map(|s| (s, "test")))
        .collect();
    progress.start("audit", all.len() as u64);
    let records: Vec<AuditRecord> = all
        .par_iter()
        .map(|(s, split)| {
            let r = audit_one(s, split, &repaired_dir, &memo, hash_of, &decoded);
            progress.inc(1);
            r
        })
        .collect();
    progress.finish();

    let count = |st| records.iter().filter(|r| r.status == st).count();
    let mut train_hashes: HashMap<&str, &str> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.split == "train" && !r.hash.is_empty())
    {
        train_hashes.entry(&r.hash).or_insert(&r.image);
    }
    let cross_split_duplicates = records
        .iter()
        .filter(|r| r.split == "test")
        .filter_map(|r| {
            train_hashes
                .get(r.hash.as_str())
                .map(|t| (t.to_string(), r.image.clone()))
        })
        .collect();
    let report = AuditReport {
        ok: count(AuditStatus::Ok),
        repaired: count(AuditStatus::Repaired),
        dropped: count(AuditStatus::Dropped),
        cross_split_duplicates,
        decoded: decoded.into_inner(),
        records,
    };
    write_csv(&out_dir.join("audit.csv"), &report.records)?;
    Ok(report)
}

fn write_csv(path: &Path, records: &[AuditRecord]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(f, "image,split,status,reason,width,height,bytes")?;
        for r in records {
            writeln!(
                f,
                "{},{},{},{},{},{},{}",
                csv_field(&r.image),
                r.split,
                r.status,
                csv_field(&r.reason),
                r.width,
                r.height,
                r.bytes
            )?;
        }
        f.flush()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

mod judge;
#[cfg(test)]
mod tests;
