//! Winograd F(2x2, 3x3) for the 3x3, stride-1, padding-1 convolutions that carry most of a
//! ResNet's work: each 2x2 output tile costs 16 multiplies per channel pair instead of 36.
//!
//! With the transforms of Lavin & Gray (2015), per 4x4 input tile `d` and 3x3 kernel `g`,
//! `y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Writing `U = G g Gᵀ`, `V = Bᵀ d B`, `Z = A dy Aᵀ`, the three
//! passes of training are 16 GEMMs each (one per position `xi` of the 4x4 transformed tile):
//! - forward:         `M[xi] [Co, T] = U[xi] [Co, Ci] x V[xi] [Ci, T]`,  `y = Aᵀ M A`
//! - input gradient:  `dV[xi] [Ci, T] = U[xi]ᵀ x Z[xi] [Co, T]`,        `dx += B dV Bᵀ`
//! - weight gradient: `dU[xi] [Co, Ci] += Z[xi] x V[xi]ᵀ [T, Ci]`,      `dw = Gᵀ dU G`
//!
//! where `T` counts tiles. The input gradient and the weight gradient are the exact adjoints
//! of the forward's linear maps, so all three are consistent to rounding. Batches are split
//! into groups of images as in [`super::conv_kernels`]; each group's transformed tiles live
//! in per-thread scratch.

use super::conv_kernels::{
    for_each_group, matmul, sum_over_groups, with_scratch, ConvGeom, Group, Mat, Schedule, SendPtr,
};
use gemm::Parallelism;
use rayon::prelude::*;

pub mod f4;
mod transforms;

use transforms::{Slot, Tiles, XI};

/// Tiles per group: wide enough for the 16 GEMMs to run near full speed, small enough for a
/// group's transformed tiles to stay within a few MB.
const GROUP_TILES: usize = 512;

/// Whether [`forward`], [`input_grad`] and [`weight_grad`] handle this convolution.
pub fn applies(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1
}

/// Whether Winograd beats im2col here, for each of the three passes. Its 16 GEMMs run over
/// the batch's tiles, so with few of them they are thin products, and on maps of a tile or
/// four per image the transforms are mostly padding. Measured with `examples/bench_conv.rs`
/// (ResNet-18's shapes, batch 8 and 16, 64 and 128 px): at 4x4 and 2x2 maps (64 tiles or
/// fewer in the batch) Winograd ran at 0.15-0.8x im2col's speed in all three passes, from
/// 8x8 maps with 256 tiles at 1.05-1.3x, and at 16x16 and 32x32 maps at 1.2-3.4x. The weight
/// gradient had used this threshold alone; the forward and the input gradient used Winograd
/// on every 3x3 map until 2026-12-04.
pub fn pays(g: &ConvGeom) -> bool {
    applies(g) && g.batch * Tiles::of(g.ho, g.wo).per_image() >= MIN_TILES
}

/// See [`pays`].
const MIN_TILES: usize = 256;

fn schedule(g: &ConvGeom, t: Tiles) -> Schedule {
    Schedule::new(
        g.batch,
        (GROUP_TILES / t.per_image()).clamp(1, g.batch.max(1)),
    )
}

/// Runs `f(i)` for `i` in `0..n`, on rayon's pool when `parallel`, each task with its own
/// `scratch`-float buffer.
fn for_each(n: usize, parallel: bool, scratch: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if parallel {
        (0..n)
            .into_par_iter()
            .for_each_init(|| vec![0f32; scratch], |buf, i| f(i, buf));
    } else {
        let mut buf = vec![0f32; scratch];
        (0..n).for_each(|i| f(i, &mut buf));
    }
}

/// Transforms every plane of a group's images into `[16, rows, n]` scratch: `rows` planes per
/// image, taken from `src` `[B, rows, plane_len]`.
#[allow(clippy::too_many_arguments)]
fn transform_group(
    t: Tiles,
    grp: Group,
    rows: usize,
    plane_len: usize,
    src: &[f32],
    dst: &mut [f32],
    parallel: bool,
    scratch: usize,
    f: impl Fn(&[f32], *mut f32, Slot, &mut [f32]) + Sync + Send,
) {
    let n = grp.images() * t.per_image();
    let out = SendPtr(dst.as_mut_ptr());
    for_each(grp.images() * rows, parallel, scratch, |i, buf| {
        let (j, r) = (i / rows, i % rows);
        let b = grp.b0 + j;
        let plane = &src[(b * rows + r) * plane_len..(b * rows + r + 1) * plane_len];
        let slot = Slot {
            xi_stride: rows * n,
            base: r * n + j * t.per_image(),
        };
        f(plane, out.get(), slot, buf)
    });
}

/// The adjoint of [`transform_group`]'s layout: writes every plane of a group's images into
/// `dst` `[B, rows, plane_len]` (through `dst_ptr`) from the group's `[16, rows, n]` scratch.
#[allow(clippy::too_many_arguments)]
fn inverse_group(
    t: Tiles,
    grp: Group,
    rows: usize,
    plane_len: usize,
    src: &[f32],
    dst: SendPtr,
    parallel: bool,
    scratch: usize,
    f: impl Fn(*const f32, Slot, &mut [f32], &mut [f32]) + Sync + Send,
) {
    let n = grp.images() * t.per_image();
    for_each(grp.images() * rows, parallel, scratch, |i, buf| {
        let (j, r) = (i / rows, i % rows);
        let slot = Slot {
            xi_stride: rows * n,
            base: r * n + j * t.per_image(),
        };
        // SAFETY: plane (image b0 + j, row r) of dst belongs to this task alone.
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                dst.get().add(((grp.b0 + j) * rows + r) * plane_len),
                plane_len,
            )
        };
        f(src.as_ptr(), slot, out, buf)
    });
}

/// The `count` GEMMs of one group (16 for F(2x2), 36 for F(4x4)):
/// `dst[xi] [m, n] (+)= a[xi] [m, k] x b[xi] [k, n]`, each operand given by its first matrix and
/// the floats between consecutive `xi`.
#[allow(clippy::too_many_arguments)]
fn gemms(
    count: usize,
    m: usize,
    n: usize,
    k: usize,
    dst: SendPtr,
    dst_stride: usize,
    accumulate: bool,
    a: (Mat, usize),
    b: (Mat, usize),
    parallel: bool,
) {
    let one = |xi: usize| {
        let shift = |(mat, stride): (Mat, usize)| Mat {
            // SAFETY: stays inside the operand the caller passed (16 matrices).
            ptr: unsafe { mat.ptr.add(xi * stride) },
            ..mat
        };
        // SAFETY: the caller sized dst, a and b for 16 matrices of these shapes.
        unsafe {
            matmul(
                m,
                n,
                k,
                dst.get().add(xi * dst_stride),
                n,
                accumulate,
                shift(a),
                shift(b),
                Parallelism::None,
            )
        }
    };
    if parallel {
        (0..count).into_par_iter().for_each(one);
    } else {
        (0..count).for_each(one);
    }
}

/// `y = conv(x, w)` for a convolution [`applies`] accepts.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; g.y_len()];
    forward_into(g, x, w, &mut y);
    y
}

/// [`forward`] into `y` (`g.y_len()` floats, every one overwritten).
pub fn forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert!(applies(g));
    assert_eq!(
        (x.len(), w.len(), y.len()),
        (g.x_len(), g.w_len(), g.y_len())
    );
    let t = Tiles::of(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co) = (g.cin, g.cout);
    let u = transforms::transform_weights(w);
    let yp = SendPtr(y.as_mut_ptr());
    // Inside a group, work in parallel only when the groups themselves are not.
    let inner = !sched.parallel_groups;
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * t.per_image();
        with_scratch(XI * ci * n, XI * co * n, |v, m| {
            transform_group(
                t,
                grp,
                ci,
                g.h * g.w,
                x,
                v,
                inner,
                t.row_scratch(),
                |p, v, s, buf| transforms::transform_input(p, g.w, t, v, s, buf),
            );
            let um = Mat::row_major(u.as_ptr(), ci);
            let vm = Mat::row_major(v.as_ptr(), n);
            gemms(
                XI,
                co,
                n,
                ci,
                SendPtr(m.as_mut_ptr()),
                co * n,
                false,
                (um, co * ci),
                (vm, ci * n),
                inner,
            );
            inverse_group(
                t,
                grp,
                co,
                g.pixels(),
                m,
                yp,
                inner,
                t.row_scratch(),
                |m, s, out, buf| transforms::inverse_output(m, s, t, out, g.wo, buf),
            );
        })
    });
}

/// `dx` for upstream gradient `dy`, for a convolution [`applies`] accepts.
pub fn input_grad(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; g.x_len()];
    input_grad_into(g, dy, w, &mut dx, false);
    dx
}

/// [`input_grad`] into `dx` (`g.x_len()` floats): added onto what it holds when
/// `accumulate`, else written over it.
pub fn input_grad_into(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    assert!(applies(g));
    assert_eq!(
        (dy.len(), w.len(), dx.len()),
        (g.y_len(), g.w_len(), g.x_len())
    );
    let t = Tiles::of(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co) = (g.cin, g.cout);
    let u = transforms::transform_weights(w);
    let dxp = SendPtr(dx.as_mut_ptr());
    let inner = !sched.parallel_groups;
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * t.per_image();
        with_scratch(XI * co * n, XI * ci * n, |z, dv| {
            transform_group(
                t,
                grp,
                co,
                g.pixels(),
                dy,
                z,
                inner,
                t.row_scratch(),
                |p, z, s, buf| transforms::transform_out_grad(p, g.wo, t, z, s, buf),
            );
            // U[xi]ᵀ: [Ci, Co] read from U[xi] [Co, Ci].
            let ut = Mat::row_major(u.as_ptr(), ci).t();
            let zm = Mat::row_major(z.as_ptr(), n);
            gemms(
                XI,
                ci,
                n,
                co,
                SendPtr(dv.as_mut_ptr()),
                ci * n,
                false,
                (ut, co * ci),
                (zm, co * n),
                inner,
            );
            inverse_group(
                t,
                grp,
                ci,
                g.h * g.w,
                dv,
                dxp,
                inner,
                t.plane_scratch(),
                |dv, s, out, buf| transforms::inverse_input(dv, s, t, out, g.w, buf, accumulate),
            );
        })
    });
}

/// `dw` for upstream gradient `dy`, for a convolution [`applies`] accepts.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(g));
    assert_eq!((x.len(), dy.len()), (g.x_len(), g.y_len()));
    let t = Tiles::of(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co) = (g.cin, g.cout);
    let inner = !sched.parallel_groups;
    let du = sum_over_groups(&sched, g.batch, XI * co * ci, |grp, du| {
        let n = grp.images() * t.per_image();
        with_scratch(XI * ci * n, XI * co * n, |v, z| {
            transform_group(
                t,
                grp,
                ci,
                g.h * g.w,
                x,
                v,
                inner,
                t.row_scratch(),
                |p, v, s, buf| transforms::transform_input(p, g.w, t, v, s, buf),
            );
            transform_group(
                t,
                grp,
                co,
                g.pixels(),
                dy,
                z,
                inner,
                t.row_scratch(),
                |p, z, s, buf| transforms::transform_out_grad(p, g.wo, t, z, s, buf),
            );
            let zm = Mat::row_major(z.as_ptr(), n);
            // V[xi]ᵀ: [n, Ci] read from V[xi] [Ci, n].
            let vt = Mat::row_major(v.as_ptr(), n).t();
            gemms(
                XI,
                co,
                ci,
                n,
                SendPtr(du.as_mut_ptr()),
                co * ci,
                true,
                (zm, co * n),
                (vt, ci * n),
                inner,
            );
        });
    });
    transforms::inverse_weights(&du)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv_kernels;
    use crate::model::test_util::randn;
    use crate::rng::Rng;

    /// Largest difference relative to the reference's largest magnitude.
    fn max_rel(ours: &[f32], reference: &[f32]) -> f32 {
        assert_eq!(ours.len(), reference.len());
        let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = ours
            .iter()
            .zip(reference)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    /// ResNet-like shapes plus random ones: odd and even sides, 1x1 maps, batches that do
    /// and do not fill a group.
    fn cases() -> Vec<ConvGeom> {
        let mut r = Rng::new(11);
        let mut pick = |lo: usize, hi: usize| lo + (r.next_u64() as usize) % (hi - lo + 1);
        let mut out = vec![
            ConvGeom::new([16, 64, 16, 16], [64, 64, 3, 3], 1, 1),
            ConvGeom::new([16, 256, 2, 2], [256, 256, 3, 3], 1, 1),
            ConvGeom::new([3, 8, 1, 1], [4, 8, 3, 3], 1, 1),
        ];
        for _ in 0..40 {
            let (b, ci, co, h, w) = (
                pick(1, 40),
                pick(1, 9),
                pick(1, 9),
                pick(1, 19),
                pick(1, 19),
            );
            out.push(ConvGeom::new([b, ci, h, w], [co, ci, 3, 3], 1, 1));
        }
        out.into_iter().map(|g| g.unwrap()).collect()
    }

    /// All three passes equal the im2col kernels (themselves checked against candle) to
    /// float rounding, relative to the result's scale.
    #[test]
    fn all_three_passes_match_im2col() {
        for (i, g) in cases().iter().enumerate() {
            let seed = 1000 * i as u64;
            let x = randn(&[g.x_len()], seed);
            let w = randn(&[g.w_len()], seed + 1);
            let dy = randn(&[g.y_len()], seed + 2);
            let d = max_rel(&forward(g, &x, &w), &conv_kernels::forward(g, &x, &w));
            assert!(d < 1e-5, "forward {g:?}: {d}");
            let d = max_rel(
                &input_grad(g, &dy, &w),
                &conv_kernels::input_grad(g, &dy, &w),
            );
            assert!(d < 1e-5, "input gradient {g:?}: {d}");
            let d = max_rel(
                &weight_grad(g, &x, &dy),
                &conv_kernels::weight_grad(g, &x, &dy),
            );
            assert!(d < 1e-5, "weight gradient {g:?}: {d}");
        }
    }

    #[test]
    fn applies_only_to_3x3_stride_1_padding_1() {
        let geom = |k, s, p| ConvGeom::new([2, 3, 8, 8], [4, 3, k, k], s, p).unwrap();
        assert!(applies(&geom(3, 1, 1)));
        assert!(!applies(&geom(3, 2, 1)));
        assert!(!applies(&geom(3, 1, 0)));
        assert!(!applies(&geom(1, 1, 0)));
    }
}
