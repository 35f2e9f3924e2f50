//! Per-entry build locks: an OS file lock, released by the kernel if the process dies, so a
//! crashed run never leaves a stale lock and an overlapping run waits instead of failing.

use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::path::Path;

#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

impl EntryLock {
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<EntryLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait();
                file.lock()
                    .with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        Ok(EntryLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

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
