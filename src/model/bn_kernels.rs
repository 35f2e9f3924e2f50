//! CPU batch-norm kernels over contiguous `[B, C, HW]` f32 data, following PyTorch's CPU
//! implementation (`batch_norm_cpu_*` in ATen): per-channel sums in f64, the affine transform
//! applied as one multiply-add per value, and the backward in one pass over `x` and `dy`.
//! Channels (statistics, backward sums) or planes (transforms) are spread over rayon's pool.

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

/// Per-channel mean and biased variance, two-pass in f64.
pub fn stats(s: BnShape, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(x.len(), s.len());
    let n = s.count().max(1) as f64;
    (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = s.planes(x, c).map(sum_f64).sum();
            let mean = sum / n;
            let sq: f64 = s.planes(x, c).map(|p| sum_sq_dev_f64(p, mean)).sum();
            (mean, sq / n)
        })
        .unzip()
}

/// `Σ f(i)` over `0..len` in f64, eight lanes so the adds vectorise; still exact enough that
/// the order hardly matters.
#[inline(always)]
fn lanes_sum(len: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let full = len / 8 * 8;
    for base in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    acc.iter().sum::<f64>() + (full..len).map(f).sum::<f64>()
}

/// `(Σ f(i), Σ g(i))` in one pass: the two sums of [`lanes_sum`], each with the same lanes
/// and order (so the same bits), reading the data once instead of twice.
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

fn sum_f64(p: &[f32]) -> f64 {
    lanes_sum(p.len(), |i| p[i] as f64)
}

fn sum_sq_dev_f64(p: &[f32], mean: f64) -> f64 {
    lanes_sum(p.len(), |i| (p[i] as f64 - mean).powi(2))
}

/// `dy`, zeroed where the fused ReLU's output `y` is not positive.
#[inline(always)]
fn mask(g: f32, y: f32) -> f32 {
    if y <= 0.0 {
        0.0
    } else {
        g
    }
}

/// `(Σ g, Σ g (x - m))` over one plane in f64, `g` being `dy` masked by `y` when given.
fn plane_sums(dy: &[f32], x: &[f32], y: Option<&[f32]>, m: f64) -> (f64, f64) {
    let x = &x[..dy.len()];
    match y {
        Some(y) => {
            let y = &y[..dy.len()];
            let g = |i: usize| mask(dy[i], y[i]) as f64;
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
/// gradient `dy`; with `relu`, `y` is the fused op's output and masks `dy`.
/// Returns `(dx, dweight, dbias)`.
pub fn backward(
    s: BnShape,
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    mean: &[f64],
    invstd: &[f64],
    weight: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; s.len()];
    let (dweight, dbias) = backward_into(s, x, dy, y, mean, invstd, weight, &mut dx);
    (dx, dweight, dbias)
}

/// [`backward`] with `dx` written into the caller's buffer; returns `(dweight, dbias)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_into(
    s: BnShape,
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    mean: &[f64],
    invstd: &[f64],
    weight: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!((x.len(), dy.len(), dx.len()), (s.len(), s.len(), s.len()));
    let n = s.count().max(1) as f64;
    let p = s.plane;
    // Per channel: sum(dy) and sum(dy * (x - mean)), in f64.
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            (0..s.batch)
                .map(|b| {
                    let o = (b * s.channels + c) * p;
                    plane_sums(
                        &dy[o..o + p],
                        &x[o..o + p],
                        y.map(|y| &y[o..o + p]),
                        mean[c],
                    )
                })
                .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d))
        })
        .collect();
    dx.par_chunks_mut(p.max(1))
        .enumerate()
        .for_each(|(i, dxp)| {
            let c = i % s.channels;
            let (sdy, sdot) = sums[c];
            let is = invstd[c];
            let (gmean, k) = (sdy / n, sdot * is * is / n);
            let w = is * weight[c] as f64;
            let o = i * p;
            // dx = (dy - mean(dy) - (x - mean) * k) * invstd * weight.
            let (a1, a2, a3) = (w as f32, (-k * w) as f32, (-gmean * w) as f32);
            let m = mean[c] as f32;
            let (dyp, xp) = (&dy[o..o + p], &x[o..o + p]);
            let dx_of = |g: f32, xv: f32| a1 * g + a2 * (xv - m) + a3;
            match y {
                Some(y) => {
                    for ((d, (&g, &xv)), &yv) in
                        dxp.iter_mut().zip(dyp.iter().zip(xp)).zip(&y[o..o + p])
                    {
                        *d = dx_of(mask(g, yv), xv);
                    }
                }
                None => {
                    for (d, (&g, &xv)) in dxp.iter_mut().zip(dyp.iter().zip(xp)) {
                        *d = dx_of(g, xv);
                    }
                }
            }
        });
    let dweight = sums
        .iter()
        .zip(invstd)
        .map(|(&(_, d), &is)| (d * is) as f32)
        .collect();
    let dbias = sums.iter().map(|&(g, _)| g as f32).collect();
    (dweight, dbias)
}
