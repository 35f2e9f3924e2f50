//! Stage implementations. A stage gets its declared parameters, read-only upstream entry
//! directories and a scratch directory; it writes files there and returns a one-line summary.
//! It knows nothing of cache keys, locks or the terminal.

use crate::cache::{FileHasher, Store};
use crate::spec::DatasetSpec;
use crate::Progress;
use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub trait Stage: Send + Sync {
    /// The name pipelines refer to with `uses = "..."`.
    fn name(&self) -> &'static str;
    /// Bump when the stage's output for the same inputs changes: old entries then rerun.
    fn version(&self) -> u32;
    /// Files outside the cache this stage reads, given its declared parameters; their content
    /// hashes enter its cache key.
    fn inputs(
        &self,
        _params: &BTreeMap<String, Json>,
        _dataset: &DatasetSpec,
    ) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// Whether a killed run may continue from what it left in its scratch directory
    /// (training checkpoints); other stages start from an empty one.
    fn resumable(&self) -> bool {
        false
    }
    fn run(&self, ctx: &StageCtx) -> Result<String>;
}

/// An upstream entry a stage may read.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub stage: String,
    /// The cell it belongs to, for the upstreams of a once-per-experiment stage.
    pub cell: Option<String>,
    pub varying: Vec<(String, Json)>,
    pub dir: PathBuf,
}

pub struct StageCtx<'a> {
    pub stage: &'a str,
    pub experiment: &'a str,
    pub params: &'a BTreeMap<String, Json>,
    pub declares_dataset: bool,
    pub dataset: &'a DatasetSpec,
    pub upstream: Vec<Upstream>,
    pub out: &'a Path,
    pub store: &'a Store,
    pub hasher: &'a FileHasher,
    pub progress: Progress,
}

impl StageCtx<'_> {
    /// A declared parameter. Reading an undeclared one is an error, so that a stage's cache
    /// key always covers everything it depends on.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self.params.get(name).ok_or_else(|| {
            anyhow!(
                "stage `{}` reads parameter `{name}`, which its pipeline does not declare: \
                 add \"{name}\" to [stages.{}].params",
                self.stage,
                self.stage
            )
        })?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("parameter `{name}` = {value}"))
    }

    pub fn dataset(&self) -> Result<&DatasetSpec> {
        if !self.declares_dataset {
            anyhow::bail!(
                "stage `{}` reads [dataset] but does not declare \"dataset\" in its params",
                self.stage
            );
        }
        Ok(self.dataset)
    }

    /// The single upstream entry of `stage` (cell- and dataset-scope stages).
    pub fn upstream_dir(&self, stage: &str) -> Result<&Path> {
        self.upstream
            .iter()
            .find(|u| u.stage == stage)
            .map(|u| u.dir.as_path())
            .ok_or_else(|| {
                anyhow!(
                    "stage `{}` needs `{stage}` to run first: add it to [stages.{}].after",
                    self.stage,
                    self.stage
                )
            })
    }

    /// Every upstream entry of `stage`, one per cell (once-per-experiment stages).
    pub fn upstream_all(&self, stage: &str) -> Vec<&Upstream> {
        self.upstream.iter().filter(|u| u.stage == stage).collect()
    }
}

/// The set of stage implementations a run may use.
pub struct Registry {
    stages: Vec<Box<dyn Stage>>,
}

impl Registry {
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Registry {
        Registry { stages }
    }

    pub fn get(&self, name: &str) -> Option<&dyn Stage> {
        self.stages
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.as_ref())
    }

    pub fn names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }
}

pub mod audit;
pub mod dataset;
pub mod evaluate;
pub mod images;
pub mod listing;
pub mod report;
pub mod stats;
pub mod train;

/// The stages drpipe ships; pipelines name them with `uses`.
pub fn builtin() -> Registry {
    Registry::new(vec![
        Box::new(dataset::DatasetStage),
        Box::new(audit::AuditStage),
        Box::new(stats::StatsStage),
        Box::new(images::ImagesStage),
        Box::new(train::TrainStage),
        Box::new(evaluate::EvaluateStage),
        Box::new(report::ReportStage),
    ])
}
