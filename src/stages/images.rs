//! `images`: decode every kept image once into a packed, memory-mapped u8 cache (resized and
//! centre-cropped), so that training and evaluation never decode a JPEG.

use super::listing::Listing;
use super::stats::SPLIT;
use super::{Stage, StageCtx};
use crate::data::image_cache::{self, Preprocess};
use anyhow::Result;
use std::io::Write;
use std::path::Path;

pub struct ImagesStage;

/// The side of the decoded cache: the study resizes to 256 and crops 224 (ratio 8/7).
pub fn cache_side(image_size: u32, cache_size: u32) -> u32 {
    if cache_size > 0 {
        cache_size.max(image_size)
    } else {
        (image_size * 256).div_ceil(224)
    }
}

/// `name,label` per cached image, in cache order.
pub fn write_index(path: &Path, items: &[crate::data::Sample]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "image,label")?;
    for s in items {
        writeln!(f, "{},{}", s.name, s.label)?;
    }
    f.flush()?;
    Ok(())
}

pub fn read_index(path: &Path) -> Result<Vec<(String, u8)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .skip(1)
        .map(|l| {
            let (n, g) = l
                .rsplit_once(',')
                .ok_or_else(|| anyhow::anyhow!("malformed line in {}: {l}", path.display()))?;
            Ok((n.to_string(), g.parse()?))
        })
        .collect()
}

impl Stage for ImagesStage {
    fn name(&self) -> &'static str {
        "images"
    }

    /// 2: a `val` cache beside `train` and `test`.
    fn version(&self) -> u32 {
        2
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let image_size: u32 = ctx.param("image_size")?;
        let side = cache_side(image_size, ctx.param("cache_size")?);
        let preprocess: String = ctx.param("preprocess")?;
        let preprocess: Preprocess = preprocess.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let split = Listing::read(ctx.upstream_dir("stats")?, SPLIT)?;
        for part in ["train", "val", "test"] {
            let samples = split.samples(part);
            // No validation split: no `val` folder (an empty cache cannot be mapped).
            if part == "val" && samples.is_empty() {
                continue;
            }
            let paths: Vec<_> = samples.iter().map(|s| s.path.clone()).collect();
            let dir = ctx.out.join(part);
            std::fs::create_dir_all(&dir)?;
            image_cache::build(&paths, side, preprocess, &dir, &ctx.progress)?;
            write_index(&dir.join("index.csv"), &samples)?;
        }
        Ok(format!(
            "{} train + {} val + {} test images decoded at {side}px",
            split.samples("train").len(),
            split.samples("val").len(),
            split.samples("test").len()
        ))
    }
}
