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
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
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
                s.exp_avg
                    .inplace_op3(grad, p, &MomentUpdate { k, square: false })?;
                s.exp_avg_sq
                    .inplace_op3(grad, p, &MomentUpdate { k, square: true })?;
                p.inplace_op2(
                    &s.exp_avg,
                    &ParamUpdate {
                        k,
                        v: &s.exp_avg_sq,
                    },
                )?;
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

/// `m = b1 m + (1 - b1) g` or `v = b2 v + (1 - b2) g^2`, in place; inputs `(grad, p)`, with
/// `g = grad + l2 * p`.
struct MomentUpdate {
    k: Coefficients,
    square: bool,
}

impl InplaceOp3 for MomentUpdate {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        ms: &mut CpuStorage,
        ml: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        let (g, p) = (f32_slice(gs, gl, "adam")?, f32_slice(ps, pl, "adam")?);
        let (l2, square) = (self.k.l2, self.square);
        // 1 - beta in f64 then rounded, as PyTorch passes it: 1 - 0.999f32 is off by 1.3e-5.
        let beta = if square { BETA2 } else { BETA1 };
        let (beta, rest) = (beta as f32, (1.0 - beta) as f32);
        f32_mut(ms, ml, "adam")?
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, m)| {
                let o = k * CHUNK;
                for ((m, &g), &p) in m.iter_mut().zip(&g[o..]).zip(&p[o..]) {
                    let g = g + l2 * p;
                    let u = if square { g * g } else { g };
                    *m = beta * *m + rest * u;
                }
            });
        Ok(())
    }
}

/// `p = shrink * p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)`, in place; input `m`, with
/// `v` borrowed alongside (candle's in-place ops take at most two inputs besides the target).
struct ParamUpdate<'a> {
    k: Coefficients,
    v: &'a Tensor,
}

impl InplaceOp2 for ParamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adam-parameter"
    }

    fn cpu_fwd(
        &self,
        ps: &mut CpuStorage,
        pl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
    ) -> Result<()> {
        let m = f32_slice(ms, ml, "adam")?;
        let (vs, vl) = self.v.storage_and_layout();
        let candle_core::Storage::Cpu(vs) = &*vs else {
            candle_core::bail!("adam: expected a CPU tensor")
        };
        let v = f32_slice(vs, vl, "adam")?;
        let k = self.k;
        let (inv_bc2, eps) = ((1.0 / k.sqrt_bc2) as f32, EPS as f32);
        f32_mut(ps, pl, "adam")?
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, p)| {
                let o = c * CHUNK;
                for ((p, &m), &v) in p.iter_mut().zip(&m[o..]).zip(&v[o..]) {
                    *p = k.shrink * *p - k.step_size * m / (v.sqrt() * inv_bc2 + eps);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
