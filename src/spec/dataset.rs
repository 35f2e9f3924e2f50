//! The `[dataset]` table: where the images come from.

use super::diagnostic::{suggest, Origin, SpecError};
use super::tree::{Node, Table, Value};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

use crate::data::layout::csv::{Column, CsvLayout, Table as CsvTable};
use crate::data::layout::presets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// drpipe's generated fundus images (no download needed).
    Synthetic,
    /// The lab report's layout: NAME.jpeg + train_img.csv/train_label.csv/test_img.csv/test_label.csv.
    Lab,
    /// Kaggle EyePACS: train/NAME.jpeg + trainLabels.csv.
    Kaggle,
    /// Any label table with named columns ([`crate::data::layout::csv`]).
    Csv,
    /// A public set's own layout: APTOS 2019, IDRiD grading, DDR grading
    /// ([`crate::data::layout::presets`]).
    Preset(&'static str),
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Synthetic => "synthetic",
            Source::Lab => "lab",
            Source::Kaggle => "kaggle",
            Source::Csv => "csv",
            Source::Preset(p) => p,
        }
    }
}

const SOURCES: &str =
    "\"synthetic\", \"lab\", \"kaggle\", \"csv\", \"aptos\", \"idrid\" or \"ddr\"";

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub source: Source,
    /// Data root for lab/kaggle, resolved against the experiment file's folder (or the working
    /// directory for `--set`).
    pub root: Option<PathBuf>,
    /// Synthetic: number of images, their side in pixels, and the generator's seed.
    pub images: u64,
    pub size: u64,
    pub seed: u64,
    /// Kaggle and synthetic: share of patients held out for testing, and the split's seed.
    pub test_fraction: f64,
    pub split_seed: u64,
    /// Share of the training patients held out for validation (model selection, early
    /// stopping), split by patient and stratified like the test split; for the lab layout
    /// carved out of its training list. 0: no validation split.
    pub val_fraction: f64,
    /// Images smaller than this on either side are dropped by the audit.
    pub min_image_size: u64,
    /// The columns of a csv or preset source.
    pub csv: Option<CsvLayout>,
}

pub const KEYS: &[&str] = &[
    "source",
    "root",
    "images",
    "size",
    "seed",
    "test_fraction",
    "split_seed",
    "val_fraction",
    "min_image_size",
    "labels",
    "image_column",
    "label_column",
    "split_column",
    "patient_column",
    "extension",
    "exclude_labels",
];

/// Keys that only the csv source reads (`images` is its folder there, a count for synthetic).
const CSV_KEYS: &[&str] = &[
    "labels",
    "image_column",
    "label_column",
    "split_column",
    "patient_column",
    "extension",
];

impl DatasetSpec {
    /// The values that identify this dataset (and so enter cache keys): only the keys that
    /// matter for its source, so that e.g. `images` does not invalidate real data.
    pub fn canonical(&self) -> Json {
        let common = json!({ "min_image_size": self.min_image_size,
                             "val_fraction": self.val_fraction });
        let mut v = match self.source {
            Source::Synthetic => {
                json!({ "source": "synthetic", "images": self.images, "size": self.size,
                                          "seed": self.seed, "test_fraction": self.test_fraction,
                                          "split_seed": self.split_seed })
            }
            Source::Lab => json!({ "source": "lab", "root": self.root_str() }),
            Source::Kaggle => json!({ "source": "kaggle", "root": self.root_str(),
                                       "test_fraction": self.test_fraction, "split_seed": self.split_seed }),
            Source::Csv | Source::Preset(_) => {
                json!({ "source": self.source.name(), "root": self.root_str(),
                                       "layout": self.csv, "test_fraction": self.test_fraction,
                                       "split_seed": self.split_seed })
            }
        };
        v.as_object_mut()
            .expect("object")
            .extend(common.as_object().expect("object").clone());
        v
    }

    fn root_str(&self) -> String {
        self.root
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_default()
    }
}

/// A sixth of the training patients: enough validation eyes to rank epochs, as Keras' and
/// scikit-learn's habits of 10-20% suggest.
pub const DEFAULT_VAL_FRACTION: f64 = 0.15;

fn int(node: &Node, key: &str, min: i64) -> Result<u64, SpecError> {
    match node.value {
        Value::Int(i) if i >= min => Ok(i as u64),
        _ => Err(SpecError::at(
            &node.origin,
            format!("dataset.{key} must be an integer >= {min}"),
        )),
    }
}

/// Validate the `[dataset]` table. `base` resolves a relative `root` written in the file.
pub fn parse(table: &Table, table_origin: &Origin, base: &Path) -> Result<DatasetSpec, SpecError> {
    for (key, origin, _) in &table.entries {
        if !KEYS.contains(&key.as_str()) {
            let err = SpecError::at(origin, format!("unknown key `dataset.{key}`"));
            return Err(match suggest(key, KEYS.iter().copied()) {
                Some(s) => err.help(format!("did you mean `{s}`? valid: {}", KEYS.join(", "))),
                None => err.help(format!("valid keys: {}", KEYS.join(", "))),
            });
        }
    }
    let source = match table.get("source") {
        None => {
            return Err(SpecError::at(table_origin, "[dataset] needs `source`")
                .help(format!("source = {SOURCES}")))
        }
        Some(n) => match &n.value {
            Value::Str(s) if s == "synthetic" => Source::Synthetic,
            Value::Str(s) if s == "lab" => Source::Lab,
            Value::Str(s) if s == "kaggle" => Source::Kaggle,
            Value::Str(s) if s == "csv" => Source::Csv,
            Value::Str(s) if presets::NAMES.contains(&s.as_str()) => Source::Preset(
                presets::NAMES
                    .iter()
                    .find(|p| **p == s)
                    .expect("just found"),
            ),
            _ => {
                return Err(SpecError::at(&n.origin, "unknown dataset.source")
                    .help(format!("source = {SOURCES}")))
            }
        },
    };
    let root = match table.get("root") {
        None => None,
        Some(Node {
            value: Value::Str(s),
            origin,
        }) => {
            let p = PathBuf::from(s);
            let p = match origin {
                Origin::File { .. } if p.is_relative() => base.join(p),
                _ => p,
            };
            // Absolute: the root is recorded in listings and cache keys, read from any cwd.
            Some(absolute_path(&p))
        }
        Some(n) => {
            return Err(SpecError::at(
                &n.origin,
                "dataset.root must be a path string",
            ))
        }
    };
    if source != Source::Synthetic && root.is_none() {
        return Err(SpecError::at(
            table_origin,
            format!("dataset.root is required for {} data", source.name()),
        )
        .help("add root = \"/path/to/images\" or pass --set dataset.root=/path/to/images"));
    }
    let get_int = |key: &str, default: u64, min: i64| {
        table
            .get(key)
            .map(|n| int(n, key, min))
            .unwrap_or(Ok(default))
    };
    let test_fraction = match table.get("test_fraction") {
        None => 0.2,
        Some(n) => match n.value {
            Value::Float(f) if f > 0.0 && f < 1.0 => f,
            _ => {
                return Err(SpecError::at(
                    &n.origin,
                    "dataset.test_fraction must be a number between 0 and 1 (exclusive)",
                ))
            }
        },
    };
    let val_fraction = match table.get("val_fraction") {
        None => DEFAULT_VAL_FRACTION,
        Some(n) => match n.value {
            Value::Float(f) if (0.0..1.0).contains(&f) => f,
            Value::Int(0) => 0.0,
            _ => {
                return Err(SpecError::at(
                    &n.origin,
                    "dataset.val_fraction must be a number in [0, 1): the share of training \
                     patients held out for model selection",
                ))
            }
        },
    };
    if source != Source::Csv {
        if let Some((key, origin, _)) = table
            .entries
            .iter()
            .find(|(k, ..)| CSV_KEYS.contains(&k.as_str()))
        {
            return Err(SpecError::at(
                origin,
                format!("dataset.{key} is read only with source = \"csv\""),
            ));
        }
    }
    let csv = csv_layout(table, table_origin, source)?;
    Ok(DatasetSpec {
        source,
        root,
        csv,
        images: match (source, table.get("images")) {
            (Source::Csv, _) => 0,
            _ => get_int("images", 600, 10)?,
        },
        size: get_int("size", 128, 32)?,
        seed: get_int("seed", 0, 0)?,
        test_fraction,
        split_seed: get_int("split_seed", 0, 0)?,
        val_fraction,
        min_image_size: get_int("min_image_size", 32, 1)?,
    })
}

/// `p` made absolute against the working directory, with `.` and `..` resolved lexically
/// (so messages show `/data/lab4`, not `/work/experiments/../data/lab4`).
pub fn absolute_path(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn string(table: &Table, key: &str) -> Result<Option<String>, SpecError> {
    match table.get(key) {
        None => Ok(None),
        Some(Node {
            value: Value::Str(s),
            ..
        }) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(n) => Err(SpecError::at(
            &n.origin,
            format!("dataset.{key} must be a non-empty string"),
        )),
    }
}

/// The columns of a csv source (all from the table), or a preset's (with its
/// `exclude_labels` overridable).
fn csv_layout(
    table: &Table,
    table_origin: &Origin,
    source: Source,
) -> Result<Option<CsvLayout>, SpecError> {
    let exclude = match table.get("exclude_labels") {
        None => None,
        Some(Node {
            value: Value::Array(items),
            origin,
        }) => Some(
            items
                .iter()
                .map(|n| match n.value {
                    Value::Int(i) => Ok(i),
                    _ => Err(SpecError::at(
                        origin,
                        "dataset.exclude_labels must be a list of integers",
                    )),
                })
                .collect::<Result<Vec<i64>, _>>()?,
        ),
        Some(n) => {
            return Err(SpecError::at(
                &n.origin,
                "dataset.exclude_labels must be a list of integers, e.g. [5]",
            ))
        }
    };
    let mut layout = match source {
        Source::Preset(name) => presets::preset(name).expect("parsed from presets::NAMES"),
        Source::Csv => {
            let need = |key: &str, example: &str| {
                string(table, key)?.ok_or_else(|| {
                    SpecError::at(
                        table_origin,
                        format!("source = \"csv\" needs dataset.{key}"),
                    )
                    .help(format!("e.g. {key} = \"{example}\""))
                })
            };
            let images = match table.get("images") {
                Some(Node {
                    value: Value::Str(s),
                    ..
                }) => s.clone(),
                Some(n) => {
                    return Err(SpecError::at(
                        &n.origin,
                        "with source = \"csv\", dataset.images is the images folder (a string)",
                    )
                    .help("e.g. images = \"train_images\" (relative to dataset.root)"))
                }
                None => return Err(SpecError::at(
                    table_origin,
                    "source = \"csv\" needs dataset.images",
                )
                .help(
                    "the folder of the images, relative to dataset.root, e.g. images = \"images\"",
                )),
            };
            CsvLayout {
                tables: vec![CsvTable {
                    labels: need("labels", "labels.csv")?.into(),
                    images: images.into(),
                    split: None,
                }],
                image_column: Column::Named(need("image_column", "image")?),
                label_column: Column::Named(need("label_column", "grade")?),
                split_column: string(table, "split_column")?.map(Column::Named),
                patient_column: string(table, "patient_column")?.map(Column::Named),
                extension: string(table, "extension")?
                    .map(|e| e.trim_start_matches('.').to_string()),
                exclude_labels: Vec::new(),
                whitespace: false,
            }
        }
        _ => {
            if let Some(n) = table.get("exclude_labels") {
                return Err(SpecError::at(
                    &n.origin,
                    "dataset.exclude_labels is read only by csv sources and presets",
                ));
            }
            return Ok(None);
        }
    };
    if let Some(e) = exclude {
        layout.exclude_labels = e;
    }
    Ok(Some(layout))
}
