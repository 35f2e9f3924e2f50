//! CPU batch-norm kernels over contiguous `[B, C, HW]` f32 data, following PyTorch's CPU
//! implementation (`batch_norm_cpu_*` in ATen): per-channel sums in f64, the affine transform
//! applied as one multiply-add per value, and the backward in one pass over `x` and `dy`.
//! Channels (statistics, backward sums) or planes (transforms) are spread over rayon's pool.

use crate::model::conv_kernels::SendPtr;
use rayon::prelude::*;

/// Data shape: `batch` images of `channels` planes of `plane` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl BnShape {
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel.
    pub fn count(&self) -> usize {
        self.batch * self.plane
    }

    fn planes<'a>(&self, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (p, ch) = (self.plane, self.channels);
        (0..self.batch).map(move |b| &x[(b * ch + c) * p..(b * ch + c + 1) * p])
    }
}

/// Per-channel mean and biased variance from `Σx` and `Σx²`, gathered in one pass in f64.
/// A second pass for `Σ(x - mean)²` read the data again (each channel's planes once more)
/// for a precision f64 does not need here: `Σx² / n - mean²` loses about `log10(mean² /
/// var)` of f64's 16 digits, and a batch norm's inputs would need a mean 10⁴ standard
/// deviations from zero before that reached f32's 7.
pub fn stats(s: BnShape, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(x.len(), s.len());
    let n = s.count().max(1) as f64;
    (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (sum, sq) = s
                .planes(x, c)
                .map(sums_f64)
                .fold((0.0, 0.0), |(a, b), (p, q)| (a + p, b + q));
            let mean = sum / n;
            (mean, (sq / n - mean * mean).max(0.0))
        })
        .unzip()
}

/// `(Σ f(i), Σ g(i))` over `0..len` in f64 in one pass, eight lanes so the adds vectorise;
/// still exact enough that the order hardly matters.
#[inline(always)]
fn lanes_sum2(len: usize, f: impl Fn(usize) -> f64, g: impl Fn(usize) -> f64) -> (f64, f64) {
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    let full = len / 8 * 8;
    for base in (0..full).step_by(8) {
        for l in 0..8 {
            a[l] += f(base + l);
            b[l] += g(base + l);
        }
    }
    (
        a.iter().sum::<f64>() + (full..len).map(&f).sum::<f64>(),
        b.iter().sum::<f64>() + (full..len).map(&g).sum::<f64>(),
    )
}

/// `(Σx, Σx²)` over one plane in f64.
fn sums_f64(p: &[f32]) -> (f64, f64) {
    lanes_sum2(p.len(), |i| p[i] as f64, |i| (p[i] as f64) * (p[i] as f64))
}

/// The fused ReLU of a batch norm, as its backward sees it: the affine map the forward
/// applied, `x * scale[c] + shift[c]`, from which the ReLU's mask is computed again.
#[derive(Clone, Copy)]
pub struct Relu<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
}

/// `dy`, zeroed where the fused ReLU's output was not positive. That output was
/// `max(x * a + b, 0)`, and the same two operations on the same floats round the same way
/// here, so the mask is the forward's bit for bit without reading the output back (one
/// whole pass over memory fewer in each of the backward's two passes). A NaN, which the
/// forward's `max` turned into 0, is masked here too.
#[inline(always)]
fn kept(g: f32, x: f32, a: f32, b: f32) -> f32 {
    if x * a + b > 0.0 {
        g
    } else {
        0.0
    }
}

/// `(Σ g, Σ g (x - m))` over one plane in f64, `g` being `dy` masked by the fused ReLU's
/// `(scale, shift)` for this plane's channel when given.
fn plane_sums(dy: &[f32], x: &[f32], relu: Option<(f32, f32)>, m: f64) -> (f64, f64) {
    let x = &x[..dy.len()];
    match relu {
        Some((a, b)) => {
            let g = |i: usize| kept(dy[i], x[i], a, b) as f64;
            lanes_sum2(dy.len(), g, |i| g(i) * (x[i] as f64 - m))
        }
        None => {
            let g = |i: usize| dy[i] as f64;
            lanes_sum2(dy.len(), g, |i| g(i) * (x[i] as f64 - m))
        }
    }
}

/// `y = x * scale[c] + shift[c]`, then `max(y, 0)` when `relu`.
pub fn affine(s: BnShape, x: &[f32], scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    let mut y = vec![0f32; s.len()];
    affine_into(s, x, scale, shift, relu, &mut y);
    y
}

/// [`affine`] into `y`.
pub fn affine_into(s: BnShape, x: &[f32], scale: &[f32], shift: &[f32], relu: bool, y: &mut [f32]) {
    assert_eq!((x.len(), y.len()), (s.len(), s.len()));
    y.par_chunks_mut(s.plane.max(1))
        .zip(x.par_chunks(s.plane.max(1)))
        .enumerate()
        .for_each(|(i, (yp, xp))| {
            let c = i % s.channels;
            let (a, b) = (scale[c], shift[c]);
            if relu {
                for (o, &v) in yp.iter_mut().zip(xp) {
                    *o = (v * a + b).max(0.0);
                }
            } else {
                for (o, &v) in yp.iter_mut().zip(xp) {
                    *o = v * a + b;
                }
            }
        });
}

/// The skip connection of a residual block, as [`affine_add_relu`] reads it.
#[derive(Clone, Copy)]
pub enum Skip<'a> {
    /// The block's input itself.
    Identity(&'a [f32]),
    /// A downsample branch's convolution output and its batch norm's `(scale, shift)`.
    Affine(&'a [f32], &'a [f32], &'a [f32]),
}

/// The end of a residual block in one pass: `out = max(x * scale[c] + shift[c] + skip, 0)`,
/// where `skip` is the identity or the downsample's batch norm applied on the fly (PyTorch
/// writes both batch norms' outputs, then the sum, then the ReLU).
pub fn affine_add_relu(
    s: BnShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    skip: Skip,
    out: &mut [f32],
) {
    assert_eq!((x.len(), out.len()), (s.len(), s.len()));
    let p = s.plane.max(1);
    out.par_chunks_mut(p)
        .zip(x.par_chunks(p))
        .enumerate()
        .for_each(|(i, (o, xp))| {
            let c = i % s.channels;
            let (a, b) = (scale[c], shift[c]);
            let r = i * p..i * p + o.len();
            match skip {
                Skip::Identity(id) => {
                    for ((o, &v), &d) in o.iter_mut().zip(xp).zip(&id[r]) {
                        // The sum first, as `bn(x) + identity` rounds.
                        *o = ((v * a + b) + d).max(0.0);
                    }
                }
                Skip::Affine(z, sc, sh) => {
                    let (a2, b2) = (sc[c], sh[c]);
                    for ((o, &v), &d) in o.iter_mut().zip(xp).zip(&z[r]) {
                        *o = ((v * a + b) + (d * a2 + b2)).max(0.0);
                    }
                }
            }
        });
}

/// Gradients of a training-mode batch norm (batch statistics `mean`, `invstd`) for upstream
/// gradient `dy`; with `relu`, the fused ReLU's affine map masks `dy`.
/// Returns `(dx, dweight, dbias)`.
pub fn backward(
    s: BnShape,
    x: &[f32],
    dy: &[f32],
    relu: Option<Relu>,
    mean: &[f64],
    invstd: &[f64],
    weight: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; s.len()];
    let (dweight, dbias) = backward_into(s, x, dy, relu, mean, invstd, weight, &mut dx);
    (dx, dweight, dbias)
}

/// [`backward`] with `dx` written into the caller's buffer; returns `(dweight, dbias)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_into(
    s: BnShape,
    x: &[f32],
    dy: &[f32],
    relu: Option<Relu>,
    mean: &[f64],
    invstd: &[f64],
    weight: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!((x.len(), dy.len(), dx.len()), (s.len(), s.len(), s.len()));
    let n = s.count().max(1) as f64;
    let p = s.plane;
    let dxp = SendPtr(dx.as_mut_ptr());
    // Per channel, its two sums and then its dx, while the channel's dy and x are still in
    // cache (with the sums of every channel first, the second pass read them from memory
    // again). The arithmetic is the same, value for value.
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let relu_c = relu.map(|r| (r.scale[c], r.shift[c]));
            // Per channel: sum(dy) and sum(dy * (x - mean)), in f64.
            let (sdy, sdot) = s
                .planes(dy, c)
                .zip(s.planes(x, c))
                .map(|(dyp, xp)| plane_sums(dyp, xp, relu_c, mean[c]))
                .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d));
            let is = invstd[c];
            let (gmean, k) = (sdy / n, sdot * is * is / n);
            let w = is * weight[c] as f64;
            // dx = (dy - mean(dy) - (x - mean) * k) * invstd * weight.
            let (a1, a2, a3) = (w as f32, (-k * w) as f32, (-gmean * w) as f32);
            let m = mean[c] as f32;
            let dx_of = |g: f32, xv: f32| a1 * g + a2 * (xv - m) + a3;
            for (b, (dyp, xp)) in s.planes(dy, c).zip(s.planes(x, c)).enumerate() {
                let o = (b * s.channels + c) * p;
                // SAFETY: plane (b, c) of dx, inside it, written by channel c's task alone.
                let dxp = unsafe { std::slice::from_raw_parts_mut(dxp.get().add(o), p) };
                match relu_c {
                    Some((scale, shift)) => {
                        for (d, (&g, &xv)) in dxp.iter_mut().zip(dyp.iter().zip(xp)) {
                            *d = dx_of(kept(g, xv, scale, shift), xv);
                        }
                    }
                    None => {
                        for (d, (&g, &xv)) in dxp.iter_mut().zip(dyp.iter().zip(xp)) {
                            *d = dx_of(g, xv);
                        }
                    }
                }
            }
            (sdy, sdot)
        })
        .collect();
    let dweight = sums
        .iter()
        .zip(invstd)
        .map(|(&(_, d), &is)| (d * is) as f32)
        .collect();
    let dbias = sums.iter().map(|&(g, _)| g as f32).collect();
    (dweight, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::randn;

    /// The backward's `dx` is, value for value, `a1 dy + a2 (x - mean) + a3` with each
    /// channel's coefficients from its two sums, and the parameter gradients those sums:
    /// made per channel while its data is in cache, they must stay these floats.
    #[test]
    fn backward_is_its_formula_value_for_value() {
        let s = BnShape {
            batch: 3,
            channels: 5,
            plane: 37,
        };
        let (x, dy) = (randn(&[s.len()], 21), randn(&[s.len()], 22));
        let (mean, var) = stats(s, &x);
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        let weight: Vec<f32> = (0..s.channels).map(|c| 0.5 + c as f32 * 0.3).collect();
        let (dx, dweight, dbias) = backward(s, &x, &dy, None, &mean, &invstd, &weight);
        let n = s.count() as f64;
        for c in 0..s.channels {
            let plane =
                |b: usize| (b * s.channels + c) * s.plane..(b * s.channels + c + 1) * s.plane;
            let (sdy, sdot) = (0..s.batch)
                .map(|b| plane_sums(&dy[plane(b)], &x[plane(b)], None, mean[c]))
                .fold((0.0, 0.0), |(a, b), (p, q)| (a + p, b + q));
            assert_eq!(dbias[c].to_bits(), (sdy as f32).to_bits());
            assert_eq!(dweight[c].to_bits(), ((sdot * invstd[c]) as f32).to_bits());
            let w = invstd[c] * weight[c] as f64;
            let k = sdot * invstd[c] * invstd[c] / n;
            let (a1, a2, a3) = (w as f32, (-k * w) as f32, (-(sdy / n) * w) as f32);
            for b in 0..s.batch {
                for o in plane(b) {
                    let want = a1 * dy[o] + a2 * (x[o] - mean[c] as f32) + a3;
                    assert_eq!(dx[o].to_bits(), want.to_bits(), "channel {c}, index {o}");
                }
            }
        }
    }

    /// The one-pass variance holds on data far from zero (means 1e3 to 3e3, standard
    /// deviation 0.1: mean² / var up to 9e8), against two passes in f64.
    #[test]
    fn one_pass_variance_holds_far_from_zero() {
        let s = BnShape {
            batch: 4,
            channels: 3,
            plane: 1001,
        };
        let x: Vec<f32> = randn(&[s.len()], 9)
            .iter()
            .enumerate()
            .map(|(i, v)| 1000.0 * (1 + (i / s.plane) % 3) as f32 + 0.1 * v)
            .collect();
        let (mean, var) = stats(s, &x);
        let n = s.count() as f64;
        for c in 0..s.channels {
            let vals: Vec<f64> = s.planes(&x, c).flatten().map(|&v| v as f64).collect();
            let m = vals.iter().sum::<f64>() / n;
            let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
            assert!(
                (mean[c] - m).abs() <= 1e-12 * m,
                "mean {c}: {} vs {m}",
                mean[c]
            );
            assert!((var[c] - v).abs() <= 1e-5 * v, "var {c}: {} vs {v}", var[c]);
        }
    }

    /// The backward's ReLU mask, computed again from `x` and the affine map, is the one the
    /// forward's output gives, bit for bit: held against the plain backward of `dy` zeroed
    /// where the output is not positive, on values whose affine image is exactly zero, just
    /// either side of it, and far from it.
    #[test]
    fn relu_mask_from_the_affine_map_is_the_outputs() {
        let s = BnShape {
            batch: 3,
            channels: 2,
            plane: 11,
        };
        // Channel 0: x * 2 - 1 is exactly 0 at x = 0.5; channel 1: x * 0.25 + 0.125 at -0.5.
        let (scale, shift) = ([2.0f32, 0.25], [-1.0f32, 0.125]);
        let edge = [0.5f32, -0.5];
        let x: Vec<f32> = (0..s.len())
            .map(|i| {
                let c = (i / s.plane) % s.channels;
                match i % 4 {
                    0 => edge[c],
                    1 => edge[c] + f32::EPSILON,
                    2 => edge[c] - f32::EPSILON,
                    _ => (i as f32 * 0.37).sin() * 3.0,
                }
            })
            .collect();
        let dy: Vec<f32> = (0..s.len()).map(|i| (i as f32 * 0.91).cos()).collect();
        let y = affine(s, &x, &scale, &shift, true);
        let masked: Vec<f32> = dy
            .iter()
            .zip(&y)
            .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
            .collect();
        assert!(
            masked.iter().zip(&dy).any(|(m, g)| m != g),
            "nothing masked"
        );
        let (mean, var) = stats(s, &x);
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        let weight = [1.5f32, -0.75];
        let relu = Relu {
            scale: &scale,
            shift: &shift,
        };
        let fused = backward(s, &x, &dy, Some(relu), &mean, &invstd, &weight);
        let plain = backward(s, &x, &masked, None, &mean, &invstd, &weight);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fused.0), bits(&plain.0), "dx");
        assert_eq!(bits(&fused.1), bits(&plain.1), "dweight");
        assert_eq!(bits(&fused.2), bits(&plain.2), "dbias");
    }
}
