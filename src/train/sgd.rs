//! SGD with PyTorch's exact update rule (`torch.optim.SGD`, foreach-free reference
//! implementation), which candle-nn's SGD lacks (no momentum, no weight decay):
//!
//! ```text
//! g = grad + weight_decay * p
//! buf = g                                   on a parameter's first step
//! buf = momentum * buf + (1 - dampening) * g  afterwards
//! g = g + momentum * buf  (nesterov)   or   g = buf
//! p = p - lr * g
//! ```
//! Parameters without a gradient in a step are skipped entirely (as PyTorch skips
//! `p.grad is None`): no decay, and no momentum buffer until their first gradient.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

pub struct Sgd {
    vars: Vec<(String, Var)>,
    /// Momentum buffers by parameter name, detached from any graph.
    bufs: BTreeMap<String, Tensor>,
    cfg: SgdConfig,
}

impl Sgd {
    pub fn new(vars: Vec<(String, Var)>, cfg: SgdConfig) -> Self {
        Sgd {
            vars,
            bufs: BTreeMap::new(),
            cfg,
        }
    }

    pub fn lr(&self) -> f64 {
        self.cfg.lr
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
            let p = var.as_detached_tensor();
            // Detach: a gradient still references its graph, and keeping it (in a momentum
            // buffer) would keep the whole step's activations alive.
            let mut g = grad.detach();
            if c.weight_decay != 0.0 {
                g = (g + (&p * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let buf = match self.bufs.get(name) {
                    None => g.clone(),
                    Some(b) => ((b * c.momentum)? + (&g * (1.0 - c.dampening))?)?,
                };
                g = if c.nesterov {
                    (g + (&buf * c.momentum)?)?
                } else {
                    buf.clone()
                };
                self.bufs.insert(name.clone(), buf.detach());
            }
            var.set(&(p - (g * c.lr)?)?)?;
        }
        Ok(())
    }

    /// Momentum buffers, for checkpoints.
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.bufs
    }

    /// Restore buffers saved from [`Sgd::state`] (moved to each parameter's device).
    pub fn load_state(&mut self, bufs: BTreeMap<String, Tensor>) -> Result<()> {
        self.bufs.clear();
        for (name, buf) in bufs {
            let Some((_, var)) = self.vars.iter().find(|(n, _)| *n == name) else {
                candle_core::bail!("optimiser state for unknown parameter {name}")
            };
            if buf.dims() != var.dims() {
                candle_core::bail!(
                    "optimiser state for {name} has shape {:?}, parameter {:?}",
                    buf.dims(),
                    var.dims()
                )
            }
            self.bufs
                .insert(name, buf.to_dtype(var.dtype())?.to_device(var.device())?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One scalar parameter p (start 1.0) with loss 2p (gradient 2) and a second parameter
    /// that never gets a gradient.
    fn run(cfg: SgdConfig, steps: usize) -> (f32, Sgd) {
        let p = Var::new(&[1f32], &Device::Cpu).unwrap();
        let idle = Var::new(&[5f32], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(
            vec![("p".into(), p.clone()), ("idle".into(), idle.clone())],
            cfg,
        );
        for _ in 0..steps {
            let grads = (p.as_tensor() * 2.0)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads).unwrap();
        }
        assert_eq!(idle.to_vec1::<f32>().unwrap(), [5.0]);
        assert!(!opt.state().contains_key("idle"));
        (p.to_vec1::<f32>().unwrap()[0], opt)
    }

    const BASE: SgdConfig = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.1,
        nesterov: false,
    };

    #[test]
    fn momentum_and_weight_decay_follow_pytorch_by_hand() {
        // step 1: g = 2 + 0.1*1 = 2.1, buf = 2.1, p = 1 - 0.21 = 0.79
        // step 2: g = 2 + 0.079 = 2.079, buf = 0.9*2.1 + 2.079 = 3.969, p = 0.79 - 0.3969
        let (p1, _) = run(BASE, 1);
        assert!((p1 - 0.79).abs() < 1e-6, "{p1}");
        let (p2, opt) = run(BASE, 2);
        assert!((p2 - 0.3931).abs() < 1e-6, "{p2}");
        let buf = opt.state()["p"].to_vec1::<f32>().unwrap()[0];
        assert!((buf - 3.969).abs() < 1e-5, "{buf}");
    }

    #[test]
    fn nesterov_and_dampening_follow_pytorch_by_hand() {
        // nesterov step 1: buf = 2.1, g = 2.1 + 0.9*2.1 = 3.99, p = 1 - 0.399
        let (p, _) = run(
            SgdConfig {
                nesterov: true,
                ..BASE
            },
            1,
        );
        assert!((p - 0.601).abs() < 1e-6, "{p}");
        // dampening 0.5 step 2: buf = 0.9*2.1 + 0.5*2.079 = 2.9295, p = 0.79 - 0.29295
        let (p, _) = run(
            SgdConfig {
                dampening: 0.5,
                ..BASE
            },
            2,
        );
        assert!((p - 0.49705).abs() < 1e-6, "{p}");
        // plain SGD: p = 1 - 0.1*2 per step
        let plain = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            ..BASE
        };
        let (p, opt) = run(plain, 2);
        assert!((p - 0.6).abs() < 1e-6 && opt.state().is_empty(), "{p}");
    }
}
