//! Command-line arguments (clap). Parsing only: each command's file does the work.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// drpipe: declarative, cached pipelines for diabetic-retinopathy grading experiments.
///
/// An experiment file says what to compare (a matrix of models, pretraining, class weights,
/// ...); a pipeline file says which stages exist. drpipe runs only the stages whose inputs
/// changed and writes comparison tables and figures under the outputs folder.
#[derive(Debug, Parser)]
#[command(name = "drpipe", version, max_term_width = 100)]
pub struct Cli {
    /// Root of caches and reports.
    #[arg(
        long,
        global = true,
        env = "DRPIPE_OUTPUTS",
        default_value = "outputs",
        value_name = "DIR"
    )]
    pub outputs: PathBuf,
    /// Print only errors and the final table.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print cached stages and the reason each stage runs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: every stage whose inputs changed, then the report.
    Run(RunArgs),
    /// Show what `run` would do and why, without running anything.
    Plan(PlanArgs),
    /// Print an experiment's results table (or list experiments).
    Show(ShowArgs),
    /// Delete cache entries that no experiment file or last run references.
    Gc(GcArgs),
    /// Audit a data folder (lab, Kaggle, APTOS, IDRiD or DDR layout): ok, repaired and dropped images.
    Audit(AuditArgs),
    /// Generate drpipe's synthetic fundus data set (Kaggle layout).
    Synth(SynthArgs),
    /// Grade images with a trained model; CSV on stdout.
    Predict(PredictArgs),
    /// Where each stage instance of an experiment stands: cached, queued or running as a
    /// job, failed (with its log), or to run; a training's epoch, last losses and ETA.
    Status(StatusArgs),
    /// Build one stage instance's entry (what a Slurm job runs).
    #[command(hide = true)]
    Job(JobArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    #[arg(long)]
    pub stage: String,
    #[arg(long)]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Experiment file, e.g. experiments/quickstart.toml.
    pub file: PathBuf,
    /// Override a value: `lr=0.01`, `dataset.root=/data/eyepacs`, `matrix.seed=[1,2]`,
    /// `executor.slurm.partition=gpu`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Rebuild this stage even if cached (repeatable). Only that stage is rebuilt: name its
    /// dependents too to rebuild them.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Stage instances to run at once (training uses all cores by itself).
    #[arg(long, short = 'j', default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Where stage instances run: `local` (this process) or `slurm` (one job each; see
    /// [executor.slurm] in the README). Default: the experiment's [executor] kind, else local.
    #[arg(long, value_name = "KIND")]
    pub executor: Option<crate::spec::executor::ExecutorKind>,
    /// With --executor slurm: submit every job and return; `drpipe run` or `drpipe status`
    /// later picks the run up.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Print the plan as JSON: [{stage, cell, key, status, reason}, ...].
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Experiment name (the file's stem); without it, list experiments.
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only print what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Folder of experiment files whose entries are kept.
    #[arg(long, default_value = "experiments", value_name = "DIR")]
    pub experiments: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Data root (layout detected: lab or Kaggle; else say --source).
    pub root: PathBuf,
    /// The folder's layout: lab, kaggle, or a preset (aptos, idrid, ddr). Default: detected.
    #[arg(long)]
    pub source: Option<String>,
    /// Keep the per-image report (audit.csv) and the repaired copies in this folder
    /// (created). Without it they are written to a temporary folder, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Images smaller than this on either side are dropped.
    #[arg(long, default_value_t = 32)]
    pub min_size: u32,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 600)]
    pub images: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A trained cell: outputs/experiments/NAME/cells/CELL (uses its best weights).
    #[arg(long, conflicts_with_all = ["arch", "weights"], required_unless_present = "weights")]
    pub cell: Option<PathBuf>,
    /// Architecture of --weights.
    #[arg(long, value_parser = ["resnet18", "resnet50"], requires = "weights")]
    pub arch: Option<String>,
    /// A .safetensors file with torchvision names and a 5-way fc.
    #[arg(long, requires = "arch")]
    pub weights: Option<PathBuf>,
    /// Side the model sees (test transform: resize, centre crop). Default: the cell's image_size, else 224.
    #[arg(long)]
    pub size: Option<u32>,
    /// Print raw logits instead of probabilities.
    #[arg(long)]
    pub logits: bool,
    /// Images to grade.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}
