//! `dataset`: locate the images (lab or Kaggle layout) or generate the synthetic set, and
//! list them. The user's files are only read.

use super::listing::{relative_to, Item, Listing};
use super::{Stage, StageCtx};
use crate::data::{layout, synthetic};
use crate::spec::{DatasetSpec, Source};
use anyhow::{Context, Result};
use std::path::PathBuf;

pub struct DatasetStage;

pub const LISTING: &str = "dataset.json";

fn kind(source: Source) -> Option<layout::LayoutKind> {
    match source {
        Source::Lab => Some(layout::LayoutKind::Lab),
        Source::Kaggle => Some(layout::LayoutKind::Kaggle),
        Source::Synthetic => None,
    }
}

impl Stage for DatasetStage {
    fn name(&self) -> &'static str {
        "dataset"
    }

    /// 2: the clinical-scale synthetic generator (other lesions, camera variation).
    fn version(&self) -> u32 {
        2
    }

    /// Real data: the list files and every listed image, so that a changed, added or removed
    /// image reruns what depends on it (hashes are memoised by size and mtime).
    fn inputs(
        &self,
        _params: &std::collections::BTreeMap<String, serde_json::Value>,
        dataset: &DatasetSpec,
    ) -> Result<Vec<PathBuf>> {
        let (Some(kind), Some(root)) = (kind(dataset.source), dataset.root.as_ref()) else {
            return Ok(Vec::new());
        };
        let d = layout::load(root, kind).with_context(|| {
            format!(
                "dataset.root = {}: point it at the data with --set dataset.root=DIR",
                root.display()
            )
        })?;
        let mut files = d.list_files.clone();
        files.extend(d.train.iter().chain(&d.test).map(|s| s.path.clone()));
        Ok(files)
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let spec = ctx.dataset()?;
        let (root, kind, base) = match kind(spec.source) {
            Some(kind) => (
                spec.root.clone().expect("validated: real data has a root"),
                kind,
                None,
            ),
            None => {
                let data = ctx.out.join("data");
                let s = synthetic::SynthSpec {
                    images: spec.images as usize,
                    size: spec.size as u32,
                    seed: spec.seed,
                };
                synthetic::generate(&data, &s, &ctx.progress)?;
                (
                    data,
                    layout::LayoutKind::Kaggle,
                    Some(ctx.out.to_path_buf()),
                )
            }
        };
        let d = layout::load(&root, kind)?;
        let item = |s: &crate::data::Sample, split: &str| Item {
            name: s.name.clone(),
            label: s.label,
            split: split.to_string(),
            file: match &base {
                Some(b) => relative_to(&s.path, b),
                None => s.path.clone(),
            },
        };
        // Kaggle has no test list: its split comes later, by patient.
        let has_test = !d.test.is_empty();
        let mut items: Vec<Item> = d
            .train
            .iter()
            .map(|s| item(s, if has_test { "train" } else { "" }))
            .collect();
        items.extend(d.test.iter().map(|s| item(s, "test")));
        let n = items.len();
        Listing {
            layout: kind.to_string(),
            items,
        }
        .write(ctx.out, LISTING)?;
        Ok(format!(
            "{n} images ({kind} layout{})",
            if base.is_some() { ", synthetic" } else { "" }
        ))
    }
}
