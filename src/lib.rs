//! drpipe: a declarative, cached pipeline runner for diabetic-retinopathy grading experiments.
//!
//! Data flows one way: [`spec`] (parse + validate experiment and pipeline files) ->
//! [`plan`] (stage instances and their cache keys) -> [`exec`] (run or reuse each instance,
//! emitting [`exec::Event`]s) -> [`cache`] artifacts -> [`report`].
//! The stage implementations in [`stages`] are thin adapters over [`data`], [`model`],
//! [`train`], [`metrics`] and [`report`].

pub mod data;
pub mod interrupt;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod report;
pub mod rng;
pub mod simd;
pub mod train;

pub use progress::Progress;
pub mod cache;
pub mod cli;
pub mod exec;
pub mod plan;
pub mod reporter;
pub mod spec;
pub mod stages;
