//! Wall time per pass of the engine's steps, for the benchmark's per-pass breakdown. Off by
//! default; when on, each pass is timed around its kernel call on the thread that drives
//! the step (the kernels' own rayon workers are inside that time).

use std::cell::RefCell;
use std::time::Instant;

/// The passes a step is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    ConvForward,
    /// The stem's, the one convolution without an input gradient.
    ConvWeightGrad,
    /// Both gradients of every other convolution (Winograd's in one pass).
    ConvGrads,
    /// Batch statistics and the running statistics' update.
    BnStats,
    /// The batch norm's affine map (with its ReLU), inside blocks and in the stem.
    BnApply,
    /// A block's end: both batch norms' affine maps, the skip connection's sum and the ReLU.
    BlockEnd,
    BnBackward,
    /// The block ends' ReLU backward (the gradient masked in place).
    ReluBackward,
    MaxPool,
    /// Average pooling and the classifier, forward and backward.
    Head,
}

impl Pass {
    pub const ALL: [Pass; 10] = [
        Pass::ConvForward,
        Pass::ConvWeightGrad,
        Pass::ConvGrads,
        Pass::BnStats,
        Pass::BnApply,
        Pass::BlockEnd,
        Pass::BnBackward,
        Pass::ReluBackward,
        Pass::MaxPool,
        Pass::Head,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pass::ConvForward => "conv forward",
            Pass::ConvWeightGrad => "conv weight gradient (stem)",
            Pass::ConvGrads => "conv input + weight gradients",
            Pass::BnStats => "batch norm statistics",
            Pass::BnApply => "batch norm (+ReLU) forward",
            Pass::BlockEnd => "block end: bn + skip + ReLU",
            Pass::BnBackward => "batch norm (+ReLU) backward",
            Pass::ReluBackward => "block-end ReLU backward",
            Pass::MaxPool => "max-pool forward+backward",
            Pass::Head => "avg-pool, fc forward+backward",
        }
    }
}

thread_local! {
    static TIMES: RefCell<Option<[f64; Pass::ALL.len()]>> = const { RefCell::new(None) };
}

/// Start (or restart) timing the passes of this thread's engine steps.
pub fn start() {
    TIMES.with(|t| *t.borrow_mut() = Some([0.0; Pass::ALL.len()]));
}

/// Seconds per pass since [`start`], and stop timing; empty when it was not started.
pub fn take() -> Vec<(Pass, f64)> {
    TIMES
        .with(|t| t.borrow_mut().take())
        .map_or_else(Vec::new, |times| {
            Pass::ALL.iter().map(|&p| (p, times[p as usize])).collect()
        })
}

/// `f()`, its wall time added to `pass` when timing is on.
pub(super) fn timed<R>(pass: Pass, f: impl FnOnce() -> R) -> R {
    if TIMES.with(|t| t.borrow().is_none()) {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    let dt = t0.elapsed().as_secs_f64();
    TIMES.with(|t| {
        if let Some(times) = t.borrow_mut().as_mut() {
            times[pass as usize] += dt;
        }
    });
    r
}
