//! Paints one fundus photograph: background (choroid glow, vignetting, macula, optic disc),
//! vessels, lesions, then the camera (`camera.rs`: focus, exposure, colour cast, uneven
//! lighting, haze, noise).
//!
//! Each ingredient draws from its own RNG stream derived from the image seed, so the same seed
//! at different grades gives the same eye and camera with only the lesions added.

use super::anatomy::{Anatomy, Vessel};
use super::camera::{self, Look, Rgb};
use super::lesions::{self, Blob};
use super::raster::{Mask, ToPx, V2};
use crate::rng::Rng;
use image::RgbImage;

const STREAM_CAMERA: u64 = 0;
const STREAM_ANATOMY: u64 = 1;
const STREAM_LESIONS: u64 = 2;
const STREAM_NOISE: u64 = 3;
const STREAM_TEXTURE: u64 = 4;
const STREAM_PATIENT: u64 = 5;

pub(super) struct Rendered {
    pub image: RgbImage,
    /// Coverage of all lesions (what the tests measure lesion load by).
    #[cfg_attr(not(test), allow(dead_code))]
    pub lesions: Mask,
    /// What the lesion planner drew, in the grading scale's terms.
    #[cfg_attr(not(test), allow(dead_code))]
    pub findings: lesions::Findings,
    pub jpeg_quality: u8,
}

/// Smooth random field in [-1, 1] over the fundus (bilinear value noise on a coarse grid).
struct ValueNoise {
    n: usize,
    v: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut Rng, n: usize) -> Self {
        ValueNoise {
            n,
            v: (0..n * n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect(),
        }
    }

    fn at(&self, p: V2) -> f32 {
        let g = (self.n - 1) as f32;
        let x = ((p.x + 1.0) * 0.5 * g).clamp(0.0, g - 1e-3);
        let y = ((p.y + 1.0) * 0.5 * g).clamp(0.0, g - 1e-3);
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = (x - i as f32, y - j as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let v = |a: usize, b: usize| self.v[b * self.n + a];
        let top = v(i, j) + (v(i + 1, j) - v(i, j)) * sx;
        let bottom = v(i, j + 1) + (v(i + 1, j + 1) - v(i, j + 1)) * sx;
        top + (bottom - top) * sy
    }
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix(c: Rgb, to: Rgb, a: f32) -> Rgb {
    [
        c[0] + (to[0] - c[0]) * a,
        c[1] + (to[1] - c[1]) * a,
        c[2] + (to[2] - c[2]) * a,
    ]
}

fn tint(c: Rgb, by: Rgb, a: f32) -> Rgb {
    mix(c, [c[0] * by[0], c[1] * by[1], c[2] * by[2]], a)
}

/// One photograph of a patient of its own.
pub(super) fn render(grade: u8, seed: u64, size: u32, right_eye: bool) -> Rendered {
    render_eye(grade, seed, seed, size, right_eye)
}

/// One photograph; eyes rendered with the same `patient_seed` share the patient's look.
pub(super) fn render_eye(
    grade: u8,
    seed: u64,
    patient_seed: u64,
    size: u32,
    right_eye: bool,
) -> Rendered {
    let n = size as usize;
    let mut patient = Rng::derive(patient_seed, STREAM_PATIENT);
    let look = Look::new(&mut patient, &mut Rng::derive(seed, STREAM_CAMERA), n);
    let eye = Anatomy::new(
        &mut Rng::derive(seed, STREAM_ANATOMY),
        right_eye,
        look.rotation,
    );
    let found = lesions::plan(grade, &mut Rng::derive(seed, STREAM_LESIONS), &eye);
    let mut rgb = background(&look, &eye, &mut Rng::derive(seed, STREAM_TEXTURE), n);

    // Vessels: veins darker and wider than arteries; beading modulates the calibre of the
    // big veins in the quadrants it affects.
    let (mut veins, mut arteries) = (Mask::new(n, n), Mask::new(n, n));
    for v in &eye.vessels {
        let beading = if v.vein && v.depth <= 1 {
            found.beading
        } else {
            [0.0; 4]
        };
        stroke(
            if v.vein { &mut veins } else { &mut arteries },
            v,
            &look.to_px,
            &eye,
            beading,
        );
    }
    let strokes = |list: &[Vessel]| {
        let mut m = Mask::new(n, n);
        for v in list {
            stroke(&mut m, v, &look.to_px, &eye, [0.0; 4]);
        }
        m
    };
    let new_vessels = strokes(&found.new_vessels);
    let irma = strokes(&found.irma);
    let blobs = |list: &[Blob], soft: bool| {
        let mut m = Mask::new(n, n);
        for b in list {
            let r = look.to_px.radius;
            m.ellipse(
                look.to_px.apply(b.c),
                b.rx * r,
                b.ry * r,
                b.angle,
                b.alpha,
                soft,
            );
        }
        m
    };
    let red = blobs(&found.red, false);
    let exudates = blobs(&found.exudates, false);
    let cotton = blobs(&found.cotton, true);
    let preretinal = blobs(&found.preretinal, false);
    let vitreous = blobs(&found.vitreous, true);

    let mut lesion_cover = Mask::new(n, n);
    for (i, c) in rgb.iter_mut().enumerate() {
        *c = tint(*c, [0.78, 0.58, 0.6], arteries.a[i]);
        *c = tint(*c, [0.62, 0.38, 0.42], veins.a[i]);
        *c = tint(*c, [0.66, 0.4, 0.44], irma.a[i]);
        *c = tint(*c, [0.62, 0.3, 0.32], new_vessels.a[i]);
        *c = tint(*c, [0.45, 0.16, 0.18], red.a[i]);
        *c = tint(*c, [1.3, 2.2, 2.4], exudates.a[i]);
        *c = tint(*c, [1.2, 1.85, 2.6], cotton.a[i]);
        *c = tint(*c, [0.38, 0.1, 0.1], preretinal.a[i]);
        // A vitreous haemorrhage veils the retina behind it in a dull red.
        *c = mix(*c, [0.3, 0.07, 0.05], vitreous.a[i]);
        lesion_cover.a[i] = [
            &new_vessels,
            &irma,
            &red,
            &exudates,
            &cotton,
            &preretinal,
            &vitreous,
        ]
        .iter()
        .fold(0.0f32, |m, k| m.max(k.a[i]));
    }
    let image = camera::expose(&look, rgb, &mut Rng::derive(seed, STREAM_NOISE), n);
    Rendered {
        image,
        lesions: lesion_cover,
        findings: found.findings,
        jpeg_quality: look.jpeg_quality,
    }
}

fn stroke(mask: &mut Mask, v: &Vessel, to_px: &ToPx, eye: &Anatomy, beading: [f32; 4]) {
    let mut along = 0.0f32;
    for k in 1..v.pts.len() {
        let (a, b) = (v.pts[k - 1], v.pts[k]);
        along += (b - a).norm();
        // Beads about every 0.05 fundus radii, in stretches rather than all along the vein.
        let amplitude = beading[lesions::quadrant(eye, a)];
        let bead = if amplitude > 0.0 {
            let stretch = (along * std::f32::consts::TAU / 0.5).sin().max(0.0);
            1.0 + amplitude * stretch * (along * std::f32::consts::TAU / 0.05).sin()
        } else {
            1.0
        };
        let w = 0.5 * (v.widths[k - 1] + v.widths[k]) * bead * to_px.radius;
        mask.segment(to_px.apply(a), to_px.apply(b), w, 1.0);
    }
}

/// The healthy fundus without vessels, before the camera.
fn background(look: &Look, eye: &Anatomy, rng: &mut Rng, n: usize) -> Vec<Rgb> {
    let coarse = ValueNoise::new(rng, 7);
    let fine = ValueNoise::new(rng, 23);
    let disc_col = [1.0, 0.72, 0.45];
    let cup_col = [1.0, 0.9, 0.7];
    let cup = eye.disc + eye.temporal * (0.18 * eye.disc_r);
    let cup_r = eye.disc_r * rng.uniform(0.45, 0.7) as f32;
    let mut out = vec![[0.0; 3]; n * n];
    for y in 0..n {
        for x in 0..n {
            let p = (V2::new(x as f32 + 0.5, y as f32 + 0.5) - look.to_px.centre)
                * (1.0 / look.to_px.radius);
            let r = p.norm();
            if r > 1.05 {
                continue;
            }
            let glow = 1.0 - look.vignette * r * r * r.sqrt();
            let texture = 1.0 + 0.07 * coarse.at(p) + 0.035 * fine.at(p);
            let mut c = look.pigment.map(|v| v * glow * texture);
            // Macula: darker, and less green/blue (macular pigment).
            let dm = (p - eye.macula).norm();
            if dm < 0.6 {
                let m = (-(dm / 0.17).powi(2)).exp();
                c = [
                    c[0] * (1.0 - 0.3 * m),
                    c[1] * (1.0 - 0.42 * m),
                    c[2] * (1.0 - 0.42 * m),
                ];
                let fovea = (-(dm / 0.012).powi(2)).exp();
                c = mix(c, [c[0] * 1.3, c[1] * 1.5, c[2] * 1.5], 0.5 * fovea);
            }
            // Optic disc: slightly tall ellipse, bright yellow rim, paler cup, a soft halo.
            let dd = p - eye.disc;
            let u = dd.dot(eye.temporal);
            let v = dd.dot(eye.superior) / 1.08;
            let rd = (u * u + v * v).sqrt();
            if rd > 6.0 * eye.disc_r {
                out[y * n + x] = c;
                continue;
            }
            let halo = 1.0 + 0.18 * (-(rd / (2.0 * eye.disc_r)).powi(2)).exp();
            c = c.map(|v| v * halo);
            let disc = 1.0 - smoothstep(0.8 * eye.disc_r, 1.05 * eye.disc_r, rd);
            c = mix(
                c,
                disc_col.map(|v| v * (0.92 + 0.6 * (texture - 1.0))),
                disc,
            );
            let in_cup = 1.0 - smoothstep(0.3 * cup_r, 1.2 * cup_r, (p - cup).norm());
            c = mix(c, cup_col, in_cup * disc);
            out[y * n + x] = c;
        }
    }
    out
}
