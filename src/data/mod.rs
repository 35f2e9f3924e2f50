//! Everything between a user's image folder and a batch tensor.

pub mod synthetic;

/// The five DR grades: 0 no DR, 1 mild, 2 moderate, 3 severe, 4 proliferative.
pub const NUM_CLASSES: usize = 5;

/// ImageNet normalisation used by the study (torchvision's defaults).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One listed image: its name as in the list file, its grade, where it is on disk, and the
/// patient the data set says it belongs to (`dataset.patient_column`), if it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub label: u8,
    pub path: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

impl Sample {
    /// A sample whose patient is read from its name (see [`split::patient_of`]).
    pub fn new(name: impl Into<String>, label: u8, path: impl Into<std::path::PathBuf>) -> Sample {
        Sample {
            name: name.into(),
            label,
            path: path.into(),
            patient: None,
        }
    }

    /// The patient whose images stay together in splits and resamples: the data set's own
    /// patient id where it has one, else the name's `PATIENT_left` / `PATIENT_right` stem.
    pub fn patient(&self) -> &str {
        self.patient
            .as_deref()
            .unwrap_or_else(|| split::patient_of(&self.name))
    }
}

/// A batch ready for the model: `images` is `[len, 3, size, size]` row-major, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Positions of these images in the split they came from (for predictions.csv).
    pub indices: Vec<usize>,
    pub size: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

pub mod audit;
pub mod augment;
pub mod class_weights;
pub mod csv_text;
pub mod format;
pub mod image_cache;
pub mod jpeg;
pub mod layout;
pub mod loader;
pub mod png;
pub mod split;
