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

use rayon::prelude::*;

mod columns;
mod pool;
mod schedule;

use columns::{
    col2im_add, columns, columns_len, out_grads, out_grads_len, scatter, scatter_add, TapTable,
};
pub(crate) use pool::Pooled;
pub(crate) use schedule::{
    for_each_group, matmul, sum_over_groups, sum_over_groups_in, with_scratch, Group, Mat,
    Schedule, SendPtr,
};

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

    /// Images per GEMM: enough columns (256 to 1024) for the GEMM's blocking to pay, fewer
    /// where a deep column matrix would outgrow [`COLUMN_BUDGET`]. (A flat 1024 columns
    /// made 2.4 MB column matrices for ResNet-18's stride-2 3x3 conv at 128 px, written to
    /// and read back from L3: under the budget its passes took 0.8-0.9x the time, and
    /// ResNet-50's 1x1 convs 0.75-0.9x, alternating in one process; bench/README.md.)
    fn group(&self) -> usize {
        let cols = (COLUMN_BUDGET / self.kdim().max(1)).clamp(256, 1024);
        (cols / self.pixels().max(1)).clamp(1, self.batch.max(1))
    }

    /// Output rows of one image whose column matrix stays within [`COLUMN_BUDGET`], but
    /// at least 256 columns (a thinner GEMM loses more than the cache gains: ResNet-50's
    /// stride-2 3x3 conv at 128 px in blocks of 3 rows ran at half speed); a pointwise conv
    /// has no column matrix to bound.
    fn row_block(&self) -> usize {
        if self.pointwise() {
            return self.ho;
        }
        let wo = self.wo.max(1);
        (COLUMN_BUDGET / (self.kdim() * wo))
            .max(256usize.div_ceil(wo))
            .clamp(1, self.ho.max(1))
    }
}

/// Floats of a column matrix that a core's L2 holds with room for the GEMM's packed
/// operands (256 KB).
const COLUMN_BUDGET: usize = 65536;

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
    let sched = Schedule::row_blocks(g);
    let yp = SendPtr(y.as_mut_ptr());
    let wm = Mat::row_major(w.as_ptr(), kd);
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * grp.pixels(g);
        let out_len = if grp.alone() { 0 } else { co * n };
        with_scratch(columns_len(g, grp), out_len, |col, out| {
            let cols = columns(g, x, grp, col, !sched.parallel_groups);
            if grp.alone() {
                // Straight into the image's output rows. SAFETY: dst holds [co, n] at row
                // stride pix, rows of y that belong to this group alone; wm [co, kd] and
                // cols [kd, n] are live inputs.
                let dst = unsafe { yp.get().add(grp.b0 * co * pix + grp.first_pixel(g)) };
                unsafe { matmul(co, n, kd, dst, pix, false, wm, cols, sched.gemm_threads()) };
                return;
            }
            // SAFETY: out holds [co, n]; wm [co, kd] and cols [kd, n] are live inputs.
            unsafe {
                matmul(
                    co,
                    n,
                    kd,
                    out.as_mut_ptr(),
                    n,
                    false,
                    wm,
                    cols,
                    sched.gemm_threads(),
                )
            };
            // SAFETY: y's images [b0, b1) belong to this group alone.
            let ys =
                unsafe { std::slice::from_raw_parts_mut(yp.get().add(grp.b0 * co * pix), co * n) };
            scatter(out, co, pix, ys);
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
            unsafe { matmul(kd, n, co, dst, n, add, wt, gm, sched.gemm_threads()) };
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
                let taps = TapTable::for_col2im(g);
                let plane = |(i, d): (usize, &mut [f32])| {
                    let (j, ci) = (i / g.cin, i % g.cin);
                    let rows = &col[ci * kk * n..(ci + 1) * kk * n];
                    match &taps {
                        Some(t) => t.scatter_add(rows, n, j * pix, d),
                        None => col2im_add(g, rows, n, j * pix, d),
                    }
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
    let (kd, co) = (g.kdim(), g.cout);
    let sched = Schedule::row_blocks(g);
    sum_over_groups(&sched, g.batch, g.w_len(), |grp, dw| {
        let n = grp.images() * grp.pixels(g);
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
                    sched.gemm_threads(),
                )
            };
        });
    })
}
