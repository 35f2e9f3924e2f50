//! The gradients of a Winograd variant: the weight gradient alone (the stem-side case where
//! no input gradient is wanted) and both gradients in one pass over the batch's groups.

use super::drivers::{gemms, inverse_group, run_stride, schedule, transform_group, Variant};
use super::transforms::Tiles;
use super::{applies, ConvGeom};
use crate::model::conv_kernels::{sum_over_groups_in, with_scratch, Group, Mat, Pooled, SendPtr};

/// `dw` for upstream gradient `dy` with variant `V`, for a convolution [`applies`] accepts.
pub(super) fn weight_grad_with<V: Variant>(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(g));
    assert_eq!((x.len(), dy.len()), (g.x_len(), g.y_len()));
    let t = V::tiles(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co, xi) = (g.cin, g.cout, V::XI);
    let inner = !sched.parallel_groups;
    let du = sum_over_groups_in(&sched, g.batch, xi * co * ci, Pooled::zeroed, |grp, du| {
        let n = grp.images() * t.per_image();
        with_scratch(xi * run_stride(ci, n), xi * run_stride(co, n), |v, z| {
            transform_x::<V>(g, t, grp, x, v, inner);
            transform_dy::<V>(g, t, grp, dy, z, inner);
            add_weight_grad::<V>(g, n, z, v, du, inner);
        });
    });
    V::inverse_weights(&du)
}

/// Both gradients for upstream gradient `dy` with variant `V`: the input gradient into `dx`
/// (added onto it when `accumulate`, else written over it) and `dw` returned, for a
/// convolution [`applies`] accepts. One pass over the groups: each group's `Z = A dy Aᵀ` is
/// made once and feeds the input gradient's GEMMs and then the weight gradient's, where the
/// input gradient's driver and [`weight_grad_with`] each transform `dy` themselves; `V` is
/// made over `dV` once the input gradient has read it. The same GEMMs in the same order:
/// the floats of both gradients are those of the two calls.
pub(super) fn backward_with<V: Variant>(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    assert!(applies(g));
    assert_eq!(
        (x.len(), dy.len(), w.len(), dx.len()),
        (g.x_len(), g.y_len(), g.w_len(), g.x_len())
    );
    let t = V::tiles(g.ho, g.wo);
    let sched = schedule(g, t);
    let (ci, co, xi) = (g.cin, g.cout, V::XI);
    let inner = !sched.parallel_groups;
    let ut = V::transform_weights_t(w, ci);
    let dxp = SendPtr(dx.as_mut_ptr());
    // Each worker's groups are its own images: their planes of dx are written by it alone.
    let du = sum_over_groups_in(&sched, g.batch, xi * co * ci, Pooled::zeroed, |grp, du| {
        let n = grp.images() * t.per_image();
        with_scratch(xi * run_stride(co, n), xi * run_stride(ci, n), |z, v| {
            transform_dy::<V>(g, t, grp, dy, z, inner);
            let zm = Mat::row_major(z.as_ptr(), n);
            // dV[xi] = U[xi]ᵀ Z[xi].
            let utm = Mat::row_major(ut.as_ptr(), co);
            gemms(
                xi,
                ci,
                n,
                co,
                SendPtr(v.as_mut_ptr()),
                run_stride(ci, n),
                false,
                (utm, co * ci),
                (zm, run_stride(co, n)),
                inner,
            );
            inverse_group(
                t,
                grp,
                ci,
                g.h * g.w,
                v,
                dxp,
                inner,
                V::plane_scratch(t),
                |dv, s, out, buf| V::inverse_input(dv, s, t, out, g.w, buf, accumulate),
            );
            transform_x::<V>(g, t, grp, x, v, inner);
            add_weight_grad::<V>(g, n, z, v, du, inner);
        });
    });
    V::inverse_weights(&du)
}

/// `V = Bᵀ d B` of the group's images of `x` into `v` (`[XI, Ci, n]`).
fn transform_x<V: Variant>(
    g: &ConvGeom,
    t: Tiles,
    grp: Group,
    x: &[f32],
    v: &mut [f32],
    inner: bool,
) {
    transform_group(
        t,
        grp,
        g.cin,
        g.h * g.w,
        x,
        v,
        inner,
        V::input_scratch(t),
        |p, v, s, buf| V::transform_input(p, g.w, t, v, s, buf),
    );
}

/// `Z = A dy Aᵀ` of the group's images of `dy` into `z` (`[XI, Co, n]`).
fn transform_dy<V: Variant>(
    g: &ConvGeom,
    t: Tiles,
    grp: Group,
    dy: &[f32],
    z: &mut [f32],
    inner: bool,
) {
    transform_group(
        t,
        grp,
        g.cout,
        g.pixels(),
        dy,
        z,
        inner,
        V::out_grad_scratch(t),
        |p, z, s, buf| V::transform_out_grad(p, g.wo, t, z, s, buf),
    );
}

/// `dU[xi] += Z[xi] V[xi]ᵀ` over the group's `n` tiles.
fn add_weight_grad<V: Variant>(
    g: &ConvGeom,
    n: usize,
    z: &[f32],
    v: &[f32],
    du: &mut [f32],
    inner: bool,
) {
    let (ci, co) = (g.cin, g.cout);
    let zm = Mat::row_major(z.as_ptr(), n);
    // V[xi]ᵀ: [n, Ci] read from V[xi] [Ci, n].
    let vt = Mat::row_major(v.as_ptr(), n).t();
    gemms(
        V::XI,
        co,
        ci,
        n,
        SendPtr(du.as_mut_ptr()),
        co * ci,
        true,
        (zm, run_stride(co, n)),
        (vt, run_stride(ci, n)),
        inner,
    );
}
