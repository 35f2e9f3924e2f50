//! Which of a kernel's versions runs: the portable one, compiled for x86-64's baseline (SSE2)
//! so that one binary runs on any machine, or one written for AVX2, chosen at run time
//! by what the CPU has (as the `gemm` crate chooses its own kernels). Every such pair gives
//! the same floats, and tests hold them to it bit for bit through [`with_baseline`].

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by tests to run the portable version of every kernel that has two.
static FORCE_BASELINE: AtomicBool = AtomicBool::new(false);

/// Whether kernels take their AVX2 version (std caches the CPU's answer; the test flag
/// is one relaxed load).
#[inline(always)]
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !FORCE_BASELINE.load(Ordering::Relaxed) && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `f` with every kernel on its portable version, for tests that hold the two versions
/// to the same bits. Holds a lock so that such tests run one at a time; other tests running
/// meanwhile may take either version, which is the claim under test.
#[cfg(test)]
pub fn with_baseline<R>(f: impl FnOnce() -> R) -> R {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    FORCE_BASELINE.store(true, Ordering::Relaxed);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FORCE_BASELINE.store(false, Ordering::Relaxed);
        }
    }
    let _reset = Reset;
    f()
}
