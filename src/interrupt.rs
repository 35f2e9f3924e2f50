//! A stop asked for from outside a training: Slurm's time limit, `scancel` and preemption send
//! SIGTERM (then SIGKILL `KillWait` seconds later); a job submitted with `signal_before`
//! gets SIGUSR1 that long before its limit. A job's training looks between steps, writes a
//! checkpoint of where it is (mid-epoch) and stops; the job submitted next resumes there.
//!
//! Only a training job listens ([`listen`]); everywhere else the signals keep their default
//! action, and a second SIGTERM always ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    /// Any stop: SIGTERM or SIGUSR1.
    stop: Arc<AtomicBool>,
    /// SIGUSR1 alone: the stop the job asked for, ahead of its time limit.
    planned: Arc<AtomicBool>,
}

fn flags() -> &'static Flags {
    static FLAGS: OnceLock<Flags> = OnceLock::new();
    FLAGS.get_or_init(|| Flags {
        stop: Arc::new(AtomicBool::new(false)),
        planned: Arc::new(AtomicBool::new(false)),
    })
}

/// From now on SIGTERM and SIGUSR1 ask this process to stop at the next safe point instead
/// of ending it; a second SIGTERM ends it.
pub fn listen() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGTERM, SIGUSR1};
        let f = flags();
        // Registered first, so it sees the flag before this signal's own handler sets it.
        signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, f.stop.clone())?;
        signal_hook::flag::register(SIGTERM, f.stop.clone())?;
        signal_hook::flag::register(SIGUSR1, f.planned.clone())?;
        signal_hook::flag::register(SIGUSR1, f.stop.clone())?;
    }
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    flags().stop.load(Ordering::Relaxed)
}

/// Whether the stop was the one the job asked for before its time limit (SIGUSR1), which
/// the driver resubmits without counting a retry.
pub fn planned() -> bool {
    flags().planned.load(Ordering::Relaxed)
}
