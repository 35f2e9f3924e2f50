//! `stats`: the train/val/test split (the lab layout keeps its lists; Kaggle-style data is
//! split by patient, stratified by grade; the validation split is carved out of the training
//! side the same way) and the class counts and weights of each split.

use super::audit::KEPT;
use super::listing::{Item, Listing};
use super::{Stage, StageCtx};
use crate::data::class_weights::{ClassWeights, SCHEMES};
use crate::data::{split, Sample, NUM_CLASSES};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct StatsStage;

pub const SPLIT: &str = "split.json";
pub const STATS: &str = "stats.json";
/// Salt of the validation split's seed, so it is not the test split's draw again.
const VAL_SALT: u64 = 0x7A11_DA7E;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub train: [usize; NUM_CLASSES],
    /// The validation split (all zero without one).
    #[serde(default)]
    pub val: [usize; NUM_CLASSES],
    pub test: [usize; NUM_CLASSES],
    /// Weights of every named scheme on the training counts (effective_number at beta 0.999).
    pub weights: BTreeMap<String, [f32; NUM_CLASSES]>,
    /// Byte-identical images on both sides of the split, (train name, test name): the same
    /// photograph in both would inflate the test score.
    #[serde(default)]
    pub cross_split_duplicates: Vec<(String, String)>,
}

impl Stats {
    pub fn read(dir: &std::path::Path) -> Result<Stats> {
        let p = dir.join(STATS);
        let bytes =
            std::fs::read(&p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

pub fn counts(samples: &[Sample]) -> [usize; NUM_CLASSES] {
    let mut c = [0; NUM_CLASSES];
    for s in samples {
        c[s.label as usize] += 1;
    }
    c
}

impl Stage for StatsStage {
    fn name(&self) -> &'static str {
        "stats"
    }

    /// 2: the validation split.
    fn version(&self) -> u32 {
        2
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let spec = ctx.dataset()?;
        let audit_dir = ctx.upstream_dir("audit")?;
        let kept = Listing::read(audit_dir, KEPT)?;
        let has_lists = kept.items.iter().any(|i| i.split == "test");
        let (train, test) = if has_lists {
            (kept.samples("train"), kept.samples("test"))
        } else {
            let all = kept.samples("");
            split::patient_split(&all, spec.test_fraction, spec.split_seed)
        };
        // Validation patients come from the training side only, so the test split is the
        // same whatever val_fraction is.
        let fixed_val = kept.samples("val");
        let (train, val) = if !fixed_val.is_empty() {
            // The data set's own validation split (DDR's valid.txt) is kept as it is.
            (train, fixed_val)
        } else if spec.val_fraction > 0.0 {
            split::patient_split(&train, spec.val_fraction, spec.split_seed ^ VAL_SALT)
        } else {
            (train, Vec::new())
        };
        if train.is_empty() || test.is_empty() {
            anyhow::bail!(
                "the split left {} training and {} test images: a model cannot be trained and tested on that; \
                 check the data folder and the audit report ({})",
                train.len(),
                test.len(),
                audit_dir.join("audit.csv").display()
            );
        }
        if spec.val_fraction > 0.0 && val.is_empty() {
            anyhow::bail!(
                "dataset.val_fraction = {} left no validation image out of {} training images; \
                 raise it, or set it to 0 and checkpoint = \"last\"",
                spec.val_fraction,
                train.len()
            );
        }
        split::write_split_csv(&ctx.out.join("split.csv"), &train, &val, &test)?;
        let item = |s: &Sample, split: &str| Item {
            name: s.name.clone(),
            label: s.label,
            split: split.into(),
            file: s.path.clone(),
            patient: s.patient.clone(),
        };
        let items = train
            .iter()
            .map(|s| item(s, "train"))
            .chain(val.iter().map(|s| item(s, "val")))
            .chain(test.iter().map(|s| item(s, "test")))
            .collect();
        Listing {
            layout: kept.layout.clone(),
            items,
        }
        .write(ctx.out, SPLIT)?;
        let (ctrain, cval, ctest) = (counts(&train), counts(&val), counts(&test));
        let mut weights = BTreeMap::new();
        for scheme in SCHEMES {
            let w = crate::data::class_weights::parse_scheme(scheme, 0.999)
                .map_err(anyhow::Error::msg)?;
            weights.insert(scheme.to_string(), w.compute(&ctrain));
        }
        let stats = Stats {
            train: ctrain,
            val: cval,
            test: ctest,
            weights,
            cross_split_duplicates: duplicates(&train, &[&val[..], &test[..]].concat(), ctx.hasher),
        };
        std::fs::write(ctx.out.join(STATS), serde_json::to_vec_pretty(&stats)?)?;
        std::fs::write(ctx.out.join("stats.txt"), table(&stats))?;
        let share0 = 100.0 * ctrain[0] as f64 / train.len() as f64;
        // The class balance is what a researcher checks first: show it with the summary.
        let indented: String = table(&stats)
            .lines()
            .map(|l| format!("\n           {l}"))
            .collect();
        Ok(format!(
            "{} train / {} val / {} test images; grade 0 is {share0:.1}% of train{}{indented}",
            train.len(),
            val.len(),
            test.len(),
            match stats.cross_split_duplicates.len() {
                0 => String::new(),
                n => format!("; WARNING: {n} image(s) in both train and test (see stats.json)"),
            } + &patients_note(&train, &val, &test)
        ))
    }
}

/// How patients were found, said with the split: from `dataset.patient_column`, from
/// `PATIENT_left` / `PATIENT_right` names, or not at all (every image its own patient, so a
/// split by patient is a split by image, and two eyes of one person on both sides would
/// inflate the test score). A data set's own lists that put a patient on both sides are
/// kept as they are, with a warning.
fn patients_note(train: &[Sample], val: &[Sample], test: &[Sample]) -> String {
    use std::collections::HashSet;
    let all = [train, val, test].concat();
    let patients: HashSet<&str> = all.iter().map(Sample::patient).collect();
    let mut note = if all.iter().any(|s| s.patient.is_some()) {
        format!("; {} patients (dataset.patient_column)", patients.len())
    } else if patients.len() == all.len() && all.len() > 1 {
        "; no PATIENT_left/PATIENT_right names and no dataset.patient_column: each image is \
         taken as its own patient"
            .into()
    } else {
        String::new()
    };
    let held_out: HashSet<&str> = val.iter().chain(test).map(Sample::patient).collect();
    let both = train
        .iter()
        .map(Sample::patient)
        .collect::<HashSet<_>>()
        .intersection(&held_out)
        .count();
    if both > 0 {
        note += &format!(
            "; WARNING: {both} patient(s) have images in train and in val/test (the data set's \
             own lists), which inflates the test score"
        );
    }
    note
}

/// Byte-identical files across the split, by content hash (memoised: no file is re-read).
fn duplicates(
    train: &[Sample],
    test: &[Sample],
    hasher: &crate::cache::FileHasher,
) -> Vec<(String, String)> {
    let by_hash: std::collections::HashMap<String, &str> = train
        .iter()
        .filter_map(|s| Some((hasher.hash(&s.path).ok()?, s.name.as_str())))
        .collect();
    test.iter()
        .filter_map(|s| {
            let h = hasher.hash(&s.path).ok()?;
            by_hash.get(&h).map(|t| (t.to_string(), s.name.clone()))
        })
        .collect()
}

/// The class table shown after the stage's summary and kept beside stats.json.
pub fn table(s: &Stats) -> String {
    let nt: usize = s.train.iter().sum();
    let nv: usize = s.val.iter().sum();
    let ns: usize = s.test.iter().sum();
    let mut out =
        String::from("grade   train  share     val  share    test  share  inverse_frequency\n");
    for g in 0..NUM_CLASSES {
        out.push_str(&format!(
            "{g:>5} {:>7} {:>5.1}% {:>7} {:>5.1}% {:>7} {:>5.1}%  {:>8.3}\n",
            s.train[g],
            100.0 * s.train[g] as f64 / nt.max(1) as f64,
            s.val[g],
            100.0 * s.val[g] as f64 / nv.max(1) as f64,
            s.test[g],
            100.0 * s.test[g] as f64 / ns.max(1) as f64,
            s.weights
                .get("inverse_frequency")
                .map(|w| w[g])
                .unwrap_or(0.0)
        ));
    }
    out
}

/// The weights a training cell asked for: a scheme on the training counts, or its own list.
pub fn resolve_weights(
    value: &serde_json::Value,
    beta: f64,
    stats: &Stats,
) -> Result<[f32; NUM_CLASSES]> {
    let scheme = match value {
        serde_json::Value::String(s) => {
            crate::data::class_weights::parse_scheme(s, beta).map_err(anyhow::Error::msg)?
        }
        serde_json::Value::Array(a) => {
            let mut w = [0f32; NUM_CLASSES];
            for (i, x) in a.iter().enumerate().take(NUM_CLASSES) {
                w[i] = x.as_f64().unwrap_or(0.0) as f32;
            }
            ClassWeights::Explicit(w)
        }
        other => anyhow::bail!("invalid class_weights {other}"),
    };
    Ok(scheme.compute(&stats.train))
}
