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
///
/// Along an output row the source position moves by a constant step (the rotation's cosine
/// and sine), so each row is split into the span whose four bilinear taps all lie inside the
/// crop, computed once per row and run without bounds checks in f32, and the edges (near the
/// black fill), which take the careful per-tap path.
pub fn apply(src: &[u8], src_size: u32, p: &AugmentParams, out: &mut [f32]) {
    apply_with(src, src_size, p, out, true)
}

/// [`apply`], with the AVX2 interior loop allowed (where the CPU has it) or not.
fn apply_with(src: &[u8], src_size: u32, p: &AugmentParams, out: &mut [f32], allow_simd: bool) {
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
    let crop = &src[(oy * s + ox) * 3..];
    // A flip mirrors about the centre: (n - 1 - x) + 0.5 - c == -(x + 0.5 - c).
    let hs = if p.hflip { -1.0 } else { 1.0 };
    let vs = if p.vflip { -1.0 } else { 1.0 };
    let (dx, dy) = (cos * hs, sin * hs);
    #[cfg(target_arch = "x86_64")]
    let simd = allow_simd && simd::available();
    #[cfg(not(target_arch = "x86_64"))]
    let _ = allow_simd;
    let (r, gb) = out.split_at_mut(plane);
    let (g, b) = gb.split_at_mut(plane);
    for y in 0..n {
        let v = vs * (y as f64 + 0.5 - c);
        let u0 = hs * (0.5 - c);
        // Inverse of a counter-clockwise rotation (image y points down), at x = 0.
        let ax = cos * u0 - sin * v + c - 0.5;
        let ay = sin * u0 + cos * v + c - 0.5;
        let row = Row { ax, ay, dx, dy };
        let (lo, hi) = row.interior(w, h, n);
        let rows = [
            &mut r[y * n..(y + 1) * n],
            &mut g[y * n..(y + 1) * n],
            &mut b[y * n..(y + 1) * n],
        ];
        let [ro, go, bo] = rows;
        let (fx0, fy0, fdx, fdy) = (ax as f32, ay as f32, dx as f32, dy as f32);
        let mut start = lo;
        #[cfg(target_arch = "x86_64")]
        if simd {
            let span = simd::Span {
                x0: fx0,
                y0: fy0,
                dx: fdx,
                dy: fdy,
            };
            // SAFETY: `simd` says the CPU has AVX2 and FMA; [lo, hi) is the interior span.
            start = unsafe {
                simd::interior(
                    crop,
                    s,
                    span,
                    lo,
                    hi,
                    &scale,
                    &bias,
                    [&mut *ro, &mut *go, &mut *bo],
                )
            };
        }
        let mut put = |x: usize, rgb: [f32; 3]| {
            ro[x] = rgb[0] * scale[0] + bias[0];
            go[x] = rgb[1] * scale[1] + bias[1];
            bo[x] = rgb[2] * scale[2] + bias[2];
        };
        for x in (0..lo).chain(hi..n) {
            put(x, edge_sample(crop, s, w, h, row.at(x)));
        }
        for x in start..hi {
            let sx = fx0 + fdx * x as f32;
            let sy = fy0 + fdy * x as f32;
            // Both are >= 0 here, so truncation is the floor.
            let (x0, y0) = (sx as usize, sy as usize);
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let i00 = (y0 * s + x0) * 3;
            let t = &crop[i00..i00 + s * 3 + 6];
            let (w00, w10) = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy));
            let (w01, w11) = ((1.0 - fx) * fy, fx * fy);
            let tap = |ch: usize| {
                w00 * t[ch] as f32
                    + w10 * t[3 + ch] as f32
                    + w01 * t[s * 3 + ch] as f32
                    + w11 * t[s * 3 + 3 + ch] as f32
            };
            put(x, [tap(0), tap(1), tap(2)]);
        }
    }
}

/// The source position along one output row: `(ax + dx * x, ay + dy * x)`.
#[derive(Clone, Copy)]
struct Row {
    ax: f64,
    ay: f64,
    dx: f64,
    dy: f64,
}

impl Row {
    fn at(&self, x: usize) -> (f64, f64) {
        (self.ax + self.dx * x as f64, self.ay + self.dy * x as f64)
    }

    /// `[lo, hi)`: the outputs whose four taps lie inside the `w x h` crop, i.e.
    /// `0 <= sx < w - 1` and `0 <= sy < h - 1`, with a margin so f32 rounding in the fast
    /// loop cannot step outside (the edges' careful path handles the rest exactly).
    fn interior(&self, w: usize, h: usize, n: usize) -> (usize, usize) {
        const MARGIN: f64 = 1e-3;
        let (mut lo, mut hi) = (0f64, n as f64);
        for (a, d, len) in [(self.ax, self.dx, w), (self.ay, self.dy, h)] {
            let (min, max) = (MARGIN, len as f64 - 1.0 - MARGIN);
            if max < min {
                return (0, 0);
            }
            if d.abs() < 1e-12 {
                if a < min || a > max {
                    return (0, 0);
                }
                continue;
            }
            // min <= a + d x <= max
            let (x1, x2) = ((min - a) / d, (max - a) / d);
            let (l, h) = if d > 0.0 { (x1, x2) } else { (x2, x1) };
            lo = lo.max(l.ceil());
            hi = hi.min(h.floor() + 1.0);
        }
        if hi <= lo {
            return (0, 0);
        }
        (lo as usize, hi as usize)
    }
}

/// Bilinear sample at source position `(sx, sy)` of the crop, taps outside it black.
fn edge_sample(crop: &[u8], s: usize, w: usize, h: usize, (sx, sy): (f64, f64)) -> [f32; 3] {
    let (x0, y0) = (sx.floor(), sy.floor());
    let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
    let (x0, y0) = (x0 as isize, y0 as isize);
    let mut rgb = [0f32; 3];
    for (ddx, ddy, wgt) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        let (xi, yi) = (x0 + ddx, y0 + ddy);
        if wgt == 0.0 || xi < 0 || yi < 0 || xi as usize >= w || yi as usize >= h {
            continue;
        }
        let i = (yi as usize * s + xi as usize) * 3;
        for ch in 0..3 {
            rgb[ch] += wgt * crop[i + ch] as f32;
        }
    }
    rgb
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

#[cfg(target_arch = "x86_64")]
mod simd;

#[cfg(test)]
mod tests;
