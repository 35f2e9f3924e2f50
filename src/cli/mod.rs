//! One file per command. `main.rs` parses the arguments ([`args`]) and calls [`dispatch`].

pub mod args;
pub mod audit;
pub mod gc;
pub mod job;
pub mod plan;
pub mod predict;
pub mod run;
pub mod show;
pub mod status;
pub mod synth;

use crate::cache::{FileHasher, Store};
use crate::reporter::Verbosity;
use crate::spec::{Experiment, SpecError};
use crate::stages::Registry;
use std::path::{Path, PathBuf};

/// Exit statuses: 0 success, 1 a stage (or predicted image) failed, 2 bad input or usage.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// A command's error: what to print and which exit status.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> CliError {
        CliError {
            message: format!("error: {e}"),
            code: EXIT_USAGE,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError {
            message: format!("error: {e:#}"),
            code: EXIT_FAILED,
        }
    }
}

pub type CliResult = Result<(), CliError>;

pub fn dispatch(cli: args::Cli) -> i32 {
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let env = Env {
        // Absolute, so that paths recorded inside cache entries stay valid from any directory.
        outputs: crate::spec::dataset::absolute_path(&cli.outputs),
        verbosity,
    };
    let result = match cli.command {
        args::Command::Run(a) => run::run(&env, a),
        args::Command::Plan(a) => plan::run(&env, a),
        args::Command::Show(a) => show::run(&env, a),
        args::Command::Gc(a) => gc::run(&env, a),
        args::Command::Audit(a) => audit::run(&env, a),
        args::Command::Synth(a) => synth::run(&env, a),
        args::Command::Predict(a) => predict::run(&env, a),
        args::Command::Status(a) => status::run(&env, a),
        args::Command::Job(a) => job::run(&env, a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", e.message);
            e.code
        }
    }
}

/// What every command shares: where outputs go and how chatty to be.
pub struct Env {
    pub outputs: PathBuf,
    pub verbosity: Verbosity,
}

impl Env {
    pub fn store(&self) -> Result<Store, CliError> {
        Ok(Store::open(&self.outputs)?)
    }

    pub fn hasher(&self, store: &Store) -> FileHasher {
        FileHasher::load(&store.root().join("file-hashes.tsv"))
    }

    pub fn say(&self, text: impl AsRef<str>) {
        if self.verbosity > Verbosity::Quiet {
            eprintln!("{}", text.as_ref());
        }
    }
}

pub fn load_experiment(
    path: &Path,
    sets: &[String],
    registry: &Registry,
) -> Result<Experiment, CliError> {
    Ok(crate::spec::load(path, sets, &registry.names())?)
}

/// A progress bar on stderr for one-off commands (hidden with -q).
pub fn progress_bar(env: &Env) -> crate::Progress {
    if env.verbosity == Verbosity::Quiet {
        return crate::Progress::hidden();
    }
    let bar: std::sync::Arc<std::sync::Mutex<Option<indicatif::ProgressBar>>> =
        std::sync::Arc::new(std::sync::Mutex::new(None));
    crate::Progress::new(move |u| {
        let mut b = bar.lock().expect("bar");
        match u {
            crate::progress::ProgressUpdate::Start { label, total } => {
                let pb = indicatif::ProgressBar::new(total);
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix} {wide_bar} {pos}/{len} {per_sec} eta {eta}",
                    )
                    .expect("template"),
                );
                pb.set_prefix(label);
                *b = Some(pb);
            }
            crate::progress::ProgressUpdate::Inc(n) => b.iter().for_each(|pb| pb.inc(n)),
            crate::progress::ProgressUpdate::Message(m) => {
                b.iter().for_each(|pb| pb.set_message(m.clone()))
            }
            crate::progress::ProgressUpdate::Finish => {
                if let Some(pb) = b.take() {
                    pb.finish_and_clear()
                }
            }
        }
    })
}
