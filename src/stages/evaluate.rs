//! `evaluate`: the best weights on the test split (test transform, optional flip TTA):
//! `predictions.csv` and `metrics.json`.

use super::train::CachedSplit;
use super::{Stage, StageCtx};
use crate::model::{self, Arch};
use anyhow::Result;
use std::io::Write;

pub struct EvaluateStage;

pub const METRICS: &str = "metrics.json";

impl Stage for EvaluateStage {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let model_name: String = ctx.param("model")?;
        let arch: Arch = model_name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let image_size: u32 = ctx.param("image_size")?;
        let tta: bool = ctx.param("tta")?;
        let device = model::select_device(&ctx.param::<String>("device")?)?;
        let checkpoint: String = ctx.param("checkpoint")?;
        let weights = ctx
            .upstream_dir("train")?
            .join(format!("{checkpoint}.safetensors"));
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
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(ctx.out.join("predictions.csv"))?);
        writeln!(f, "image,label,pred,p0,p1,p2,p3,p4")?;
        for ((name, label), p) in test.names.iter().zip(&labels).zip(&probs) {
            let pred = crate::metrics::argmax(p);
            writeln!(
                f,
                "{name},{label},{pred},{:.6},{:.6},{:.6},{:.6},{:.6}",
                p[0], p[1], p[2], p[3], p[4]
            )?;
        }
        f.flush()?;
        let m = crate::metrics::compute(&labels, &probs);
        std::fs::write(ctx.out.join(METRICS), serde_json::to_vec_pretty(&m)?)?;
        Ok(format!(
            "accuracy {:.2}%, balanced accuracy {:.2}%, QWK {:.3} on {} test images",
            100.0 * m.accuracy,
            100.0 * m.balanced_accuracy,
            m.qwk,
            m.n
        ))
    }
}
