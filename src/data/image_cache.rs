//! The decode-once image cache: every image resized and centre-cropped to `size x size`, stored
//! as packed HWC RGB u8 in `images.u8` and memory-mapped, so the epoch loop never decodes a
//! JPEG or allocates per image.
//!
//! Build = the study's "resize the short side, centre-crop" (done in one resample with
//! fast_image_resize's bilinear convolution, which anti-aliases when shrinking like PIL's),
//! plus optional Ben Graham preprocessing.

use std::fmt;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use fast_image_resize::{self as fir, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::format;
use crate::Progress;

const DATA_FILE: &str = "images.u8";
const INDEX_FILE: &str = "index.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preprocess {
    None,
    /// Ben Graham's (Kaggle DR 2015 winner): `4*img - 4*blur(img) + 128` with a Gaussian of
    /// sigma = radius/30, then everything outside a circle of 0.9 x the radius set to grey 128
    /// (as in his code), which hides the bright ring the subtraction leaves at the eye's edge.
    /// The radius is taken as half the cache size: after the centre crop the eye fills it.
    Graham,
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preprocess::None => "none",
            Preprocess::Graham => "graham",
        })
    }
}

impl FromStr for Preprocess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Preprocess::None),
            "graham" => Ok(Preprocess::Graham),
            other => Err(format!(
                "unknown preprocessing '{other}': expected 'none' or 'graham'"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Index {
    n: usize,
    size: u32,
    preprocess: Preprocess,
    /// Always "HWC RGB u8"; recorded so a reader knows without this source.
    layout: String,
}

/// Decodes `paths` in parallel into `out_dir/images.u8` (image i at byte i*size*size*3) and
/// writes `index.json` last, so a cache whose build was interrupted does not open.
pub fn build(
    paths: &[PathBuf],
    size: u32,
    preprocess: Preprocess,
    out_dir: &Path,
    progress: &Progress,
) -> Result<()> {
    if size == 0 {
        bail!("image cache size must be at least 1 pixel");
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let per_image = size as usize * size as usize * 3;
    let partial = out_dir.join(format!("{DATA_FILE}.partial"));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    file.set_len((paths.len() * per_image) as u64)
        .with_context(|| format!("cannot size {} (disk full?)", partial.display()))?;
    // Images are written as they are made; a lock around seek+write is negligible next to a
    // JPEG decode, and keeps this portable.
    let file = Mutex::new(file);
    progress.start("cache", paths.len() as u64);
    paths.par_iter().enumerate().try_for_each_init(
        || (Resizer::new(), vec![0u8; per_image]),
        |(resizer, out), (i, path)| -> Result<()> {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let img = format::decode_rgb(&bytes).map_err(|e| {
                anyhow!(
                    "cannot decode {} ({e}); audit the data first",
                    path.display()
                )
            })?;
            resize_square(resizer, &img, size, out)
                .with_context(|| format!("cannot resize {}", path.display()))?;
            if preprocess == Preprocess::Graham {
                graham(out, size as usize);
            }
            let mut f = file
                .lock()
                .map_err(|_| anyhow!("image cache writer poisoned"))?;
            f.seek(SeekFrom::Start((i * per_image) as u64))?;
            f.write_all(out)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            drop(f);
            progress.inc(1);
            Ok(())
        },
    )?;
    progress.finish();
    let file = file
        .into_inner()
        .map_err(|_| anyhow!("image cache writer poisoned"))?;
    file.sync_all()
        .with_context(|| format!("cannot flush {}", partial.display()))?;
    std::fs::rename(&partial, out_dir.join(DATA_FILE))?;
    let index = Index {
        n: paths.len(),
        size,
        preprocess,
        layout: "HWC RGB u8".into(),
    };
    std::fs::write(out_dir.join(INDEX_FILE), serde_json::to_vec_pretty(&index)?)
        .with_context(|| format!("cannot write {}", out_dir.join(INDEX_FILE).display()))?;
    Ok(())
}

/// Writes a cache from already-packed HWC RGB u8 pixels (`n * size * size * 3` bytes): for
/// tests, benchmarks and generators that make images without JPEG files.
pub fn write_raw(out_dir: &Path, size: u32, preprocess: Preprocess, pixels: &[u8]) -> Result<()> {
    let per_image = size as usize * size as usize * 3;
    if per_image == 0 || !pixels.len().is_multiple_of(per_image) {
        bail!(
            "{} bytes are not a whole number of {size}x{size} RGB images",
            pixels.len()
        );
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    std::fs::write(out_dir.join(DATA_FILE), pixels)
        .with_context(|| format!("cannot write {}", out_dir.join(DATA_FILE).display()))?;
    let index = Index {
        n: pixels.len() / per_image,
        size,
        preprocess,
        layout: "HWC RGB u8".into(),
    };
    std::fs::write(out_dir.join(INDEX_FILE), serde_json::to_vec_pretty(&index)?)
        .with_context(|| format!("cannot write {}", out_dir.join(INDEX_FILE).display()))?;
    Ok(())
}

/// Decode one image and resize/crop/preprocess it exactly as [`build`] does, for grading
/// single files (`drpipe predict`).
pub fn decode_square(path: &Path, size: u32, preprocess: Preprocess) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    square_from_bytes(&bytes, size, preprocess)
        .with_context(|| format!("cannot decode {}", path.display()))
}

/// [`decode_square`] on bytes already read (`drpipe predict` repairs them first, as the audit).
pub fn square_from_bytes(bytes: &[u8], size: u32, preprocess: Preprocess) -> Result<Vec<u8>> {
    let img = format::decode_rgb(bytes).map_err(|e| anyhow!("{e}"))?;
    let mut out = vec![0u8; size as usize * size as usize * 3];
    resize_square(&mut Resizer::new(), &img, size, &mut out)?;
    if preprocess == Preprocess::Graham {
        graham(&mut out, size as usize);
    }
    Ok(out)
}

/// Resize the short side to `size` and centre-crop, in one resample.
fn resize_square(
    resizer: &mut Resizer,
    img: &image::RgbImage,
    size: u32,
    out: &mut [u8],
) -> Result<()> {
    let (w, h) = img.dimensions();
    let src = fir::images::ImageRef::new(w, h, img.as_raw(), PixelType::U8x3)?;
    let mut dst = fir::images::Image::from_slice_u8(size, size, out, PixelType::U8x3)?;
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .fit_into_destination(Some((0.5, 0.5)));
    resizer.resize(&src, &mut dst, &opts)?;
    Ok(())
}

/// Ben Graham's local-average subtraction and circular mask, in place on HWC RGB.
pub fn graham(img: &mut [u8], size: usize) {
    let sigma = (size as f32 / 2.0 / 30.0).max(0.5);
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let ksum: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / ksum).collect();
    let clamp = |v: isize| v.clamp(0, size as isize - 1) as usize;
    // Separable blur with replicated edges: rows into `tmp`, then columns.
    let mut tmp = vec![0f32; img.len()];
    for y in 0..size {
        for x in 0..size {
            for c in 0..3 {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    acc += w * img[(y * size + clamp(x as isize + k as isize - radius)) * 3 + c]
                        as f32;
                }
                tmp[(y * size + x) * 3 + c] = acc;
            }
        }
    }
    let centre = size as f32 / 2.0;
    let r2 = (0.9 * centre) * (0.9 * centre);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 + 0.5 - centre, y as f32 + 0.5 - centre);
            let inside = dx * dx + dy * dy <= r2;
            for c in 0..3 {
                let i = (y * size + x) * 3 + c;
                if !inside {
                    img[i] = 128;
                    continue;
                }
                let mut blur = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    blur += w * tmp[(clamp(y as isize + k as isize - radius) * size + x) * 3 + c];
                }
                img[i] = (4.0 * img[i] as f32 - 4.0 * blur + 128.0)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// A built cache, memory-mapped read-only.
pub struct ImageCache {
    map: Option<memmap2::Mmap>,
    n: usize,
    size: u32,
    preprocess: Preprocess,
}

impl ImageCache {
    pub fn open(dir: &Path) -> Result<Self> {
        let ip = dir.join(INDEX_FILE);
        let index: Index =
            serde_json::from_slice(&std::fs::read(&ip).with_context(|| {
                format!("image cache {} is missing or incomplete", dir.display())
            })?)
            .with_context(|| format!("{} is not a valid image cache index", ip.display()))?;
        let dp = dir.join(DATA_FILE);
        let file =
            std::fs::File::open(&dp).with_context(|| format!("cannot open {}", dp.display()))?;
        let expected = index.n as u64 * index.size as u64 * index.size as u64 * 3;
        let actual = file.metadata()?.len();
        if actual != expected {
            bail!(
                "{} holds {actual} bytes but its index says {expected}; rebuild the cache",
                dp.display()
            );
        }
        // SAFETY: the cache is written once, renamed into place, and never modified after;
        // mapping it read-only is sound as long as nobody edits it behind our back.
        let map = if expected == 0 {
            None
        } else {
            Some(unsafe { memmap2::Mmap::map(&file) }?)
        };
        Ok(ImageCache {
            map,
            n: index.n,
            size: index.size,
            preprocess: index.preprocess,
        })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn preprocess(&self) -> Preprocess {
        self.preprocess
    }

    /// Image `i` as HWC RGB, `size*size*3` bytes. Panics when `i >= len()` (a caller bug).
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.n,
            "image index {i} out of range for a cache of {}",
            self.n
        );
        let per = self.size as usize * self.size as usize * 3;
        match &self.map {
            Some(m) => &m[i * per..(i + 1) * per],
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests;
