//! What the Winograd variants share: a variant's tile and transforms ([`Variant`]), and the
//! drivers of the forward and the input gradient over them. A batch is split into groups of
//! images as in [`crate::model::conv_kernels`]; each group's transformed tiles live in
//! per-thread scratch, laid out `[XI, rows, n]` (`n` tiles of the group), and its `XI` GEMMs
//! run one per position of the transformed tile.

use super::transforms::{Slot, Tiles};
use crate::model::conv_kernels::{
    for_each_group, matmul, with_scratch, ConvGeom, Group, Mat, Pooled, Schedule, SendPtr,
};
use rayon::prelude::*;

/// Tiles per group, in every pass: wide enough for the GEMMs to run near full speed, small
/// enough for a group's transformed tiles (`V`, and `M` or `Z`: 16 x channels x tiles floats
/// each) to stay in a core's L2 between the transforms and the GEMMs. Against 512 tiles, in
/// one process, batch 16 (`bench_conv`): the backward took 0.87-0.92x the time on the 64 and
/// 128 px maps; the forward ran level until the positions' matrices stopped sharing cache
/// sets ([`run_stride`]), then 0.87-0.97x on the 8x8 to 32x32 maps of 128 px and the 14x14
/// of 224 px, level at 28x28 and 56x56 (where a group is one image either way). The
/// forward's and the input gradient's floats do not depend on it (each output's GEMM sums
/// its whole depth, at most 512, in one block; tested in `winograd.rs`); the weight
/// gradient's sum is split by groups, so its rounding does.
pub(super) const GROUP_TILES: usize = 128;

/// Floats between the matrices of consecutive positions `xi` in a group's `[XI, rows, n]`
/// scratch: `rows * n` and one cache line more. `rows * n` floats are a multiple of 4 KB (64
/// or more channels, tiles by the 16), so without the line every position's matrix starts
/// in the same L1 set, and the transforms, which write or read all 16 positions of a tile
/// at once, kept evicting their own lines (16 streams in a 12-way set).
pub(super) fn run_stride(rows: usize, n: usize) -> usize {
    rows * n + 16
}

/// A Winograd variant F(m x m, 3x3): its tiles and the transforms of one plane, each working
/// on the plane's tiles at `Slot` of a group's `[XI, rows, n]` scratch.
pub(super) trait Variant {
    /// Positions of a transformed tile: `(m + 2)²`.
    const XI: usize;
    /// Tiles covering an `h x w` output.
    fn tiles(h: usize, w: usize) -> Tiles;
    /// `U [XI, Co, Ci] = G g Gᵀ` for every kernel of `w [Co, Ci, 3, 3]`.
    fn transform_weights(w: &[f32]) -> Pooled;
    /// [`Variant::transform_weights`] laid out `[XI, Ci, Co]`: the input gradient's `U[xi]ᵀ`.
    fn transform_weights_t(w: &[f32], cin: usize) -> Pooled;
    /// `dw [Co, Ci, 3, 3] = Gᵀ dU G` for `dU [XI, Co, Ci]`.
    fn inverse_weights(du: &[f32]) -> Vec<f32>;
    /// Scratch floats of [`Variant::transform_input`].
    fn input_scratch(t: Tiles) -> usize;
    /// `V = Bᵀ d B` for every tile of one `[h, w]` input plane.
    fn transform_input(plane: &[f32], w: usize, t: Tiles, v: *mut f32, s: Slot, buf: &mut [f32]);
    /// Scratch floats of [`Variant::inverse_output`].
    fn output_scratch(t: Tiles) -> usize;
    /// `y = Aᵀ M A` for every tile of one `[ho, wo]` output plane.
    fn inverse_output(
        m: *const f32,
        s: Slot,
        t: Tiles,
        out: &mut [f32],
        wo: usize,
        buf: &mut [f32],
    );
    /// Scratch floats of [`Variant::transform_out_grad`].
    fn out_grad_scratch(t: Tiles) -> usize;
    /// `Z = A dy Aᵀ` for every tile of one `[ho, wo]` output-gradient plane.
    fn transform_out_grad(
        plane: &[f32],
        wo: usize,
        t: Tiles,
        z: *mut f32,
        s: Slot,
        buf: &mut [f32],
    );
    /// Scratch floats of [`Variant::inverse_input`].
    fn plane_scratch(t: Tiles) -> usize;
    /// `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane, added onto it when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    fn inverse_input(
        dv: *const f32,
        s: Slot,
        t: Tiles,
        out: &mut [f32],
        w: usize,
        buf: &mut [f32],
        accumulate: bool,
    );
}

pub(super) fn schedule(g: &ConvGeom, t: Tiles) -> Schedule {
    schedule_tiles(g, t, GROUP_TILES)
}

/// Groups of about `tiles` tiles.
pub(super) fn schedule_tiles(g: &ConvGeom, t: Tiles, tiles: usize) -> Schedule {
    Schedule::new(g.batch, (tiles / t.per_image()).clamp(1, g.batch.max(1)))
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

/// Transforms every plane of a group's images into `[XI, rows, n]` scratch: `rows` planes per
/// image, taken from `src` `[B, rows, plane_len]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn transform_group(
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
            xi_stride: run_stride(rows, n),
            base: r * n + j * t.per_image(),
        };
        f(plane, out.get(), slot, buf)
    });
}

/// The adjoint of [`transform_group`]'s layout: writes every plane of a group's images into
/// `dst` `[B, rows, plane_len]` (through `dst_ptr`) from the group's `[XI, rows, n]` scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn inverse_group(
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
            xi_stride: run_stride(rows, n),
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
pub(super) fn gemms(
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
            // SAFETY: stays inside the operand the caller passed (`count` matrices).
            ptr: unsafe { mat.ptr.add(xi * stride) },
            ..mat
        };
        // SAFETY: the caller sized dst, a and b for `count` matrices of these shapes.
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
                1,
            )
        }
    };
    if parallel {
        (0..count).into_par_iter().for_each(one);
    } else {
        (0..count).for_each(one);
    }
}

/// `y = conv(x, w)` into `y` with variant `V`, for a convolution [`super::applies`] accepts.
pub(super) fn forward_with<V: Variant>(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    forward_tiles::<V>(g, x, w, y, GROUP_TILES)
}

/// [`forward_with`] in groups of about `tiles` tiles.
pub(super) fn forward_tiles<V: Variant>(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    tiles: usize,
) {
    assert!(super::applies(g));
    assert_eq!(
        (x.len(), w.len(), y.len()),
        (g.x_len(), g.w_len(), g.y_len())
    );
    let t = V::tiles(g.ho, g.wo);
    let sched = schedule_tiles(g, t, tiles);
    let (ci, co, xi) = (g.cin, g.cout, V::XI);
    let u = V::transform_weights(w);
    let yp = SendPtr(y.as_mut_ptr());
    // Inside a group, work in parallel only when the groups themselves are not.
    let inner = !sched.parallel_groups;
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * t.per_image();
        with_scratch(xi * run_stride(ci, n), xi * run_stride(co, n), |v, m| {
            transform_group(
                t,
                grp,
                ci,
                g.h * g.w,
                x,
                v,
                inner,
                V::input_scratch(t),
                |p, v, s, buf| V::transform_input(p, g.w, t, v, s, buf),
            );
            let um = Mat::row_major(u.as_ptr(), ci);
            let vm = Mat::row_major(v.as_ptr(), n);
            let mp = SendPtr(m.as_mut_ptr());
            gemms(
                xi,
                co,
                n,
                ci,
                mp,
                run_stride(co, n),
                false,
                (um, co * ci),
                (vm, run_stride(ci, n)),
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
                V::output_scratch(t),
                |m, s, out, buf| V::inverse_output(m, s, t, out, g.wo, buf),
            );
        })
    });
}

/// The input gradient into `dx` with variant `V` (added onto it when `accumulate`), for a
/// convolution [`super::applies`] accepts.
pub(super) fn input_grad_with<V: Variant>(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    assert!(super::applies(g));
    assert_eq!(
        (dy.len(), w.len(), dx.len()),
        (g.y_len(), g.w_len(), g.x_len())
    );
    let t = V::tiles(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co, xi) = (g.cin, g.cout, V::XI);
    let u = V::transform_weights(w);
    let dxp = SendPtr(dx.as_mut_ptr());
    let inner = !sched.parallel_groups;
    for_each_group(&sched, |i| {
        let grp = sched.group_at(i, g.batch);
        let n = grp.images() * t.per_image();
        with_scratch(xi * run_stride(co, n), xi * run_stride(ci, n), |z, dv| {
            transform_group(
                t,
                grp,
                co,
                g.pixels(),
                dy,
                z,
                inner,
                V::out_grad_scratch(t),
                |p, z, s, buf| V::transform_out_grad(p, g.wo, t, z, s, buf),
            );
            // U[xi]ᵀ: [Ci, Co] read from U[xi] [Co, Ci].
            let ut = Mat::row_major(u.as_ptr(), ci).t();
            let zm = Mat::row_major(z.as_ptr(), n);
            let dvp = SendPtr(dv.as_mut_ptr());
            gemms(
                xi,
                ci,
                n,
                co,
                dvp,
                run_stride(ci, n),
                false,
                (ut, co * ci),
                (zm, run_stride(co, n)),
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
                V::plane_scratch(t),
                |dv, s, out, buf| V::inverse_input(dv, s, t, out, g.w, buf, accumulate),
            );
        })
    });
}
