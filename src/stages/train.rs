//! `train`: a ResNet trained on the image cache with the study's recipe. Resumable: its
//! checkpoints live in the entry's scratch directory until the entry is committed.

use super::images::read_index;
use super::stats::{resolve_weights, Stats};
use super::{Stage, StageCtx};
use crate::data::augment::TrainAugment;
use crate::data::image_cache::ImageCache;
use crate::data::{loader, Batch};
use crate::model::{Arch, Pretrained};
use crate::train::{BatchSource, Checkpoint, Schedule, SelectionMetric, TrainConfig};
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;

pub struct TrainStage;

/// One split of the image cache with its labels.
pub struct CachedSplit {
    pub cache: Arc<ImageCache>,
    pub labels: Arc<Vec<u8>>,
    pub names: Vec<String>,
    /// Each image's patient, for intervals that resample patients.
    pub patients: Vec<String>,
    /// Whether the patients are the data set's own ids (`dataset.patient_column`).
    pub named_patients: bool,
}

impl CachedSplit {
    pub fn open(dir: &Path) -> Result<CachedSplit> {
        let cache = ImageCache::open(dir)?;
        let super::images::Index {
            rows: index,
            named_patients,
        } = read_index(&dir.join("index.csv"))?;
        anyhow::ensure!(
            index.len() == cache.len(),
            "{}: index and image cache disagree",
            dir.display()
        );
        Ok(CachedSplit {
            named_patients,
            cache: Arc::new(cache),
            labels: Arc::new(index.iter().map(|r| r.label).collect()),
            names: index.iter().map(|r| r.name.clone()).collect(),
            patients: index.into_iter().map(|r| r.patient).collect(),
        })
    }

    /// The test transform's batches, in order.
    pub fn test_batches(
        &self,
        batch_size: usize,
        image_size: u32,
    ) -> impl Iterator<Item = Batch> + Send {
        let indices = (0..self.cache.len()).collect();
        loader::batches(
            self.cache.clone(),
            self.labels.clone(),
            indices,
            batch_size,
            loader::Mode::Test {
                out_size: image_size,
            },
            2,
        )
    }
}

struct Source {
    train: CachedSplit,
    val: Option<CachedSplit>,
    test: CachedSplit,
    batch_size: usize,
    image_size: u32,
    augment: bool,
    seed: u64,
}

impl BatchSource for Source {
    fn train_batches(&self, epoch: usize) -> Box<dyn Iterator<Item = Batch> + Send + '_> {
        let mut order = loader::epoch_order(self.train.cache.len(), self.seed, epoch as u64);
        // A last batch of one image cannot be batch-normalised in train mode (PyTorch refuses
        // it too): leave that image out of this epoch; the shuffle picks another one next time.
        if order.len() > 1 && order.len() % self.batch_size == 1 {
            order.pop();
        }
        let mode = if self.augment {
            loader::Mode::Train {
                aug: TrainAugment::study(self.image_size),
                seed: self.seed,
                epoch: epoch as u64,
            }
        } else {
            loader::Mode::Test {
                out_size: self.image_size,
            }
        };
        Box::new(loader::batches(
            self.train.cache.clone(),
            self.train.labels.clone(),
            order,
            self.batch_size,
            mode,
            2,
        ))
    }

    fn val_batches(&self) -> Option<Box<dyn Iterator<Item = Batch> + Send + '_>> {
        self.val.as_ref().map(|v| {
            Box::new(v.test_batches(self.batch_size, self.image_size))
                as Box<dyn Iterator<Item = Batch> + Send + '_>
        })
    }

    fn test_batches(&self) -> Box<dyn Iterator<Item = Batch> + Send + '_> {
        Box::new(self.test.test_batches(self.batch_size, self.image_size))
    }

    fn train_len(&self) -> usize {
        let n = self.train.cache.len();
        n - usize::from(n > 1 && n % self.batch_size == 1)
    }

    fn test_len(&self) -> usize {
        self.test.cache.len()
    }
}

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T> {
    s.parse().map_err(anyhow::Error::msg)
}

pub fn pretrained_of(value: &serde_json::Value) -> Pretrained {
    match value {
        serde_json::Value::Bool(true) => Pretrained::Hub,
        serde_json::Value::String(p) => Pretrained::File(p.into()),
        _ => Pretrained::None,
    }
}

impl Stage for TrainStage {
    fn name(&self) -> &'static str {
        "train"
    }

    /// 2: Winograd F(2x2,3x3) and fused add+ReLU kernels changed the numerics, and the loop
    /// selects on the validation split (history gains its columns). 3: im2col instead of
    /// Winograd on maps with few tiles (`winograd::pays`) changes the rounding. 4: the CPU
    /// trains through the layer-level engine (`model::engine`), whose gradient sums round
    /// in another order than candle's autograd. 5: im2col's groups bounded by a column
    /// budget (`ConvGeom::group`, row blocks) sum the weight gradients over other groups.
    /// 6: `gemm`'s AVX-512 kernels (its `x86-v4` feature) sum in other blocks on CPUs
    /// that have AVX-512. 7: GEMMs on two threads split by us, not by `gemm`
    /// (`conv_kernels::matmul`), im2col instead of Winograd on 8x8 maps of 16 images where
    /// the FMAs are 512 bits wide (`winograd::pays`), and groups of images evened out
    /// (`Schedule::new`), which sums weight gradients over other groups. 8: Winograd's
    /// backward in smaller groups of tiles (`winograd::gradients`), the same. 9: Winograd
    /// again on 8x8 (and 7x7) maps of 16 images where the FMAs are 512 bits wide, as on other
    /// CPUs (`winograd::pays`). 10: the forward of 3x3 convolutions on large maps takes
    /// Winograd F(4x4) (`winograd::f4::pays`), whose rounding differs from F(2x2)'s, and batch
    /// norm's variance comes from `Σx` and `Σx²` in one pass (`bn_kernels::stats`). 11: their
    /// gradients take F(4x4) too (`winograd::f4::backward_into`).
    fn version(&self) -> u32 {
        11
    }

    fn resumable(&self) -> bool {
        true
    }

    /// A pretrained weights file given by path: its content is part of the key, so replacing
    /// the file retrains. (Hub weights are named by their repository, which does not change.)
    fn inputs(
        &self,
        params: &std::collections::BTreeMap<String, serde_json::Value>,
        _dataset: &crate::spec::DatasetSpec,
    ) -> Result<Vec<std::path::PathBuf>> {
        Ok(match params.get("pretrained").map(pretrained_of) {
            Some(Pretrained::File(p)) => vec![p],
            _ => Vec::new(),
        })
    }

    fn run(&self, ctx: &StageCtx) -> Result<String> {
        let model: String = ctx.param("model")?;
        let arch: Arch = model.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let image_size: u32 = ctx.param("image_size")?;
        let images = ctx.upstream_dir("images")?;
        let stats = Stats::read(ctx.upstream_dir("stats")?)?;
        let class_weights = resolve_weights(
            &ctx.param("class_weights")?,
            ctx.param("class_weight_beta")?,
            &stats,
        )?;
        let schedule = match ctx.param::<String>("lr_schedule")?.as_str() {
            "cosine" => Schedule::Cosine,
            "step" => Schedule::Step {
                step_epochs: ctx.param("step_epochs")?,
                gamma: ctx.param("gamma")?,
            },
            _ => Schedule::Constant,
        };
        let cfg = TrainConfig {
            arch,
            pretrained: pretrained_of(&ctx.param("pretrained")?),
            epochs: ctx.param("epochs")?,
            freeze_epochs: ctx.param("freeze_epochs")?,
            batch_size: ctx.param("batch_size")?,
            optimizer: parse(&ctx.param::<String>("optimizer")?)?,
            lr: ctx.param("lr")?,
            momentum: ctx.param("momentum")?,
            weight_decay: ctx.param("weight_decay")?,
            nesterov: ctx.param("nesterov")?,
            schedule,
            warmup_epochs: ctx.param("warmup_epochs")?,
            label_smoothing: ctx.param("label_smoothing")?,
            class_weights,
            seed: ctx.param("seed")?,
            device: ctx.param("device")?,
            checkpoint: parse(&ctx.param::<String>("checkpoint")?)?,
            selection_metric: parse(&ctx.param::<String>("selection_metric")?)?,
            early_stopping_patience: ctx.param("early_stopping_patience")?,
        };
        let val_dir = images.join("val");
        let source = Source {
            train: CachedSplit::open(&images.join("train"))?,
            val: if val_dir.exists() {
                Some(CachedSplit::open(&val_dir)?)
            } else {
                None
            },
            test: CachedSplit::open(&images.join("test"))?,
            batch_size: cfg.batch_size,
            image_size,
            augment: ctx.param("augment")?,
            seed: cfg.seed,
        };
        let work = ctx.out.join("checkpoint");
        std::fs::create_dir_all(&work)?;
        let outcome = crate::train::train(&cfg, &source, &work, ctx.out, &ctx.progress)?;
        // The checkpoint only serves resumption; the committed entry keeps best/last weights.
        std::fs::remove_dir_all(&work)?;
        let resumed = outcome
            .resumed_from
            .map(|e| format!(", resumed after epoch {e}"))
            .unwrap_or_default();
        let selected = match cfg.checkpoint {
            Checkpoint::Best => format!(
                "best {} {:.3} at epoch {}",
                ctx.param::<String>("selection_metric")?,
                match cfg.selection_metric {
                    SelectionMetric::Loss => -outcome.best_score,
                    _ => outcome.best_score,
                },
                outcome.best_epoch
            ),
            Checkpoint::BestTest => format!(
                "best test accuracy {:.2}% at epoch {} (selected on test)",
                100.0 * outcome.best_score,
                outcome.best_epoch
            ),
            Checkpoint::Last => "last epoch kept".into(),
        };
        let stopped = if outcome.stopped_early {
            ", stopped early"
        } else {
            ""
        };
        Ok(format!(
            "{} epochs{stopped}, {selected}{resumed}",
            outcome.history.len()
        ))
    }
}
