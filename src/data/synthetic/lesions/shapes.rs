//! The marks each lesion leaves, and where they go: sizes in disc diameters (`dd`), places
//! by quadrant, around the macula or along the big vessels (see the parent module's docs).

use super::super::anatomy::{Anatomy, Vessel};
use super::super::raster::V2;
use super::{between, unif, Blob, Lesions};
use crate::rng::Rng;
use std::f32::consts::{FRAC_PI_2, PI, TAU};

pub(super) fn microaneurysms(rng: &mut Rng, eye: &Anatomy, dd: f32, n: usize, out: &mut Lesions) {
    for _ in 0..n {
        // Mostly in the posterior pole, around the macula.
        let c = if rng.bool(0.7) {
            around(rng, eye, eye.macula, 3.0 * dd)
        } else {
            let q = rng.below(4) as usize;
            point_in_quadrant(rng, eye, q, 0.9)
        };
        let r = 0.5 * dd * unif(rng, 0.025, 0.065);
        out.red.push(Blob {
            c,
            rx: r,
            ry: r,
            angle: 0.0,
            alpha: unif(rng, 0.85, 1.0),
        });
    }
    out.findings.microaneurysms += n;
}

/// One intraretinal haemorrhage in quadrant `q`: a dot (45%), a blot of a few lobes (40%) or
/// a flame along the nerve fibres, pointing away from the disc (15%).
pub(super) fn haemorrhage(
    rng: &mut Rng,
    eye: &Anatomy,
    dd: f32,
    q: usize,
    reach: f32,
    out: &mut Lesions,
) {
    let c = point_in_quadrant(rng, eye, q, reach);
    let kind = rng.f32();
    let alpha = unif(rng, 0.85, 1.0);
    if kind < 0.45 {
        let r = 0.5 * dd * unif(rng, 0.07, 0.14);
        out.red.push(Blob {
            c,
            rx: r,
            ry: r * unif(rng, 0.8, 1.0),
            angle: unif(rng, 0.0, PI),
            alpha,
        });
    } else if kind < 0.85 {
        let size = 0.5 * dd * unif(rng, 0.14, 0.4);
        for _ in 0..between(rng, 1, 3) {
            let off = V2::polar(unif(rng, 0.0, TAU)) * (size * unif(rng, 0.0, 0.6));
            let rx = size * unif(rng, 0.6, 1.0);
            out.red.push(Blob {
                c: c + off,
                rx,
                ry: rx * unif(rng, 0.6, 1.0),
                angle: unif(rng, 0.0, PI),
                alpha,
            });
        }
    } else {
        out.red.push(Blob {
            c,
            rx: 0.5 * dd * unif(rng, 0.2, 0.5),
            ry: 0.5 * dd * unif(rng, 0.05, 0.1),
            angle: (c - eye.disc).angle(),
            alpha,
        });
    }
    out.findings.haemorrhages[q] += 1;
}

/// Hard exudates gather in (partial) circinate rings around leaking vessels near the macula.
pub(super) fn exudate_cluster(rng: &mut Rng, eye: &Anatomy, dd: f32, out: &mut Lesions) {
    let centre = around(rng, eye, eye.macula, 2.0 * dd);
    let ring = dd * unif(rng, 0.15, 0.5);
    let start = unif(rng, 0.0, TAU);
    let arc = unif(rng, PI, TAU);
    for _ in 0..between(rng, 5, 25) {
        let c = centre + V2::polar(start + arc * rng.f32()) * (ring * unif(rng, 0.7, 1.3));
        let r = 0.5 * dd * unif(rng, 0.03, 0.12);
        out.exudates.push(Blob {
            c,
            rx: r,
            ry: r * unif(rng, 0.6, 1.0),
            angle: unif(rng, 0.0, PI),
            alpha: unif(rng, 0.8, 1.0),
        });
    }
    out.findings.exudate_clusters += 1;
}

/// A cotton-wool spot: a pale, soft patch of a few lobes, beside the big vessels near the disc.
pub(super) fn cotton_wool(rng: &mut Rng, eye: &Anatomy, dd: f32, out: &mut Lesions) {
    let mut c = near_trunk(rng, eye, 0.3 * dd);
    if (c - eye.disc).norm() > 3.0 * dd {
        c = eye.disc + (c - eye.disc) * (3.0 * dd / (c - eye.disc).norm());
    }
    let size = 0.5 * dd * unif(rng, 0.15, 0.45);
    for _ in 0..between(rng, 2, 4) {
        let off = V2::polar(unif(rng, 0.0, TAU)) * (size * unif(rng, 0.0, 0.6));
        let rx = size * unif(rng, 0.6, 1.1);
        out.cotton.push(Blob {
            c: c + off,
            rx,
            ry: rx * unif(rng, 0.5, 0.9),
            angle: unif(rng, 0.0, PI),
            alpha: unif(rng, 0.6, 0.85),
        });
    }
    out.findings.cotton_wool += 1;
}

/// A point of quadrant `q`, uniform over its area within `reach` of the field centre, off
/// the optic disc.
pub(super) fn point_in_quadrant(rng: &mut Rng, eye: &Anatomy, q: usize, reach: f32) -> V2 {
    let phi0 = match q {
        0 => 0.0,
        1 => -FRAC_PI_2,
        2 => FRAC_PI_2,
        _ => PI,
    };
    let mut p = V2::new(0.0, 0.0);
    for _ in 0..64 {
        p = eye.dir(phi0 + unif(rng, 0.0, FRAC_PI_2)) * (reach * rng.f32().sqrt());
        if (p - eye.disc).norm() > 1.3 * eye.disc_r {
            break;
        }
    }
    p
}

/// A point within `radius` of `centre`, inside the field and off the disc.
pub(super) fn around(rng: &mut Rng, eye: &Anatomy, centre: V2, radius: f32) -> V2 {
    for _ in 0..64 {
        let p = centre + V2::polar(unif(rng, 0.0, TAU)) * (radius * rng.f32().sqrt());
        if p.norm() < 0.92 && (p - eye.disc).norm() > 1.3 * eye.disc_r {
            return p;
        }
    }
    eye.macula
}

/// A point beside one of the big vessels, between the disc and the periphery.
pub(super) fn near_trunk(rng: &mut Rng, eye: &Anatomy, offset: f32) -> V2 {
    let trunks: Vec<&Vessel> = eye.vessels.iter().filter(|v| v.depth == 0).collect();
    if trunks.is_empty() {
        return around(rng, eye, eye.macula, 0.6);
    }
    let v = trunks[rng.below(trunks.len() as u64) as usize];
    let n = v.pts.len();
    let i = ((n as f32 * unif(rng, 0.1, 0.6)) as usize).min(n - 1);
    let p = v.pts[i] + V2::polar(unif(rng, 0.0, TAU)) * (offset * rng.f32());
    if p.norm() < 0.92 {
        p
    } else {
        around(rng, eye, eye.macula, 0.6)
    }
}

/// A neovascular tuft around `c`: many fine, looping vessels (NVD or NVE).
pub(super) fn tuft(rng: &mut Rng, c: V2, dd: f32, out: &mut Vec<Vessel>) {
    for _ in 0..between(rng, 8, 16) {
        let start = c + V2::polar(unif(rng, 0.0, TAU)) * (dd * unif(rng, 0.0, 0.25));
        let length = dd * unif(rng, 0.2, 0.6);
        let width = dd * unif(rng, 0.015, 0.03);
        tortuous(rng, start, length, width, 9, 1.0, out);
    }
}

/// A fine tortuous vessel of `length` from `start`; `curl` 1 loops like new vessels, less
/// wanders like IRMA.
pub(super) fn tortuous(
    rng: &mut Rng,
    start: V2,
    length: f32,
    width: f32,
    depth: u8,
    curl: f32,
    out: &mut Vec<Vessel>,
) {
    const STEP: f32 = 0.006;
    let mut p = start;
    let mut phi = unif(rng, 0.0, TAU);
    let turn = curl * if rng.bool(0.5) { 1.0 } else { -1.0 } * unif(rng, 8.0, 20.0);
    let steps = ((length / STEP) as usize).max(2);
    let mut pts = vec![p];
    for _ in 0..steps {
        phi += turn * STEP + 0.35 * rng.normal() as f32;
        p = p + V2::polar(phi) * STEP;
        pts.push(p);
    }
    let widths = vec![width; pts.len()];
    out.push(Vessel {
        pts,
        widths,
        vein: false,
        depth,
    });
}
