//! Diabetic-retinopathy lesions for a grade, placed on a given eye.
//!
//! The counts follow the grading scale loosely (international clinical DR scale): mild = a few
//! microaneurysms; moderate = more, with blot haemorrhages and hard exudates; severe = many
//! haemorrhages in every quadrant, cotton-wool spots, venous beading; proliferative = new
//! vessels. Ranges overlap between neighbouring grades on purpose: the task should be
//! learnable, not trivial.

use super::anatomy::{Anatomy, Vessel};
use super::raster::V2;
use crate::rng::Rng;
use std::f32::consts::{PI, TAU};

/// An elliptical mark, in fundus-normalised coordinates.
pub(super) struct Blob {
    pub c: V2,
    pub rx: f32,
    pub ry: f32,
    pub angle: f32,
    pub alpha: f32,
}

#[derive(Default)]
pub(super) struct Lesions {
    /// Microaneurysms and haemorrhages (dark red).
    pub red: Vec<Blob>,
    /// Hard exudates (yellow, sharp).
    pub exudates: Vec<Blob>,
    /// Cotton-wool spots (pale, fluffy).
    pub cotton: Vec<Blob>,
    /// Neovascularisation: tangles of fine new vessels.
    pub new_vessels: Vec<Vessel>,
    /// Relative amplitude of venous beading (0 = none).
    pub beading: f32,
}

fn between(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below((hi - lo + 1) as u64) as usize
}

fn unif(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    rng.uniform(lo as f64, hi as f64) as f32
}

/// Lesion counts for one grade: microaneurysms, dot/blot haemorrhages, flame haemorrhages,
/// exudate clusters, cotton-wool spots.
fn counts(grade: u8, rng: &mut Rng) -> [usize; 5] {
    match grade {
        0 => [0, 0, 0, 0, 0],
        1 => [between(rng, 2, 7), between(rng, 0, 1), 0, 0, 0],
        2 => [
            between(rng, 5, 15),
            between(rng, 2, 7),
            between(rng, 0, 2),
            between(rng, 1, 2),
            between(rng, 0, 1),
        ],
        3 => [
            between(rng, 12, 28),
            between(rng, 10, 22),
            between(rng, 2, 5),
            between(rng, 1, 3),
            between(rng, 2, 5),
        ],
        _ => [
            between(rng, 8, 24),
            between(rng, 4, 14),
            between(rng, 0, 3),
            between(rng, 0, 3),
            between(rng, 0, 3),
        ],
    }
}

pub(super) fn plan(grade: u8, rng: &mut Rng, eye: &Anatomy) -> Lesions {
    let mut out = Lesions::default();
    let [ma, blots, flames, clusters, cotton] = counts(grade, rng);
    // Severe disease spreads to all four quadrants; milder disease stays near the macula.
    let spread = if grade >= 3 { 0.85 } else { 0.6 };
    for _ in 0..ma {
        let c = posterior_point(rng, eye, spread);
        let r = unif(rng, 0.005, 0.009);
        out.red.push(Blob {
            c,
            rx: r,
            ry: r,
            angle: 0.0,
            alpha: unif(rng, 0.75, 0.95),
        });
    }
    for _ in 0..blots {
        let c = posterior_point(rng, eye, spread);
        let size = unif(rng, 0.012, 0.028);
        // A blot is a few overlapping lobes, so its outline is irregular.
        for _ in 0..between(rng, 1, 3) {
            let off = V2::polar(unif(rng, 0.0, TAU)) * (size * unif(rng, 0.0, 0.6));
            let rx = size * unif(rng, 0.6, 1.0);
            let ry = rx * unif(rng, 0.6, 1.0);
            let angle = unif(rng, 0.0, PI);
            out.red.push(Blob {
                c: c + off,
                rx,
                ry,
                angle,
                alpha: unif(rng, 0.8, 0.95),
            });
        }
    }
    for _ in 0..flames {
        // Flame haemorrhages lie in the nerve-fibre layer: streaks pointing away from the disc,
        // usually along the big vessels.
        let c = near_trunk(rng, eye, 0.04);
        let angle = (c - eye.disc).angle();
        let rx = unif(rng, 0.03, 0.055);
        let ry = unif(rng, 0.009, 0.014);
        out.red.push(Blob {
            c,
            rx,
            ry,
            angle,
            alpha: 0.85,
        });
    }
    for _ in 0..clusters {
        exudate_cluster(rng, eye, &mut out.exudates);
    }
    for _ in 0..cotton {
        let c = near_trunk(rng, eye, 0.05);
        let size = unif(rng, 0.025, 0.045);
        for _ in 0..between(rng, 2, 4) {
            let off = V2::polar(unif(rng, 0.0, TAU)) * (size * unif(rng, 0.0, 0.7));
            let rx = size * unif(rng, 0.6, 1.1);
            let ry = rx * unif(rng, 0.5, 0.9);
            let angle = unif(rng, 0.0, PI);
            out.cotton.push(Blob {
                c: c + off,
                rx,
                ry,
                angle,
                alpha: unif(rng, 0.55, 0.8),
            });
        }
    }
    match grade {
        3 => out.beading = unif(rng, 0.35, 0.55),
        4 => {
            if rng.bool(0.5) {
                out.beading = unif(rng, 0.25, 0.45);
            }
            // New vessels at the disc (NVD) and/or elsewhere (NVE); at least one tangle.
            let nvd = rng.bool(0.8);
            let nve = between(rng, if nvd { 0 } else { 1 }, 2);
            if nvd {
                let c =
                    eye.disc + V2::polar(unif(rng, 0.0, TAU)) * (eye.disc_r * unif(rng, 0.5, 1.2));
                tangle(rng, c, &mut out.new_vessels);
            }
            for _ in 0..nve {
                let c = near_trunk(rng, eye, 0.02);
                tangle(rng, c, &mut out.new_vessels);
            }
            if rng.bool(0.3) {
                // A preretinal haemorrhage: one large dark pool.
                let c = posterior_point(rng, eye, 0.5);
                let rx = unif(rng, 0.08, 0.14);
                out.red.push(Blob {
                    c,
                    rx,
                    ry: rx * 0.6,
                    angle: unif(rng, 0.0, PI),
                    alpha: 0.9,
                });
            }
        }
        _ => {}
    }
    out
}

/// A random point in the posterior pole (around the macula and inner arcades), off the disc.
fn posterior_point(rng: &mut Rng, eye: &Anatomy, spread: f32) -> V2 {
    let centre = eye.macula * 0.75 + eye.disc * 0.25;
    for _ in 0..64 {
        let p = centre + V2::polar(unif(rng, 0.0, TAU)) * (spread * rng.f32().sqrt());
        if p.norm() < 0.92 && (p - eye.disc).norm() > 1.3 * eye.disc_r {
            return p;
        }
    }
    eye.macula
}

/// A point beside one of the big vessels, between the disc and the periphery.
fn near_trunk(rng: &mut Rng, eye: &Anatomy, offset: f32) -> V2 {
    let trunks: Vec<&Vessel> = eye.vessels.iter().filter(|v| v.depth == 0).collect();
    if trunks.is_empty() {
        return posterior_point(rng, eye, 0.6);
    }
    let v = trunks[rng.below(trunks.len() as u64) as usize];
    let n = v.pts.len();
    let i = ((n as f32 * unif(rng, 0.2, 0.7)) as usize).min(n - 1);
    let p = v.pts[i] + V2::polar(unif(rng, 0.0, TAU)) * (offset * rng.f32());
    if p.norm() < 0.92 {
        p
    } else {
        posterior_point(rng, eye, 0.6)
    }
}

/// Hard exudates gather in (partial) rings around leaking vessels near the macula.
fn exudate_cluster(rng: &mut Rng, eye: &Anatomy, out: &mut Vec<Blob>) {
    let centre = eye.macula + V2::polar(unif(rng, 0.0, TAU)) * unif(rng, 0.08, 0.32);
    let ring = unif(rng, 0.03, 0.08);
    let start = unif(rng, 0.0, TAU);
    let arc = unif(rng, PI, TAU);
    for _ in 0..between(rng, 4, 12) {
        let theta = start + arc * rng.f32();
        let c = centre + V2::polar(theta) * (ring * unif(rng, 0.75, 1.25));
        let r = unif(rng, 0.006, 0.014);
        let ry = r * unif(rng, 0.6, 1.0);
        out.push(Blob {
            c,
            rx: r,
            ry,
            angle: unif(rng, 0.0, PI),
            alpha: unif(rng, 0.8, 1.0),
        });
    }
}

/// A tangle of fine, tortuous new vessels around `c`.
fn tangle(rng: &mut Rng, c: V2, out: &mut Vec<Vessel>) {
    const STEP: f32 = 0.006;
    for _ in 0..between(rng, 8, 16) {
        let mut p = c + V2::polar(unif(rng, 0.0, TAU)) * unif(rng, 0.0, 0.045);
        let mut phi = unif(rng, 0.0, TAU);
        let curl = if rng.bool(0.5) { 1.0 } else { -1.0 } * unif(rng, 8.0, 20.0);
        let steps = (unif(rng, 0.05, 0.14) / STEP) as usize;
        let width = unif(rng, 0.004, 0.007);
        let mut pts = vec![p];
        for _ in 0..steps {
            phi += curl * STEP + 0.35 * rng.normal() as f32;
            p = p + V2::polar(phi) * STEP;
            pts.push(p);
        }
        let widths = vec![width; pts.len()];
        out.push(Vessel {
            pts,
            widths,
            vein: false,
            depth: 9,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eye() -> Anatomy {
        Anatomy::new(&mut Rng::new(1), false, 0.0)
    }

    #[test]
    fn grade_zero_is_clean_and_lesions_grow_with_grade() {
        let eye = eye();
        let z = plan(0, &mut Rng::new(2), &eye);
        assert!(z.red.is_empty() && z.exudates.is_empty() && z.cotton.is_empty());
        assert!(z.new_vessels.is_empty() && z.beading == 0.0);
        let mut red = [0usize; 5];
        for seed in 0..30 {
            for g in 0..5u8 {
                red[g as usize] += plan(g, &mut Rng::new(seed), &eye).red.len();
            }
        }
        assert!(
            red[0] < red[1] && red[1] < red[2] && red[2] < red[3],
            "{red:?}"
        );
    }

    #[test]
    fn signature_lesions_appear_where_the_scale_says() {
        let eye = eye();
        for seed in 0..30 {
            let mild = plan(1, &mut Rng::new(seed), &eye);
            assert!(mild.exudates.is_empty() && mild.cotton.is_empty());
            let moderate = plan(2, &mut Rng::new(seed), &eye);
            assert!(!moderate.exudates.is_empty() && moderate.new_vessels.is_empty());
            let severe = plan(3, &mut Rng::new(seed), &eye);
            assert!(!severe.cotton.is_empty() && severe.beading > 0.0);
            assert!(severe.new_vessels.is_empty());
            let pdr = plan(4, &mut Rng::new(seed), &eye);
            assert!(!pdr.new_vessels.is_empty());
        }
    }

    #[test]
    fn lesions_stay_inside_the_fundus() {
        let eye = eye();
        for seed in 0..20 {
            let l = plan(3, &mut Rng::new(seed), &eye);
            for b in l.red.iter().chain(&l.exudates).chain(&l.cotton) {
                assert!(b.c.norm() < 1.0, "{:?}", b.c);
            }
        }
    }
}
