//! A layer-level training engine for ResNet on the CPU: the forward and backward of the whole
//! network written as one pass over its layers, outside candle's autograd.
//!
//! candle's autograd records a graph node per op and, in the backward, allocates a zeroed
//! gradient for every node and adds each contribution into it, even where a node has one
//! consumer; every op result is a fresh buffer. Here:
//! - each layer keeps its activation buffers and reuses them in the next step (an arena of
//!   one buffer per activation, sized at the first step), and the backward runs in three
//!   scratch buffers the size of the largest activation;
//! - a gradient is written once: a residual block's output gradient is masked by its ReLU in
//!   place, serves as the skip connection's gradient, and the first convolution's input
//!   gradient is accumulated onto it by the GEMMs (see [`layers::Block::backward`]);
//! - a block ends in one pass: both batch norms' affine maps, the sum and the ReLU
//!   ([`crate::model::bn_kernels::affine_add_relu`]).
//!
//! The kernels (convolutions with the same Winograd/im2col choice, batch norm, max-pool) are
//! the ones the candle custom ops call, so the forward equals [`crate::model::ResNet`]'s to the
//! bit and the gradients equal candle's autograd to float rounding (the order of a few sums
//! differs). The engine reads and updates the [`VarMap`]'s variables themselves: weights are
//! read in place each step, batch-norm running statistics are moved in train mode, and the
//! gradients come back as a candle `GradStore` for the optimisers. candle's autograd stays
//! the path for other devices and the oracle of the tests.

mod grads;
mod layers;
pub mod profile;

use super::{max_pool, Arch};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use grads::Grads;
use layers::{read, slot, Block, ConvBn, ConvBnVars};
use profile::{timed, Pass};
use std::collections::HashMap;

pub struct Engine {
    stem: ConvBn,
    /// The stem's max-pool output and its `(h, w)`.
    pooled: Vec<f32>,
    pooled_hw: (usize, usize),
    /// Each pooled value's source in its stem plane.
    pool_argmax: Vec<u32>,
    blocks: Vec<Block>,
    fc_weight: Var,
    fc_bias: Var,
    /// Pooled features `[B, C]` of the last forward.
    features: Vec<f32>,
    /// Batch size and input `(h, w)` of the last train-mode forward, `None` before one.
    trained: Option<(usize, (usize, usize))>,
    /// Backward scratch: the running gradient and two temporaries.
    scratch: [Vec<f32>; 3],
}

impl Engine {
    /// The engine for the ResNet `arch` whose variables (torchvision's names) `varmap` holds,
    /// as [`crate::model::ResNet::new`] declares them. CPU f32 variables only.
    pub fn new(arch: Arch, varmap: &VarMap) -> Result<Engine> {
        let vars: HashMap<String, Var> = varmap
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let get = |name: &str| -> Result<Var> {
            let v = vars.get(name).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!("training engine: the model has no {name}"))
            })?;
            if !v.device().is_cpu() || v.dtype() != DType::F32 || !v.is_contiguous() {
                candle_core::bail!("training engine: {name} is not a contiguous f32 CPU tensor")
            }
            Ok(v)
        };
        let conv_bn = |conv: &str, bn: &str, stride: usize, pad: usize| -> Result<ConvBn> {
            ConvBn::new(
                ConvBnVars {
                    weight: get(&format!("{conv}.weight"))?,
                    gamma: get(&format!("{bn}.weight"))?,
                    beta: get(&format!("{bn}.bias"))?,
                    running_mean: get(&format!("{bn}.running_mean"))?,
                    running_var: get(&format!("{bn}.running_var"))?,
                },
                stride,
                pad,
            )
        };
        let stem = conv_bn("conv1", "bn1", 2, 3)?;
        let mut blocks = Vec::new();
        for (s, &n) in arch.stage_blocks().iter().enumerate() {
            for b in 0..n {
                let p = format!("layer{}.{b}", s + 1);
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                // Where the stride sits: torchvision's BasicBlock strides conv1, its
                // Bottleneck (v1.5) the 3x3 conv2.
                let strided = match arch {
                    Arch::ResNet18 => 1,
                    Arch::ResNet50 => 2,
                };
                let mut layers = Vec::new();
                for i in 1..=arch_convs(arch) {
                    let w = get(&format!("{p}.conv{i}.weight"))?;
                    let k = w.dims4()?.2;
                    let st = if i == strided { stride } else { 1 };
                    layers.push(conv_bn(
                        &format!("{p}.conv{i}"),
                        &format!("{p}.bn{i}"),
                        st,
                        k / 2,
                    )?);
                }
                let downsample = if vars.contains_key(&format!("{p}.downsample.0.weight")) {
                    let d = format!("{p}.downsample");
                    Some(conv_bn(&format!("{d}.0"), &format!("{d}.1"), stride, 0)?)
                } else {
                    None
                };
                blocks.push(Block {
                    layers,
                    downsample,
                    out: Vec::new(),
                });
            }
        }
        Ok(Engine {
            stem,
            pooled: Vec::new(),
            pooled_hw: (0, 0),
            pool_argmax: Vec::new(),
            blocks,
            fc_weight: get("fc.weight")?,
            fc_bias: get("fc.bias")?,
            features: Vec::new(),
            trained: None,
            scratch: Default::default(),
        })
    }

    /// Logits `[B, classes]` for `images` `[B, 3, h, w]` (contiguous f32). In train mode
    /// every batch norm uses the batch's statistics and moves its running statistics, and
    /// the activations are kept for [`Engine::backward`]; in eval mode the running
    /// statistics are used.
    pub fn forward(&mut self, images: &[f32], dims: [usize; 4], train: bool) -> Result<Tensor> {
        let [b, c, h, w] = dims;
        if c != 3 || images.len() != b * c * h * w || b == 0 {
            candle_core::bail!(
                "training engine: {} values for a batch of shape {dims:?} (3 channels)",
                images.len()
            )
        }
        self.trained = None;
        self.stem.conv_norm(images, b, (h, w), train)?;
        self.stem.normalise(true);
        let (sh, sw) = self.stem.out_hw();
        let hw = max_pool::out_size(sh, sw);
        let pooled = slot(&mut self.pooled, b * self.stem.cout * hw.0 * hw.1);
        let stem_out = &self.stem.a[..b * self.stem.cout * sh * sw];
        let idx = &mut self.pool_argmax;
        idx.resize(pooled.len(), 0);
        timed(Pass::MaxPool, || {
            max_pool::forward_indexed(stem_out, sh, sw, pooled, idx)
        });
        self.pooled_hw = hw;
        let mut cur = hw;
        for i in 0..self.blocks.len() {
            let (done, rest) = self.blocks.split_at_mut(i);
            let input = done.last().map_or(&self.pooled[..], |blk| &blk.out[..]);
            cur = rest[0].forward(input, b, cur, train)?;
        }
        let last = self.blocks.last().expect("a ResNet has blocks");
        let channels = last.layers.last().map_or(0, |l| l.cout);
        let plane = cur.0 * cur.1;
        let features = slot(&mut self.features, b * channels);
        let (fc_w, fc_b) = (&self.fc_weight, &self.fc_bias);
        let logits = timed(Pass::Head, || {
            // Global average pooling, then fc.
            for (f, p) in features.iter_mut().zip(last.out.chunks(plane)) {
                *f = p.iter().sum::<f32>() / plane as f32;
            }
            read(fc_w, |wt| {
                read(fc_b, |bias| linear(features, wt, bias, channels))
            })
        })???;
        if train {
            self.trained = Some((b, (h, w)));
        }
        Tensor::from_vec(logits, (b, self.fc_bias.dims1()?), &Device::Cpu)
    }

    /// Gradients of the loss whose gradient with respect to the last train-mode forward's
    /// logits is `dlogits` `[B, classes]`: of `fc` alone when `only_fc` (a frozen backbone:
    /// no backbone backward runs), else of every parameter. `images` are that forward's.
    pub fn backward(
        &mut self,
        images: &[f32],
        dlogits: &Tensor,
        only_fc: bool,
    ) -> Result<GradStore> {
        let Some((b, _)) = self.trained else {
            candle_core::bail!("training engine: backward needs a train-mode forward first")
        };
        let dl: Vec<f32> = dlogits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let classes = self.fc_bias.dims1()?;
        if dl.len() != b * classes {
            candle_core::bail!(
                "training engine: logit gradient of shape {:?} for a batch of {b}",
                dlogits.dims()
            )
        }
        let channels = self
            .blocks
            .last()
            .and_then(|blk| blk.layers.last())
            .map_or(0, |l| l.cout);
        let feats = &self.features[..b * channels];
        let mut grads = Grads::default();
        // fc: logits = f W^T + bias.
        let (dw, db) = timed(Pass::Head, || {
            let mut dw = vec![0f32; classes * channels];
            let mut db = vec![0f32; classes];
            for (dl_b, f_b) in dl.chunks(classes).zip(feats.chunks(channels)) {
                for (k, &g) in dl_b.iter().enumerate() {
                    db[k] += g;
                    for (d, &f) in dw[k * channels..(k + 1) * channels].iter_mut().zip(f_b) {
                        *d += g * f;
                    }
                }
            }
            (dw, db)
        });
        grads.put(&self.fc_weight, dw)?;
        grads.put(&self.fc_bias, db)?;
        if only_fc {
            return Ok(grads.into_store());
        }
        let max_len = self.max_activation();
        let [d, t1, t2] = &mut self.scratch;
        let (d, t1, t2) = (slot(d, max_len), slot(t1, max_len), slot(t2, max_len));
        // The average pool's backward: each value of a plane gets its feature's gradient / P.
        let (lh, lw) = self
            .blocks
            .last()
            .and_then(|blk| blk.layers.last())
            .map(ConvBn::out_hw)
            .expect("a ResNet has blocks");
        let plane = lh * lw;
        timed(Pass::Head, || {
            read(&self.fc_weight, |wt| {
                for (bi, dl_b) in dl.chunks(classes).enumerate() {
                    for c in 0..channels {
                        let g: f32 = dl_b
                            .iter()
                            .enumerate()
                            .map(|(k, &g)| g * wt[k * channels + c])
                            .sum();
                        let o = (bi * channels + c) * plane;
                        d[o..o + plane].fill(g / plane as f32);
                    }
                }
            })
        })?;
        for i in (0..self.blocks.len()).rev() {
            let input = if i == 0 {
                &self.pooled[..]
            } else {
                &self.blocks[i - 1].out[..]
            };
            let blk = &self.blocks[i];
            let x_len = blk.layers[0].geom().x_len();
            blk.backward(&input[..x_len], d, t1, t2, &mut grads)?;
        }
        // The stem: max-pool, batch norm with its ReLU, and the convolution's weight gradient
        // (the images need no gradient).
        let stem = &self.stem;
        let (sh, sw) = stem.out_hw();
        let n = stem.geom().y_len();
        let pooled_len = b * stem.cout * self.pooled_hw.0 * self.pooled_hw.1;
        let idx = &self.pool_argmax[..pooled_len];
        timed(Pass::MaxPool, || {
            max_pool::backward_indexed(&d[..pooled_len], idx, sh, sw, &mut t1[..n])
        });
        stem.norm_backward(&t1[..n], true, &mut t2[..n], &mut grads)?;
        stem.weight_backward(&images[..stem.geom().x_len()], &t2[..n], &mut grads)?;
        Ok(grads.into_store())
    }

    /// Floats of the largest activation of the last forward.
    fn max_activation(&self) -> usize {
        let layers = std::iter::once(&self.stem).chain(
            self.blocks
                .iter()
                .flat_map(|b| b.layers.iter().chain(b.downsample.as_ref())),
        );
        layers
            .map(|l| {
                let g = l.geom();
                g.x_len().max(g.y_len())
            })
            .max()
            .unwrap_or(0)
    }
}

/// Convolutions per block: 2 in a basic block, 3 in a bottleneck.
fn arch_convs(arch: Arch) -> usize {
    match arch {
        Arch::ResNet18 => 2,
        Arch::ResNet50 => 3,
    }
}

/// `f [B, C] W^T [C, K] + bias`, each row's dot products in order.
fn linear(f: &[f32], w: &[f32], bias: &[f32], c: usize) -> Result<Vec<f32>> {
    let k = bias.len();
    if w.len() != k * c {
        candle_core::bail!(
            "training engine: fc weight of {} values for {k} classes of {c} features",
            w.len()
        )
    }
    Ok(f.chunks(c)
        .flat_map(|fb| {
            (0..k).map(move |j| {
                fb.iter()
                    .zip(&w[j * c..(j + 1) * c])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + bias[j]
            })
        })
        .collect())
}

#[cfg(test)]
mod tests;
