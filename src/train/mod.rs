//! Training: optimiser, schedules, loss, checkpoints and the epoch loop.

pub mod adam;
pub mod checkpoint;
pub mod config;
mod finite;
pub mod history;
mod inplace;
pub mod loss;
mod measure;
pub mod optimizer;
mod persist;
pub mod schedule;
pub mod sgd;
mod step;
pub mod trainer;

pub use checkpoint::Interrupted;
pub use config::{Checkpoint, SelectionMetric, TrainConfig};
pub use history::EpochRecord;
pub use optimizer::OptimizerKind;
pub use schedule::Schedule;
pub use trainer::{train, train_until, BatchSource, TrainOutcome};
