//! drpipe's side of `bench/run train`: one timed row per process, printed as one JSON line.
//!
//! A row is a model (ResNet-18/50, 5 classes, random weights), an input size, and a mode:
//! `train` times full steps (train-mode forward, cross-entropy, backward, SGD with momentum 0.9
//! and weight decay 5e-4) through the layer-level engine as the trainer runs them on the CPU
//! (`--autograd`: through candle's autograd, as before the engine), `eval` eval-mode forward
//! passes. Inputs are one random fp32 batch,
//! reused every step. One warm-up step is untimed; the peak resident memory (`VmHWM`) is read
//! at the end, so each row must run in its own process. The thread count is candle's (rayon's
//! `RAYON_NUM_THREADS`, else every core).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use clap::{Parser, ValueEnum};
use drpipe::data::NUM_CLASSES;
use drpipe::model::engine::profile;
use drpipe::model::{init_weights, trainable_vars, Arch, Engine, ResNet};
use drpipe::train::loss::cross_entropy;
use drpipe::train::sgd::{Sgd, SgdConfig};

#[derive(Parser)]
struct Args {
    /// resnet18 or resnet50.
    #[arg(long)]
    arch: Arch,
    /// Input side in pixels.
    #[arg(long)]
    size: usize,
    #[arg(long, value_enum)]
    mode: StepMode,
    /// Timed steps, after one untimed warm-up step.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// im2col for every convolution, no Winograd: the kernels before it, for A/B runs.
    #[arg(long)]
    no_winograd: bool,
    /// Train through candle's autograd over `ResNet` instead of the layer-level engine (the
    /// training path before it), for A/B runs.
    #[arg(long)]
    autograd: bool,
    /// Time each pass of the engine's steps (adds `passes_ms`, milliseconds per step).
    #[arg(long)]
    profile: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StepMode {
    Train,
    Eval,
}

/// Peak resident set size of this process, from the kernel's high-water mark.
fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line in /proc/self/status")?;
    Ok(kb / 1024.0)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let device = Device::Cpu;
    drpipe::model::conv::set_winograd(!a.no_winograd);
    let varmap = VarMap::new();
    let model = ResNet::new(
        a.arch,
        NUM_CLASSES,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    init_weights(&varmap, a.arch, 0)?;
    let mut opt = Sgd::new(
        trainable_vars(&varmap, false),
        SgdConfig {
            lr: 1e-3,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: false,
        },
    );
    let dims = [a.batch, 3, a.size, a.size];
    let x = Tensor::randn(0f32, 1f32, &dims[..], &device)?;
    let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let mut engine = (!a.autograd)
        .then(|| Engine::new(a.arch, &varmap))
        .transpose()?;
    let labels: Vec<u32> = (0..a.batch).map(|i| (i % NUM_CLASSES) as u32).collect();
    let weights = [1f32; NUM_CLASSES];

    // Seconds in forward (incl. loss), backward and the optimiser step, over the timed steps.
    let mut phases = [0f64; 3];
    let mut step = |phases: &mut [f64; 3]| -> Result<()> {
        let t0 = Instant::now();
        match a.mode {
            StepMode::Train => {
                let (logits, leaf) = match engine.as_mut() {
                    Some(e) => {
                        let leaf = Var::from_tensor(&e.forward(&xv, dims, true)?)?;
                        (leaf.as_tensor().clone(), Some(leaf))
                    }
                    None => (model.forward(&x, true)?, None),
                };
                let loss = cross_entropy(&logits, &labels, &weights, 0.0)?;
                let t1 = Instant::now();
                let grads = match (engine.as_mut(), leaf) {
                    (Some(e), Some(leaf)) => {
                        let dl = loss.backward()?.get(leaf.as_tensor()).unwrap().clone();
                        e.backward(&xv, &dl, false)?
                    }
                    _ => loss.backward()?,
                };
                let t2 = Instant::now();
                opt.step(&grads)?;
                phases[0] += (t1 - t0).as_secs_f64();
                phases[1] += (t2 - t1).as_secs_f64();
                phases[2] += t2.elapsed().as_secs_f64();
            }
            StepMode::Eval => {
                black_box(model.forward(&x, false)?);
                phases[0] += t0.elapsed().as_secs_f64();
            }
        }
        Ok(())
    };
    step(&mut [0.0; 3])?;
    if a.profile {
        profile::start();
    }
    let started = Instant::now();
    for _ in 0..a.steps {
        step(&mut phases)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let passes: serde_json::Map<String, serde_json::Value> = profile::take()
        .into_iter()
        .map(|(p, s)| (p.name().to_string(), (1e3 * s / a.steps as f64).into()))
        .collect();
    let mode = match a.mode {
        StepMode::Train => "train",
        StepMode::Eval => "eval",
    };
    println!(
        "{}",
        serde_json::json!({
            "row": format!("{} {} {}px{}{}", a.arch, mode, a.size, if a.no_winograd { " im2col" } else { "" }, if a.autograd && a.mode == StepMode::Train { " autograd" } else { "" }),
            "images_per_s": (a.steps * a.batch) as f64 / secs,
            "seconds": secs,
            "steps": a.steps,
            "threads": candle_core::utils::get_num_threads(),
            "peak_rss_mb": peak_rss_mb()?,
            "forward_s": phases[0],
            "backward_s": phases[1],
            "optimizer_s": phases[2],
            "passes_ms": passes,
        })
    );
    Ok(())
}
