//! The content-addressed artifact store under `<outputs>/cache/`.
//!
//! Layout (version 1):
//! ```text
//! cache/VERSION                   layout version
//! cache/file-hashes.tsv           memo of input-file hashes by (path, size, mtime)
//! cache/memo/<name>/              per-stage memos that outlive entries (e.g. the audit's)
//! cache/<stage>/<key>/            a committed entry: the stage's files + manifest.json
//! cache/<stage>/.<key>.partial/   an entry being built (never read as an entry)
//! cache/<stage>/.<key>.lock       held while building <key>
//! ```
//! An entry exists iff its directory has a `manifest.json`; it is built in the `.partial`
//! directory beside it and renamed into place only when complete, so a crash never leaves a
//! half-written entry behind.

pub mod file_hash;
pub mod gc;
pub mod lock;
pub mod manifest;

pub use file_hash::FileHasher;
pub use lock::EntryLock;
pub use manifest::Manifest;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const LAYOUT_VERSION: &str = "1";

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store under `outputs/cache`.
    pub fn open(outputs: &Path) -> Result<Store> {
        let root = outputs.join("cache");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let version = root.join("VERSION");
        match std::fs::read_to_string(&version) {
            Ok(v) if v.trim() == LAYOUT_VERSION => {}
            // Another process is creating the store right now (write_atomic makes this rare).
            Ok(v) if v.trim().is_empty() => {}
            Ok(v) => anyhow::bail!(
                "{} was written by a drpipe with cache layout {} (this one uses {LAYOUT_VERSION}); \
                 move it away or use another --outputs",
                root.display(),
                v.trim()
            ),
            Err(_) => write_atomic(&version, format!("{LAYOUT_VERSION}\n").as_bytes())?,
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    pub fn partial_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(format!(".{key}.partial"))
    }

    pub fn memo_dir(&self, name: &str) -> PathBuf {
        self.root.join("memo").join(name)
    }

    pub fn exists(&self, stage: &str, key: &str) -> bool {
        self.entry_dir(stage, key).join(manifest::FILE).is_file()
    }

    /// Take the build lock of an entry; `on_wait` is called once if another process holds it.
    pub fn lock(&self, stage: &str, key: &str, on_wait: impl FnOnce()) -> Result<EntryLock> {
        let dir = self.root.join(stage);
        std::fs::create_dir_all(&dir)?;
        EntryLock::acquire(&dir.join(format!(".{key}.lock")), on_wait)
    }

    /// Make the `.partial` directory the committed entry. Replaces an existing entry (a forced
    /// rebuild) by moving it aside first, so readers never see a mix of the two.
    pub fn commit(&self, stage: &str, key: &str, manifest: &Manifest) -> Result<PathBuf> {
        let partial = self.partial_dir(stage, key);
        manifest.write(&partial)?;
        sync_dir(&partial);
        let entry = self.entry_dir(stage, key);
        if entry.exists() {
            let old = self.root.join(stage).join(format!(".{key}.old"));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&entry, &old)?;
            std::fs::rename(&partial, &entry)?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&partial, &entry)
                .with_context(|| format!("cannot move {} into place", partial.display()))?;
        }
        sync_dir(&self.root.join(stage));
        Ok(entry)
    }

    /// Every committed entry as (stage, key, dir).
    pub fn entries(&self) -> Result<Vec<(String, String, PathBuf)>> {
        let mut out = Vec::new();
        for stage in std::fs::read_dir(&self.root)? {
            let stage = stage?;
            let name = stage.file_name().to_string_lossy().into_owned();
            if !stage.file_type()?.is_dir() || name == "memo" {
                continue;
            }
            for entry in std::fs::read_dir(stage.path())? {
                let entry = entry?;
                let key = entry.file_name().to_string_lossy().into_owned();
                if !key.starts_with('.') && entry.path().join(manifest::FILE).is_file() {
                    out.push((name.clone(), key, entry.path()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Durability of a rename needs the directory synced; failure here only weakens crash safety.
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Write a file atomically: to a temporary name beside it, then rename.
/// A hidden name beside `path` for building it before a rename. Unique per process *and* per
/// call: two threads of one process (or two runs sharing an outputs folder) may write the same
/// file at once and must not rename each other's temporary away.
pub fn temp_sibling(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp{}-{n}", std::process::id()));
    path.with_file_name(name)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_makes_an_entry_appear_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.exists("train", "abc"));
        let partial = store.partial_dir("train", "abc");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("w.bin"), b"1").unwrap();
        assert!(
            !store.exists("train", "abc"),
            "a partial entry is not an entry"
        );
        let m = Manifest::for_test("train", "abc");
        let entry = store.commit("train", "abc", &m).unwrap();
        assert!(store.exists("train", "abc"));
        assert_eq!(std::fs::read(entry.join("w.bin")).unwrap(), b"1");
        assert!(!partial.exists());
        assert_eq!(store.entries().unwrap().len(), 1);
        // A forced rebuild replaces the entry.
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("w.bin"), b"2").unwrap();
        store.commit("train", "abc", &m).unwrap();
        assert_eq!(std::fs::read(entry.join("w.bin")).unwrap(), b"2");
    }

    #[test]
    fn refuses_a_foreign_layout_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache/VERSION"), "99\n").unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("layout 99"), "{err}");
    }
}
