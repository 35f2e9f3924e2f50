//! The experiment's view: `outputs/experiments/<name>/cells/<cell>/<stage>` and
//! `outputs/experiments/<name>/<stage>` are relative symlinks to cache entries, so a person
//! browses by cell and stage while the cache stays content-addressed and shared.

use crate::spec::dataset::absolute_path;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Point `link` at `target` (atomically: a new link renamed over the old one).
pub fn link(link: &Path, target: &Path) -> Result<()> {
    let parent = link.parent().context("view link has a parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let rel = relative(parent, target);
    let tmp = crate::cache::temp_sibling(link);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&rel, &tmp)
        .with_context(|| format!("cannot create link {}", tmp.display()))?;
    #[cfg(not(unix))]
    std::fs::write(&tmp, rel.display().to_string())?;
    if link.is_dir() && !link.is_symlink() {
        std::fs::remove_dir_all(link)?;
    }
    std::fs::rename(&tmp, link).with_context(|| format!("cannot update {}", link.display()))?;
    Ok(())
}

/// `target` relative to the directory `from`, so the outputs folder can be moved whole.
pub fn relative(from: &Path, target: &Path) -> PathBuf {
    let (from, target) = (absolute_path(from), absolute_path(target));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_replaceable() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("cache/train/k1");
        let b = dir.path().join("cache/train/k2");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("f"), "b").unwrap();
        let l = dir.path().join("experiments/e/cells/c/train");
        link(&l, &a).unwrap();
        assert_eq!(
            std::fs::read_link(&l).unwrap(),
            PathBuf::from("../../../../cache/train/k1")
        );
        link(&l, &b).unwrap();
        assert_eq!(std::fs::read_to_string(l.join("f")).unwrap(), "b");
    }
}
