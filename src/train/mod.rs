//! Training: optimiser, schedules, loss, checkpoints and the epoch loop.

pub mod checkpoint;
pub mod history;
pub mod loss;
pub mod schedule;
pub mod sgd;
pub mod trainer;

pub use history::EpochRecord;
pub use schedule::Schedule;
pub use trainer::{train, BatchSource, TrainConfig, TrainOutcome};
