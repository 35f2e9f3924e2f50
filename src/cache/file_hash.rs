//! Content hashes of input files, memoised by (path, size, modification time) so that a
//! 35,000-image data set is stat'ed, not re-read, on every run.

use anyhow::{Context, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

#[derive(Debug)]
pub struct FileHasher {
    memo_path: Option<PathBuf>,
    memo: Mutex<HashMap<PathBuf, (Stamp, String)>>,
    /// Files actually read (not answered from the memo), for tests and `-v`.
    reads: AtomicUsize,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    let mtime_ns = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(Stamp {
        size: meta.len(),
        mtime_ns,
    })
}

/// blake3 of a file's bytes, hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

impl FileHasher {
    /// A hasher without a persistent memo (tests, one-off commands).
    pub fn in_memory() -> FileHasher {
        FileHasher {
            memo_path: None,
            memo: Mutex::new(HashMap::new()),
            reads: AtomicUsize::new(0),
        }
    }

    /// Load the memo from `path` (a missing or damaged memo is just empty: it is only a cache).
    pub fn load(path: &Path) -> FileHasher {
        let mut memo = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                if let [p, size, mtime, hash] = f[..] {
                    if let (Ok(size), Ok(mtime_ns)) = (size.parse(), mtime.parse()) {
                        memo.insert(
                            PathBuf::from(p),
                            (Stamp { size, mtime_ns }, hash.to_string()),
                        );
                    }
                }
            }
        }
        FileHasher {
            memo_path: Some(path.to_path_buf()),
            memo: Mutex::new(memo),
            reads: AtomicUsize::new(0),
        }
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// The content hash of `path`, from the memo when size and mtime are unchanged.
    pub fn hash(&self, path: &Path) -> Result<String> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let st = stamp(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
        if let Some((old, hash)) = self.memo.lock().expect("memo lock").get(&abs) {
            if *old == st {
                return Ok(hash.clone());
            }
        }
        let hash = hash_file(&abs)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.memo
            .lock()
            .expect("memo lock")
            .insert(abs, (st, hash.clone()));
        Ok(hash)
    }

    /// Hash many files in parallel; a missing file hashes to "missing" (the audit reports it).
    pub fn hash_all(&self, paths: &[PathBuf], progress: &crate::Progress) -> Vec<String> {
        progress.start("hash inputs", paths.len() as u64);
        let hashes = paths
            .par_iter()
            .map(|p| {
                let h = self.hash(p).unwrap_or_else(|_| "missing".to_string());
                progress.inc(1);
                h
            })
            .collect();
        progress.finish();
        hashes
    }

    /// Persist the memo (atomically; concurrent runs may overwrite each other's additions,
    /// which only costs a re-hash later).
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.memo_path else {
            return Ok(());
        };
        let memo = self.memo.lock().expect("memo lock");
        let mut text = String::with_capacity(memo.len() * 120);
        for (p, (st, hash)) in memo.iter() {
            let p = p.to_string_lossy();
            if !p.contains('\t') && !p.contains('\n') {
                text.push_str(&format!("{p}\t{}\t{}\t{hash}\n", st.size, st.mtime_ns));
            }
        }
        super::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_skips_unchanged_files_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jpeg");
        std::fs::write(&a, b"one").unwrap();
        let memo = dir.path().join("memo.tsv");
        let h = FileHasher::load(&memo);
        let first = h.hash(&a).unwrap();
        assert_eq!(first, blake3::hash(b"one").to_hex().to_string());
        h.save().unwrap();

        let h = FileHasher::load(&memo);
        assert_eq!(h.hash(&a).unwrap(), first);
        assert_eq!(h.reads(), 0, "unchanged file must come from the memo");

        std::fs::write(&a, b"two!").unwrap(); // size changes, so the stamp does too
        assert_eq!(
            h.hash(&a).unwrap(),
            blake3::hash(b"two!").to_hex().to_string()
        );
        assert_eq!(h.reads(), 1);
        assert_eq!(
            h.hash_all(&[dir.path().join("nope")], &crate::Progress::hidden()),
            ["missing"]
        );
    }
}
