//! CPU convolution kernels: im2col/col2im around the `gemm` crate's packed f32 GEMM, for the
//! three passes of training (forward, input gradient, weight gradient).
//!
//! Layouts are contiguous NCHW: `x [B, Ci, H, W]`, `w [Co, Ci, k, k]`, `y [B, Co, Ho, Wo]`.
//! With `K = Ci*k*k` and `P = Ho*Wo`, per image:
//! - forward:         `y_b [Co, P]  = w [Co, K] x col_b [K, P]`
//! - input gradient:  `dx_b = col2im(w^T [K, Co] x dy_b [Co, P])`
//! - weight gradient: `dw [Co, K] += dy_b [Co, P] x col_b^T [P, K]`
//!
//! Images are processed in groups whose columns sit side by side (`[K, G*P]`), so that the
//! deep layers' tiny feature maps (4x4 at 128 px) still make GEMMs wide enough to run at full
//! speed; groups run in parallel on rayon's pool with single-threaded GEMMs when there are
//! enough of them, otherwise one after another with the GEMM itself parallel. Scratch buffers
//! are per thread and reused across calls: a fresh allocation per op costs page faults that
//! showed up as a quarter of the step time.

use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

/// The shape of one convolution (dilation 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    /// `None` when the kernel does not fit the padded input.
    pub fn new(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> Option<ConvGeom> {
        let [batch, cin, h, wd] = x;
        let [cout, wcin, k, k2] = w;
        if wcin != cin || k != k2 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
            return None;
        }
        Some(ConvGeom {
            batch,
            cin,
            h,
            w: wd,
            cout,
            k,
            stride,
            pad,
            ho: (h + 2 * pad - k) / stride + 1,
            wo: (wd + 2 * pad - k) / stride + 1,
        })
    }

    /// Rows of the column matrix: `Ci*k*k`.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output pixels per channel: `Ho*Wo`.
    pub fn pixels(&self) -> usize {
        self.ho * self.wo
    }

    /// Values of one input image: `Ci*H*W`.
    fn image_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    pub fn x_len(&self) -> usize {
        self.batch * self.cin * self.h * self.w
    }

    pub fn y_len(&self) -> usize {
        self.batch * self.cout * self.pixels()
    }

    pub fn w_len(&self) -> usize {
        self.cout * self.kdim()
    }

    /// A 1x1, stride-1, unpadded conv: the image itself is its column matrix.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Images per GEMM: enough columns (~1024) for the GEMM's blocking to pay.
    fn group(&self) -> usize {
        (1024 / self.pixels().max(1)).clamp(1, self.batch.max(1))
    }
}

/// How the groups of a batch are spread over threads.
pub(super) struct Schedule {
    pub(super) group: usize,
    pub(super) groups: usize,
    /// Run groups in parallel (single-threaded GEMMs) rather than in sequence.
    pub(super) parallel_groups: bool,
    pub(super) threads: usize,
}

impl Schedule {
    fn of(g: &ConvGeom) -> Schedule {
        Schedule::new(g.batch, g.group())
    }

    /// A batch of `batch` images in groups of `group`.
    pub(super) fn new(batch: usize, group: usize) -> Schedule {
        let groups = batch.div_ceil(group);
        let threads = rayon::current_num_threads().max(1);
        Schedule {
            group,
            groups,
            parallel_groups: groups >= threads,
            threads,
        }
    }

    pub(super) fn gemm_par(&self) -> Parallelism {
        if self.parallel_groups || self.threads == 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(self.threads)
        }
    }

    /// Group `i` of a batch of `batch` images.
    pub(super) fn group_at(&self, i: usize, batch: usize) -> Group {
        Group {
            b0: i * self.group,
            b1: ((i + 1) * self.group).min(batch),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Two scratch buffers of at least `a` and `b` floats (contents unspecified), reused per thread.
pub(super) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|s| {
        // Busy when this thread, waiting inside a parallel GEMM, picked up another conv's work.
        let Ok(mut s) = s.try_borrow_mut() else {
            return f(&mut vec![0.0; a], &mut vec![0.0; b]);
        };
        let [sa, sb] = &mut *s;
        if sa.len() < a {
            sa.resize(a, 0.0);
        }
        if sb.len() < b {
            sb.resize(b, 0.0);
        }
        f(&mut sa[..a], &mut sb[..b])
    })
}

/// A strided read-only matrix view.
#[derive(Clone, Copy)]
pub(super) struct Mat {
    pub(super) ptr: *const f32,
    pub(super) rs: isize,
    pub(super) cs: isize,
}

// SAFETY: a view of f32s that outlive the kernel call it is used in; only read.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

/// `dst [m, n]` (row stride `dst_rs`) `= (dst if accumulate) + a [m, k] x b [k, n]`.
///
/// # Safety
/// Every pointer must be valid for the extents its strides and `m`, `n`, `k` imply.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: Mat,
    b: Mat,
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// Fill columns `[off, off + P)` of one channel's `k*k` rows `rows [k*k, ld]` of the column
/// matrix from that channel's plane `[H, W]` of one image.
fn im2col(g: &ConvGeom, plane: &[f32], rows: &mut [f32], ld: usize, off: usize) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    for ky in 0..k {
        for kx in 0..k {
            let row = ky * k + kx;
            let dst = &mut rows[row * ld + off..row * ld + off + g.pixels()];
            for oy in 0..g.ho {
                let out = &mut dst[oy * g.wo..(oy + 1) * g.wo];
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

/// Add columns `[off, off + P)` of one channel's rows `rows [k*k, ld]` back into that
/// channel's plane `[H, W]` of one image (im2col's adjoint).
fn col2im_add(g: &ConvGeom, rows: &[f32], ld: usize, off: usize, plane: &mut [f32]) {
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
fn valid_range(g: &ConvGeom, kx: usize) -> (usize, usize) {
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
fn gather(src: &[f32], rows: usize, pix: usize, b0: usize, b1: usize, dst: &mut [f32]) {
    let ld = (b1 - b0) * pix;
    for (j, b) in (b0..b1).enumerate() {
        for r in 0..rows {
            let s = &src[(b * rows + r) * pix..(b * rows + r + 1) * pix];
            dst[r * ld + j * pix..r * ld + (j + 1) * pix].copy_from_slice(s);
        }
    }
}

/// The adjoint of [`gather`]: write `src [rows, n*P]` back as `n` images of `dst [n, rows, P]`.
fn scatter(src: &[f32], rows: usize, pix: usize, dst: &mut [f32]) {
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
fn scatter_add(src: &[f32], rows: usize, pix: usize, dst: &mut [f32]) {
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

/// The column matrix `[K, (b1-b0)*P]` of images `[b0, b1)`, channels in parallel when
/// `parallel` (the groups themselves running one after another).
fn fill_columns(g: &ConvGeom, x: &[f32], b0: usize, b1: usize, col: &mut [f32], parallel: bool) {
    if g.pointwise() {
        return gather(x, g.cin, g.pixels(), b0, b1, col);
    }
    let (img, hw, kk) = (g.image_len(), g.h * g.w, g.k * g.k);
    let n = (b1 - b0) * g.pixels();
    let channel = |(ci, rows): (usize, &mut [f32])| {
        for b in b0..b1 {
            let plane = &x[b * img + ci * hw..b * img + (ci + 1) * hw];
            im2col(g, plane, rows, n, (b - b0) * g.pixels());
        }
    };
    let col = &mut col[..g.kdim() * n];
    if parallel {
        col.par_chunks_mut(kk * n).enumerate().for_each(channel);
    } else {
        col.chunks_mut(kk * n).enumerate().for_each(channel);
    }
}

/// Raw pointers cross into rayon's closures; each group writes a disjoint range.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method, so closures capture the whole (Send) wrapper rather than its raw field.
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

pub(super) fn for_each_group(sched: &Schedule, f: impl Fn(usize) + Sync + Send) {
    if sched.parallel_groups {
        (0..sched.groups).into_par_iter().for_each(f);
    } else {
        (0..sched.groups).for_each(f);
    }
}

/// Images `[b0, b1)`: one group of a [`Schedule`].
#[derive(Clone, Copy)]
pub(super) struct Group {
    pub(super) b0: usize,
    pub(super) b1: usize,
}

impl Group {
    pub(super) fn images(self) -> usize {
        self.b1 - self.b0
    }

    /// A group of one image reads and writes its tensors in place, without gather/scatter.
    fn alone(self) -> bool {
        self.images() == 1
    }
}

/// Floats of scratch [`columns`] needs.
fn columns_len(g: &ConvGeom, grp: Group) -> usize {
    if g.pointwise() && grp.alone() {
        0
    } else {
        g.kdim() * grp.images() * g.pixels()
    }
}

/// The group's column matrix `[K, n]`: `x` itself for one image of a pointwise conv, else
/// built in `buf` ([`columns_len`] floats).
fn columns(g: &ConvGeom, x: &[f32], grp: Group, buf: &mut [f32], parallel: bool) -> Mat {
    let n = grp.images() * g.pixels();
    let ptr = if g.pointwise() && grp.alone() {
        x[grp.b0 * g.image_len()..].as_ptr()
    } else {
        fill_columns(g, x, grp.b0, grp.b1, buf, parallel);
        buf.as_ptr()
    };
    Mat::row_major(ptr, n)
}

/// Floats of scratch [`out_grads`] needs.
fn out_grads_len(g: &ConvGeom, grp: Group) -> usize {
    if grp.alone() {
        0
    } else {
        g.cout * grp.images() * g.pixels()
    }
}

/// The group's output gradient as a matrix `[Co, n]`: `dy` itself for one image, else
/// gathered into `buf` ([`out_grads_len`] floats).
fn out_grads(g: &ConvGeom, dy: &[f32], grp: Group, buf: &mut [f32]) -> Mat {
    let (pix, co) = (g.pixels(), g.cout);
    let ptr = if grp.alone() {
        dy[grp.b0 * co * pix..].as_ptr()
    } else {
        gather(dy, co, pix, grp.b0, grp.b1, buf);
        buf.as_ptr()
    };
    Mat::row_major(ptr, grp.images() * pix)
}

impl Mat {
    /// A row-major matrix with `cols` columns.
    pub(super) fn row_major(ptr: *const f32, cols: usize) -> Mat {
        Mat {
            ptr,
            rs: cols as isize,
            cs: 1,
        }
    }

    pub(super) fn t(self) -> Mat {
        Mat {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `y = conv(x, w)`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; g.y_len()];
    forward_into(g, x, w, &mut y);
    y
}

/// [`forward`] into `y` (`g.y_len()` floats, every one overwritten).
pub fn forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert_eq!(
        (x.len(), w.len(), y.len()),
        (g.x_len(), g.w_len(), g.y_len())
    );
    let (kd, pix, co) = (g.kdim(), g.pixels(), g.cout);
    let sched = Schedule::of(g);
    let yp = SendPtr(y.as_mut_ptr());
    let wm = Mat::row_major(w.as_ptr(), kd);
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * pix;
        let out_len = if grp.alone() { 0 } else { co * n };
        with_scratch(columns_len(g, grp), out_len, |col, out| {
            let cols = columns(g, x, grp, col, !sched.parallel_groups);
            // SAFETY: y's images [b0, b1) belong to this group alone.
            let ys =
                unsafe { std::slice::from_raw_parts_mut(yp.get().add(grp.b0 * co * pix), co * n) };
            let dst = if grp.alone() {
                ys.as_mut_ptr()
            } else {
                out.as_mut_ptr()
            };
            // SAFETY: dst holds [co, n]; wm [co, kd] and cols [kd, n] are live inputs.
            unsafe { matmul(co, n, kd, dst, n, false, wm, cols, sched.gemm_par()) };
            if !grp.alone() {
                scatter(out, co, pix, ys);
            }
        })
    });
}

/// `dx` for upstream gradient `dy`.
pub fn input_grad(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; g.x_len()];
    input_grad_into(g, dy, w, &mut dx, true);
    dx
}

/// [`input_grad`] into `dx` (`g.x_len()` floats): added onto what `dx` holds when
/// `accumulate` (a residual block's input, whose skip gradient is already there), else
/// written over it.
pub fn input_grad_into(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    assert_eq!(
        (dy.len(), w.len(), dx.len()),
        (g.y_len(), g.w_len(), g.x_len())
    );
    let (kd, pix, co) = (g.kdim(), g.pixels(), g.cout);
    let img = g.image_len();
    // col2im adds into the planes, so a fresh result starts from zeros.
    if !accumulate && !g.pointwise() {
        dx.fill(0.0);
    }
    let sched = Schedule::of(g);
    let dxp = SendPtr(dx.as_mut_ptr());
    // w^T: [K, Co] read from w [Co, K].
    let wt = Mat::row_major(w.as_ptr(), kd).t();
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * pix;
        // SAFETY: dx's images [b0, b1) belong to this group alone.
        let dxs = unsafe {
            std::slice::from_raw_parts_mut(dxp.get().add(grp.b0 * img), grp.images() * img)
        };
        // A lone image of a pointwise conv gets its gradient straight from the GEMM.
        let in_place = g.pointwise() && grp.alone();
        let col_len = if in_place { 0 } else { kd * n };
        with_scratch(out_grads_len(g, grp), col_len, |gin, col| {
            let gm = out_grads(g, dy, grp, gin);
            let dst = if in_place {
                dxs.as_mut_ptr()
            } else {
                col.as_mut_ptr()
            };
            // SAFETY: dst holds [kd, n]; wt [kd, co] and gm [co, n] are live inputs.
            let add = in_place && accumulate;
            unsafe { matmul(kd, n, co, dst, n, add, wt, gm, sched.gemm_par()) };
            if in_place {
                return;
            }
            if g.pointwise() {
                if accumulate {
                    scatter_add(col, kd, pix, dxs);
                } else {
                    scatter(col, kd, pix, dxs);
                }
            } else {
                // Plane (image j, channel ci) takes channel ci's rows at image j's columns.
                let (hw, kk) = (g.h * g.w, g.k * g.k);
                let plane = |(i, d): (usize, &mut [f32])| {
                    let (j, ci) = (i / g.cin, i % g.cin);
                    col2im_add(g, &col[ci * kk * n..(ci + 1) * kk * n], n, j * pix, d);
                };
                if sched.parallel_groups {
                    dxs.chunks_exact_mut(hw).enumerate().for_each(plane);
                } else {
                    dxs.par_chunks_exact_mut(hw).enumerate().for_each(plane);
                }
            }
        })
    });
}

/// `dw` for upstream gradient `dy`.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!((x.len(), dy.len()), (g.x_len(), g.y_len()));
    let (kd, pix, co) = (g.kdim(), g.pixels(), g.cout);
    let sched = Schedule::of(g);
    sum_over_groups(&sched, g.batch, g.w_len(), |grp, dw| {
        let n = grp.images() * pix;
        with_scratch(columns_len(g, grp), out_grads_len(g, grp), |col, gin| {
            let cols = columns(g, x, grp, col, !sched.parallel_groups);
            let gm = out_grads(g, dy, grp, gin);
            // Accumulates onto dw. SAFETY: dw holds [co, kd]; gm [co, n] and cols^T [n, kd]
            // are live inputs.
            unsafe {
                matmul(
                    co,
                    kd,
                    n,
                    dw.as_mut_ptr(),
                    kd,
                    true,
                    gm,
                    cols.t(),
                    sched.gemm_par(),
                )
            };
        });
    })
}

/// `Σ_groups f(group)` for a weight gradient of `len` floats: each worker accumulates into its
/// own zeroed buffer over a contiguous run of groups (`f` adds onto the buffer it is given),
/// then the workers' buffers are added up.
pub(super) fn sum_over_groups(
    sched: &Schedule,
    batch: usize,
    len: usize,
    f: impl Fn(Group, &mut [f32]) + Sync,
) -> Vec<f32> {
    let workers = if sched.parallel_groups {
        sched.threads.min(sched.groups)
    } else {
        1
    };
    let per = sched.groups.div_ceil(workers);
    let partials: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0f32; len];
            for i in t * per..((t + 1) * per).min(sched.groups) {
                f(sched.group_at(i, batch), &mut acc);
            }
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut sum = it.next().unwrap_or_else(|| vec![0f32; len]);
    for p in it {
        for (a, b) in sum.iter_mut().zip(&p) {
            *a += b;
        }
    }
    sum
}
