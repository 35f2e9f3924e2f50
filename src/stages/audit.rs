//! `audit`: every listed image is ok, repaired (EOI appended to a copy) or dropped, with a
//! reason; the kept ones are listed for the next stages.

use super::dataset::{EXCLUDED, LISTING};
use super::listing::{relative_to, Item, Listing};
use super::{Stage, StageCtx};
use crate::data::audit::{self, AuditStatus};
use anyhow::Result;

pub struct AuditStage;

pub const KEPT: &str = "kept.json";

impl Stage for AuditStage {
    fn name(&self) -> &'static str {
        "audit"
    }

    /// 2: PNG and TIFF read by content; a truncated PNG repaired, a damaged one dropped.
    fn version(&self) -> u32 {
        2
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let spec = ctx.dataset()?;
        let listing = Listing::read(ctx.upstream_dir("dataset")?, LISTING)?;
        let train = listing.samples_where(|s| s != "test" && s != EXCLUDED);
        let test = listing.samples("test");
        let hash_of = |p: &std::path::Path| ctx.hasher.hash(p);
        let mut report = audit::audit(
            &train,
            &test,
            ctx.out,
            &ctx.store.memo_dir("audit"),
            spec.min_image_size as u32,
            &hash_of,
            &ctx.progress,
        )?;
        let excluded = listing.samples(EXCLUDED);
        if !excluded.is_empty() {
            report.add_excluded(&excluded, ctx.out)?;
        }
        std::fs::write(
            ctx.out.join("audit.json"),
            serde_json::to_vec_pretty(&report)?,
        )?;
        let listed: std::collections::HashMap<&str, &Item> =
            listing.items.iter().map(|i| (i.name.as_str(), i)).collect();
        let items = report
            .records
            .iter()
            .filter(|r| r.status != AuditStatus::Dropped)
            .map(|r| {
                let from = listed.get(r.image.as_str());
                Item {
                    name: r.image.clone(),
                    label: r.label,
                    split: from.map_or(String::new(), |i| i.split.clone()),
                    file: relative_to(&r.path, ctx.out),
                    patient: from.and_then(|i| i.patient.clone()),
                }
            })
            .collect();
        Listing {
            layout: listing.layout,
            items,
        }
        .write(ctx.out, KEPT)?;
        let dups = if report.cross_split_duplicates.is_empty() {
            String::new()
        } else {
            format!(
                ", {} train/test duplicate(s)",
                report.cross_split_duplicates.len()
            )
        };
        Ok(format!(
            "{} ok, {} repaired, {} dropped{dups}",
            report.ok, report.repaired, report.dropped
        ))
    }
}
