//! The two folder layouts users point drpipe at, read into one [`Dataset`].
//!
//! - **Lab** (the study's): `NAME.jpeg` files in `root` plus four one-column lists
//!   `train_img.csv`, `train_label.csv`, `test_img.csv`, `test_label.csv` (same row order).
//! - **Kaggle EyePACS**: `train/NAME.jpeg` plus `trainLabels.csv` with an `image,level` header.
//! - **CSV** ([`csv`]): any label table(s) with named columns, and the presets for APTOS 2019,
//!   IDRiD and DDR ([`presets`]).
//!
//! A listed name without an extension is looked for as `.jpeg`, `.jpg`, `.png`, `.tif`,
//! `.tiff` in turn; the image's format is then told by its content, not its name.
//!
//! Loading only reads the list files: it never opens an image (that is the audit's job), and
//! every name is checked by [`check_name`] before it is joined onto `root`, so a hostile list
//! cannot make later stages read outside the data folder.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::{format, Sample, NUM_CLASSES};

pub mod csv;
pub mod presets;

const LAB_LISTS: [&str; 4] = [
    "train_img.csv",
    "train_label.csv",
    "test_img.csv",
    "test_label.csv",
];
const KAGGLE_LABELS: &str = "trainLabels.csv";
const KAGGLE_IMAGES: &str = "train";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    Lab,
    Kaggle,
    Csv,
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::Lab => "lab",
            LayoutKind::Kaggle => "kaggle",
            LayoutKind::Csv => "csv",
        })
    }
}

impl FromStr for LayoutKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lab" => Ok(LayoutKind::Lab),
            "kaggle" => Ok(LayoutKind::Kaggle),
            "csv" => Ok(LayoutKind::Csv),
            other => Err(format!(
                "unknown layout '{other}': expected 'lab', 'kaggle' or 'csv'"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub kind: LayoutKind,
    pub root: PathBuf,
    pub train: Vec<Sample>,
    /// Lab: its test lists. Kaggle: empty until [`crate::data::split::patient_split`].
    pub test: Vec<Sample>,
    /// A validation split the data set fixes itself (DDR's `valid.txt`); empty otherwise, and
    /// then carved out of `train` by patient.
    pub val: Vec<Sample>,
    /// Rows left out by `exclude_labels` (DDR's ungradable 5), with why: the audit lists them
    /// as dropped.
    pub excluded: Vec<(Sample, String)>,
    /// The list files read, so callers can hash them into cache keys.
    pub list_files: Vec<PathBuf>,
}

/// Which layout `root` holds, judged by its list files only.
pub fn detect(root: &Path) -> Result<LayoutKind> {
    if !root.is_dir() {
        bail!(
            "data folder {} does not exist or is not a folder",
            root.display()
        );
    }
    let lab = root.join(LAB_LISTS[0]).is_file();
    let kaggle = root.join(KAGGLE_LABELS).is_file();
    match (lab, kaggle) {
        (true, false) => Ok(LayoutKind::Lab),
        (false, true) => Ok(LayoutKind::Kaggle),
        (true, true) => bail!(
            "{} holds both {} (lab layout) and {} (kaggle layout); say which one to use",
            root.display(),
            LAB_LISTS[0],
            KAGGLE_LABELS
        ),
        (false, false) => bail!(
            "cannot tell the data layout of {}: looked for {} (lab layout: {}) and {} with \
             images in {}/ (kaggle layout); neither was found",
            root.display(),
            LAB_LISTS[0],
            LAB_LISTS.join(", "),
            KAGGLE_LABELS,
            KAGGLE_IMAGES
        ),
    }
}

/// Loads the lab or Kaggle layout (the CSV layout needs its columns: [`csv::load`]).
pub fn load(root: &Path, kind: LayoutKind) -> Result<Dataset> {
    match kind {
        LayoutKind::Lab => load_lab(root),
        LayoutKind::Kaggle => load_kaggle(root),
        LayoutKind::Csv => bail!("the csv layout is loaded with its columns (layout::csv::load)"),
    }
}

/// A list-file name must stay inside the data folder: no separators, no `..`, not absolute,
/// no NUL, not empty. Checked on the string alone, before anything touches the file system.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty image name".into());
    }
    if name.contains('\0') {
        return Err(format!("image name {name:?} contains a NUL byte"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!("image name {name:?} contains a path separator"));
    }
    if name.contains("..") {
        return Err(format!("image name {name:?} contains '..'"));
    }
    if Path::new(name).is_absolute() || name.contains(':') {
        return Err(format!("image name {name:?} is an absolute path"));
    }
    Ok(())
}

/// Where the image `name` is: `dir/name` when the name carries a supported extension, else
/// the first of `dir/name.jpeg`, `.jpg`, `.png`, `.tif`, `.tiff` that exists, and
/// `dir/name.jpeg` when none does (the audit then reports it missing). One `stat` per try;
/// the file is not opened.
pub(crate) fn image_path(dir: &Path, name: &str) -> PathBuf {
    let lower = name.to_ascii_lowercase();
    if format::EXTENSIONS
        .iter()
        .any(|e| lower.ends_with(&format!(".{e}")))
    {
        return dir.join(name);
    }
    format::EXTENSIONS
        .iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(format!("{name}.jpeg")))
}

/// Non-blank lines with their 1-based line numbers; trims whitespace, a BOM and surrounding
/// quotes (spreadsheets add both).
pub(crate) fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read list file {} (is it there and UTF-8 text?)",
            path.display()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, unquote(l.trim()).to_string()))
        .filter(|(_, l)| !l.is_empty())
        .collect())
}

pub(crate) fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

fn parse_label(s: &str, path: &Path, line: usize) -> Result<u8> {
    match s.parse::<u8>() {
        Ok(v) if (v as usize) < NUM_CLASSES => Ok(v),
        _ => bail!(
            "{}:{line}: label {s:?} is not an integer grade 0-{}",
            path.display(),
            NUM_CLASSES - 1
        ),
    }
}

/// A one-column list of image names. The first line is taken as a header when it is not a
/// valid name, or when it is a usual column title ("image", "name", ...) with no such image.
fn read_names(path: &Path, images: &Path) -> Result<Vec<(usize, String)>> {
    let mut lines = read_lines(path)?;
    if let Some((_, first)) = lines.first() {
        let titled = [
            "image",
            "images",
            "img",
            "name",
            "id",
            "filename",
            "file",
            "image_name",
        ]
        .contains(&first.to_ascii_lowercase().as_str());
        if check_name(first).is_err() || (titled && !image_path(images, first).exists()) {
            lines.remove(0);
        }
    }
    for (line, name) in &lines {
        if name.contains(',') {
            bail!(
                "{}:{line}: expected one column (an image name), found {name:?}",
                path.display()
            );
        }
        check_name(name).map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?;
    }
    Ok(lines)
}

/// A one-column list of grades; a first line that is not a number at all is a header.
fn read_labels(path: &Path) -> Result<Vec<(usize, u8)>> {
    let mut lines = read_lines(path)?;
    if let Some((_, first)) = lines.first() {
        if first.parse::<i64>().is_err() && first.parse::<f64>().is_err() {
            lines.remove(0);
        }
    }
    lines
        .iter()
        .map(|(line, s)| Ok((*line, parse_label(s, path, *line)?)))
        .collect()
}

fn read_pair(root: &Path, img_list: &str, label_list: &str) -> Result<Vec<Sample>> {
    let (ip, lp) = (root.join(img_list), root.join(label_list));
    let names = read_names(&ip, root)?;
    let labels = read_labels(&lp)?;
    if names.len() != labels.len() {
        bail!(
            "{} lists {} images but {} lists {} labels; the two files must have one row per \
             image in the same order",
            ip.display(),
            names.len(),
            lp.display(),
            labels.len()
        );
    }
    let samples: Vec<Sample> = names
        .into_iter()
        .zip(labels)
        .map(|((_, name), (_, label))| Sample::new(name.clone(), label, image_path(root, &name)))
        .collect();
    check_unique(&samples, &ip)?;
    Ok(samples)
}

pub(crate) fn check_unique(samples: &[Sample], list: &Path) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        if let Some(first) = seen.insert(&s.name, i) {
            bail!(
                "{}: image {:?} is listed twice (entries {} and {}); remove the duplicate",
                list.display(),
                s.name,
                first + 1,
                i + 1
            );
        }
    }
    Ok(())
}

fn load_lab(root: &Path) -> Result<Dataset> {
    for f in LAB_LISTS {
        if !root.join(f).is_file() {
            bail!(
                "lab layout: list file {} is missing (the lab layout needs {})",
                root.join(f).display(),
                LAB_LISTS.join(", ")
            );
        }
    }
    let train = read_pair(root, LAB_LISTS[0], LAB_LISTS[1])?;
    let test = read_pair(root, LAB_LISTS[2], LAB_LISTS[3])?;
    let train_names: HashMap<&str, ()> = train.iter().map(|s| (s.name.as_str(), ())).collect();
    if let Some(s) = test
        .iter()
        .find(|s| train_names.contains_key(s.name.as_str()))
    {
        bail!(
            "image {:?} is listed in both {} and {}: the test score would leak; remove it from one",
            s.name,
            LAB_LISTS[0],
            LAB_LISTS[2]
        );
    }
    Ok(Dataset {
        kind: LayoutKind::Lab,
        root: root.to_path_buf(),
        train,
        test,
        val: Vec::new(),
        excluded: Vec::new(),
        list_files: LAB_LISTS.iter().map(|f| root.join(f)).collect(),
    })
}

fn load_kaggle(root: &Path) -> Result<Dataset> {
    let lp = root.join(KAGGLE_LABELS);
    if !lp.is_file() {
        bail!("kaggle layout: label file {} is missing", lp.display());
    }
    let lines = read_lines(&lp)?;
    let Some((_, header)) = lines.first() else {
        bail!(
            "{} is empty; expected an 'image,level' header and one row per image",
            lp.display()
        );
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| unquote(c.trim()).to_ascii_lowercase())
        .collect();
    let find = |want: &str| cols.iter().position(|c| c == want);
    let (Some(ic), Some(lc)) = (find("image"), find("level")) else {
        bail!(
            "{}:1: expected a header with 'image' and 'level' columns, found {header:?}",
            lp.display()
        );
    };
    let images = root.join(KAGGLE_IMAGES);
    let mut train = Vec::with_capacity(lines.len());
    for (line, row) in &lines[1..] {
        let fields: Vec<&str> = row.split(',').map(|f| unquote(f.trim())).collect();
        let (Some(name), Some(level)) = (fields.get(ic), fields.get(lc)) else {
            bail!(
                "{}:{line}: expected {} columns, found {row:?}",
                lp.display(),
                cols.len()
            );
        };
        check_name(name).map_err(|e| anyhow::anyhow!("{}:{line}: {e}", lp.display()))?;
        let label = parse_label(level, &lp, *line)?;
        train.push(Sample::new(*name, label, image_path(&images, name)));
    }
    check_unique(&train, &lp)?;
    Ok(Dataset {
        kind: LayoutKind::Kaggle,
        root: root.to_path_buf(),
        train,
        test: Vec::new(),
        val: Vec::new(),
        excluded: Vec::new(),
        list_files: vec![lp],
    })
}

#[cfg(test)]
mod tests;
