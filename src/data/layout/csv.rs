//! The generic CSV layout: one or more label tables, each naming its images folder, with
//! the image and grade in named columns (or, for headerless whitespace lists such as DDR's,
//! numbered ones). A split column or a table's fixed split says train / val / test;
//! without either, the split is drawn by patient later, as for Kaggle.
//!
//! Cells are trimmed of spaces and quotes (IDRiD's header cells carry stray spaces), trailing
//! empty columns are ignored, and every error names the file, line and column.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{check_name, check_unique, image_path, read_lines, unquote, Dataset, LayoutKind};
use crate::data::{Sample, NUM_CLASSES};

/// A column by its header title, or by its 0-based position in a headerless file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Column {
    Named(String),
    Index(usize),
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Named(n) => write!(f, "`{n}`"),
            Column::Index(i) => write!(f, "{}", i + 1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// The usual spellings, case-insensitive.
    pub fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" | "dev" => Some(Split::Val),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }
}

/// One label file and the folder its images are in (both relative to the data root).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Table {
    pub labels: PathBuf,
    pub images: PathBuf,
    /// Every row of this table is on this side (IDRiD's training and testing files).
    pub split: Option<Split>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CsvLayout {
    pub tables: Vec<Table>,
    pub image_column: Column,
    pub label_column: Column,
    /// Values `train`/`val`/`test` (and their usual spellings) per row.
    pub split_column: Option<Column>,
    /// The patient of each row, for splits and resamples that keep a patient's images
    /// together; without it, patients are read from `PATIENT_left` / `PATIENT_right` names.
    /// (Left out of the cache key when unset, so older keys stay valid.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_column: Option<Column>,
    /// Appended to names without one (`"png"`); `None` tries the supported extensions.
    pub extension: Option<String>,
    /// Grades left out, listed by the audit as dropped (DDR's 5, ungradable).
    pub exclude_labels: Vec<i64>,
    /// Fields separated by runs of whitespace instead of commas (DDR's `name label` lines).
    pub whitespace: bool,
}

/// Splits a CSV row on commas outside double quotes; cells trimmed and unquoted.
fn fields(row: &str, whitespace: bool) -> Vec<String> {
    if whitespace {
        return row
            .split_whitespace()
            .map(|f| unquote(f).to_string())
            .collect();
    }
    let mut out: Vec<String> = crate::data::csv_text::row(row)
        .iter()
        .map(|f| f.trim().to_string())
        .collect();
    while out.len() > 1 && out.last().is_some_and(|f| f.is_empty()) {
        out.pop();
    }
    out
}

/// The position of `col` in a header row; a missing title is an error listing those there.
fn position(col: &Column, header: Option<&[String]>, file: &Path, key: &str) -> Result<usize> {
    match (col, header) {
        (Column::Index(i), _) => Ok(*i),
        (Column::Named(name), Some(h)) => h
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:1: no column `{name}` ({key}); the header has {}",
                    file.display(),
                    h.iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        (Column::Named(name), None) => bail!(
            "{}: {key} = `{name}` names a column, but this file has no header",
            file.display()
        ),
    }
}

fn cell<'a>(
    row: &'a [String],
    i: usize,
    col: &Column,
    file: &Path,
    line: usize,
) -> Result<&'a str> {
    match row.get(i) {
        Some(v) => Ok(v.as_str()),
        None => bail!(
            "{}:{line}: column {col} is missing (the row has {} field(s))",
            file.display(),
            row.len()
        ),
    }
}

/// A grade 0-4; integers written as `2.0` by spreadsheets are accepted.
fn grade(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| {
        s.parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)
    })
}

fn named_path(images: &Path, name: &str, extension: Option<&str>) -> PathBuf {
    match extension {
        Some(ext)
            if !name
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", ext.to_ascii_lowercase())) =>
        {
            images.join(format!("{name}.{ext}"))
        }
        Some(_) => images.join(name),
        None => image_path(images, name),
    }
}

/// What a table's rows are called when their names repeat another table's.
fn table_tag(table: &Table) -> String {
    match table.split {
        Some(Split::Train) => "train".into(),
        Some(Split::Val) => "val".into(),
        Some(Split::Test) => "test".into(),
        None => table
            .labels
            .file_stem()
            .map_or("table".into(), |s| s.to_string_lossy().into_owned()),
    }
}

/// IDRiD numbers its training and testing images both from `IDRiD_001`: different eyes
/// under one name. Names must be unique downstream (audit.csv, predictions, the patient
/// split), so a name found in more than one table becomes `NAME@TAG` in each of them; names
/// that do not repeat are left as the user wrote them.
/// One table's tag and its rows (the split its split column names, if any, and the sample).
type TableRows = (String, Vec<(Option<Split>, Sample)>);

fn qualify_repeated_names(tables: &mut [TableRows]) {
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (_, rows) in tables.iter() {
        for (_, s) in rows {
            *count.entry(s.name.clone()).or_default() += 1;
        }
    }
    for (tag, rows) in tables.iter_mut() {
        for (_, s) in rows.iter_mut() {
            if count[&s.name] > 1 {
                s.name = format!("{}@{tag}", s.name);
            }
        }
    }
}

/// Reads every table of `layout` under `root` into one [`Dataset`].
pub fn load(root: &Path, layout: &CsvLayout) -> Result<Dataset> {
    if !root.is_dir() {
        bail!(
            "data folder {} does not exist or is not a folder",
            root.display()
        );
    }
    let mut d = Dataset {
        kind: LayoutKind::Csv,
        root: root.to_path_buf(),
        train: Vec::new(),
        test: Vec::new(),
        val: Vec::new(),
        excluded: Vec::new(),
        list_files: Vec::new(),
    };
    let excluded: HashSet<i64> = layout.exclude_labels.iter().copied().collect();
    let mut tables: Vec<TableRows> = Vec::new();
    for table in &layout.tables {
        let mut rows = Vec::new();
        let file = root.join(&table.labels);
        let images = root.join(&table.images);
        if !file.is_file() {
            bail!("label file {} is missing", file.display());
        }
        if !images.is_dir() {
            bail!(
                "images folder {} is missing (named with the labels in {})",
                images.display(),
                file.display()
            );
        }
        let mut lines = read_lines(&file)?.into_iter();
        let header: Option<Vec<String>> = if layout.whitespace {
            None
        } else {
            match lines.next() {
                Some((_, h)) => Some(fields(&h, false)),
                None => bail!("{} is empty; expected a header row", file.display()),
            }
        };
        let h = header.as_deref();
        let ic = position(&layout.image_column, h, &file, "image_column")?;
        let lc = position(&layout.label_column, h, &file, "label_column")?;
        let sc = match &layout.split_column {
            Some(c) => Some((c, position(c, h, &file, "split_column")?)),
            None => None,
        };
        let pc = match &layout.patient_column {
            Some(c) => Some((c, position(c, h, &file, "patient_column")?)),
            None => None,
        };
        for (line, row) in lines {
            let row = fields(&row, layout.whitespace);
            let name = cell(&row, ic, &layout.image_column, &file, line)?;
            check_name(name).map_err(|e| anyhow::anyhow!("{}:{line}: {e}", file.display()))?;
            let raw = cell(&row, lc, &layout.label_column, &file, line)?;
            let split = match sc {
                Some((col, i)) => {
                    let v = cell(&row, i, col, &file, line)?;
                    Some(Split::parse(v).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}:{line}: split {v:?} in column {col} is not train, val or test",
                            file.display()
                        )
                    })?)
                }
                None => table.split,
            };
            let patient = match pc {
                Some((col, i)) => match cell(&row, i, col, &file, line)? {
                    "" => bail!(
                        "{}:{line}: column {col} (patient_column) is empty; every row needs its \
                         patient, or the split could put one person's eyes on both sides",
                        file.display()
                    ),
                    p => Some(p.to_string()),
                },
                None => None,
            };
            let path = named_path(&images, name, layout.extension.as_deref());
            let label = match grade(raw) {
                Some(g) if excluded.contains(&g) => {
                    let mut s = Sample::new(name, g.clamp(0, 255) as u8, path);
                    s.patient = patient;
                    d.excluded.push((
                        s,
                        format!("excluded: label {g} is in dataset.exclude_labels"),
                    ));
                    continue;
                }
                Some(g) if (0..NUM_CLASSES as i64).contains(&g) => g as u8,
                _ => bail!(
                    "{}:{line}: label {raw:?} in column {} is not a grade 0-{}; if such rows \
                     should be left out, add it to dataset.exclude_labels",
                    file.display(),
                    layout.label_column,
                    NUM_CLASSES - 1
                ),
            };
            let mut s = Sample::new(name, label, path);
            s.patient = patient;
            rows.push((split, s));
        }
        let samples: Vec<Sample> = rows.iter().map(|(_, s)| s.clone()).collect();
        check_unique(&samples, &file)?;
        tables.push((table_tag(table), rows));
        d.list_files.push(file);
    }
    qualify_repeated_names(&mut tables);
    for (_, rows) in tables {
        for (split, s) in rows {
            match split {
                Some(Split::Test) => d.test.push(s),
                Some(Split::Val) => d.val.push(s),
                Some(Split::Train) | None => d.train.push(s),
            }
        }
    }
    if d.test.is_empty() && !d.val.is_empty() {
        bail!(
            "{}: rows are marked val but none test; drpipe draws the test split itself only \
             when no row says where it goes",
            root.display()
        );
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
