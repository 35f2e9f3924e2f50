//! Diabetic-retinopathy lesions for a grade, placed on a given eye, by the International
//! Clinical Diabetic Retinopathy severity scale (Wilkinson et al., Ophthalmology 2003), the
//! scale EyePACS graders used. What each grade draws:
//!
//! - **0 no DR**: nothing.
//! - **1 mild**: microaneurysms only, 1-14 (log-uniform: most eyes have a few).
//! - **2 moderate**: more than microaneurysms (2-30) alone, less than severe: with probability
//!   0.85 dot/blot/flame haemorrhages (3-60 in all, log-uniform, so never more than 20 in all
//!   four quadrants), 0.6 hard-exudate clusters (1-3), 0.35 cotton-wool spots (1-3), at least
//!   one of the three; venous beading in one quadrant at most (probability 0.1).
//! - **3 severe** (the 4-2-1 rule), any of: more than 20 intraretinal haemorrhages in each of
//!   the four quadrants (probability 0.75: 21-40 per quadrant); definite venous beading in
//!   2-4 quadrants (0.35); prominent IRMA in 1-4 quadrants (0.45); at least one of them, and
//!   on top of moderate-grade findings (10-60 microaneurysms, haemorrhages where the first
//!   criterion is not drawn, exudates 0.6, cotton-wool spots 0.6). No new vessels.
//! - **4 proliferative**: new vessels at the disc (probability 0.6) and/or elsewhere along the
//!   arcades (0.6, 1-3 tufts), preretinal (0.35) or vitreous (0.2) haemorrhage, at least one of
//!   them; on top of severe-grade findings (0.7) or moderate ones (0.3).
//!
//! Sizes are drawn in optic-disc diameters (DD), as graders judge them (Early Treatment
//! Diabetic Retinopathy Study photographs): a microaneurysm 0.025-0.065 DD across (under
//! 125 µm, so under a pixel at 64 px: grade 1 is hard at small sizes, as in real data), dot
//! haemorrhages 0.07-0.14 DD, blots 0.14-0.4 DD, flame haemorrhages 0.2-0.5 DD long, hard
//! exudates 0.03-0.12 DD in rings of 0.15-0.5 DD within 2 DD of the fovea, cotton-wool spots
//! 0.15-0.45 DD within 3 DD of the disc, preretinal haemorrhages 0.8-2.5 DD, vitreous haze
//! 1.5-4 DD. Quadrants are those of the field around its centre, split along the eye's
//! temporal-nasal and superior-inferior axes.
//!
//! Not modelled: macular oedema (retinal thickening is invisible in a photograph), laser
//! scars of treated eyes, tractional detachment, lesions other than DR (drusen, AMD, vein
//! occlusion), and the grader disagreement of real labels.

mod shapes;
#[cfg(test)]
mod tests;

use super::anatomy::{Anatomy, Vessel};
use super::raster::V2;
use crate::rng::Rng;
use shapes::{
    cotton_wool, exudate_cluster, haemorrhage, microaneurysms, near_trunk, point_in_quadrant,
    tortuous, tuft,
};
use std::f32::consts::{PI, TAU};

/// An elliptical mark, in fundus-normalised coordinates.
pub(super) struct Blob {
    pub c: V2,
    pub rx: f32,
    pub ry: f32,
    pub angle: f32,
    pub alpha: f32,
}

/// What was drawn, in the scale's terms (what the grade rules are checked against).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Findings {
    pub microaneurysms: usize,
    /// Intraretinal haemorrhages per quadrant (see [`quadrant`]).
    pub haemorrhages: [usize; 4],
    pub exudate_clusters: usize,
    pub cotton_wool: usize,
    pub beaded_quadrants: usize,
    pub irma_quadrants: usize,
    pub nvd: bool,
    pub nve: usize,
    pub preretinal: bool,
    pub vitreous: bool,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Findings {
    /// The 4-2-1 rule.
    pub fn severe(&self) -> bool {
        self.haemorrhages.iter().all(|&h| h > 20)
            || self.beaded_quadrants >= 2
            || self.irma_quadrants >= 1
    }

    pub fn proliferative(&self) -> bool {
        self.nvd || self.nve > 0 || self.preretinal || self.vitreous
    }
}

#[derive(Default)]
pub(super) struct Lesions {
    /// Microaneurysms and intraretinal haemorrhages (dark red).
    pub red: Vec<Blob>,
    /// Hard exudates (yellow, sharp).
    pub exudates: Vec<Blob>,
    /// Cotton-wool spots (pale, fluffy).
    pub cotton: Vec<Blob>,
    /// Intraretinal microvascular abnormalities: short, tortuous, dilated capillaries.
    pub irma: Vec<Vessel>,
    /// Neovascularisation: tufts of fine new vessels.
    pub new_vessels: Vec<Vessel>,
    /// Preretinal haemorrhages: large, dark, sharply bounded.
    pub preretinal: Vec<Blob>,
    /// Vitreous haemorrhage: a diffuse red haze in front of the retina.
    pub vitreous: Vec<Blob>,
    /// Relative amplitude of venous beading per quadrant (0 = none).
    pub beading: [f32; 4],
    pub findings: Findings,
}

pub(super) fn between(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below((hi - lo + 1) as u64) as usize
}

/// An integer in `lo..=hi` whose logarithm is uniform: small counts are the common ones.
fn log_between(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let (a, b) = ((lo as f64).ln(), ((hi + 1) as f64).ln());
    ((rng.uniform(a, b).exp()) as usize).clamp(lo, hi)
}

pub(super) fn unif(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    rng.uniform(lo as f64, hi as f64) as f32
}

/// The quadrant of a fundus point: 0 superotemporal, 1 inferotemporal, 2 superonasal,
/// 3 inferonasal.
pub(super) fn quadrant(eye: &Anatomy, p: V2) -> usize {
    let nasal = p.dot(eye.temporal) < 0.0;
    let inferior = p.dot(eye.superior) < 0.0;
    2 * usize::from(nasal) + usize::from(inferior)
}

/// The lesions of one eye of grade `grade` (grades above 4 are drawn as 4).
pub(super) fn plan(grade: u8, rng: &mut Rng, eye: &Anatomy) -> Lesions {
    let mut out = Lesions::default();
    let dd = 2.0 * eye.disc_r;
    match grade {
        0 => {}
        1 => {
            let n = log_between(rng, 1, 14);
            microaneurysms(rng, eye, dd, n, &mut out)
        }
        2 => moderate(rng, eye, dd, &mut out),
        3 => severe(rng, eye, dd, &mut out),
        _ => {
            if rng.bool(0.7) {
                severe(rng, eye, dd, &mut out);
            } else {
                moderate(rng, eye, dd, &mut out);
            }
            proliferative(rng, eye, dd, &mut out);
        }
    }
    out
}

fn moderate(rng: &mut Rng, eye: &Anatomy, dd: f32, out: &mut Lesions) {
    let n = log_between(rng, 2, 30);
    microaneurysms(rng, eye, dd, n, out);
    let mut h = rng.bool(0.85);
    let x = rng.bool(0.6);
    let c = rng.bool(0.35);
    if !(h || x || c) {
        h = true;
    }
    if h {
        for _ in 0..log_between(rng, 3, 60) {
            let q = rng.below(4) as usize;
            haemorrhage(rng, eye, dd, q, 0.75, out);
        }
    }
    if x {
        for _ in 0..between(rng, 1, 3) {
            exudate_cluster(rng, eye, dd, out);
        }
    }
    if c {
        for _ in 0..between(rng, 1, 3) {
            cotton_wool(rng, eye, dd, out);
        }
    }
    if rng.bool(0.1) {
        out.beading[rng.below(4) as usize] = unif(rng, 0.3, 0.5);
        out.findings.beaded_quadrants = 1;
    }
}

fn severe(rng: &mut Rng, eye: &Anatomy, dd: f32, out: &mut Lesions) {
    let n = log_between(rng, 10, 60);
    microaneurysms(rng, eye, dd, n, out);
    let mut criteria = [rng.bool(0.75), rng.bool(0.35), rng.bool(0.45)];
    if !criteria.iter().any(|&c| c) {
        criteria[rng.below(3) as usize] = true;
    }
    let [four_quadrants, beading, irma] = criteria;
    if four_quadrants {
        for q in 0..4 {
            for _ in 0..between(rng, 21, 40) {
                haemorrhage(rng, eye, dd, q, 0.95, out);
            }
        }
    } else {
        // Moderate-level haemorrhages: fewer than 84, so not more than 20 in all four.
        for _ in 0..log_between(rng, 10, 60) {
            let q = rng.below(4) as usize;
            haemorrhage(rng, eye, dd, q, 0.9, out);
        }
    }
    if beading {
        let mut qs = [0usize, 1, 2, 3];
        rng.shuffle(&mut qs);
        let k = between(rng, 2, 4);
        out.beading = [0.0; 4];
        for &q in &qs[..k] {
            out.beading[q] = unif(rng, 0.4, 0.65);
        }
        out.findings.beaded_quadrants = k;
    }
    if irma {
        let mut qs = [0usize, 1, 2, 3];
        rng.shuffle(&mut qs);
        let k = between(rng, 1, 4);
        for &q in &qs[..k] {
            for _ in 0..between(rng, 1, 3) {
                let c = point_in_quadrant(rng, eye, q, 0.85);
                let length = dd * unif(rng, 0.3, 0.8);
                let width = dd * unif(rng, 0.025, 0.04);
                tortuous(rng, c, length, width, 1, 0.6, &mut out.irma);
            }
        }
        out.findings.irma_quadrants = k;
    }
    if rng.bool(0.6) {
        for _ in 0..between(rng, 1, 4) {
            exudate_cluster(rng, eye, dd, out);
        }
    }
    if rng.bool(0.6) {
        for _ in 0..between(rng, 1, 5) {
            cotton_wool(rng, eye, dd, out);
        }
    }
}

fn proliferative(rng: &mut Rng, eye: &Anatomy, dd: f32, out: &mut Lesions) {
    let mut signs = [rng.bool(0.6), rng.bool(0.6), rng.bool(0.35), rng.bool(0.2)];
    if !signs.iter().any(|&s| s) {
        signs[rng.below(2) as usize] = true;
    }
    let [nvd, nve, preretinal, vitreous] = signs;
    if nvd {
        let c = eye.disc + V2::polar(unif(rng, 0.0, TAU)) * (dd * unif(rng, 0.0, 0.5));
        tuft(rng, c, dd, &mut out.new_vessels);
        out.findings.nvd = true;
    }
    if nve {
        let k = between(rng, 1, 3);
        for _ in 0..k {
            let c = near_trunk(rng, eye, 0.3 * dd);
            tuft(rng, c, dd, &mut out.new_vessels);
        }
        out.findings.nve = k;
    }
    if preretinal {
        // Boat-shaped, below the arcades or in front of the posterior pole.
        let c = near_trunk(rng, eye, dd);
        let rx = 0.5 * dd * unif(rng, 0.8, 2.5);
        out.preretinal.push(Blob {
            c,
            rx,
            ry: rx * unif(rng, 0.45, 0.7),
            angle: unif(rng, -0.3, 0.3) + (eye.temporal.y).atan2(eye.temporal.x),
            alpha: unif(rng, 0.85, 1.0),
        });
        out.findings.preretinal = true;
    }
    if vitreous {
        let q = rng.below(4) as usize;
        let c = point_in_quadrant(rng, eye, q, 0.6);
        let r = dd * unif(rng, 1.5, 4.0);
        out.vitreous.push(Blob {
            c,
            rx: r,
            ry: r * unif(rng, 0.7, 1.0),
            angle: unif(rng, 0.0, PI),
            alpha: unif(rng, 0.35, 0.7),
        });
        out.findings.vitreous = true;
    }
}
