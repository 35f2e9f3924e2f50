//! An embedded synthetic data set: fundus-like JPEGs in the Kaggle EyePACS layout, so the whole
//! pipeline can be tried on a machine where the real images cannot be downloaded.
//!
//! The images imitate colour fundus photographs (black surround, orange-red vignetted disc,
//! optic disc, vessel arcades, macula) with diabetic-retinopathy lesions drawn by the
//! International Clinical DR severity scale (`lesions.rs` says what each grade draws and what
//! is not modelled), under the imaging variation of a screening set (`camera.rs`: exposure,
//! colour cast, defocus, uneven illumination, field of view, JPEG quality, 10% poor-quality
//! shots), at the study's class shares, with fellow eyes of a patient graded alike, and with a
//! few deliberately damaged files for the audit stage to find. Output is a pure function of
//! the seed: per-image RNG streams make it independent of the thread count.
//!
//! The grade comes from the lesions alone: the camera and the patient draw from streams of
//! their own, so no colour or brightness correlates with the grade except through the lesions
//! (`learnability.rs` checks at 64 px that the lesions of grades 2-4 still reach the pixels).

mod anatomy;
mod camera;
mod damage;
mod labels;
#[cfg(test)]
mod learnability;
mod lesions;
mod raster;
mod render;
#[cfg(test)]
mod tests;

use crate::rng::Rng;
use crate::Progress;
use anyhow::{bail, Context, Result};
use damage::Damage;
use rayon::prelude::*;
use std::path::Path;

/// What to generate: `images` files of `size` x `size` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    pub images: usize,
    pub size: u32,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SynthSummary {
    pub images: usize,
    pub patients: usize,
    /// Images per grade 0..4 (damaged files included: they are listed like the others).
    pub counts: [usize; 5],
    /// names (without extension) of files deliberately truncated but repairable by appending FF D9
    pub truncated: Vec<String>,
    /// names of files deliberately broken beyond repair
    pub corrupt: Vec<String>,
}

/// Smallest and largest image side accepted: below 16 px there is no fundus left to see; above
/// 1024 px the float buffers of every worker thread add up to gigabytes, and the study's
/// models look at 224 px anyway.
pub const MIN_SIZE: u32 = 16;
pub const MAX_SIZE: u32 = 1024;
/// Stream labels for the data-set-wide draws; image `i` uses stream `i`.
const STREAM_LABELS: u64 = u64::MAX;
const STREAM_DAMAGE: u64 = u64::MAX - 1;
/// Patient streams are keyed by patient id, so they get a seed of their own.
const PATIENT_SALT: u64 = 0x9A71_E475_EED5_0000;

/// Writes `out/train/NAME.jpeg` and `out/trainLabels.csv` (header `image,level`). Deterministic
/// per seed. Each file is written under a temporary name and renamed, and the label list comes
/// last, so an interrupted run never leaves a list naming half-written images.
pub fn generate(out: &Path, spec: &SynthSpec, progress: &Progress) -> Result<SynthSummary> {
    if spec.images == 0 {
        bail!("synthetic data set: `images` is 0; ask for at least 1 (a few hundred to train)");
    }
    if !(MIN_SIZE..=MAX_SIZE).contains(&spec.size) {
        bail!(
            "synthetic data set: `size` {} px is outside {MIN_SIZE}..={MAX_SIZE}; choose a \
             side in that range (the study trains at 224-256 px)",
            spec.size
        );
    }
    let entries = labels::assign(spec.images, &mut Rng::derive(spec.seed, STREAM_LABELS));
    let damage = damage::choose(spec.images, &mut Rng::derive(spec.seed, STREAM_DAMAGE));
    let train = out.join("train");
    std::fs::create_dir_all(&train)
        .with_context(|| format!("cannot create the image folder {}", train.display()))?;

    progress.start("synthesise", spec.images as u64);
    entries
        .par_iter()
        .zip(&damage)
        .enumerate()
        .try_for_each(|(i, (entry, &harm))| {
            let mut rng = Rng::derive(spec.seed, i as u64);
            let patient_seed = Rng::derive(spec.seed ^ PATIENT_SALT, entry.patient).next_u64();
            let seed = rng.next_u64();
            let shot =
                render::render_eye(entry.grade, seed, patient_seed, spec.size, entry.right_eye);
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, shot.jpeg_quality)
                .encode_image(&shot.image)
                .with_context(|| format!("cannot encode synthetic image {}", entry.name))?;
            let bytes = match harm {
                Damage::None => bytes,
                Damage::Truncated => damage::truncate(&bytes, &mut rng),
                Damage::Corrupt => damage::corrupt(&bytes, &mut rng),
            };
            write_atomic(&train.join(format!("{}.jpeg", entry.name)), &bytes)?;
            progress.inc(1);
            Ok::<_, anyhow::Error>(())
        })?;

    let mut csv = String::from("image,level\n");
    let mut counts = [0usize; 5];
    for e in &entries {
        csv.push_str(&format!("{},{}\n", e.name, e.grade));
        counts[e.grade as usize] += 1;
    }
    write_atomic(&out.join("trainLabels.csv"), csv.as_bytes())?;
    progress.finish();

    let named = |kind: Damage| {
        entries
            .iter()
            .zip(&damage)
            .filter(move |(_, &d)| d == kind)
            .map(|(e, _)| e.name.clone())
    };
    Ok(SynthSummary {
        images: spec.images,
        patients: spec.images.div_ceil(2),
        counts,
        truncated: named(Damage::Truncated).collect(),
        corrupt: named(Damage::Corrupt).collect(),
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    std::fs::write(&part, bytes)
        .with_context(|| format!("cannot write {}", Path::new(&part).display()))?;
    std::fs::rename(&part, path).with_context(|| format!("cannot create {}", path.display()))
}

/// One image, for tests and the contact sheet. The eye (disc left or right) follows the seed.
/// Grades above 4 are drawn as 4, and `size` is clamped to `MIN_SIZE..=MAX_SIZE`.
pub fn render_fundus(grade: u8, seed: u64, size: u32) -> image::RgbImage {
    let right_eye = Rng::derive(seed, 0x5EED).bool(0.5);
    render::render(
        grade.min(4),
        seed,
        size.clamp(MIN_SIZE, MAX_SIZE),
        right_eye,
    )
    .image
}

/// Two rows (left eyes, right eyes) of the five grades 0..4, left to right, each tile `size`
/// px with its grade written in its top-left corner.
pub fn contact_sheet(size: u32, seed: u64) -> image::RgbImage {
    contact_sheet_with(size, seed, |_| {})
}

/// [`contact_sheet`] with each tile passed through `filter` first: the sheet as a model
/// behind that preprocessing sees it.
pub fn contact_sheet_with(
    size: u32,
    seed: u64,
    filter: impl Fn(&mut image::RgbImage),
) -> image::RgbImage {
    let size = size.clamp(MIN_SIZE, MAX_SIZE);
    let gap = 4;
    let mut sheet =
        image::RgbImage::from_pixel(5 * size + 6 * gap, 2 * size + 3 * gap, image::Rgb([40; 3]));
    for row in 0..2u32 {
        for grade in 0..5u8 {
            let tile_seed = Rng::derive(seed, (row * 5 + grade as u32) as u64).next_u64();
            let mut tile = render::render(grade, tile_seed, size, row == 1).image;
            filter(&mut tile);
            let (x0, y0) = (gap + grade as u32 * (size + gap), gap + row * (size + gap));
            image::imageops::replace(&mut sheet, &tile, x0 as i64, y0 as i64);
            draw_digit(&mut sheet, grade, x0 + 3, y0 + 3, (size / 48).max(1));
        }
    }
    sheet
}

/// A 3x5 pixel-font digit 0..4, scaled by `scale`.
fn draw_digit(img: &mut image::RgbImage, digit: u8, x0: u32, y0: u32, scale: u32) {
    const GLYPHS: [[u8; 5]; 5] = [
        [0b111, 0b101, 0b101, 0b101, 0b111],
        [0b010, 0b110, 0b010, 0b010, 0b111],
        [0b111, 0b001, 0b111, 0b100, 0b111],
        [0b111, 0b001, 0b111, 0b001, 0b111],
        [0b101, 0b101, 0b111, 0b001, 0b001],
    ];
    let glyph = GLYPHS[digit.min(4) as usize];
    for (row, bits) in glyph.iter().enumerate() {
        for col in 0..3u32 {
            if bits & (0b100 >> col) == 0 {
                continue;
            }
            for dy in 0..scale {
                for dx in 0..scale {
                    let (x, y) = (x0 + col * scale + dx, y0 + row as u32 * scale + dy);
                    if x < img.width() && y < img.height() {
                        img.put_pixel(x, y, image::Rgb([255; 3]));
                    }
                }
            }
        }
    }
}
