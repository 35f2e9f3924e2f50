//! The public DR grading sets as they unpack, as [`CsvLayout`]s: `dataset.source = "aptos"`
//! (or `"idrid"`, `"ddr"`) and `dataset.root` is all a user writes.
//!
//! **APTOS 2019** (Kaggle, Aravind Eye Hospital): root is the unzipped competition folder.
//! No test labels were published, so drpipe draws its test split from `train.csv`.
//! ```text
//! ROOT/train.csv              id_code,diagnosis
//! ROOT/train_images/<id_code>.png
//! ```
//! **IDRiD**, disease grading: root is `B. Disease Grading`. Its own train/test split is kept.
//! ```text
//! ROOT/1. Original Images/a. Training Set/IDRiD_001.jpg ...
//! ROOT/1. Original Images/b. Testing Set/IDRiD_001.jpg ...
//! ROOT/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv
//! ROOT/2. Groundtruths/b. IDRiD_Disease Grading_Testing Labels.csv
//!                             Image name,Retinopathy grade,Risk of macular edema
//! ```
//! **DDR**, grading: root is `DR_grading`. Its train/valid/test split is kept; label 5
//! (ungradable) is left out and listed by the audit as dropped.
//! ```text
//! ROOT/train.txt  ROOT/valid.txt  ROOT/test.txt      `NAME.jpg LABEL` per line
//! ROOT/train/NAME.jpg  ROOT/valid/NAME.jpg  ROOT/test/NAME.jpg
//! ```

use super::csv::{Column, CsvLayout, Split, Table};

pub const NAMES: &[&str] = &["aptos", "idrid", "ddr"];

pub const IDRID_TRAIN_LABELS: &str = "2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv";
pub const IDRID_TEST_LABELS: &str = "2. Groundtruths/b. IDRiD_Disease Grading_Testing Labels.csv";
pub const IDRID_TRAIN_IMAGES: &str = "1. Original Images/a. Training Set";
pub const IDRID_TEST_IMAGES: &str = "1. Original Images/b. Testing Set";

/// The layout of preset `name`, or `None` for another name.
pub fn preset(name: &str) -> Option<CsvLayout> {
    let table = |labels: &str, images: &str, split| Table {
        labels: labels.into(),
        images: images.into(),
        split,
    };
    match name {
        "aptos" => Some(CsvLayout {
            tables: vec![table("train.csv", "train_images", None)],
            image_column: Column::Named("id_code".into()),
            label_column: Column::Named("diagnosis".into()),
            split_column: None,
            patient_column: None,
            extension: Some("png".into()),
            exclude_labels: Vec::new(),
            whitespace: false,
        }),
        "idrid" => Some(CsvLayout {
            tables: vec![
                table(IDRID_TRAIN_LABELS, IDRID_TRAIN_IMAGES, Some(Split::Train)),
                table(IDRID_TEST_LABELS, IDRID_TEST_IMAGES, Some(Split::Test)),
            ],
            image_column: Column::Named("Image name".into()),
            label_column: Column::Named("Retinopathy grade".into()),
            split_column: None,
            patient_column: None,
            extension: Some("jpg".into()),
            exclude_labels: Vec::new(),
            whitespace: false,
        }),
        "ddr" => Some(CsvLayout {
            tables: vec![
                table("train.txt", "train", Some(Split::Train)),
                table("valid.txt", "valid", Some(Split::Val)),
                table("test.txt", "test", Some(Split::Test)),
            ],
            image_column: Column::Index(0),
            label_column: Column::Index(1),
            split_column: None,
            patient_column: None,
            extension: None,
            exclude_labels: vec![5],
            whitespace: true,
        }),
        _ => None,
    }
}
