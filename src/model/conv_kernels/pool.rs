//! Large float buffers reused across calls. Winograd's transformed weights and their
//! gradient are 16/9 of a layer's weights (16.8 MB for 512 x 512 kernels) and live for one
//! call: allocated fresh each time, their page faults cost as much as writing them (a fresh
//! 16.8 MB buffer filled in 2.7-3.8 ms, the same buffer again in 0.9-1.3).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers kept for reuse: a layer's backward holds two at once (`Uᵀ` and `dU`).
const KEPT: usize = 4;

/// Up to [`KEPT`] idle buffers.
struct Kept(Vec<Vec<f32>>);

impl Kept {
    /// The smallest kept buffer of at least `n` floats, sized to `n`; else a new one.
    fn take(&mut self, n: usize) -> Vec<f32> {
        let best = (0..self.0.len())
            .filter(|&i| self.0[i].capacity() >= n)
            .min_by_key(|&i| self.0[i].capacity());
        let mut v = best.map(|i| self.0.swap_remove(i)).unwrap_or_default();
        // Grows with zeros or shortens to `n`; the capacity stays.
        v.resize(n, 0.0);
        v
    }

    /// Keeps `v`, or when full, keeps the larger of `v` and the smallest kept.
    fn give(&mut self, v: Vec<f32>) {
        if self.0.len() < KEPT {
            self.0.push(v);
        } else if let Some(small) = self.0.iter_mut().min_by_key(|b| b.capacity()) {
            if small.capacity() < v.capacity() {
                *small = v;
            }
        }
    }
}

static POOL: Mutex<Kept> = Mutex::new(Kept(Vec::new()));

fn pool() -> std::sync::MutexGuard<'static, Kept> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A buffer of floats from the pool; it goes back when dropped.
pub(crate) struct Pooled(Vec<f32>);

impl Pooled {
    /// `n` floats whose values are unspecified (left from an earlier use, or zero).
    pub(crate) fn any(n: usize) -> Pooled {
        let v = pool().take(n);
        Pooled(v)
    }

    /// `n` zeros.
    pub(crate) fn zeroed(n: usize) -> Pooled {
        let mut p = Pooled::any(n);
        p.fill(0.0);
        p
    }
}

impl Deref for Pooled {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        pool().give(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A given-back buffer is handed out again for any size it holds (the smallest that
    /// fits), without a new allocation; when full, the pool keeps the largest buffers.
    #[test]
    fn buffers_come_back_smallest_fit_first_and_the_largest_are_kept() {
        let mut kept = Kept(Vec::new());
        let big = kept.take(1000);
        let small = kept.take(100);
        let (big_at, small_at) = (big.as_ptr(), small.as_ptr());
        kept.give(big);
        kept.give(small);
        let a = kept.take(50);
        assert_eq!((a.as_ptr(), a.len()), (small_at, 50));
        let b = kept.take(900);
        assert_eq!((b.as_ptr(), b.len()), (big_at, 900));
        assert!(kept.0.is_empty());
        for n in [10, 20, 30, 40, 5000] {
            kept.give(vec![1.0; n]);
        }
        let mut caps: Vec<usize> = kept.0.iter().map(|v| v.capacity()).collect();
        caps.sort();
        assert_eq!(caps, [20, 30, 40, 5000]);
    }

    #[test]
    fn zeroed_buffers_are_zero_whatever_they_held() {
        let mut p = Pooled::any(4096);
        p.fill(7.0);
        drop(p);
        assert!(Pooled::zeroed(4096).iter().all(|&v| v == 0.0));
    }
}
