//! Per-entry build locks: an OS file lock, released by the kernel if the process dies, so a
//! crashed run never leaves a stale lock and an overlapping run waits instead of failing.
//!
//! Shared filesystems do not all support file locks, and a blocking lock can hang on some NFS
//! mounts. So the lock is only ever tried (never waited on inside the kernel), and where the
//! filesystem refuses locks, or `DRPIPE_LOCK=lease` asks, a lease file takes its place: created
//! exclusively, naming the holder's host, pid and Slurm job, and taken over when that holder is
//! provably gone (a dead pid on this host, or a job the queue no longer runs). A lease whose
//! holder cannot be checked from here is waited for, and the wait says who holds it.

use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug)]
pub struct EntryLock {
    _file: Option<File>,
    lease: Option<PathBuf>,
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        if let Some(l) = &self.lease {
            let _ = std::fs::remove_file(l);
        }
    }
}

const POLL: Duration = Duration::from_millis(250);

impl EntryLock {
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<EntryLock> {
        if std::env::var("DRPIPE_LOCK").as_deref() == Ok("lease") {
            return lease(path, on_wait);
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let mut on_wait = Some(on_wait);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(EntryLock {
                        _file: Some(file),
                        lease: None,
                    })
                }
                Err(TryLockError::WouldBlock) => {
                    if let Some(f) = on_wait.take() {
                        f();
                    }
                    std::thread::sleep(POLL);
                }
                Err(TryLockError::Error(e)) => {
                    eprintln!(
                        "note: {} does not support file locks ({e}); using lease files there \
                         (set DRPIPE_LOCK=lease to skip this try)",
                        path.parent().unwrap_or(path).display()
                    );
                    return lease(path, move || {
                        if let Some(f) = on_wait.take() {
                            f()
                        }
                    });
                }
            }
        }
    }
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    job: Option<String>,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Holder {
    fn me() -> Holder {
        Holder {
            host: this_host(),
            pid: std::process::id(),
            job: std::env::var("SLURM_JOB_ID").ok(),
        }
    }

    /// Provably gone: a pid that no longer exists on this host, or a job the queue no longer
    /// runs. `None`: cannot tell from here.
    fn gone(&self) -> Option<bool> {
        // A job Slurm requeued runs again under the same id: its old lease is its own.
        if self.job.is_some() && self.job == std::env::var("SLURM_JOB_ID").ok() {
            return Some(true);
        }
        if self.host == this_host() {
            return Some(!Path::new(&format!("/proc/{}", self.pid)).exists());
        }
        let job = self.job.as_ref()?;
        let out = std::process::Command::new("squeue")
            .args(["-h", "-t", "all", "-o", "%T", "-j", job])
            .output()
            .ok()?;
        if !out.status.success() {
            // Purged from the queue: long gone. Any other failure says nothing.
            let purged = String::from_utf8_lossy(&out.stderr).contains("Invalid job id");
            return purged.then_some(true);
        }
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(!matches!(
            state.as_str(),
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "PENDING" | "CONFIGURING" | "REQUEUED"
        ))
    }
}

fn lease(path: &Path, on_wait: impl FnOnce()) -> Result<EntryLock> {
    let lease = path.with_extension("lease");
    let me = serde_json::to_vec(&Holder::me())?;
    let mut on_wait = Some(on_wait);
    loop {
        match File::options().write(true).create_new(true).open(&lease) {
            Ok(mut f) => {
                use std::io::Write;
                if let Err(e) = f.write_all(&me).and_then(|_| f.sync_all()) {
                    // An empty lease would block everyone: take it back.
                    let _ = std::fs::remove_file(&lease);
                    return Err(e).with_context(|| format!("cannot write {}", lease.display()));
                }
                return Ok(EntryLock {
                    _file: None,
                    lease: Some(lease),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", lease.display())),
        }
        // An empty or torn lease is a holder still writing it: look again; one that stays
        // unreadable for a minute was left by a writer that died.
        let bytes = std::fs::read(&lease).unwrap_or_default();
        let holder: Option<Holder> = serde_json::from_slice(&bytes).ok();
        let abandoned = holder.is_none()
            && std::fs::metadata(&lease)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60));
        match holder.as_ref().map(|h| (h, h.gone())) {
            _ if abandoned => take_over(&lease, &bytes),
            Some((_, Some(true))) => take_over(&lease, &bytes),
            Some((h, None)) if on_wait.is_some() => {
                eprintln!(
                    "note: waiting for {}, held by pid {} on {}{}; if that process is gone, \
                     delete the file",
                    lease.display(),
                    h.pid,
                    h.host,
                    h.job
                        .as_ref()
                        .map(|j| format!(" (job {j})"))
                        .unwrap_or_default()
                );
                if let Some(f) = on_wait.take() {
                    f();
                }
                std::thread::sleep(POLL);
            }
            _ => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Removes a lease judged stale (`judged`: the bytes read when judging it). It is renamed
/// away first and compared: if another taker replaced it meanwhile with a fresh lease, that
/// one is put back (a hard link fails where a lease exists again) and nothing is lost.
fn take_over(lease: &Path, judged: &[u8]) {
    let stale = lease.with_extension(format!("stale.{}", std::process::id()));
    if std::fs::rename(lease, &stale).is_err() {
        return;
    }
    if std::fs::read(&stale).unwrap_or_default() != judged {
        let _ = std::fs::hard_link(&stale, lease);
    }
    let _ = std::fs::remove_file(&stale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_lease_waits_for_its_holder_and_takes_over_from_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = lease(&path, || panic!("first must not wait")).unwrap();
        let waited = Arc::new(AtomicBool::new(false));
        let (w, p) = (waited.clone(), path.clone());
        let t = std::thread::spawn(move || {
            let _second = lease(&p, || w.store(true, Ordering::SeqCst)).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(!t.is_finished(), "a held lease must make the second wait");
        drop(first);
        t.join().unwrap();
        assert!(waited.load(Ordering::SeqCst));
        assert!(!path.with_extension("lease").exists(), "released on drop");
        // A lease left by a process that died on this host is taken over at once.
        let dead = Holder {
            host: this_host(),
            pid: u32::MAX - 1,
            job: None,
        };
        std::fs::write(
            path.with_extension("lease"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let _taken = lease(&path, || panic!("a dead holder must not be waited for")).unwrap();
        let now: Holder =
            serde_json::from_slice(&std::fs::read(path.with_extension("lease")).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
    }

    #[test]
    fn second_taker_waits_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = EntryLock::acquire(&path, || panic!("first must not wait")).unwrap();
        let waited = Arc::new(AtomicBool::new(false));
        let (w, p) = (waited.clone(), path.clone());
        let t = std::thread::spawn(move || {
            let _second = EntryLock::acquire(&p, || w.store(true, Ordering::SeqCst)).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !t.is_finished(),
            "second lock must block while the first is held"
        );
        drop(first);
        t.join().unwrap();
        assert!(waited.load(Ordering::SeqCst));
    }
}
