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
            let sq: f64 = s
                .planes(x, c)
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean, sq / n)
        })
        .unzip()
}

fn sum_f64(p: &[f32]) -> f64 {
    // Eight lanes so the f64 adds vectorise; still exact enough that the order hardly matters.
    let mut acc = [0f64; 8];
    let chunks = p.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += v as f64;
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&v| v as f64).sum::<f64>()
}

/// `y = x * scale[c] + shift[c]`, then `max(y, 0)` when `relu`.
pub fn affine(s: BnShape, x: &[f32], scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    assert_eq!(x.len(), s.len());
    let mut y = vec![0f32; s.len()];
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
    y
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
    assert_eq!((x.len(), dy.len()), (s.len(), s.len()));
    let n = s.count().max(1) as f64;
    let masked = |b: usize, c: usize, i: usize, g: f32| -> f32 {
        match y {
            Some(y) if y[(b * s.channels + c) * s.plane + i] <= 0.0 => 0.0,
            _ => g,
        }
    };
    // Per channel: sum(dy) and sum(dy * (x - mean)), in f64.
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let m = mean[c];
            let (mut sdy, mut sdot) = (0f64, 0f64);
            for b in 0..s.batch {
                let o = (b * s.channels + c) * s.plane;
                for i in 0..s.plane {
                    let g = masked(b, c, i, dy[o + i]) as f64;
                    sdy += g;
                    sdot += g * (x[o + i] as f64 - m);
                }
            }
            (sdy, sdot)
        })
        .collect();
    let mut dx = vec![0f32; s.len()];
    dx.par_chunks_mut(s.plane.max(1))
        .enumerate()
        .for_each(|(i, dxp)| {
            let (b, c) = (i / s.channels, i % s.channels);
            let (sdy, sdot) = sums[c];
            let is = invstd[c];
            let (gmean, k) = (sdy / n, sdot * is * is / n);
            let w = is * weight[c] as f64;
            let o = i * s.plane;
            // dx = (dy - mean(dy) - (x - mean) * k) * invstd * weight.
            let (a1, a2, a3) = (w as f32, (-k * w) as f32, (-gmean * w) as f32);
            let m = mean[c] as f32;
            for (j, d) in dxp.iter_mut().enumerate() {
                let g = masked(b, c, j, dy[o + j]);
                *d = a1 * g + a2 * (x[o + j] - m) + a3;
            }
        });
    let dweight = sums
        .iter()
        .zip(invstd)
        .map(|(&(_, d), &is)| (d * is) as f32)
        .collect();
    let dbias = sums.iter().map(|&(g, _)| g as f32).collect();
    (dx, dweight, dbias)
}
