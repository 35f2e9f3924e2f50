//! The camera and the patient: what a screening photograph adds to the retina. Its draws come
//! from the patient's and the shot's own RNG streams, never from the grade's, so no colour,
//! brightness or sharpness of the picture says anything about the grade: only the lesions do.
//!
//! Ranges (per photograph unless it says per patient; "R" is the fundus radius):
//! - field of view: the circle's radius 0.43-0.50 of the image side, its centre off by up to
//!   ±0.03 of the side in each direction;
//! - exposure: 0.75-1.15 per patient (pigmentation, pupil) times 0.92-1.08 per shot;
//! - colour cast: temperature ±0.12 per patient ±0.03 per shot (red against blue), a green
//!   shift of ±0.06;
//! - uneven illumination: vignetting 0.35-0.7 per patient, a linear slope of up to 0.3 across
//!   the field in a random direction;
//! - defocus: a Gaussian blur of 0-0.0035 R (0-0.8 px at 512 px);
//! - sensor noise: 0.012 of full scale; JPEG quality 75-95;
//! - poor quality, 10% of photographs (EyePACS has a similar share of hard-to-grade images):
//!   defocus 0.006-0.015 R, exposure times 0.55-0.8, a haze of 10-30% (cataract, reflections),
//!   a dark crescent where the pupil cut the light (slope 0.4-0.6), noise 0.02 and JPEG
//!   quality 55-75. Such images keep their grade, as in EyePACS.

use super::raster::{ToPx, V2};
use crate::rng::Rng;
use image::RgbImage;

pub(super) type Rgb = [f32; 3];

/// The camera and the patient's pigmentation for one photograph.
pub(super) struct Look {
    pub to_px: ToPx,
    pub rotation: f32,
    exposure: f32,
    /// Positive: warmer (redder), negative: cooler.
    temperature: f32,
    green: f32,
    pub pigment: Rgb,
    pub vignette: f32,
    /// Illumination slope across the field.
    tilt: V2,
    /// Gaussian defocus, in pixels.
    blur: f32,
    haze: f32,
    noise: f32,
    pub jpeg_quality: u8,
    #[cfg_attr(not(test), allow(dead_code))]
    pub poor: bool,
}

impl Look {
    /// Pigmentation, white balance and vignetting belong to the patient (and the clinic's
    /// camera), so fellow eyes look alike, as they do in EyePACS: a model can recognise a
    /// patient, which is why both eyes must land in the same split. Framing, tilt, focus and a
    /// little exposure change from shot to shot.
    pub fn new(patient: &mut Rng, shot: &mut Rng, size: usize) -> Self {
        let s = size as f32;
        let u = |rng: &mut Rng, lo: f64, hi: f64| rng.uniform(lo, hi) as f32;
        let pigment = [
            u(patient, 0.8, 0.95),
            u(patient, 0.28, 0.42),
            u(patient, 0.13, 0.26),
        ];
        let mut exposure = u(patient, 0.75, 1.15) * u(shot, 0.92, 1.08);
        let temperature = u(patient, -0.12, 0.12) + u(shot, -0.03, 0.03);
        let green = u(shot, -0.06, 0.06);
        let vignette = u(patient, 0.35, 0.7);
        let centre = V2::new(
            s * (0.5 + u(shot, -0.03, 0.03)),
            s * (0.5 + u(shot, -0.03, 0.03)),
        );
        let radius = s * u(shot, 0.43, 0.5);
        let direction = V2::polar(u(shot, 0.0, std::f64::consts::TAU));
        let poor = shot.bool(0.1);
        let (blur, slope, haze, noise, jpeg_quality);
        if poor {
            blur = u(shot, 0.006, 0.015);
            exposure *= u(shot, 0.55, 0.8);
            haze = u(shot, 0.1, 0.3);
            slope = u(shot, 0.4, 0.6);
            noise = 0.02;
            jpeg_quality = 55 + shot.below(21) as u8;
        } else {
            blur = u(shot, 0.0, 0.0035);
            haze = 0.0;
            slope = u(shot, 0.0, 0.3);
            noise = 0.012;
            jpeg_quality = 75 + shot.below(21) as u8;
        }
        Look {
            to_px: ToPx { centre, radius },
            rotation: (0.12 * shot.normal() as f32).clamp(-0.3, 0.3),
            exposure,
            temperature,
            green,
            pigment,
            vignette,
            tilt: direction * slope,
            blur: blur * radius,
            haze,
            noise,
            jpeg_quality,
            poor,
        }
    }
}

/// A cheap near-normal deviate (sum of four uniforms, unit variance): sensor noise does not
/// need Box-Muller's tails, and this is a third of the render time otherwise.
fn gaussish(rng: &mut Rng) -> f32 {
    let u = rng.next_u64();
    let sum: u64 = (0..4).map(|k| (u >> (16 * k)) & 0xFFFF).sum();
    // Each 16-bit part has variance 2^32/12; four of them 2^32/3.
    (sum as f32 - 2.0 * 65535.0) / (65536.0 / 3f32.sqrt())
}

/// Defocus, haze, exposure, white balance, uneven illumination, the field stop's edge,
/// sensor noise.
pub(super) fn expose(look: &Look, mut rgb: Vec<Rgb>, rng: &mut Rng, n: usize) -> RgbImage {
    if look.blur > 0.3 {
        blur(&mut rgb, n, look.blur);
    }
    let t = look.temperature;
    let balance = [
        look.exposure * (1.0 + t),
        look.exposure * (1.0 + look.green),
        look.exposure * (1.0 - 1.5 * t),
    ];
    let haze = [0.55, 0.42, 0.35];
    let mut img = RgbImage::new(n as u32, n as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        let (x, y) = ((i % n) as f32 + 0.5, (i / n) as f32 + 0.5);
        let p = (V2::new(x, y) - look.to_px.centre) * (1.0 / look.to_px.radius);
        let edge = ((1.0 - p.norm()) * look.to_px.radius + 0.5).clamp(0.0, 1.0);
        let light = edge * (1.0 + look.tilt.dot(p)).max(0.0);
        for ch in 0..3 {
            let c = rgb[i][ch] * (1.0 - look.haze) + haze[ch] * look.haze;
            let v = c * balance[ch] * light + look.noise * gaussish(rng);
            px.0[ch] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    img
}

/// Separable Gaussian blur of an `n` x `n` image, `sigma` px, edges clamped.
fn blur(rgb: &mut [Rgb], n: usize, sigma: f32) {
    let reach = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-reach..=reach)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let mut tmp = vec![[0f32; 3]; n * n];
    let clamp = |v: isize| v.clamp(0, n as isize - 1) as usize;
    for y in 0..n {
        for x in 0..n {
            let mut acc = [0f32; 3];
            for (j, w) in kernel.iter().enumerate() {
                let src = rgb[y * n + clamp(x as isize + j as isize - reach)];
                for c in 0..3 {
                    acc[c] += w * src[c];
                }
            }
            tmp[y * n + x] = acc;
        }
    }
    for y in 0..n {
        for x in 0..n {
            let mut acc = [0f32; 3];
            for (j, w) in kernel.iter().enumerate() {
                let src = tmp[clamp(y as isize + j as isize - reach) * n + x];
                for c in 0..3 {
                    acc[c] += w * src[c];
                }
            }
            rgb[y * n + x] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_the_mean_and_spreads_a_point() {
        let n = 21;
        let mut img = vec![[0f32; 3]; n * n];
        img[10 * n + 10] = [1.0, 2.0, 3.0];
        blur(&mut img, n, 1.5);
        let sum: f32 = img.iter().map(|p| p[1]).sum();
        assert!((sum - 2.0).abs() < 1e-4, "{sum}");
        assert!(img[10 * n + 10][1] < 0.2 && img[10 * n + 12][1] > 0.02);
        assert_eq!(img[0][0], 0.0);
    }

    #[test]
    fn a_tenth_of_shots_are_poor_and_ranges_hold() {
        let mut poor = 0;
        for k in 0..1000 {
            let look = Look::new(&mut Rng::new(k), &mut Rng::new(10_000 + k), 100);
            poor += usize::from(look.poor);
            let q = look.jpeg_quality;
            assert!(if look.poor {
                (55..=75).contains(&q)
            } else {
                (75..=95).contains(&q)
            });
            assert!((43.0..=50.0).contains(&look.to_px.radius));
            assert!((look.to_px.centre.x - 50.0).abs() <= 3.0);
        }
        assert!((70..130).contains(&poor), "{poor}");
    }
}
