//! `evaluate`: the selected weights on the test split (test transform, optional flip TTA):
//! `predictions.csv`, and `metrics.json` with a patient-level bootstrap 95% interval for every
//! headline metric. The only stage that reads the test split (unless a cell asks for
//! `checkpoint = "best_test"`, the study's selection on test).

use super::train::CachedSplit;
use super::{Stage, StageCtx};
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

/// `predictions.csv` read back: image names, labels and probabilities, in test order.
pub struct Predictions {
    pub names: Vec<String>,
    pub labels: Vec<u8>,
    pub probs: Vec<[f32; 5]>,
}

pub fn read_predictions(dir: &Path) -> Result<Predictions> {
    let path = dir.join(PREDICTIONS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Predictions {
        names: Vec::new(),
        labels: Vec::new(),
        probs: Vec::new(),
    };
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || format!("{}:{}: malformed prediction row", path.display(), i + 1);
        let f: Vec<&str> = line.rsplitn(8, ',').collect();
        anyhow::ensure!(f.len() == 8, bad());
        // rsplitn: the last fields first; the name (which may hold commas) is last.
        let mut probs = [0f32; 5];
        for (k, p) in probs.iter_mut().enumerate() {
            *p = f[4 - k].parse().with_context(bad)?;
        }
        out.labels.push(f[6].parse().with_context(bad)?);
        out.names.push(f[7].to_string());
        out.probs.push(probs);
    }
    Ok(out)
}

impl Stage for EvaluateStage {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    /// 2: metrics.json gains bootstrap intervals and `selected_on`.
    fn version(&self) -> u32 {
        2
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
        writeln!(f, "image,label,pred,p0,p1,p2,p3,p4")?;
        for ((name, label), p) in test.names.iter().zip(&labels).zip(&probs) {
            let pred = crate::metrics::argmax(p);
            writeln!(
                f,
                "{name},{label},{pred},{},{},{},{},{}",
                p[0], p[1], p[2], p[3], p[4]
            )?;
        }
        // Probabilities at full f32 precision (shortest round trip): the report resamples
        // them, and rounding would tie scores that the AUC here tells apart.
        f.flush()?;
        let m = crate::metrics::compute(&labels, &probs);
        let ci = bootstrap::intervals(
            &labels,
            &[&probs],
            &test.names,
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
