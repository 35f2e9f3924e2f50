//! The study's transforms on cached `src_size x src_size` HWC RGB u8 images, straight into
//! normalised CHW f32.
//!
//! Training (torchvision's RandomCrop -> RandomRotation -> RandomHorizontalFlip ->
//! RandomVerticalFlip -> ToTensor -> Normalize) is done as ONE inverse mapping: for each output
//! pixel, undo the flips, undo the rotation about the crop centre, and sample the crop
//! bilinearly; pixels whose source falls outside the crop are black (0 before normalisation),
//! as torchvision's rotation of the cropped image fills them. No allocation per image.

use serde::{Deserialize, Serialize};

use super::{IMAGENET_MEAN, IMAGENET_STD};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainAugment {
    pub out_size: u32,
    pub max_rotation_deg: f32,
    pub hflip: bool,
    pub vflip: bool,
}

impl TrainAugment {
    /// The study's: random crop, rotation within +-20 degrees, both flips.
    pub fn study(out_size: u32) -> Self {
        TrainAugment {
            out_size,
            max_rotation_deg: 20.0,
            hflip: true,
            vflip: true,
        }
    }

    /// Draws one image's parameters: crop offsets, angle, flips (p = 0.5 each), in that order.
    pub fn sample(&self, src_size: u32, rng: &mut Rng) -> AugmentParams {
        let slack = src_size.saturating_sub(self.out_size) as u64;
        let ox = rng.below(slack + 1) as u32;
        let oy = rng.below(slack + 1) as u32;
        let m = self.max_rotation_deg.abs() as f64;
        let angle_deg = if m > 0.0 {
            rng.uniform(-m, m) as f32
        } else {
            0.0
        };
        let hflip = self.hflip && rng.bool(0.5);
        let vflip = self.vflip && rng.bool(0.5);
        AugmentParams {
            out_size: self.out_size,
            ox,
            oy,
            angle_deg,
            hflip,
            vflip,
        }
    }
}

/// One image's drawn augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    pub out_size: u32,
    /// Top-left corner of the crop in the source.
    pub ox: u32,
    pub oy: u32,
    /// Counter-clockwise, about the crop centre.
    pub angle_deg: f32,
    pub hflip: bool,
    pub vflip: bool,
}

/// Per-channel `v * scale + bias` == `(v / 255 - mean) / std`.
fn norm_coeffs() -> ([f32; 3], [f32; 3]) {
    let scale = [0, 1, 2].map(|c| 1.0 / (255.0 * IMAGENET_STD[c]));
    let bias = [0, 1, 2].map(|c| -IMAGENET_MEAN[c] / IMAGENET_STD[c]);
    (scale, bias)
}

fn check_buffers(src: &[u8], src_size: u32, out: &[f32], out_size: u32) {
    let (s, o) = (src_size as usize, out_size as usize);
    assert_eq!(src.len(), s * s * 3, "source must be {s}x{s} HWC RGB");
    assert_eq!(out.len(), 3 * o * o, "output must be 3x{o}x{o}");
}

pub fn train_transform(
    src: &[u8],
    src_size: u32,
    aug: &TrainAugment,
    rng: &mut Rng,
    out: &mut [f32],
) {
    let p = aug.sample(src_size, rng);
    apply(src, src_size, &p, out);
}

/// Applies drawn parameters: `out` is 3 x out_size x out_size CHW, normalised.
pub fn apply(src: &[u8], src_size: u32, p: &AugmentParams, out: &mut [f32]) {
    check_buffers(src, src_size, out, p.out_size);
    let (s, n) = (src_size as usize, p.out_size as usize);
    let plane = n * n;
    let (scale, bias) = norm_coeffs();
    let (sin, cos) = (p.angle_deg.to_radians() as f64).sin_cos();
    let c = n as f64 / 2.0;
    // The crop window, clipped to the source (only matters when out_size > src_size).
    let (ox, oy) = (p.ox as usize, p.oy as usize);
    let w = n.min(s.saturating_sub(ox));
    let h = n.min(s.saturating_sub(oy));
    let fetch = |xi: isize, yi: isize| -> Option<&[u8]> {
        if xi < 0 || yi < 0 || xi as usize >= w || yi as usize >= h {
            return None;
        }
        let i = ((oy + yi as usize) * s + ox + xi as usize) * 3;
        Some(&src[i..i + 3])
    };
    for y in 0..n {
        let yf = if p.vflip { n - 1 - y } else { y };
        let v = yf as f64 + 0.5 - c;
        for x in 0..n {
            let xf = if p.hflip { n - 1 - x } else { x };
            let u = xf as f64 + 0.5 - c;
            // Inverse of a counter-clockwise rotation (image y points down).
            let sx = cos * u - sin * v + c - 0.5;
            let sy = sin * u + cos * v + c - 0.5;
            let (x0, y0) = (floor(sx), floor(sy));
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let mut rgb = [0f32; 3];
            // Fast path for the (vast) interior: all four taps inside the crop, no bounds
            // checks per tap. Same weights, same summation order: bit-identical results.
            if x0 >= 0 && y0 >= 0 && (x0 as usize) + 1 < w && (y0 as usize) + 1 < h {
                let i00 = ((oy + y0 as usize) * s + ox + x0 as usize) * 3;
                let (i10, i01) = (i00 + 3, i00 + s * 3);
                let i11 = i01 + 3;
                let (w00, w10) = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy));
                let (w01, w11) = ((1.0 - fx) * fy, fx * fy);
                let (p00, p10) = (&src[i00..i00 + 3], &src[i10..i10 + 3]);
                let (p01, p11) = (&src[i01..i01 + 3], &src[i11..i11 + 3]);
                for ch in 0..3 {
                    // The slow path's order: 0 + w00 p00 + w10 p10 + w01 p01 + w11 p11 (a zero
                    // weight adds an exact 0.0 there, so skipping it changes nothing).
                    let v = 0.0
                        + w00 * p00[ch] as f32
                        + w10 * p10[ch] as f32
                        + w01 * p01[ch] as f32
                        + w11 * p11[ch] as f32;
                    out[ch * plane + y * n + x] = v * scale[ch] + bias[ch];
                }
                continue;
            }
            for (dx, dy, wgt) in [
                (0, 0, (1.0 - fx) * (1.0 - fy)),
                (1, 0, fx * (1.0 - fy)),
                (0, 1, (1.0 - fx) * fy),
                (1, 1, fx * fy),
            ] {
                if wgt == 0.0 {
                    continue;
                }
                if let Some(px) = fetch(x0 + dx, y0 + dy) {
                    for ch in 0..3 {
                        rgb[ch] += wgt * px[ch] as f32;
                    }
                }
            }
            for ch in 0..3 {
                out[ch * plane + y * n + x] = rgb[ch] * scale[ch] + bias[ch];
            }
        }
    }
}

/// `x.floor()` without a libm call (the baseline x86-64 target has no rounding instruction,
/// and the call was an eighth of the train transform's time).
#[inline]
fn floor(x: f64) -> f64 {
    let t = x as i64 as f64;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// Deterministic: resample `src_size` to `out_size` with PIL's bilinear (triangle) filter, its
/// support widened by the scale when shrinking so it averages like an area filter, then
/// normalise.
pub fn test_transform(src: &[u8], src_size: u32, out_size: u32, out: &mut [f32]) {
    check_buffers(src, src_size, out, out_size);
    let (s, n) = (src_size as usize, out_size as usize);
    let plane = n * n;
    let (scale, bias) = norm_coeffs();
    let ratio = s as f64 / n as f64;
    let support = ratio.max(1.0);
    let taps = |centre: f64| {
        let lo = ((centre - support).floor().max(0.0)) as usize;
        let hi = ((centre + support).ceil() as usize).min(s);
        (lo, hi)
    };
    let weight =
        |i: usize, centre: f64| (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0);
    for y in 0..n {
        let cy = (y as f64 + 0.5) * ratio;
        let (ylo, yhi) = taps(cy);
        for x in 0..n {
            let cx = (x as f64 + 0.5) * ratio;
            let (xlo, xhi) = taps(cx);
            let mut acc = [0f64; 3];
            let mut total = 0.0;
            for j in ylo..yhi {
                let wy = weight(j, cy);
                if wy == 0.0 {
                    continue;
                }
                for i in xlo..xhi {
                    let wgt = wy * weight(i, cx);
                    if wgt == 0.0 {
                        continue;
                    }
                    let px = &src[(j * s + i) * 3..(j * s + i) * 3 + 3];
                    for ch in 0..3 {
                        acc[ch] += wgt * px[ch] as f64;
                    }
                    total += wgt;
                }
            }
            for ch in 0..3 {
                let v = if total > 0.0 { acc[ch] / total } else { 0.0 };
                out[ch * plane + y * n + x] = v as f32 * scale[ch] + bias[ch];
            }
        }
    }
}

#[cfg(test)]
mod tests;
