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
    let taps = TapTable::for_columns(g, grp.out_rows(g));
    let channel = |(ci, rows): (usize, &mut [f32])| {
        for b in grp.b0..grp.b1 {
            let plane = &x[b * img + ci * hw..b * img + (ci + 1) * hw];
            let off = (b - grp.b0) * pix;
            match &taps {
                Some(t) => t.gather(plane, rows, n, off),
                None => im2col(g, plane, grp.out_rows(g), rows, n, off),
            }
        }
    };
    let col = &mut col[..g.kdim() * n];
    if parallel {
        col.par_chunks_mut(kk * n).enumerate().for_each(channel);
    } else {
        col.chunks_mut(kk * n).enumerate().for_each(channel);
    }
}

/// im2col and col2im for narrow maps, through a table of where each tap of each output pixel
/// reads. Row by row, a 2-wide map copies 2 floats per slice and bounds check: on
/// ResNet-18's 2x2 maps at 64 px that bookkeeping took a third of the forward's time
/// (`perf`). Same values and, in col2im, the same order of additions as the row copies:
/// the floats do not change.
pub(super) struct TapTable {
    /// `[k*k, pixels]`: the plane offset tap `t` of output pixel `q` reads, or `h*w` (a zero
    /// after the plane) where it reads padding.
    src: Vec<u32>,
    pixels: usize,
    plane: usize,
}

impl TapTable {
    /// The table for [`fill_columns`] over output rows `oys`, or `None` where the row copies
    /// are as fast. Against them, alternating in one process with 16 images
    /// (`bench_layers`' shapes): 0.78-0.85x the forward's and the weight gradient's time on
    /// 2x2 to 8x8 maps, and at stride 2 up to 16 columns wide (0.66-0.83x); even on
    /// stride-1 16x16 maps, and slower on wider ones (1.2-1.5x at 32x32).
    pub(super) fn for_columns(g: &ConvGeom, oys: Range<usize>) -> Option<TapTable> {
        let narrow = g.wo <= 8 || (g.stride > 1 && g.wo <= 16);
        (narrow && !g.pointwise()).then(|| TapTable::new(g, oys))
    }

    /// The table for [`col2im_add`], or `None` where its row additions are as fast: they
    /// vectorise at stride 1 (the table ran even on 2x2 to 8x8 maps and 1.2x slower on
    /// 16x16), but not at stride 2, where the table took 0.86-0.92x their time.
    pub(super) fn for_col2im(g: &ConvGeom) -> Option<TapTable> {
        let narrow = g.stride > 1 && g.wo <= 16;
        (narrow && !g.pointwise()).then(|| TapTable::new(g, 0..g.ho))
    }

    fn new(g: &ConvGeom, oys: Range<usize>) -> TapTable {
        let (k, s, p) = (g.k, g.stride, g.pad);
        let plane = g.h * g.w;
        let mut src = Vec::with_capacity(k * k * oys.len() * g.wo);
        for ky in 0..k {
            for kx in 0..k {
                for oy in oys.clone() {
                    for ox in 0..g.wo {
                        let (iy, ix) =
                            ((oy * s + ky).wrapping_sub(p), (ox * s + kx).wrapping_sub(p));
                        let inside = iy < g.h && ix < g.w;
                        src.push(if inside { iy * g.w + ix } else { plane } as u32);
                    }
                }
            }
        }
        TapTable {
            src,
            pixels: oys.len() * g.wo,
            plane,
        }
    }

    /// The plane with its zero appended, on the stack for the maps this table is for.
    fn with_padded<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        let (mut stack, mut heap) = ([0f32; 1280], Vec::new());
        let ext = if self.plane < stack.len() {
            &mut stack[..=self.plane]
        } else {
            heap.resize(self.plane + 1, 0.0);
            &mut heap[..]
        };
        f(ext)
    }

    /// [`im2col`] of all output rows of the table's: columns `[off, off + pixels)` of one
    /// channel's rows `rows [k*k, ld]` from its plane.
    pub(super) fn gather(&self, plane: &[f32], rows: &mut [f32], ld: usize, off: usize) {
        self.with_padded(|ext| {
            ext[..self.plane].copy_from_slice(plane);
            ext[self.plane] = 0.0;
            for (t, idx) in self.src.chunks_exact(self.pixels).enumerate() {
                let dst = &mut rows[t * ld + off..t * ld + off + self.pixels];
                for (d, &i) in dst.iter_mut().zip(idx) {
                    *d = ext[i as usize];
                }
            }
        })
    }

    /// [`col2im_add`] through the table.
    pub(super) fn scatter_add(&self, rows: &[f32], ld: usize, off: usize, plane: &mut [f32]) {
        self.with_padded(|ext| {
            ext[..self.plane].copy_from_slice(plane);
            for (t, idx) in self.src.chunks_exact(self.pixels).enumerate() {
                let src = &rows[t * ld + off..t * ld + off + self.pixels];
                for (&v, &i) in src.iter().zip(idx) {
                    ext[i as usize] += v;
                }
            }
            plane.copy_from_slice(&ext[..self.plane]);
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Geometries with every kernel size, stride and padding ResNets use, on maps from 1x1
    /// up, including ones whose taps read mostly padding.
    fn geometries() -> Vec<ConvGeom> {
        let mut out = Vec::new();
        for (k, pads) in [(1, &[0][..]), (3, &[0, 1]), (7, &[3])] {
            for &pad in pads {
                for stride in [1, 2] {
                    for side in 1..=11 {
                        if let Some(g) =
                            ConvGeom::new([1, 2, side, side + 1], [3, 2, k, k], stride, pad)
                        {
                            out.push(g);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn tap_table_columns_equal_row_copies() {
        let mut rng = Rng::new(7);
        for g in geometries() {
            let plane: Vec<f32> = (0..g.h * g.w).map(|_| rng.normal() as f32).collect();
            for oys in [0..g.ho, 0..g.ho.div_ceil(2), g.ho / 2..g.ho] {
                let (kk, pix) = (g.k * g.k, oys.len() * g.wo);
                // Two images' columns side by side; this one's at the second offset.
                let (ld, off) = (2 * pix + 1, pix + 1);
                let mut rows = vec![f32::NAN; kk * ld];
                let mut table = rows.clone();
                im2col(&g, &plane, oys.clone(), &mut rows, ld, off);
                TapTable::new(&g, oys.clone()).gather(&plane, &mut table, ld, off);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&rows), bits(&table), "{g:?} rows {oys:?}");
            }
        }
    }

    #[test]
    fn tap_table_col2im_equals_row_additions() {
        let mut rng = Rng::new(8);
        for g in geometries() {
            let (kk, pix) = (g.k * g.k, g.pixels());
            let (ld, off) = (2 * pix + 3, pix + 3);
            let rows: Vec<f32> = (0..kk * ld).map(|_| rng.normal() as f32).collect();
            let start: Vec<f32> = (0..g.h * g.w).map(|_| rng.normal() as f32).collect();
            let (mut by_rows, mut by_table) = (start.clone(), start.clone());
            col2im_add(&g, &rows, ld, off, &mut by_rows);
            TapTable::new(&g, 0..g.ho).scatter_add(&rows, ld, off, &mut by_table);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&by_rows), bits(&by_table), "{g:?}");
            assert_ne!(by_rows, start, "{g:?}: nothing was added");
        }
    }
}
