//! `images`: decode every kept image once into a packed, memory-mapped u8 cache (resized and
//! centre-cropped), so that training and evaluation never decode a JPEG.

use super::listing::Listing;
use super::stats::SPLIT;
use super::{Stage, StageCtx};
use crate::data::csv_text::{self, field};
use crate::data::image_cache::{self, Preprocess};
use crate::data::split::patient_of;
use crate::data::Sample;
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

/// `image,label` per cached image, in cache order, and `patient` when the data set names
/// its patients (so evaluation groups the test eyes the way the split did; without the
/// column the name says, and the file is as it was before the column existed).
pub fn write_index(path: &Path, items: &[Sample]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    if items.iter().any(|s| s.patient.is_some()) {
        writeln!(f, "{PATIENT_HEADER}")?;
        for s in items {
            writeln!(f, "{},{},{}", field(&s.name), s.label, field(s.patient()))?;
        }
    } else {
        writeln!(f, "image,label")?;
        for s in items {
            writeln!(f, "{},{}", s.name, s.label)?;
        }
    }
    f.flush()?;
    Ok(())
}

const PATIENT_HEADER: &str = "image,label,patient";

/// One cached image as the index lists it.
pub struct IndexRow {
    pub name: String,
    pub label: u8,
    pub patient: String,
}

/// `index.csv` read back.
pub struct Index {
    pub rows: Vec<IndexRow>,
    /// Whether the patients are the data set's own ids (`dataset.patient_column`).
    pub named_patients: bool,
}

/// Reads `index.csv`; without a patient column (`image,label`, names unquoted) the patient
/// is read from the name, as the split did.
pub fn read_index(path: &Path) -> Result<Index> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let with_patient = lines.next().is_some_and(|(_, h)| h == PATIENT_HEADER);
    lines
        .map(|(i, l)| {
            let bad = || anyhow::anyhow!("{}:{}: malformed line {l:?}", path.display(), i + 1);
            let (name, label, patient) = if with_patient {
                match &csv_text::row(l)[..] {
                    [n, g, p] => (n.clone(), g.clone(), p.clone()),
                    _ => return Err(bad()),
                }
            } else {
                let (n, g) = l.rsplit_once(',').ok_or_else(bad)?;
                (n.to_string(), g.to_string(), patient_of(n).to_string())
            };
            Ok(IndexRow {
                label: label.parse().map_err(|_| bad())?,
                name,
                patient,
            })
        })
        .collect::<Result<_>>()
        .map(|rows| Index {
            rows,
            named_patients: with_patient,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_carries_the_patient_and_reads_older_indices() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.csv");
        let mut a = Sample::new("img,1", 3, "a.png");
        a.patient = Some("P1".into());
        let b = Sample::new("12_right", 0, "b.png");
        write_index(&p, &[a, b.clone()]).unwrap();
        let index = read_index(&p).unwrap();
        assert!(index.named_patients);
        let got: Vec<_> = index
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.label, r.patient.as_str()))
            .collect();
        assert_eq!(got, [("img,1", 3, "P1"), ("12_right", 0, "12")]);
        // No data-set patients: the file as before the column existed.
        write_index(&p, &[b, Sample::new("5_left", 4, "c.png")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "image,label\n12_right,0\n5_left,4\n"
        );
        let index = read_index(&p).unwrap();
        assert!(!index.named_patients);
        assert_eq!(
            (index.rows[1].label, index.rows[1].patient.as_str()),
            (4, "5")
        );
    }
}
