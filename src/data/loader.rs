//! Batches made in parallel ahead of the model.
//!
//! A background thread builds each batch with rayon over its images and hands it over a
//! bounded channel, so at most `prefetch` finished batches wait in memory. Every image draws
//! its augmentation from its own stream, `Rng::derive(seed, epoch * 1_000_003 + index)`, so a
//! batch's content does not depend on the thread schedule or the batch size.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::augment::{test_transform, train_transform, TrainAugment};
use super::image_cache::ImageCache;
use super::Batch;
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Train {
        aug: TrainAugment,
        seed: u64,
        epoch: u64,
    },
    Test {
        out_size: u32,
    },
}

impl Mode {
    pub fn out_size(&self) -> u32 {
        match self {
            Mode::Train { aug, .. } => aug.out_size,
            Mode::Test { out_size } => *out_size,
        }
    }
}

/// Keeps the shuffle's stream apart from the per-image augmentation streams of the same seed.
const SHUFFLE_SALT: u64 = 0x5348_5546_464C_4521;

/// The seeded order of `0..n` for one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(seed ^ SHUFFLE_SALT, epoch).shuffle(&mut order);
    order
}

/// The per-image augmentation stream.
pub fn image_rng(seed: u64, epoch: u64, index: usize) -> Rng {
    Rng::derive(
        seed,
        epoch.wrapping_mul(1_000_003).wrapping_add(index as u64),
    )
}

/// Fills `out` (3 x S x S) with cache image `index` transformed for `mode`.
pub fn transform_one(cache: &ImageCache, index: usize, mode: &Mode, out: &mut [f32]) {
    let src = cache.image(index);
    match mode {
        Mode::Train { aug, seed, epoch } => train_transform(
            src,
            cache.size(),
            aug,
            &mut image_rng(*seed, *epoch, index),
            out,
        ),
        Mode::Test { out_size } => test_transform(src, cache.size(), *out_size, out),
    }
}

/// The batches of `indices` (cache positions, in this order) of `batch_size` images; the last
/// partial batch is kept. Dropping the iterator early stops and joins the producer thread.
///
/// Panics if an index is outside the cache or the labels (a caller bug, checked up front).
pub fn batches(
    cache: Arc<ImageCache>,
    labels: Arc<Vec<u8>>,
    indices: Vec<usize>,
    batch_size: usize,
    mode: Mode,
    prefetch: usize,
) -> BatchIter {
    let limit = cache.len().min(labels.len());
    if let Some(bad) = indices.iter().find(|&&i| i >= limit) {
        panic!(
            "batch index {bad} out of range: cache holds {} images, {} labels",
            cache.len(),
            labels.len()
        );
    }
    let (tx, rx) = sync_channel(prefetch);
    let batch_size = batch_size.max(1);
    let handle = std::thread::spawn(move || {
        let size = mode.out_size() as usize;
        let per = 3 * size * size;
        for chunk in indices.chunks(batch_size) {
            let mut images = vec![0f32; chunk.len() * per];
            images
                .par_chunks_mut(per)
                .zip(chunk.par_iter())
                .for_each(|(out, &i)| transform_one(&cache, i, &mode, out));
            let batch = Batch {
                images,
                labels: chunk.iter().map(|&i| labels[i] as u32).collect(),
                indices: chunk.to_vec(),
                size,
            };
            // The receiver is gone: the consumer stopped early.
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    BatchIter {
        rx: Some(rx),
        handle: Some(handle),
    }
}

/// The iterator [`batches`] returns.
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for BatchIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        match self.rx.as_ref()?.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // The producer is done; if it panicked, the epoch is incomplete: re-raise here
                // rather than let training silently see fewer images (the executor turns the
                // panic into a stage failure).
                self.rx = None;
                if let Some(h) = self.handle.take() {
                    if let Err(panic) = h.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Dropping the receiver first makes a producer blocked in `send` fail and return.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_cache::{write_raw, Preprocess};

    fn cache(n: usize, size: u32) -> (tempfile::TempDir, Arc<ImageCache>) {
        let d = tempfile::tempdir().unwrap();
        let per = (size * size * 3) as usize;
        let pixels: Vec<u8> = (0..n * per)
            .map(|i| ((i / per) * 40 + (i % per) % 37) as u8)
            .collect();
        write_raw(d.path(), size, Preprocess::None, &pixels).unwrap();
        let c = Arc::new(ImageCache::open(d.path()).unwrap());
        (d, c)
    }

    #[test]
    fn test_batches_cover_indices_and_keep_the_last_partial() {
        let (_d, c) = cache(5, 8);
        let labels = Arc::new(vec![0, 1, 2, 3, 4]);
        let got: Vec<Batch> = batches(
            c.clone(),
            labels,
            vec![4, 0, 1, 2, 3],
            2,
            Mode::Test { out_size: 6 },
            1,
        )
        .collect();
        assert_eq!(got.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(got[0].indices, [4, 0]);
        assert_eq!(got[0].labels, [4, 0]);
        assert_eq!(got[2].labels, [3]);
        assert_eq!(got[0].size, 6);
        let mut one = vec![0f32; 3 * 36];
        test_transform(c.image(4), 8, 6, &mut one);
        assert_eq!(&got[0].images[..3 * 36], &one[..]);
    }

    #[test]
    fn train_batches_do_not_depend_on_batching_or_schedule() {
        let (_d, c) = cache(7, 10);
        let labels = Arc::new(vec![0; 7]);
        let mode = |epoch| Mode::Train {
            aug: TrainAugment::study(8),
            seed: 3,
            epoch,
        };
        let run = |bs, prefetch, epoch| -> Vec<f32> {
            let order = epoch_order(7, 3, epoch);
            batches(c.clone(), labels.clone(), order, bs, mode(epoch), prefetch)
                .flat_map(|b| b.images)
                .collect()
        };
        let a = run(2, 1, 0);
        assert_eq!(a.len(), 7 * 3 * 64);
        assert_eq!(a, run(3, 4, 0));
        assert_eq!(a, run(7, 0, 0));
        assert_ne!(a, run(2, 1, 1));
    }

    #[test]
    fn dropping_early_stops_the_producer() {
        let (_d, c) = cache(3, 8);
        let labels = Arc::new(vec![1; 3]);
        let many: Vec<usize> = (0..30_000).map(|i| i % 3).collect();
        let mut it = batches(c, labels, many, 1, Mode::Test { out_size: 8 }, 1);
        assert_eq!(it.next().unwrap().labels, [1]);
        // Joins the thread; would hang (and time out) if the producer ignored the drop.
        drop(it);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
    }
}
