//! Anti-aliased coverage masks in pixel coordinates. Everything the renderer draws is first
//! rasterised into a mask (max-composited, so overlapping strokes of one structure do not
//! darken twice) and then blended into the picture with that structure's tint.

use std::ops::{Add, Mul, Sub};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct V2 {
    pub x: f32,
    pub y: f32,
}

impl V2 {
    pub const fn new(x: f32, y: f32) -> Self {
        V2 { x, y }
    }

    pub fn polar(angle: f32) -> Self {
        V2::new(angle.cos(), angle.sin())
    }

    pub fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }

    pub fn norm(self) -> f32 {
        self.dot(self).sqrt()
    }

    pub fn angle(self) -> f32 {
        self.y.atan2(self.x)
    }
}

impl Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        V2::new(self.x + o.x, self.y + o.y)
    }
}

impl Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        V2::new(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, k: f32) -> V2 {
        V2::new(self.x * k, self.y * k)
    }
}

/// Maps fundus-normalised coordinates (fundus centre at the origin, fundus radius 1, y down)
/// to pixel coordinates.
#[derive(Debug, Clone, Copy)]
pub(super) struct ToPx {
    pub centre: V2,
    pub radius: f32,
}

impl ToPx {
    pub fn apply(&self, p: V2) -> V2 {
        self.centre + p * self.radius
    }
}

/// Per-pixel coverage in [0, 1] of one kind of structure.
pub(super) struct Mask {
    pub w: usize,
    pub h: usize,
    pub a: Vec<f32>,
}

impl Mask {
    pub fn new(w: usize, h: usize) -> Self {
        Mask {
            w,
            h,
            a: vec![0.0; w * h],
        }
    }

    fn put(&mut self, x: usize, y: usize, v: f32) {
        let slot = &mut self.a[y * self.w + x];
        if v > *slot {
            *slot = v.min(1.0);
        }
    }

    /// Pixel index ranges covering the box [lo, hi], clipped to the mask.
    fn span(&self, lo: V2, hi: V2) -> Option<(usize, usize, usize, usize)> {
        let x0 = lo.x.floor().max(0.0);
        let y0 = lo.y.floor().max(0.0);
        let x1 = hi.x.ceil().min(self.w as f32 - 1.0);
        let y1 = hi.y.ceil().min(self.h as f32 - 1.0);
        if x0 > x1 || y0 > y1 || !(x0.is_finite() && y0.is_finite()) {
            return None;
        }
        Some((x0 as usize, x1 as usize, y0 as usize, y1 as usize))
    }

    /// A stroke `width` px wide from `a` to `b` with round caps. Strokes thinner than a pixel are
    /// spread over a pixel and made proportionally fainter, so fine vessels fade out the way
    /// they do in a downsampled photograph instead of breaking into dots.
    pub fn segment(&mut self, a: V2, b: V2, width: f32, alpha: f32) {
        let half = width * 0.5;
        let reach = half.max(0.5) + 1.0;
        let lo = V2::new(a.x.min(b.x) - reach, a.y.min(b.y) - reach);
        let hi = V2::new(a.x.max(b.x) + reach, a.y.max(b.y) + reach);
        let Some((x0, x1, y0, y1)) = self.span(lo, hi) else {
            return;
        };
        let ab = b - a;
        let l2 = ab.dot(ab).max(1e-12);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let p = V2::new(x as f32 + 0.5, y as f32 + 0.5);
                let t = ((p - a).dot(ab) / l2).clamp(0.0, 1.0);
                let d = (p - (a + ab * t)).norm();
                let cov = if width >= 1.0 {
                    (half + 0.5 - d).clamp(0.0, 1.0)
                } else {
                    width * (1.0 - d).clamp(0.0, 1.0)
                };
                if cov > 0.0 {
                    self.put(x, y, cov * alpha);
                }
            }
        }
    }

    /// An ellipse with semi-axes `rx`, `ry` px, its `rx` axis at `angle`. Hard blobs get an
    /// anti-aliased edge; soft ones fall off smoothly from the centre (cotton-wool spots).
    /// Sub-pixel blobs are widened to half a pixel and dimmed to keep their ink, so a
    /// microaneurysm stays a faint dot at 64 px rather than vanishing between samples.
    pub fn ellipse(&mut self, c: V2, rx: f32, ry: f32, angle: f32, alpha: f32, soft: bool) {
        let rmin = rx.min(ry).max(1e-3);
        let (k, gain) = if rmin < 0.5 {
            (0.5 / rmin, (rmin / 0.5).powi(2))
        } else {
            (1.0, 1.0)
        };
        let (rx, ry, rmin) = (rx * k, ry * k, rmin * k);
        let reach = rx.max(ry) + 1.5;
        let Some((x0, x1, y0, y1)) =
            self.span(c - V2::new(reach, reach), c + V2::new(reach, reach))
        else {
            return;
        };
        let (s, co) = angle.sin_cos();
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d = V2::new(x as f32 + 0.5, y as f32 + 0.5) - c;
                let u = (d.x * co + d.y * s) / rx;
                let v = (-d.x * s + d.y * co) / ry;
                let q = (u * u + v * v).sqrt();
                let cov = if soft {
                    let t = (1.0 - q * q).max(0.0);
                    t * t
                } else {
                    ((1.0 - q) * rmin + 0.5).clamp(0.0, 1.0)
                };
                if cov > 0.0 {
                    self.put(x, y, cov * alpha * gain);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(m: &Mask) -> f32 {
        m.a.iter().sum()
    }

    #[test]
    fn segment_covers_its_area() {
        // A 4 px wide, 20 px long horizontal stroke: about 4*20 + caps (pi*2^2) ~ 92.6 px.
        let mut m = Mask::new(40, 20);
        m.segment(V2::new(10.0, 10.0), V2::new(30.0, 10.0), 4.0, 1.0);
        let area = total(&m);
        assert!((area - 92.6).abs() < 4.0, "{area}");
        assert_eq!(m.a[10 * 40 + 20], 1.0);
        assert_eq!(m.a[2 * 40 + 20], 0.0);
    }

    #[test]
    fn thin_and_tiny_marks_keep_their_ink() {
        let mut m = Mask::new(40, 20);
        m.segment(V2::new(5.0, 10.0), V2::new(35.0, 10.0), 0.3, 1.0);
        let ink = total(&m);
        // 0.3 px x 30 px = 9 px of ink; the cone spread keeps it within a factor of two.
        assert!(ink > 4.5 && ink < 18.0, "{ink}");
        let mut dot = Mask::new(10, 10);
        dot.ellipse(V2::new(5.0, 5.0), 0.25, 0.25, 0.0, 1.0, false);
        let ink = total(&dot);
        assert!(ink > 0.1 && ink < 0.6, "{ink}"); // pi * 0.25^2 ~ 0.2
    }

    #[test]
    fn ellipse_is_oriented() {
        let mut m = Mask::new(40, 40);
        m.ellipse(
            V2::new(20.0, 20.0),
            10.0,
            3.0,
            std::f32::consts::FRAC_PI_2,
            1.0,
            false,
        );
        // Rotated a quarter turn: long axis vertical.
        assert_eq!(m.a[26 * 40 + 20], 1.0);
        assert_eq!(m.a[20 * 40 + 28], 0.0);
    }
}
