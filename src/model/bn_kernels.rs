//! CPU batch-norm kernels over contiguous `[B, C, HW]` f32 data, following PyTorch's CPU
//! implementation (`batch_norm_cpu_*` in ATen): per-channel sums in f64, the affine transform
//! applied as one multiply-add per value, and the backward in one pass over `x` and `dy`.
//! Channels (statistics, backward sums) or planes (transforms) are spread over rayon's pool.

use crate::model::conv_kernels::SendPtr;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;

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

/// `(Σ f(u[i], v[i]).0, Σ f(u[i], v[i]).1)` over the slices' common length in f64, in one
/// pass, in eight lanes; still exact enough that the order hardly matters. Lane `l` takes
/// the values at `8j + l`, and the remainder is summed on its own ([`finish`]). The AVX2
/// version adds the same values in the same lanes, so both give the same bits.
#[inline(always)]
fn lanes_sum2(u: &[f32], v: &[f32], f: impl Fn(f32, f32) -> (f64, f64)) -> (f64, f64) {
    let len = u.len().min(v.len());
    let (u, v) = (&u[..len], &v[..len]);
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    let (uc, vc) = (u.chunks_exact(8), v.chunks_exact(8));
    let (ur, vr) = (uc.remainder(), vc.remainder());
    for (uc, vc) in uc.zip(vc) {
        for l in 0..8 {
            let (p, q) = f(uc[l], vc[l]);
            a[l] += p;
            b[l] += q;
        }
    }
    finish(a, b, ur, vr, f)
}

/// The two sums from the lanes' partial sums `a`, `b` and the remainder `ur`, `vr`.
#[inline(always)]
fn finish(
    a: [f64; 8],
    b: [f64; 8],
    ur: &[f32],
    vr: &[f32],
    f: impl Fn(f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let rest = || ur.iter().zip(vr).map(|(&p, &q)| f(p, q));
    (
        a.iter().sum::<f64>() + rest().map(|(p, _)| p).sum::<f64>(),
        b.iter().sum::<f64>() + rest().map(|(_, q)| q).sum::<f64>(),
    )
}

/// `(Σx, Σx²)` over one plane in f64.
///
/// The portable loops compile to scalar code (`cvtss2sd`, `mulsd`: LLVM does not widen
/// f32 to f64 in vectors here), so the batch norm's kernels ran at about a third of the
/// memory bandwidth they are otherwise bound by; hence the AVX2 version.
fn sums_f64(p: &[f32]) -> (f64, f64) {
    let f = |v: f32, _| (v as f64, (v as f64) * (v as f64));
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2::sums(p, f) };
    }
    lanes_sum2(p, p, f)
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
    let masked = move |g: f32, xv: f32| match relu {
        Some((a, b)) => kept(g, xv, a, b),
        None => g,
    };
    let f = |g, xv: f32| {
        let g = masked(g, xv) as f64;
        (g, g * (xv as f64 - m))
    };
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2::plane_sums(dy, x, relu, m, f) };
    }
    lanes_sum2(dy, x, f)
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
mod tests;
