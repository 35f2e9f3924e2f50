//! Training: optimiser, schedules, loss, checkpoints and the epoch loop.

pub mod history;

pub use history::EpochRecord;
