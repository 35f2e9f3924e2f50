//! The engine's layers: a convolution with its batch norm (and ReLU), and a residual block of
//! them. Each layer keeps the buffers of its last forward pass (convolution output, batch
//! norm output, batch statistics) and reuses them in the next step, so a step allocates no
//! activation after the first.

use super::grads::Grads;
use super::profile::{timed, Pass};
use crate::model::batch_norm::{eval_affine, train_affine, BatchStats};
use crate::model::bn_kernels::{self, BnShape, Relu, Skip};
use crate::model::conv;
use crate::model::conv_kernels::ConvGeom;
use crate::model::cpu_data::with_f32;
use candle_core::{Result, Var};

const OP: &str = "training engine";

/// `buf[..len]`, growing `buf` if it is shorter (its capacity is kept across steps).
pub(super) fn slot(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Run `f` on a variable's values (a contiguous f32 CPU tensor).
pub(super) fn read<R>(v: &Var, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_f32(v.as_tensor(), OP, f)
}

/// A bias-free convolution followed by a batch norm: torchvision's `convN` + `bnN` pair.
pub(super) struct ConvBn {
    pub(super) weight: Var,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
    cin: usize,
    pub(super) cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// The last forward's geometry, convolution output, batch-norm output (after the ReLU
    /// where there is one), and the batch norm's per-channel affine map and statistics.
    geom: Option<ConvGeom>,
    pub(super) z: Vec<f32>,
    pub(super) a: Vec<f32>,
    pub(super) scale: Vec<f32>,
    pub(super) shift: Vec<f32>,
    stats: Option<(Vec<f64>, Vec<f64>)>,
}

/// The variables of one conv + batch-norm pair, by role.
pub(super) struct ConvBnVars {
    pub weight: Var,
    pub gamma: Var,
    pub beta: Var,
    pub running_mean: Var,
    pub running_var: Var,
}

impl ConvBn {
    pub(super) fn new(v: ConvBnVars, stride: usize, pad: usize) -> Result<ConvBn> {
        let (cout, cin, k, _) = v.weight.dims4()?;
        Ok(ConvBn {
            weight: v.weight,
            gamma: v.gamma,
            beta: v.beta,
            running_mean: v.running_mean,
            running_var: v.running_var,
            cin,
            cout,
            k,
            stride,
            pad,
            geom: None,
            z: Vec::new(),
            a: Vec::new(),
            scale: Vec::new(),
            shift: Vec::new(),
            stats: None,
        })
    }

    pub(super) fn geom(&self) -> ConvGeom {
        self.geom.expect("a forward pass came first")
    }

    /// Output `(height, width)` of the last forward.
    pub(super) fn out_hw(&self) -> (usize, usize) {
        let g = self.geom();
        (g.ho, g.wo)
    }

    fn bn_shape(&self) -> BnShape {
        let g = self.geom();
        BnShape {
            batch: g.batch,
            channels: g.cout,
            plane: g.pixels(),
        }
    }

    /// The convolution of `x` `[b, cin, h, w]` into `z`, then the batch norm's affine map:
    /// from the batch's statistics in train mode (which also move the running statistics),
    /// from the running statistics in eval mode.
    pub(super) fn conv_norm(
        &mut self,
        x: &[f32],
        b: usize,
        hw: (usize, usize),
        train: bool,
    ) -> Result<()> {
        let g = ConvGeom::new(
            [b, self.cin, hw.0, hw.1],
            [self.cout, self.cin, self.k, self.k],
            self.stride,
            self.pad,
        )
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{OP}: a {0}x{0} kernel does not fit a {1}x{2} input",
                self.k, hw.0, hw.1
            ))
        })?;
        self.geom = Some(g);
        // Buffers keep the length of the largest batch seen: take this batch's part.
        let x = &x[..g.x_len()];
        let z = slot(&mut self.z, g.y_len());
        timed(Pass::ConvForward, || {
            read(&self.weight, |w| conv::forward_into(&g, x, w, z))
        })?;
        let (gamma, beta) = (
            read(&self.gamma, <[f32]>::to_vec)?,
            read(&self.beta, <[f32]>::to_vec)?,
        );
        let shape = self.bn_shape();
        if train {
            if shape.count() < 2 {
                candle_core::bail!("batch norm in train mode needs more than 1 value per channel, got {} images of {}x{}", b, g.ho, g.wo)
            }
            let z = &self.z[..g.y_len()];
            let stats = timed(Pass::BnStats, || BatchStats::of(shape, z));
            (self.scale, self.shift) = train_affine(&stats.mean, &stats.invstd, &gamma, &beta);
            self.stats = Some((stats.mean.clone(), stats.invstd.clone()));
            timed(Pass::BnStats, || {
                stats.update_running(&self.running_mean, &self.running_var)
            })?;
        } else {
            let (rm, rv) = (
                read(&self.running_mean, <[f32]>::to_vec)?,
                read(&self.running_var, <[f32]>::to_vec)?,
            );
            (self.scale, self.shift) = eval_affine(&rm, &rv, &gamma, &beta);
            self.stats = None;
        }
        Ok(())
    }

    /// `a = bn(z)`, then the ReLU when `relu`.
    pub(super) fn normalise(&mut self, relu: bool) {
        let shape = self.bn_shape();
        let a = slot(&mut self.a, shape.len());
        let z = &self.z[..shape.len()];
        timed(Pass::BnApply, || {
            bn_kernels::affine_into(shape, z, &self.scale, &self.shift, relu, a)
        });
    }

    /// The batch norm's backward: `dz` from `dy` (the gradient of its output, masked by the
    /// ReLU when `relu`); its parameters' gradients go to `grads`.
    pub(super) fn norm_backward(
        &self,
        dy: &[f32],
        relu: bool,
        dz: &mut [f32],
        grads: &mut Grads,
    ) -> Result<()> {
        let shape = self.bn_shape();
        let Some((mean, invstd)) = &self.stats else {
            candle_core::bail!("{OP}: backward after an eval-mode forward")
        };
        let z = &self.z[..shape.len()];
        let relu = relu.then_some(Relu {
            scale: &self.scale,
            shift: &self.shift,
        });
        let (dgamma, dbeta) = timed(Pass::BnBackward, || {
            read(&self.gamma, |gamma| {
                bn_kernels::backward_into(shape, z, dy, relu, mean, invstd, gamma, dz)
            })
        })?;
        grads.put(&self.gamma, dgamma)?;
        grads.put(&self.beta, dbeta)
    }

    /// The convolution's weight gradient alone, for input `x` and output gradient `dz` (the
    /// stem's: the images need no gradient).
    pub(super) fn weight_backward(&self, x: &[f32], dz: &[f32], grads: &mut Grads) -> Result<()> {
        let dw = timed(Pass::ConvWeightGrad, || {
            conv::weight_grad(&self.geom(), x, dz)
        });
        grads.put(&self.weight, dw)
    }

    /// Both of the convolution's gradients: the input gradient into `dx` (added onto it when
    /// `accumulate`), the weight gradient to `grads`. Winograd's share their transform of
    /// `dz` ([`conv::backward_into`]).
    pub(super) fn backward(
        &self,
        x: &[f32],
        dz: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        grads: &mut Grads,
    ) -> Result<()> {
        let g = self.geom();
        let dw = timed(Pass::ConvGrads, || {
            read(&self.weight, |w| {
                conv::backward_into(&g, x, dz, w, dx, accumulate)
            })
        })?;
        grads.put(&self.weight, dw)
    }
}

/// A residual block: 2 (basic) or 3 (bottleneck) conv + batch-norm layers, ReLU after all but
/// the last, and the skip connection, through a downsampling conv + batch norm where the
/// shape changes; `out = relu(last + skip)`.
pub(super) struct Block {
    pub(super) layers: Vec<ConvBn>,
    pub(super) downsample: Option<ConvBn>,
    pub(super) out: Vec<f32>,
}

impl Block {
    /// Forward of input `x` `[b, c, h, w]`; the result is in `self.out`, its `(h, w)` returned.
    pub(super) fn forward(
        &mut self,
        x: &[f32],
        b: usize,
        hw: (usize, usize),
        train: bool,
    ) -> Result<(usize, usize)> {
        let last = self.layers.len() - 1;
        let mut cur = hw;
        for i in 0..=last {
            let (done, rest) = self.layers.split_at_mut(i);
            let input = done.last().map_or(x, |l| &l.a[..]);
            let layer = &mut rest[0];
            layer.conv_norm(input, b, cur, train)?;
            if i != last {
                layer.normalise(true);
            }
            cur = layer.out_hw();
        }
        if let Some(d) = &mut self.downsample {
            d.conv_norm(x, b, hw, train)?;
        }
        let l = &self.layers[last];
        let shape = l.bn_shape();
        let skip = match &self.downsample {
            Some(d) => Skip::Affine(&d.z[..shape.len()], &d.scale, &d.shift),
            None => Skip::Identity(&x[..shape.len()]),
        };
        let out = slot(&mut self.out, shape.len());
        let z = &l.z[..shape.len()];
        timed(Pass::BlockEnd, || {
            bn_kernels::affine_add_relu(shape, z, &l.scale, &l.shift, skip, out)
        });
        Ok(cur)
    }

    /// Backward from `dout` (the gradient of `self.out`, in `dout[..out len]`) to the
    /// gradient of the block's input `x`, left in `dout[..x.len()]`. `t1` and `t2` are
    /// scratch of at least the largest activation.
    ///
    /// The skip gradient is written once: `dout` is masked by the ReLU in place and serves
    /// as the identity's gradient, and the first convolution's input gradient is added
    /// onto it by the GEMMs themselves (candle's autograd would allocate a zeroed gradient
    /// for each consumer, add each contribution into it, then add the two).
    pub(super) fn backward(
        &self,
        x: &[f32],
        dout: &mut [f32],
        t1: &mut [f32],
        t2: &mut [f32],
        grads: &mut Grads,
    ) -> Result<()> {
        let n_out = self.layers.last().map_or(0, |l| l.bn_shape().len());
        timed(Pass::ReluBackward, || {
            mask_by_positive(&mut dout[..n_out], &self.out[..n_out])
        });
        let last = self.layers.len() - 1;
        for i in (0..=last).rev() {
            let l = &self.layers[i];
            let n = l.bn_shape().len();
            if i == last {
                l.norm_backward(&dout[..n], false, &mut t1[..n], grads)?;
            } else {
                l.norm_backward(&t2[..n], true, &mut t1[..n], grads)?;
            }
            if i > 0 {
                let input = &self.layers[i - 1].a[..l.geom().x_len()];
                l.backward(input, &t1[..n], &mut t2[..input.len()], false, grads)?;
            }
        }
        // t1 holds the first layer's dz; its gradients wait for the downsample's, below.
        let first = &self.layers[0];
        let dz0 = &t1[..first.bn_shape().len()];
        // Without a downsample, dout already holds the identity's gradient; with one, its
        // input gradient replaces dout once the branch's batch norm has read it.
        if let Some(d) = &self.downsample {
            let n = d.bn_shape().len();
            d.norm_backward(&dout[..n], false, &mut t2[..n], grads)?;
            d.backward(x, &t2[..n], &mut dout[..x.len()], false, grads)?;
        }
        first.backward(x, dz0, &mut dout[..x.len()], true, grads)
    }
}

/// `g = g` where `y > 0`, else 0: the ReLU's backward, in place.
pub(super) fn mask_by_positive(g: &mut [f32], y: &[f32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    g.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(g, y)| {
            // A select and an unconditional store, which vectorise; a conditional store
            // does not, and its branch on the sign of post-ReLU values mispredicts.
            for (g, &y) in g.iter_mut().zip(y) {
                *g = if y <= 0.0 { 0.0 } else { *g };
            }
        });
}
