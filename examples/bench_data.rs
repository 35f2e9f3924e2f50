//! drpipe's side of `bench/run data`: one timed row per process, printed as one JSON line.
//!
//! `prepare` (untimed, once) audits the synthetic JPEGs, lists the ones that decode as they
//! are (the reference's Pillow cannot open the planted truncated files) and builds the 256 px
//! image cache the `loader` row reads. The rows then time, on that list:
//! - `audit`: the full JPEG audit (hash, EOI check, full decode) with a fresh memo;
//! - `resize`: `image_cache::build` at 256 px (decode + short side to 256 + centre crop);
//! - `loader`: one training epoch of augmented batches from the prebuilt cache.
//!
//! The thread count is rayon's global pool, set with `--threads` (bench/run passes it).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use drpipe::cache::file_hash::hash_file;
use drpipe::data::augment::TrainAugment;
use drpipe::data::image_cache::{self, ImageCache, Preprocess};
use drpipe::data::loader::{self, Mode};
use drpipe::data::{audit, Sample};
use drpipe::Progress;

const CACHE_SIZE: u32 = 256;
const CROP: u32 = 224;
const BATCH: usize = 16;
/// Finished batches waiting ahead of the consumer, as the trainer uses.
const PREFETCH: usize = 2;
const MIN_SIZE: u32 = 32;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Untimed setup: write WORK/files.txt (decodable images) and WORK/cache256.
    Prepare {
        /// Data folder made by `drpipe synth` (Kaggle layout).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        work: PathBuf,
    },
    /// Time one row and print it as a JSON line.
    Row {
        row: Row,
        #[arg(long)]
        work: PathBuf,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Row {
    Audit,
    Resize,
    Loader,
}

impl Row {
    fn name(self) -> &'static str {
        match self {
            Row::Audit => "audit",
            Row::Resize => "decode+resize",
            Row::Loader => "epoch loader",
        }
    }
}

fn samples(paths: &[PathBuf]) -> Vec<Sample> {
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Sample::new(name, 0, p.clone())
        })
        .collect()
}

fn prepare(data: &Path, work: &Path) -> Result<()> {
    let dir = data.join("train");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}; run `drpipe synth` first", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpeg"))
        .collect();
    paths.sort();
    let tmp = tempfile::tempdir()?;
    let report = audit::audit(
        &samples(&paths),
        &[],
        tmp.path(),
        &tmp.path().join("memo"),
        MIN_SIZE,
        &hash_file,
        &Progress::hidden(),
    )?;
    let good: Vec<PathBuf> = report
        .records
        .iter()
        .filter(|r| r.status == audit::AuditStatus::Ok)
        .map(|r| std::path::absolute(&r.path))
        .collect::<std::io::Result<_>>()?;
    if good.is_empty() {
        bail!("no decodable JPEG in {}", dir.display());
    }
    std::fs::create_dir_all(work)?;
    let list: String = good.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(work.join("files.txt"), list)?;
    image_cache::build(
        &good,
        CACHE_SIZE,
        Preprocess::None,
        &work.join("cache256"),
        &Progress::hidden(),
    )?;
    eprintln!(
        "prepared {} decodable images of {} in {}",
        good.len(),
        paths.len(),
        work.display()
    );
    Ok(())
}

/// Runs the row once, writing only under `tmp`, and returns the number of images it handled.
fn run_row(row: Row, work: &Path, tmp: &Path, paths: &[PathBuf]) -> Result<usize> {
    match row {
        Row::Audit => {
            let report = audit::audit(
                &samples(paths),
                &[],
                tmp,
                &tmp.join("memo"),
                MIN_SIZE,
                &hash_file,
                &Progress::hidden(),
            )?;
            if report.decoded != paths.len() {
                bail!("audit decoded {} of {} files", report.decoded, paths.len());
            }
            Ok(report.ok)
        }
        Row::Resize => {
            image_cache::build(
                paths,
                CACHE_SIZE,
                Preprocess::None,
                tmp,
                &Progress::hidden(),
            )?;
            Ok(paths.len())
        }
        Row::Loader => {
            let cache = Arc::new(ImageCache::open(&work.join("cache256"))?);
            let n = cache.len();
            let mode = Mode::Train {
                aug: TrainAugment::study(CROP),
                seed: 1,
                epoch: 0,
            };
            let order = loader::epoch_order(n, 1, 0);
            let mut seen = 0;
            for batch in loader::batches(cache, Arc::new(vec![0; n]), order, BATCH, mode, PREFETCH)
            {
                black_box(&batch.images);
                seen += batch.len();
            }
            Ok(seen)
        }
    }
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Prepare { data, work } => prepare(&data, &work),
        Command::Row { row, work, threads } => {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
            let list = work.join("files.txt");
            let paths: Vec<PathBuf> = std::fs::read_to_string(&list)
                .with_context(|| format!("cannot read {}; run `prepare` first", list.display()))?
                .lines()
                .map(PathBuf::from)
                .collect();
            // A fresh folder per process: nothing memoised from an earlier round. It is
            // created and deleted outside the timed span.
            let tmp = tempfile::tempdir()?;
            let started = Instant::now();
            let n = run_row(row, &work, tmp.path(), &paths)?;
            let secs = started.elapsed().as_secs_f64();
            drop(tmp);
            println!(
                "{}",
                serde_json::json!({
                    "row": row.name(),
                    "images_per_s": n as f64 / secs,
                    "images": n,
                    "seconds": secs,
                    "threads": threads,
                })
            );
            Ok(())
        }
    }
}
