//! Adam and AdamW with PyTorch's exact update rule (`torch.optim.Adam` / `AdamW`, the
//! single-tensor reference implementation, `amsgrad = False`), betas and eps at PyTorch's
//! defaults:
//!
//! ```text
//! step += 1                                   per parameter
//! g = grad + weight_decay * p                 Adam (L2 in the gradient)
//! p = p * (1 - lr * weight_decay)             AdamW (decoupled), before the update
//! m = beta1 * m + (1 - beta1) * g
//! v = beta2 * v + (1 - beta2) * g * g
//! p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//! ```
//! As in [`super::sgd`], parameters without a gradient in a step (a frozen backbone) are
//! skipped entirely: no decay, no moment update, and their step count does not advance.
//!
//! Why Adam at all when the study used SGD: from random initialisation, on a few hundred
//! images and a few hundred steps, SGD at lr 1e-3..1e-1 leaves ResNet-18 at the class prior
//! while Adam at 1e-3 learns (measured with torchvision on drpipe's synthetic set; see
//! `bench/learn.py` and the quickstart's header).

use super::inplace::{cpu_f32_like, f32_mut, CHUNK};
use crate::model::cpu_data::f32_slice;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::collections::BTreeMap;

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub weight_decay: f64,
    /// AdamW: weight decay applied to the parameter, not added to the gradient.
    pub decoupled: bool,
}

/// One parameter's state, named as PyTorch's `optimizer.state[p]`.
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct Adam {
    vars: Vec<(String, Var)>,
    state: BTreeMap<String, Moments>,
    cfg: AdamConfig,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamConfig) -> Self {
        Adam {
            vars,
            state: BTreeMap::new(),
            cfg,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for (name, var) in &self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor();
            let s = match self.state.entry(name.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Moments {
                    step: 0,
                    exp_avg: p.zeros_like()?.detach(),
                    exp_avg_sq: p.zeros_like()?.detach(),
                }),
            };
            s.step += 1;
            let k = Coefficients::new(c, s.step);
            if fused_applies(p, grad, s) {
                s.exp_avg.inplace_op1(&FirstMoment {
                    k,
                    p,
                    grad,
                    v: &s.exp_avg_sq,
                })?;
                continue;
            }
            let p = var.as_detached_tensor();
            let mut g = grad.detach();
            let mut base = p.clone();
            if c.weight_decay != 0.0 {
                if c.decoupled {
                    base = (&p * (1.0 - c.lr * c.weight_decay))?;
                } else {
                    g = (g + (&p * c.weight_decay)?)?;
                }
            }
            s.exp_avg = ((&s.exp_avg * BETA1)? + (&g * (1.0 - BETA1))?)?.detach();
            s.exp_avg_sq = ((&s.exp_avg_sq * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?.detach();
            let denom = ((s.exp_avg_sq.sqrt()? / k.sqrt_bc2)? + EPS)?;
            var.set(&(base - ((&s.exp_avg / denom)? * k.step_size as f64)?)?)?;
        }
        Ok(())
    }

    /// `<name>/exp_avg`, `<name>/exp_avg_sq` and `<name>/step` (a one-element i64 tensor), for
    /// checkpoints.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.state {
            out.insert(format!("{name}/exp_avg"), s.exp_avg.clone());
            out.insert(format!("{name}/exp_avg_sq"), s.exp_avg_sq.clone());
            let step = Tensor::new(&[s.step as i64], s.exp_avg.device())?;
            out.insert(format!("{name}/step"), step);
        }
        Ok(out)
    }

    /// Restore what [`Adam::state`] saved (moved to each parameter's device).
    pub fn load_state(&mut self, mut saved: BTreeMap<String, Tensor>) -> Result<()> {
        self.state.clear();
        for (name, var) in &self.vars {
            let keys = ["exp_avg", "exp_avg_sq", "step"].map(|k| format!("{name}/{k}"));
            let present = keys.iter().filter(|k| saved.contains_key(*k)).count();
            if present == 0 {
                continue;
            }
            let mut take = |k: &str| {
                saved
                    .remove(k)
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks {k}")))
            };
            let (m, v, step) = (take(&keys[0])?, take(&keys[1])?, take(&keys[2])?);
            for (k, t) in [(&keys[0], &m), (&keys[1], &v)] {
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimiser state {k} has shape {:?}, parameter {:?}",
                        t.dims(),
                        var.dims()
                    )
                }
            }
            let step = step.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let [step] = step.as_slice() else {
                candle_core::bail!("optimiser state {} is not one number", keys[2])
            };
            let to_var = |t: Tensor| t.to_dtype(var.dtype())?.to_device(var.device());
            self.state.insert(
                name.clone(),
                Moments {
                    step: *step as u64,
                    exp_avg: to_var(m)?,
                    exp_avg_sq: to_var(v)?,
                },
            );
        }
        if let Some(k) = saved.keys().next() {
            candle_core::bail!("optimiser state for unknown parameter {k}")
        }
        Ok(())
    }
}

/// What one step of one parameter multiplies by.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    /// `lr / (1 - beta1^step)`.
    step_size: f32,
    /// `sqrt(1 - beta2^step)`.
    sqrt_bc2: f64,
    /// Multiplies `p` before the update: `1 - lr * wd` for AdamW, else 1.
    shrink: f32,
    /// Added to the gradient times `p`: `wd` for Adam, else 0.
    l2: f32,
}

impl Coefficients {
    fn new(c: AdamConfig, step: u64) -> Self {
        let bc1 = 1.0 - BETA1.powi(step as i32);
        let bc2 = 1.0 - BETA2.powi(step as i32);
        let (shrink, l2) = if c.decoupled {
            (1.0 - c.lr * c.weight_decay, 0.0)
        } else {
            (1.0, c.weight_decay)
        };
        Coefficients {
            step_size: (c.lr / bc1) as f32,
            sqrt_bc2: bc2.sqrt(),
            shrink: shrink as f32,
            l2: l2 as f32,
        }
    }
}

fn fused_applies(p: &Tensor, grad: &Tensor, s: &Moments) -> bool {
    cpu_f32_like(p, &[grad, &s.exp_avg, &s.exp_avg_sq])
}

/// One pass over a parameter, its gradient and both moments, in place on all three:
/// ```text
/// g = grad + l2 * p
/// m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
/// p = shrink * p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)
/// ```
/// candle's in-place ops write one tensor each, so each moment's op holds its storage and
/// runs the next one nested inside it: [`FirstMoment`] on `m`, [`SecondMoment`] on `v`,
/// [`AdamUpdate`] on `p`. A pass per tensor read twelve streams of floats where this reads
/// seven; the same expressions in the same order, so the same floats.
struct FirstMoment<'a> {
    k: Coefficients,
    p: &'a Tensor,
    grad: &'a Tensor,
    v: &'a Tensor,
}

impl InplaceOp1 for FirstMoment<'_> {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(&self, ms: &mut CpuStorage, ml: &Layout) -> Result<()> {
        let m = f32_mut(ms, ml, "adam")?;
        self.v.inplace_op1(&SecondMoment {
            k: self.k,
            p: self.p,
            grad: self.grad,
            m: m.as_mut_ptr(),
            len: m.len(),
        })
    }
}

/// See [`FirstMoment`].
struct SecondMoment<'a> {
    k: Coefficients,
    p: &'a Tensor,
    grad: &'a Tensor,
    /// `m`'s floats, write-locked by the enclosing [`FirstMoment`] while this runs.
    m: *mut f32,
    len: usize,
}

impl InplaceOp1 for SecondMoment<'_> {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(&self, vs: &mut CpuStorage, vl: &Layout) -> Result<()> {
        let v = f32_mut(vs, vl, "adam")?;
        if v.len() != self.len {
            candle_core::bail!("adam: the two moments differ in length")
        }
        let op = AdamUpdate {
            k: self.k,
            m: self.m,
            v: v.as_mut_ptr(),
            len: self.len,
        };
        self.p.inplace_op2(self.grad, &op)
    }
}

/// See [`FirstMoment`]: in place on `p`; input `grad`.
struct AdamUpdate {
    k: Coefficients,
    /// The moments' floats, write-locked by the enclosing ops while this runs.
    m: *mut f32,
    v: *mut f32,
    len: usize,
}

impl InplaceOp2 for AdamUpdate {
    fn name(&self) -> &'static str {
        "adam-parameter"
    }

    fn cpu_fwd(
        &self,
        ps: &mut CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let g = f32_slice(gs, gl, "adam")?;
        let p = f32_mut(ps, pl, "adam")?;
        if p.len() != self.len || g.len() != self.len {
            candle_core::bail!("adam: parameter, gradient and moments differ in length")
        }
        // SAFETY: each moment's storage is write-locked by an enclosing op for this call, is
        // `len` floats long, and belongs to a tensor of the optimiser's own (not `p`, not `g`,
        // not the other moment).
        let (m, v) = unsafe {
            (
                std::slice::from_raw_parts_mut(self.m, self.len),
                std::slice::from_raw_parts_mut(self.v, self.len),
            )
        };
        let k = self.k;
        // 1 - beta in f64 then rounded, as PyTorch passes it: 1 - 0.999f32 is off by 1.3e-5.
        let (b1, r1) = (BETA1 as f32, (1.0 - BETA1) as f32);
        let (b2, r2) = (BETA2 as f32, (1.0 - BETA2) as f32);
        let (inv_bc2, eps) = ((1.0 / k.sqrt_bc2) as f32, EPS as f32);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, ((p, m), v))| {
                let g = &g[c * CHUNK..];
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    let g = g + k.l2 * *p;
                    *m = b1 * *m + r1 * g;
                    *v = b2 * *v + r2 * (g * g);
                    *p = k.shrink * *p - k.step_size * *m / (v.sqrt() * inv_bc2 + eps);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
