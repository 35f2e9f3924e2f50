//! The column matrices around the GEMMs: im2col and its adjoint col2im, and the gathering of
//! a group's images side by side (and back).

use super::{ConvGeom, Group, Mat};
use rayon::prelude::*;
use std::ops::Range;

/// Fill columns `[off, off + len(oys) * Wo)` of one channel's `k*k` rows `rows [k*k, ld]` of
/// the column matrix from that channel's plane `[H, W]` of one image, for output rows `oys`.
pub(super) fn im2col(
    g: &ConvGeom,
    plane: &[f32],
    oys: Range<usize>,
    rows: &mut [f32],
    ld: usize,
    off: usize,
) {
    if g.stride == 2 && g.k > 1 {
        return im2col_stride2(g, plane, oys, rows, ld, off);
    }
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    let len = oys.len() * g.wo;
    for ky in 0..k {
        for kx in 0..k {
            let row = ky * k + kx;
            let dst = &mut rows[row * ld + off..row * ld + off + len];
            for (at, oy) in oys.clone().enumerate() {
                let out = &mut dst[at * g.wo..(at + 1) * g.wo];
                let iy = (oy * s + ky) as isize - p;
                if iy < 0 || iy >= g.h as isize {
                    out.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                let (lo, hi) = valid_range(g, kx);
                out[..lo].fill(0.0);
                out[hi.max(lo)..].fill(0.0);
                if s == 1 {
                    let ix0 = (lo + kx) as isize - p;
                    if hi > lo {
                        out[lo..hi].copy_from_slice(&src[ix0 as usize..ix0 as usize + hi - lo]);
                    }
                } else {
                    for (ox, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                        *o = src[((ox * s + kx) as isize - p) as usize];
                    }
                }
            }
        }
    }
}

/// [`im2col`] for stride 2: output column `ox` of kernel column `kx` reads padded input
/// column `2ox + kx`, so each padded input row is split once into its even and odd columns
/// and every kernel column's output row is then a plain copy of one of them (a per-element
/// gather with bounds checks took the stem's column build to ~30% of its GEMM's time).
fn im2col_stride2(
    g: &ConvGeom,
    plane: &[f32],
    oys: Range<usize>,
    rows: &mut [f32],
    ld: usize,
    off: usize,
) {
    let (k, p, wo) = (g.k, g.pad, g.wo);
    // Padded columns 2m and 2m + 1 for m in 0..half: as far as any kernel column reads.
    let half = wo + k / 2;
    // On the stack for the usual widths: this runs once per channel and image.
    let (mut stack, mut heap) = ([0f32; 512], Vec::new());
    let parity = if 2 * half <= stack.len() {
        &mut stack[..2 * half]
    } else {
        heap.resize(2 * half, 0.0);
        &mut heap[..]
    };
    for ky in 0..k {
        for (i, oy) in oys.clone().enumerate() {
            let iy = (oy * 2 + ky) as isize - p as isize;
            let at = |kx: usize| (ky * k + kx) * ld + off + i * wo;
            if iy < 0 || iy >= g.h as isize {
                for kx in 0..k {
                    rows[at(kx)..at(kx) + wo].fill(0.0);
                }
                continue;
            }
            let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
            let (even, odd) = parity.split_at_mut(half);
            // Padded column c is input column c - p, zero outside the row.
            let col = |c: usize| {
                c.checked_sub(p)
                    .and_then(|x| src.get(x))
                    .copied()
                    .unwrap_or(0.0)
            };
            for m in 0..half {
                even[m] = col(2 * m);
                odd[m] = col(2 * m + 1);
            }
            for kx in 0..k {
                let from = if kx % 2 == 0 { &*even } else { &*odd };
                rows[at(kx)..at(kx) + wo].copy_from_slice(&from[kx / 2..kx / 2 + wo]);
            }
        }
    }
}

/// Add columns `[off, off + P)` of one channel's rows `rows [k*k, ld]` back into that
/// channel's plane `[H, W]` of one image (im2col's adjoint).
pub(super) fn col2im_add(g: &ConvGeom, rows: &[f32], ld: usize, off: usize, plane: &mut [f32]) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    for ky in 0..k {
        for kx in 0..k {
            let row = ky * k + kx;
            let src = &rows[row * ld + off..row * ld + off + g.pixels()];
            let (lo, hi) = valid_range(g, kx);
            if hi <= lo {
                continue;
            }
            for oy in 0..g.ho {
                let iy = (oy * s + ky) as isize - p;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                let c = &src[oy * g.wo..(oy + 1) * g.wo];
                if s == 1 {
                    let ix0 = ((lo + kx) as isize - p) as usize;
                    for (d, v) in dst[ix0..].iter_mut().zip(&c[lo..hi]) {
                        *d += v;
                    }
                } else {
                    for (ox, v) in c.iter().enumerate().take(hi).skip(lo) {
                        dst[((ox * s + kx) as isize - p) as usize] += v;
                    }
                }
            }
        }
    }
}

/// Output columns `ox` in `[lo, hi)` read an input column inside the image for kernel column `kx`.
pub(super) fn valid_range(g: &ConvGeom, kx: usize) -> (usize, usize) {
    let (s, p) = (g.stride, g.pad);
    // ox*s + kx >= p  and  ox*s + kx < w + p
    let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
    let hi = if g.w + p > kx {
        ((g.w + p - kx).div_ceil(s)).min(g.wo)
    } else {
        0
    };
    (lo.min(g.wo), hi)
}

/// Copy images `[b0, b1)` of `src [B, rows, P]` side by side into `dst [rows, (b1-b0)*P]`.
pub(super) fn gather(src: &[f32], rows: usize, pix: usize, b0: usize, b1: usize, dst: &mut [f32]) {
    let ld = (b1 - b0) * pix;
    for (j, b) in (b0..b1).enumerate() {
        for r in 0..rows {
            let s = &src[(b * rows + r) * pix..(b * rows + r + 1) * pix];
            dst[r * ld + j * pix..r * ld + (j + 1) * pix].copy_from_slice(s);
        }
    }
}

/// The adjoint of [`gather`]: write `src [rows, n*P]` back as `n` images of `dst [n, rows, P]`.
pub(super) fn scatter(src: &[f32], rows: usize, pix: usize, dst: &mut [f32]) {
    let n = dst.len() / (rows * pix);
    let ld = n * pix;
    for j in 0..n {
        for r in 0..rows {
            dst[(j * rows + r) * pix..(j * rows + r + 1) * pix]
                .copy_from_slice(&src[r * ld + j * pix..r * ld + (j + 1) * pix]);
        }
    }
}

/// [`scatter`], adding onto `dst` instead of overwriting it.
pub(super) fn scatter_add(src: &[f32], rows: usize, pix: usize, dst: &mut [f32]) {
    let n = dst.len() / (rows * pix);
    let ld = n * pix;
    for j in 0..n {
        for r in 0..rows {
            let d = &mut dst[(j * rows + r) * pix..(j * rows + r + 1) * pix];
            for (d, s) in d
                .iter_mut()
                .zip(&src[r * ld + j * pix..r * ld + (j + 1) * pix])
            {
                *d += s;
            }
        }
    }
}

/// The column matrix `[K, images * pixels]` of a group's images and output rows, channels
/// in parallel when `parallel` (the groups themselves running one after another).
pub(super) fn fill_columns(g: &ConvGeom, x: &[f32], grp: Group, col: &mut [f32], parallel: bool) {
    if g.pointwise() {
        return gather(x, g.cin, g.pixels(), grp.b0, grp.b1, col);
    }
    let (img, hw, kk) = (g.image_len(), g.h * g.w, g.k * g.k);
    let pix = grp.pixels(g);
    let n = grp.images() * pix;
    let channel = |(ci, rows): (usize, &mut [f32])| {
        for b in grp.b0..grp.b1 {
            let plane = &x[b * img + ci * hw..b * img + (ci + 1) * hw];
            im2col(g, plane, grp.out_rows(g), rows, n, (b - grp.b0) * pix);
        }
    };
    let col = &mut col[..g.kdim() * n];
    if parallel {
        col.par_chunks_mut(kk * n).enumerate().for_each(channel);
    } else {
        col.chunks_mut(kk * n).enumerate().for_each(channel);
    }
}

/// Floats of scratch [`columns`] needs.
pub(super) fn columns_len(g: &ConvGeom, grp: Group) -> usize {
    if g.pointwise() && grp.alone() {
        0
    } else {
        g.kdim() * grp.images() * grp.pixels(g)
    }
}

/// The group's column matrix `[K, n]`: `x` itself for one image of a pointwise conv (never
/// split into rows), else built in `buf` ([`columns_len`] floats).
pub(super) fn columns(g: &ConvGeom, x: &[f32], grp: Group, buf: &mut [f32], parallel: bool) -> Mat {
    let n = grp.images() * grp.pixels(g);
    let ptr = if g.pointwise() && grp.alone() {
        x[grp.b0 * g.image_len()..].as_ptr()
    } else {
        fill_columns(g, x, grp, buf, parallel);
        buf.as_ptr()
    };
    Mat::row_major(ptr, n)
}

/// Floats of scratch [`out_grads`] needs.
pub(super) fn out_grads_len(g: &ConvGeom, grp: Group) -> usize {
    if grp.alone() {
        0
    } else {
        g.cout * grp.images() * g.pixels()
    }
}

/// The group's output gradient as a matrix `[Co, n]`: `dy` itself for one image, else
/// gathered into `buf` ([`out_grads_len`] floats).
pub(super) fn out_grads(g: &ConvGeom, dy: &[f32], grp: Group, buf: &mut [f32]) -> Mat {
    let (pix, co) = (g.pixels(), g.cout);
    if grp.alone() {
        // The image's rows of this group, at the plane's row stride.
        let ptr = dy[grp.b0 * co * pix + grp.first_pixel(g)..].as_ptr();
        return Mat::row_major(ptr, pix);
    }
    gather(dy, co, pix, grp.b0, grp.b1, buf);
    Mat::row_major(buf.as_ptr(), grp.images() * pix)
}
