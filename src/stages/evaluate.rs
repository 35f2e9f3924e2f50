//! `evaluate`: the selected weights on the test split (test transform, optional flip TTA):
//! `predictions.csv`, and `metrics.json` with a patient-level bootstrap 95% interval for every
//! headline metric. The only stage that reads the test split (unless a cell asks for
//! `checkpoint = "best_test"`, the study's selection on test).

use super::train::CachedSplit;
use super::{Stage, StageCtx};
use crate::data::csv_text::{self, field};
use crate::data::split::patient_of;
use crate::metrics::bootstrap::{self, Interval};
use crate::metrics::Metrics;
use crate::model::{self, Arch};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub struct EvaluateStage;

pub const METRICS: &str = "metrics.json";
pub const PREDICTIONS: &str = "predictions.csv";

/// `metrics.json`: the metrics (flattened in, as before), their intervals and how the
/// weights were chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Percentile-bootstrap 95% interval per headline metric, resampling test patients.
    pub ci: BTreeMap<String, Interval>,
    /// "validation", "test" (the study's selection on the test split) or "last epoch".
    pub selected_on: String,
    pub resamples: usize,
}

impl Evaluation {
    pub fn read(dir: &Path) -> Result<Evaluation> {
        let path = dir.join(METRICS);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("malformed {}", path.display()))
    }
}

/// `predictions.csv` read back: image names, their patients, labels and probabilities, in
/// test order.
pub struct Predictions {
    pub names: Vec<String>,
    pub patients: Vec<String>,
    pub labels: Vec<u8>,
    pub probs: Vec<[f32; 5]>,
}

const HEADER: &str = "image,label,pred,p0,p1,p2,p3,p4,patient";
const OLD_HEADER: &str = "image,label,pred,p0,p1,p2,p3,p4";

/// Reads `predictions.csv`; without a patient column (names unquoted, the patient in the
/// name) the patient is read from the name.
pub fn read_predictions(dir: &Path) -> Result<Predictions> {
    let path = dir.join(PREDICTIONS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Predictions {
        names: Vec::new(),
        patients: Vec::new(),
        labels: Vec::new(),
        probs: Vec::new(),
    };
    let with_patient = text.lines().next() == Some(HEADER);
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || format!("{}:{}: malformed prediction row", path.display(), i + 1);
        // Fields in file order: name, label, pred, p0..p4 (and patient).
        let f: Vec<String> = if with_patient {
            csv_text::row(line)
        } else {
            // The name (which may hold commas, unquoted) is what is left on the left.
            let mut f: Vec<String> = line.rsplitn(8, ',').map(str::to_string).collect();
            f.reverse();
            let patient = f.first().map(|n| patient_of(n).to_string());
            f.extend(patient);
            f
        };
        anyhow::ensure!(f.len() == 9, bad());
        let mut probs = [0f32; 5];
        for (k, p) in probs.iter_mut().enumerate() {
            *p = f[3 + k].parse().with_context(bad)?;
        }
        out.names.push(f[0].clone());
        out.labels.push(f[1].parse().with_context(bad)?);
        out.probs.push(probs);
        out.patients.push(f[8].clone());
    }
    Ok(out)
}

impl Stage for EvaluateStage {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    /// 2: metrics.json gains bootstrap intervals and `selected_on`. 3: the forward pass's
    /// small maps use im2col instead of Winograd (`winograd::pays`), a change of rounding.
    /// 4: so do 8x8 maps of 16 images on CPUs whose FMAs are 512 bits wide; GEMMs on two
    /// threads are split by drpipe rather than by `gemm`, and groups of images evened out.
    /// 5: those 8x8 maps back on Winograd, as on other CPUs. 6: large maps on Winograd
    /// F(4x4) (`winograd::f4::pays`).
    fn version(&self) -> u32 {
        6
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let model_name: String = ctx.param("model")?;
        let arch: Arch = model_name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let image_size: u32 = ctx.param("image_size")?;
        let tta: bool = ctx.param("tta")?;
        let device = model::select_device(&ctx.param::<String>("device")?)?;
        let checkpoint: crate::train::Checkpoint = ctx
            .param::<String>("checkpoint")?
            .parse()
            .map_err(anyhow::Error::msg)?;
        let weights = ctx.upstream_dir("train")?.join(checkpoint.file());
        let net = model::load_for_inference(arch, &weights, &device)?;
        let test = CachedSplit::open(&ctx.upstream_dir("images")?.join("test"))?;
        ctx.progress.start("evaluate", test.names.len() as u64);
        let mut probs = vec![[0f32; 5]; test.names.len()];
        for batch in test.test_batches(32, image_size) {
            let p =
                model::predict_probs(&net, &batch.images, batch.len(), batch.size, &device, tta)?;
            for (i, row) in batch.indices.iter().zip(p) {
                probs[*i] = row;
            }
            ctx.progress.inc(batch.len() as u64);
        }
        ctx.progress.finish();
        let labels: Vec<u8> = test.labels.iter().copied().collect();
        let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.out.join(PREDICTIONS))?);
        // The patient column only where the data set names patients (else the name holds
        // it): cached predictions of every other data set stay as they were.
        let with_patient = test.named_patients;
        writeln!(f, "{}", if with_patient { HEADER } else { OLD_HEADER })?;
        for (i, p) in probs.iter().enumerate() {
            let pred = crate::metrics::argmax(p);
            let name = &test.names[i];
            write!(
                f,
                "{},{},{pred},{},{},{},{},{}",
                if with_patient {
                    field(name)
                } else {
                    name.into()
                },
                labels[i],
                p[0],
                p[1],
                p[2],
                p[3],
                p[4]
            )?;
            if with_patient {
                write!(f, ",{}", field(&test.patients[i]))?;
            }
            writeln!(f)?;
        }
        // Probabilities at full f32 precision (shortest round trip): the report resamples
        // them, and rounding would tie scores that the AUC here tells apart.
        f.flush()?;
        let m = crate::metrics::compute(&labels, &probs);
        let ci = bootstrap::intervals(
            &labels,
            &[&probs],
            &test.patients,
            bootstrap::RESAMPLES,
            bootstrap::SEED,
        );
        let record = Evaluation {
            metrics: m.clone(),
            ci,
            selected_on: checkpoint.selected_on().to_string(),
            resamples: bootstrap::RESAMPLES,
        };
        std::fs::write(ctx.out.join(METRICS), serde_json::to_vec_pretty(&record)?)?;
        let q = record.ci["qwk"];
        Ok(format!(
            "accuracy {:.2}%, balanced accuracy {:.2}%, QWK {:.3} (95% CI {:.3} to {:.3}) on {} \
             test images, weights selected on {}",
            100.0 * m.accuracy,
            100.0 * m.balanced_accuracy,
            m.qwk,
            q.lo,
            q.hi,
            m.n,
            record.selected_on
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_read_back_with_patients_old_and_new() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(PREDICTIONS);
        // Before the patient column: unquoted names, the patient in the name.
        std::fs::write(
            &p,
            "image,label,pred,p0,p1,p2,p3,p4\n7_left,2,2,0.1,0.1,0.6,0.1,0.1\na,b_right,0,0,1,0,0,0,0\n",
        )
        .unwrap();
        let old = read_predictions(d.path()).unwrap();
        assert_eq!(old.names, ["7_left", "a,b_right"]);
        assert_eq!(old.patients, ["7", "a,b"]);
        assert_eq!(old.labels, [2, 0]);
        assert_eq!(old.probs[0][2], 0.6);
        std::fs::write(
            &p,
            format!("{HEADER}\n\"x,1\",3,3,0,0,0,1,0,\"P \"\"9\"\"\"\n"),
        )
        .unwrap();
        let new = read_predictions(d.path()).unwrap();
        assert_eq!(
            (new.names[0].as_str(), new.patients[0].as_str()),
            ("x,1", "P \"9\"")
        );
        assert_eq!((new.labels[0], new.probs[0][3]), (3, 1.0));
        std::fs::write(&p, format!("{HEADER}\nx,3,3,0,0\n")).unwrap();
        let e = read_predictions(d.path()).err().unwrap().to_string();
        assert!(e.contains("predictions.csv:2: malformed"), "{e}");
    }
}
