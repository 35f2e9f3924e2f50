//! The healthy eye: where the optic disc and macula sit, and the retinal vessel tree.
//!
//! Positions are in fundus-normalised image coordinates (fundus centre at the origin, radius 1,
//! y down). Vessels are grown in an eye-centred frame (angles measured from the temporal
//! direction towards the superior one) so one description serves both eyes: mirroring the
//! frame moves the disc to the other side, as in a real right/left pair.

use super::raster::V2;
use crate::rng::Rng;
use std::f32::consts::PI;

/// A vessel as a polyline with a width (fundus radii) per point.
pub(super) struct Vessel {
    pub pts: Vec<V2>,
    pub widths: Vec<f32>,
    pub vein: bool,
    /// 0 for the trunks leaving the disc, +1 per branching.
    pub depth: u8,
}

pub(super) struct Anatomy {
    pub disc: V2,
    pub disc_r: f32,
    pub macula: V2,
    /// Unit vector from the disc towards the macula.
    pub temporal: V2,
    /// Unit vector towards the top of the retina.
    pub superior: V2,
    pub vessels: Vec<Vessel>,
}

/// Where a vessel starts growing.
struct Sprout {
    p: V2,
    /// Heading in the eye frame (radians from temporal towards superior).
    phi: f32,
    /// Steady turning rate (radians per fundus radius); the arcades' curve around the macula.
    curl: f32,
    width: f32,
    vein: bool,
    depth: u8,
}

const DEG: f32 = PI / 180.0;
/// Vessels narrower than this (fundus radii) are no longer drawn.
const MIN_WIDTH: f32 = 0.004;
const STEP: f32 = 0.012;

impl Anatomy {
    /// A random healthy eye. `rotation` (radians) tilts the whole picture, as a camera held
    /// slightly askew does.
    pub fn new(rng: &mut Rng, right_eye: bool, rotation: f32) -> Self {
        let side = if right_eye { -1.0 } else { 1.0 };
        let (s, c) = rotation.sin_cos();
        let temporal = V2::new(side * c, side * s);
        let superior = V2::new(s, -c);
        let disc_r = rng.uniform(0.105, 0.13) as f32;
        let disc = temporal * -(rng.uniform(0.36, 0.46) as f32)
            + superior * (rng.uniform(-0.06, 0.06) as f32);
        // The fovea lies about 2.5 disc diameters temporal to the disc, slightly below it.
        let dd = 2.0 * disc_r * rng.uniform(0.92, 1.08) as f32;
        let macula = disc + temporal * (2.5 * dd) - superior * (0.25 * disc_r);
        let mut eye = Anatomy {
            disc,
            disc_r,
            macula,
            temporal,
            superior,
            vessels: Vec::new(),
        };
        eye.grow_tree(rng);
        eye
    }

    /// Image-space direction of eye-frame heading `phi`.
    pub fn dir(&self, phi: f32) -> V2 {
        self.temporal * phi.cos() + self.superior * phi.sin()
    }

    fn grow_tree(&mut self, rng: &mut Rng) {
        let mut sprouts = Vec::new();
        // The four arcades, each an artery and a vein running side by side: the temporal
        // ones leave steeply and curl around the macula, the nasal ones fan out gently.
        for (phi, curl) in [(75.0, -2.3), (-75.0, 2.3), (130.0, 0.4), (-130.0, -0.4)] {
            for vein in [true, false] {
                let offset = if vein { 4.0 } else { -4.0 } * f32::signum(phi);
                let phi = (phi + offset + 6.0 * rng.normal() as f32) * DEG;
                sprouts.push(Sprout {
                    p: self.disc + self.dir(phi) * (0.15 * self.disc_r),
                    phi,
                    curl: curl * rng.uniform(0.8, 1.2) as f32,
                    width: if vein { 0.026 } else { 0.019 } * rng.uniform(0.9, 1.1) as f32,
                    vein,
                    depth: 0,
                });
            }
        }
        // Small direct branches towards the macula.
        for sign in [1.0f32, -1.0] {
            for _ in 0..2 {
                let phi = sign * rng.uniform(12.0, 35.0) as f32 * DEG;
                sprouts.push(Sprout {
                    p: self.disc + self.dir(phi) * (0.8 * self.disc_r),
                    phi,
                    curl: -sign * rng.uniform(0.0, 1.5) as f32,
                    width: rng.uniform(0.006, 0.009) as f32,
                    vein: rng.bool(0.5),
                    depth: 1,
                });
            }
        }
        while let Some(sprout) = sprouts.pop() {
            self.grow(rng, sprout, &mut sprouts);
        }
    }

    /// Walks one vessel outwards, tapering and wobbling, and queues its side branches.
    fn grow(&mut self, rng: &mut Rng, s: Sprout, sprouts: &mut Vec<Sprout>) {
        let (mut p, mut phi, mut width) = (s.p, s.phi, s.width);
        let (mut since_branch, mut along) = (0.0, 0.0f32);
        let mut next_branch = rng.uniform(0.05, 0.15) as f32;
        let (mut pts, mut widths) = (Vec::new(), Vec::new());
        // Side branches are twistier and narrow faster than the trunks they leave.
        let wobble = (0.22 + 0.08 * s.depth as f32) * STEP.sqrt();
        let taper = 0.8 + 0.5 * s.depth as f32;
        for _ in 0..400 {
            pts.push(p);
            widths.push(width);
            // Vessels end short of the fovea (its centre is free of vessels).
            if p.norm() > 1.0 || width < MIN_WIDTH || (p - self.macula).norm() < 0.09 {
                break;
            }
            // The turning fades with distance: the arcades bend around the macula, then run
            // on towards the periphery instead of circling it.
            along += STEP;
            phi += s.curl * (-along / 0.7).exp() * STEP + wobble * rng.normal() as f32;
            p = p + self.dir(phi) * STEP;
            width *= 1.0 - taper * STEP;
            since_branch += STEP;
            if since_branch > next_branch && s.depth < 4 && width > 1.8 * MIN_WIDTH {
                since_branch = 0.0;
                next_branch = rng.uniform(0.06, 0.2) as f32 * (1.0 + 0.4 * s.depth as f32);
                let side = if rng.bool(0.5) { 1.0 } else { -1.0 };
                sprouts.push(Sprout {
                    p,
                    phi: phi + side * rng.uniform(0.45, 1.1) as f32,
                    curl: side * rng.uniform(0.0, 0.6) as f32,
                    width: width * rng.uniform(0.4, 0.7) as f32,
                    vein: s.vein,
                    depth: s.depth + 1,
                });
                width *= 0.93;
            }
        }
        if pts.len() >= 2 {
            self.vessels.push(Vessel {
                pts,
                widths,
                vein: s.vein,
                depth: s.depth,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disc_sits_on_the_eyes_own_side_with_macula_temporal() {
        for seed in 0..20 {
            let left = Anatomy::new(&mut Rng::new(seed), false, 0.0);
            let right = Anatomy::new(&mut Rng::new(seed), true, 0.0);
            assert!(left.disc.x < -0.2 && right.disc.x > 0.2);
            // Macula about 2.5 disc diameters from the disc, on the temporal side.
            for eye in [&left, &right] {
                let d = (eye.macula - eye.disc).norm() / (2.0 * eye.disc_r);
                assert!((2.2..2.8).contains(&d), "{d}");
                assert!(eye.macula.x.abs() < eye.disc.x.abs());
            }
        }
    }

    #[test]
    fn vessels_start_at_the_disc_taper_and_stay_inside() {
        let eye = Anatomy::new(&mut Rng::new(5), false, 0.1);
        assert!(eye.vessels.len() > 20, "{}", eye.vessels.len());
        for v in eye.vessels.iter().filter(|v| v.depth == 0) {
            assert!((v.pts[0] - eye.disc).norm() < eye.disc_r);
            assert!(v.widths.last() < v.widths.first());
        }
        for v in &eye.vessels {
            assert!(v.pts.iter().all(|p| p.norm() < 1.05));
        }
    }
}
