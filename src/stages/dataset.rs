//! `dataset`: locate the images (lab, Kaggle, CSV layout or a public set's preset) or
//! generate the synthetic set, and list them. The user's files are only read.

use super::listing::{relative_to, Item, Listing};
use super::{Stage, StageCtx};
use crate::data::{layout, synthetic};
use crate::spec::{DatasetSpec, Source};
use anyhow::{Context, Result};
use std::path::PathBuf;

pub struct DatasetStage;

pub const LISTING: &str = "dataset.json";
/// The split of a listed row that `dataset.exclude_labels` left out.
pub const EXCLUDED: &str = "excluded";

/// The user's data set as its layout lists it; `None` for the synthetic source.
fn load_real(spec: &DatasetSpec) -> Result<Option<layout::Dataset>> {
    let Some(root) = spec.root.as_ref() else {
        return Ok(None);
    };
    let d = match (spec.source, &spec.csv) {
        (Source::Synthetic, _) => return Ok(None),
        (Source::Lab, _) => layout::load(root, layout::LayoutKind::Lab),
        (Source::Kaggle, _) => layout::load(root, layout::LayoutKind::Kaggle),
        (_, Some(csv)) => layout::csv::load(root, csv),
        (_, None) => anyhow::bail!("dataset.source = {} has no columns", spec.source.name()),
    };
    // The hint to move the root only when the root is what is wrong: a bad row in a label
    // file under the right root is named by the error itself.
    let hint = if root.is_dir() {
        ""
    } else {
        ": point it at the data with --set dataset.root=DIR"
    };
    d.map(Some).with_context(|| {
        format!(
            "dataset.root = {} (source = {}){hint}",
            root.display(),
            spec.source.name()
        )
    })
}

impl Stage for DatasetStage {
    fn name(&self) -> &'static str {
        "dataset"
    }

    /// 2: the clinical-scale synthetic generator (other lesions, camera variation).
    /// (Not bumped for the CSV layout: the listing of every older source is unchanged, and a
    /// name now found as .png is another input file, so another key.)
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
        let Some(d) = load_real(dataset)? else {
            return Ok(Vec::new());
        };
        let mut files = d.list_files.clone();
        files.extend(
            d.train
                .iter()
                .chain(&d.val)
                .chain(&d.test)
                .map(|s| s.path.clone()),
        );
        Ok(files)
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let spec = ctx.dataset()?;
        let (d, base) = match load_real(spec)? {
            Some(d) => (d, None),
            None => {
                let data = ctx.out.join("data");
                let s = synthetic::SynthSpec {
                    images: spec.images as usize,
                    size: spec.size as u32,
                    seed: spec.seed,
                };
                synthetic::generate(&data, &s, &ctx.progress)?;
                let d = layout::load(&data, layout::LayoutKind::Kaggle)?;
                (d, Some(ctx.out.to_path_buf()))
            }
        };
        let kind = d.kind;
        let item = |s: &crate::data::Sample, split: &str| Item {
            name: s.name.clone(),
            label: s.label,
            split: split.to_string(),
            file: match &base {
                Some(b) => relative_to(&s.path, b),
                None => s.path.clone(),
            },
            patient: s.patient.clone(),
        };
        // Kaggle has no test list: its split comes later, by patient.
        let has_test = !d.test.is_empty();
        let mut items: Vec<Item> = d
            .train
            .iter()
            .map(|s| item(s, if has_test { "train" } else { "" }))
            .collect();
        items.extend(d.val.iter().map(|s| item(s, "val")));
        items.extend(d.test.iter().map(|s| item(s, "test")));
        let n = items.len();
        // Rows the layout left out (exclude_labels): the audit lists them as dropped.
        items.extend(d.excluded.iter().map(|(s, _)| item(s, EXCLUDED)));
        Listing {
            layout: kind.to_string(),
            items,
        }
        .write(ctx.out, LISTING)?;
        Ok(format!(
            "{n} images ({kind} layout{}){}",
            match spec.source {
                Source::Preset(p) => format!(", {p} preset"),
                _ if base.is_some() => ", synthetic".into(),
                _ => String::new(),
            },
            match d.excluded.len() {
                0 => String::new(),
                k => format!(", {k} left out by exclude_labels"),
            }
        ))
    }
}
