//! Experiment files (`experiments/*.toml`) with `--set` overrides, validated in full before
//! anything runs.

use super::dataset::{self, DatasetSpec};
use super::diagnostic::{suggest, Origin, SourceText, SpecError};
use super::matrix::{self, Cell};
use super::overrides;
use super::params;
use super::pipeline::{self, Pipeline, Scope};
use super::tree::{parse_document, Node, Table, Value};
use super::user_config;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Experiment {
    /// `name = ...`, or the file's stem.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub pipeline: Pipeline,
    pub dataset: DatasetSpec,
    /// Defaults, then `[params]`, then `--set`.
    pub params: BTreeMap<String, Json>,
    pub cells: Vec<Cell>,
    /// `[executor]`: how to run it (not part of any cache key).
    pub executor: super::executor::ExecutorSpec,
}

const TOP_KEYS: &[&str] = &[
    "pipeline",
    "name",
    "description",
    "dataset",
    "params",
    "matrix",
    "executor",
];

/// Read, override and validate an experiment and its pipeline.
pub fn load(
    path: &Path,
    overrides: &[String],
    implementations: &[&str],
) -> Result<Experiment, SpecError> {
    let source = SourceText::read(path)?;
    let mut doc = parse_document(&source)?;
    let file_origin = Origin::file(&source, 0..0);
    for arg in overrides {
        overrides::apply(&mut doc, arg)?;
    }
    for (key, origin, _) in &doc.entries {
        if !TOP_KEYS.contains(&key.as_str()) {
            let err = SpecError::at(origin, format!("unknown key `{key}`"));
            return Err(match suggest(key, TOP_KEYS.iter().copied()) {
                Some(s) => err.help(format!(
                    "did you mean `{s}`? valid top-level keys: {}",
                    TOP_KEYS.join(", ")
                )),
                None => err.help(format!("valid top-level keys: {}", TOP_KEYS.join(", "))),
            });
        }
    }
    let base_dir = path.parent().unwrap_or(Path::new("."));
    for (key, _, node) in doc.entries.iter_mut() {
        if key == "params" || key == "matrix" {
            resolve_weight_paths(node, base_dir);
        }
    }
    let name = match doc.get("name") {
        Some(Node {
            value: Value::Str(s),
            origin,
        }) => {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(SpecError::at(
                    origin,
                    "`name` may only contain letters, digits, '-', '_' and '.'",
                ));
            }
            s.clone()
        }
        Some(n) => return Err(SpecError::at(&n.origin, "`name` must be a string")),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into()),
    };
    let description = match doc.get("description") {
        Some(Node {
            value: Value::Str(s),
            ..
        }) => s.clone(),
        Some(n) => return Err(SpecError::at(&n.origin, "`description` must be a string")),
        None => String::new(),
    };
    let pipeline = match doc.get("pipeline") {
        Some(Node {
            value: Value::Str(p),
            origin,
        }) => {
            let resolved = match origin {
                Origin::File { .. } => base_dir.join(p),
                _ => PathBuf::from(p),
            };
            if !resolved.is_file() {
                return Err(SpecError::at(origin, format!("pipeline file not found: {}", resolved.display()))
                    .help("`pipeline` is resolved relative to the experiment file, e.g. \"../pipelines/retinopathy.toml\""));
            }
            pipeline::load(&resolved, implementations)?
        }
        Some(n) => return Err(SpecError::at(&n.origin, "`pipeline` must be a path string")),
        None => {
            return Err(SpecError::at(&file_origin, "missing `pipeline = \"...\"`")
                .help("e.g. pipeline = \"../pipelines/retinopathy.toml\""))
        }
    };
    let dataset = match doc.get("dataset") {
        Some(Node {
            value: Value::Table(t),
            origin,
        }) => dataset::parse(t, origin, base_dir)?,
        Some(n) => return Err(SpecError::at(&n.origin, "`dataset` must be a table")),
        None => {
            return Err(SpecError::at(&file_origin, "missing [dataset] table")
                .help("e.g. [dataset]\nsource = \"synthetic\""))
        }
    };
    let mut params: BTreeMap<String, Json> = params::PARAMS
        .iter()
        .map(|d| (d.name.to_string(), params::default_value(d)))
        .collect();
    if let Some(node) = doc.get("params") {
        let Value::Table(t) = &node.value else {
            return Err(SpecError::at(&node.origin, "`params` must be a table"));
        };
        for (key, key_origin, value) in &t.entries {
            let def = params::lookup(key).ok_or_else(|| params::unknown_param(key, key_origin))?;
            params.insert(key.clone(), params::validate(def, value)?);
        }
    }
    let matrix = match doc.get("matrix") {
        Some(Node {
            value: Value::Table(t),
            ..
        }) => matrix::parse(t)?,
        Some(n) => return Err(SpecError::at(&n.origin, "`matrix` must be a table")),
        None => matrix::Matrix::default(),
    };
    let matrix_origin = doc
        .key_origin("matrix")
        .cloned()
        .unwrap_or(file_origin.clone());
    // The report's title defaults to the experiment's name; resolved here so that it is part
    // of the report's cache key (a renamed copy of an experiment gets its own report).
    if params.get("title").and_then(|t| t.as_str()) == Some("") {
        params.insert("title".into(), Json::from(name.clone()));
    }
    let cells = matrix::expand(&params, &matrix, &matrix_origin)?;
    check_experiment_scope(&pipeline, &cells)?;
    for cell in &cells {
        check_cell(cell, &doc, &file_origin, dataset.val_fraction)?;
    }
    let executor =
        super::executor::parse(user_config::with_user_executor(doc.get("executor"))?.as_ref())?;
    Ok(Experiment {
        executor,
        name,
        path: path.to_path_buf(),
        description,
        pipeline,
        dataset,
        params,
        cells,
    })
}

/// Rules that span parameters, checked for every cell before anything runs.
fn check_cell(
    cell: &Cell,
    doc: &Table,
    file_origin: &Origin,
    val_fraction: f64,
) -> Result<(), SpecError> {
    let int = |k: &str| cell.params.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let num = |k: &str| cell.params.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    // Point at where the offending value was written: [params], else the matrix, else the file.
    let at = |k: &str| {
        let in_table = |t: &str| match doc.get(t) {
            Some(Node {
                value: Value::Table(t),
                ..
            }) => t.key_origin(k).cloned(),
            _ => None,
        };
        in_table("params")
            .or_else(|| in_table("matrix"))
            .unwrap_or_else(|| file_origin.clone())
    };
    if int("freeze_epochs") > int("epochs") {
        return Err(SpecError::at(&at("freeze_epochs"), format!(
            "cell `{}`: freeze_epochs ({}) is more than epochs ({})", cell.name, int("freeze_epochs"), int("epochs")
        ))
        .help("the first freeze_epochs epochs train only fc: set freeze_epochs <= epochs (0 fine-tunes from the start)"));
    }
    let optimizer = cell
        .params
        .get("optimizer")
        .and_then(|v| v.as_str())
        .unwrap_or("sgd");
    if cell.params.get("nesterov") == Some(&Json::Bool(true)) && optimizer != "sgd" {
        return Err(SpecError::at(
            &at("nesterov"),
            format!(
                "cell `{}`: nesterov is SGD's, and optimizer = \"{optimizer}\"",
                cell.name
            ),
        )
        .help("set nesterov = false, or optimizer = \"sgd\""));
    }
    if cell.params.get("nesterov") == Some(&Json::Bool(true)) && num("momentum") == 0.0 {
        return Err(SpecError::at(
            &at("nesterov"),
            format!("cell `{}`: nesterov needs momentum > 0", cell.name),
        )
        .help("set momentum (the study uses 0.9) or nesterov = false"));
    }
    let checkpoint = cell.params.get("checkpoint").and_then(|v| v.as_str());
    if checkpoint == Some("best") && val_fraction == 0.0 {
        return Err(SpecError::at(
            &at("checkpoint"),
            format!(
                "cell `{}`: checkpoint = \"best\" selects on the validation split, and \
                 dataset.val_fraction is 0",
                cell.name
            ),
        )
        .help(
            "set dataset.val_fraction (e.g. 0.15), or checkpoint = \"last\", or \
             checkpoint = \"best_test\" (the study's choice: selected on the test split)",
        ));
    }
    if int("early_stopping_patience") > 0 && checkpoint != Some("best") {
        return Err(SpecError::at(
            &at("early_stopping_patience"),
            format!(
                "cell `{}`: early stopping follows the validation split, but checkpoint is {}",
                cell.name,
                checkpoint.unwrap_or("unset")
            ),
        )
        .help("use checkpoint = \"best\" with early_stopping_patience, or set it to 0"));
    }
    Ok(())
}

/// A once-per-experiment stage cannot read a parameter that differs between cells.
fn check_experiment_scope(pipeline: &Pipeline, cells: &[Cell]) -> Result<(), SpecError> {
    for stage in pipeline
        .stages
        .iter()
        .filter(|s| s.scope == Scope::Experiment)
    {
        for p in &stage.params {
            if p != "dataset"
                && cells
                    .iter()
                    .any(|c| c.params.get(p) != cells[0].params.get(p))
            {
                return Err(SpecError::at(&stage.origin, format!(
                    "stage `{}` runs once per experiment but reads `{p}`, which varies across cells", stage.name
                ))
                .help("give the stage scope = \"cell\", or remove the parameter from its params"));
            }
        }
    }
    Ok(())
}

/// `pretrained = "weights.safetensors"` is resolved as `dataset.root` is: against the
/// experiment file's folder when written in the file, against the working directory when
/// given with `--set`; made absolute either way, so that the run reads the same file from
/// any working directory (and the cache key names it). Walks `[params]`, `[matrix]` axes
/// and `matrix.include` tables.
fn resolve_weight_paths(node: &mut Node, base: &Path) {
    let Value::Table(t) = &mut node.value else {
        return;
    };
    for (key, _, value) in t.entries.iter_mut() {
        if key == "pretrained" {
            resolve_path(value, base);
            if let Value::Array(items) = &mut value.value {
                items.iter_mut().for_each(|i| resolve_path(i, base));
            }
        } else if let Value::Array(items) = &mut value.value {
            items.iter_mut().for_each(|i| resolve_weight_paths(i, base));
        } else {
            resolve_weight_paths(value, base);
        }
    }
}

fn resolve_path(node: &mut Node, base: &Path) {
    if let Value::Str(s) = &node.value {
        if s.is_empty() {
            return; // refused, with its origin, by params::validate
        }
        let p = PathBuf::from(s);
        let p = match node.origin {
            Origin::File { .. } if p.is_relative() => base.join(p),
            _ => p,
        };
        node.value = Value::Str(dataset::absolute_path(&p).display().to_string());
    }
}

#[cfg(test)]
mod tests;
