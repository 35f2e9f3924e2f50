//! Removing cache entries that no experiment references any more, so the cache does not only
//! grow.

use super::Store;
use anyhow::Result;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct GcReport {
    /// (stage, key, bytes) of each removed (or, in a dry run, removable) entry.
    pub removed: Vec<(String, String, u64)>,
    pub freed_bytes: u64,
    pub kept: usize,
}

pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Delete every committed entry and abandoned partial build whose (stage, key) is not in
/// `keep`. A partial build whose lock is held (a run in progress) is left alone.
pub fn collect(store: &Store, keep: &HashSet<(String, String)>, dry_run: bool) -> Result<GcReport> {
    let mut report = GcReport::default();
    for (stage, key, dir) in store.entries()? {
        if keep.contains(&(stage.clone(), key.clone())) {
            report.kept += 1;
            continue;
        }
        let bytes = dir_size(&dir);
        if !dry_run {
            // Lock files are never deleted: a process waiting on one must keep the same file.
            let _lock = store.lock(&stage, &key, || {})?;
            std::fs::remove_dir_all(&dir)?;
        }
        report.freed_bytes += bytes;
        report.removed.push((stage, key, bytes));
    }
    for (stage, key, dir) in partials(store)? {
        if keep.contains(&(stage.clone(), key.clone())) {
            continue;
        }
        // Held for the deletion, so a run cannot start resuming this build meanwhile; a
        // build in progress holds it, and is left alone.
        let lock_path = store.root().join(&stage).join(format!(".{key}.lock"));
        let Ok(file) = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let bytes = dir_size(&dir);
        if !dry_run {
            std::fs::remove_dir_all(&dir)?;
        }
        report.freed_bytes += bytes;
        report
            .removed
            .push((stage, format!("{key} (unfinished)"), bytes));
    }
    Ok(report)
}

/// (stage, key) of every cache entry an experiment's view links to, under `outputs/experiments`.
pub fn linked_entries(experiments: &Path) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut dirs = vec![experiments.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if let Ok(target) = std::fs::read_link(&p) {
                let mut parts = target.components().rev();
                if let (Some(key), Some(stage)) = (parts.next(), parts.next()) {
                    links.push((
                        stage.as_os_str().to_string_lossy().into_owned(),
                        key.as_os_str().to_string_lossy().into_owned(),
                    ));
                }
            } else if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    links
}

fn partials(store: &Store) -> Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    for stage in std::fs::read_dir(store.root())?.flatten() {
        if !stage.path().is_dir() {
            continue;
        }
        for e in std::fs::read_dir(stage.path())?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(key) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".partial"))
            {
                out.push((
                    stage.file_name().to_string_lossy().into_owned(),
                    key.to_string(),
                    e.path(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Manifest;

    #[test]
    fn removes_only_unreferenced_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for key in ["keep", "drop"] {
            std::fs::create_dir_all(store.partial_dir("train", key)).unwrap();
            std::fs::write(store.partial_dir("train", key).join("w"), vec![0u8; 1000]).unwrap();
            store
                .commit("train", key, &Manifest::for_test("train", key))
                .unwrap();
        }
        let keep = HashSet::from([("train".to_string(), "keep".to_string())]);
        let dry = collect(&store, &keep, true).unwrap();
        assert_eq!(dry.removed.len(), 1);
        assert!(store.exists("train", "drop"), "dry run deletes nothing");
        let real = collect(&store, &keep, false).unwrap();
        assert!(real.freed_bytes >= 1000);
        assert!(!store.exists("train", "drop"));
        assert!(store.exists("train", "keep"));
    }
}
