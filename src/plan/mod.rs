//! The plan: every stage instance of an experiment, its cache key, and whether it must run
//! and why. Planning runs nothing and writes nothing.

pub mod explain;
pub mod key;

use crate::cache::{FileHasher, Store};
use crate::spec::{Experiment, Scope};
use crate::stages::Registry;
use anyhow::{anyhow, Result};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Run,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: usize,
    /// The pipeline's name for the stage, and its implementation.
    pub stage: String,
    pub uses: String,
    pub scope: Scope,
    /// Cells that use this instance (all cells for a once-per-experiment stage).
    pub cells: Vec<String>,
    pub params: BTreeMap<String, Json>,
    pub declares_dataset: bool,
    /// Instances this one reads, by id, with the cell each belongs to.
    pub upstream: Vec<(usize, Option<String>)>,
    /// "stage" or "stage@cell" -> key, as hashed and recorded in the manifest.
    pub upstream_keys: BTreeMap<String, String>,
    pub inputs: Vec<(PathBuf, String)>,
    pub inputs_digest: String,
    pub version: u32,
    pub resumable: bool,
    pub key: String,
    pub status: Status,
    pub reasons: Vec<String>,
}

impl Instance {
    /// The cell to show for this instance: its only cell, or none when shared or experiment-wide.
    pub fn cell_label(&self) -> Option<&str> {
        match (self.scope, self.cells.as_slice()) {
            (Scope::Cell, [only]) => Some(only),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub experiment: String,
    pub instances: Vec<Instance>,
    /// (cell, stage) -> instance id, for every cell- and dataset-scope stage.
    pub by_cell: BTreeMap<(String, String), usize>,
}

/// Where an experiment's human-facing view lives: `<outputs>/experiments/<name>/`.
pub fn view_dir(outputs: &Path, experiment: &str) -> PathBuf {
    outputs.join("experiments").join(experiment)
}

/// The view link of an instance for a cell (or the experiment-wide link when `cell` is None).
pub fn view_link(view: &Path, stage: &str, cell: Option<&str>) -> PathBuf {
    match cell {
        Some(c) => view.join("cells").join(c).join(stage),
        None => view.join(stage),
    }
}

/// (cells, declared params, upstream instances with their cell) of one stage instance,
/// before instances with equal keys are merged.
type Group = (
    Vec<String>,
    BTreeMap<String, Json>,
    Vec<(usize, Option<String>)>,
);

pub struct PlanOptions<'a> {
    pub force: &'a [String],
    pub outputs: &'a Path,
    /// Reports the hashing of input files (slow only the first time: hashes are memoised).
    pub progress: crate::Progress,
}

pub fn build(
    exp: &Experiment,
    registry: &Registry,
    store: &Store,
    hasher: &FileHasher,
    opts: &PlanOptions,
) -> Result<Plan> {
    for f in opts.force {
        if exp.pipeline.stage(f).is_none() {
            let names: Vec<_> = exp
                .pipeline
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            anyhow::bail!(
                "--force {f}: no stage `{f}` in {} (stages: {})",
                exp.pipeline.path.display(),
                names.join(", ")
            );
        }
    }
    let view = view_dir(opts.outputs, &exp.name);
    let mut plan = Plan {
        experiment: exp.name.clone(),
        instances: Vec::new(),
        by_cell: BTreeMap::new(),
    };
    let mut input_cache: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for decl in &exp.pipeline.stages {
        let stage = registry
            .get(&decl.uses)
            .ok_or_else(|| anyhow!("no stage implementation `{}`", decl.uses))?;
        let declares_dataset = decl
            .params
            .iter()
            .any(|p| p == "dataset" || p.starts_with("dataset."));
        let groups: Vec<Group> = match decl.scope {
            Scope::Experiment => {
                let cell0 = &exp.cells[0];
                let params = declared_params(&decl.params, &cell0.params, exp);
                let mut upstream = Vec::new();
                for after in &decl.after {
                    for cell in &exp.cells {
                        let id = plan.by_cell.get(&(cell.name.clone(), after.clone()));
                        match id {
                            Some(&id) => upstream.push((id, Some(cell.name.clone()))),
                            None => anyhow::bail!("stage `{}` runs once per experiment after `{after}`, which must be a cell or dataset stage", decl.name),
                        }
                    }
                }
                vec![(
                    exp.cells.iter().map(|c| c.name.clone()).collect(),
                    params,
                    upstream,
                )]
            }
            Scope::Cell | Scope::Dataset => exp
                .cells
                .iter()
                .map(|cell| {
                    let params = declared_params(&decl.params, &cell.params, exp);
                    let upstream = decl
                        .after
                        .iter()
                        .map(|a| (plan.by_cell[&(cell.name.clone(), a.clone())], None))
                        .collect();
                    (vec![cell.name.clone()], params, upstream)
                })
                .collect(),
        };
        for (cells, params, upstream) in groups {
            // Inputs depend on the stage and its parameters (e.g. a pretrained weights file).
            let memo_key = format!("{}\t{}", decl.uses, serde_json::to_string(&params)?);
            let inputs = match input_cache.get(&memo_key) {
                Some(i) => i.clone(),
                None => {
                    let paths = stage.inputs(&params, &exp.dataset)?;
                    let hashes = hasher.hash_all(&paths, &opts.progress);
                    let i: Vec<_> = paths.into_iter().zip(hashes).collect();
                    input_cache.insert(memo_key, i.clone());
                    i
                }
            };
            let inputs_digest = key::inputs_digest(&inputs);
            let upstream_keys: BTreeMap<String, String> = upstream
                .iter()
                .map(|(id, cell)| {
                    let up = &plan.instances[*id];
                    let label = match cell {
                        Some(c) => format!("{}@{c}", up.stage),
                        None => up.stage.clone(),
                    };
                    (label, up.key.clone())
                })
                .collect();
            let key = key::cache_key(
                &decl.name,
                &decl.uses,
                stage.version(),
                &params,
                &upstream_keys,
                &inputs_digest,
            );
            if let Some(existing) = plan
                .instances
                .iter_mut()
                .find(|i| i.stage == decl.name && i.key == key)
            {
                existing.cells.extend(cells.iter().cloned());
                for c in cells {
                    plan.by_cell.insert((c, decl.name.clone()), existing.id);
                }
                continue;
            }
            let id = plan.instances.len();
            let forced = opts.force.contains(&decl.name);
            let cached = store.exists(&decl.name, &key);
            let mut inst = Instance {
                id,
                stage: decl.name.clone(),
                uses: decl.uses.clone(),
                scope: decl.scope,
                cells: cells.clone(),
                params,
                declares_dataset,
                upstream,
                upstream_keys,
                inputs: inputs.clone(),
                inputs_digest: inputs_digest.clone(),
                version: stage.version(),
                resumable: stage.resumable(),
                key,
                status: if cached && !forced {
                    Status::Cached
                } else {
                    Status::Run
                },
                reasons: Vec::new(),
            };
            if inst.status == Status::Run {
                inst.reasons = if forced {
                    vec![format!("forced (--force {})", decl.name)]
                } else {
                    let link_cell = if decl.scope == Scope::Experiment {
                        None
                    } else {
                        Some(cells[0].as_str())
                    };
                    explain::why(&inst, &view_link(&view, &decl.name, link_cell), store)
                };
                if inst.resumable && store.partial_dir(&decl.name, &inst.key).is_dir() {
                    inst.reasons.push("an interrupted run will resume".into());
                }
            }
            if decl.scope != Scope::Experiment {
                for c in &cells {
                    plan.by_cell.insert((c.clone(), decl.name.clone()), id);
                }
            }
            plan.instances.push(inst);
        }
    }
    Ok(plan)
}

/// The values of exactly the parameters a stage declares (`dataset` is the dataset's
/// canonical form), so an undeclared parameter can never invalidate it.
fn declared_params(
    declared: &[String],
    cell: &BTreeMap<String, Json>,
    exp: &Experiment,
) -> BTreeMap<String, Json> {
    declared
        .iter()
        .map(|p| {
            let v = if p == "dataset" {
                exp.dataset.canonical()
            } else if let Some(key) = p.strip_prefix("dataset.") {
                // Keys that do not apply to this source (e.g. `images` for real data) are null.
                exp.dataset
                    .canonical()
                    .get(key)
                    .cloned()
                    .unwrap_or(Json::Null)
            } else {
                cell.get(p).cloned().unwrap_or(Json::Null)
            };
            (p.clone(), v)
        })
        .collect()
}

/// The machine-readable plan (`drpipe plan --json`).
#[derive(Debug, Serialize)]
pub struct PlanRow<'a> {
    pub stage: &'a str,
    pub cell: Option<&'a str>,
    pub cells: &'a [String],
    pub key: &'a str,
    pub status: Status,
    pub reason: String,
}

impl Plan {
    pub fn rows(&self) -> Vec<PlanRow<'_>> {
        self.instances
            .iter()
            .map(|i| PlanRow {
                stage: &i.stage,
                cell: i.cell_label(),
                cells: &i.cells,
                key: &i.key,
                status: i.status,
                reason: if i.status == Status::Cached {
                    "cached".to_string()
                } else {
                    i.reasons.join("; ")
                },
            })
            .collect()
    }

    pub fn to_run(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.status == Status::Run)
            .count()
    }
}
