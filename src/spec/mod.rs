//! Experiment and pipeline files: parsing, `--set` overrides, validation with `file:line:col`
//! diagnostics, and matrix expansion into cells.

pub mod dataset;
pub mod diagnostic;
pub mod executor;
pub mod experiment;
pub mod matrix;
mod overrides;
pub mod params;
pub mod pipeline;
pub mod tree;
pub mod user_config;

pub use dataset::{DatasetSpec, Source};
pub use diagnostic::SpecError;
pub use experiment::{load, Experiment};
pub use matrix::Cell;
pub use pipeline::{Pipeline, Scope, StageDecl};
