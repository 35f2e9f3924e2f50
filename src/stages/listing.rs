//! The small files stages hand to each other: which images exist, which survived the audit,
//! and which side of the split each is on. Paths inside a cache entry are stored relative to
//! it (entries are built elsewhere and renamed into place); paths to the user's data are
//! absolute.

use crate::data::Sample;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub label: u8,
    /// "train" or "test" ("" before the split).
    pub split: String,
    /// Absolute, or relative to the entry that wrote the listing.
    pub file: PathBuf,
    /// The data set's patient id (`dataset.patient_column`); absent, the name says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub layout: String,
    pub items: Vec<Item>,
}

impl Listing {
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Read a listing, resolving relative file paths against the entry `dir`.
    pub fn read(dir: &Path, name: &str) -> Result<Listing> {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut l: Listing = serde_json::from_slice(&bytes)
            .with_context(|| format!("malformed {}", path.display()))?;
        for item in &mut l.items {
            if item.file.is_relative() {
                item.file = dir.join(&item.file);
            }
        }
        Ok(l)
    }

    pub fn samples(&self, split: &str) -> Vec<Sample> {
        self.samples_where(|s| s == split)
    }

    /// The samples whose split satisfies `keep` (e.g. everything not yet in the test split).
    pub fn samples_where(&self, keep: impl Fn(&str) -> bool) -> Vec<Sample> {
        self.items
            .iter()
            .filter(|i| keep(&i.split))
            .map(|i| Sample {
                name: i.name.clone(),
                label: i.label,
                path: i.file.clone(),
                patient: i.patient.clone(),
            })
            .collect()
    }
}

/// `path` relative to `base` when inside it (so the entry stays valid after its rename).
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}
