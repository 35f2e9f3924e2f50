//! `[executor]`: which executor runs the experiment and, for Slurm, what each stage's jobs
//! ask for. None of it enters a cache key: where an entry was built does not change it.
//!
//! ```toml
//! [executor]
//! kind = "slurm"                 # or `--executor slurm`; default "local"
//! [executor.slurm]
//! partition = "gpu"
//! account = "lab"
//! time = "02:00:00"
//! mem = "16G"
//! cpus = 8
//! extra = ["--qos=normal"]       # flags drpipe manages are refused here
//! max_queued = 100               # jobs in the queue at once
//! retries = 2                    # resubmissions of a failed, timed-out, OOM or lost job
//! oom_mem_factor = 2.0           # an out-of-memory retry asks for twice the memory
//! [executor.slurm.stages.train]
//! gpus = "1"                     # --gres=gpu:1 ("a100:2" -> --gres=gpu:a100:2)
//! time = "1-00:00:00"
//! signal_before = 300            # SIGUSR1 5 min before the limit: checkpoint, resume next job
//! ```

use super::diagnostic::SpecError;
use super::tree::{Node, Table, Value};
use values::{integer, positive, seconds, string, table};

mod values;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            other => Err(format!(
                "unknown executor {other:?}; executors: local, slurm"
            )),
        }
    }
}

/// What one job asks the scheduler for; unset fields fall back to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub mem: Option<String>,
    pub cpus: Option<u32>,
    /// `N` or `TYPE:N`.
    pub gpus: Option<String>,
    /// `--gres=gpu:...` (default) or `--gpus=...`, as the cluster wants.
    pub gpu_flag: Option<String>,
    /// Seconds before the time limit at which the job gets SIGUSR1 (`--signal=B:USR1@N`): a
    /// training checkpoints and stops, and the next job resumes it.
    pub signal_before: Option<u32>,
    pub extra: Vec<String>,
}

impl Resources {
    /// `self` with `over`'s fields where `over` sets them (a stage over the defaults).
    pub fn with(&self, over: &Resources) -> Resources {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Resources {
            partition: pick(&self.partition, &over.partition),
            account: pick(&self.account, &over.account),
            time: pick(&self.time, &over.time),
            mem: pick(&self.mem, &over.mem),
            cpus: over.cpus.or(self.cpus),
            gpus: pick(&self.gpus, &over.gpus),
            gpu_flag: pick(&self.gpu_flag, &over.gpu_flag),
            signal_before: over.signal_before.or(self.signal_before),
            extra: [self.extra.clone(), over.extra.clone()].concat(),
        }
    }

    /// The number of GPUs asked for (0 without a request).
    pub fn gpu_count(&self) -> u32 {
        self.gpus
            .as_deref()
            .and_then(|g| g.rsplit(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    pub defaults: Resources,
    pub stages: BTreeMap<String, Resources>,
    pub max_queued: usize,
    pub retries: u32,
    /// Longest wait between two looks at the queue, seconds (the first looks come sooner).
    pub poll_seconds: f64,
    /// How long a job may be gone from the queue without an exit record before it counts as
    /// lost (shared filesystems show a finished job's files late).
    pub lost_after_seconds: f64,
    /// Let Slurm requeue jobs itself (off: drpipe owns retries).
    pub requeue: bool,
    /// A job retried after running out of memory asks for `mem` times this (1: the same).
    pub oom_mem_factor: f64,
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            defaults: Resources::default(),
            stages: BTreeMap::new(),
            max_queued: 200,
            retries: 1,
            poll_seconds: 30.0,
            lost_after_seconds: 60.0,
            requeue: false,
            oom_mem_factor: 1.0,
        }
    }
}

impl SlurmSpec {
    /// The resources of one stage's jobs.
    pub fn resources(&self, stage: &str) -> Resources {
        match self.stages.get(stage) {
            Some(over) => self.defaults.with(over),
            None => self.defaults.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutorSpec {
    /// `kind`, if the file sets it (`--executor` wins).
    pub kind: Option<ExecutorKind>,
    pub slurm: SlurmSpec,
}

/// Flags drpipe sets on every job itself: a user's copy would break tracking or retries.
pub const MANAGED_FLAGS: &[&str] = &[
    "--job-name",
    "-J",
    "--comment",
    "--dependency",
    "-d",
    "--kill-on-invalid-dep",
    "--output",
    "-o",
    "--error",
    "-e",
    "--parsable",
    "--requeue",
    "--no-requeue",
    "--wrap",
    "--array",
    "-a",
    "--chdir",
    "-D",
    "--gres",
    "--gpus",
    "-G",
    "--exclude",
    "-x",
    "--signal",
];

/// The managed flag `arg` is, if any (`--output=x`, `-o x` and `-ox` all count).
pub fn managed_flag(arg: &str) -> Option<&'static str> {
    let name = arg.split('=').next().unwrap_or(arg);
    MANAGED_FLAGS
        .iter()
        .copied()
        .find(|f| name == *f || (f.len() == 2 && !arg.starts_with("--") && arg.starts_with(f)))
}

pub fn parse(node: Option<&Node>) -> Result<ExecutorSpec, SpecError> {
    let mut spec = ExecutorSpec::default();
    let Some(node) = node else {
        return Ok(spec);
    };
    let t = table(node, "executor")?;
    for (key, origin, value) in &t.entries {
        match key.as_str() {
            "kind" => {
                let s = string(value, "executor.kind")?;
                spec.kind = Some(
                    s.parse()
                        .map_err(|e: String| SpecError::at(&value.origin, e))?,
                );
            }
            "slurm" => spec.slurm = slurm(table(value, "executor.slurm")?)?,
            _ => {
                return Err(
                    SpecError::at(origin, format!("unknown key `executor.{key}`"))
                        .help("executor keys: kind, slurm"),
                )
            }
        }
    }
    Ok(spec)
}

fn slurm(t: &Table) -> Result<SlurmSpec, SpecError> {
    let mut s = SlurmSpec {
        defaults: resources(t, "executor.slurm", true)?,
        ..SlurmSpec::default()
    };
    for (key, _, value) in &t.entries {
        let name = format!("executor.slurm.{key}");
        match key.as_str() {
            "max_queued" => s.max_queued = positive(value, &name)? as usize,
            "retries" => s.retries = integer(value, &name)? as u32,
            "poll_seconds" => s.poll_seconds = seconds(value, &name)?,
            "lost_after_seconds" => s.lost_after_seconds = seconds(value, &name)?,
            "oom_mem_factor" => match value.value {
                Value::Int(n) if n >= 1 => s.oom_mem_factor = n as f64,
                Value::Float(f) if f >= 1.0 => s.oom_mem_factor = f,
                _ => {
                    return Err(SpecError::at(
                        &value.origin,
                        format!("{name} must be a number >= 1"),
                    )
                    .help("e.g. oom_mem_factor = 1.5"))
                }
            },
            "requeue" => match value.value {
                Value::Bool(b) => s.requeue = b,
                _ => {
                    return Err(SpecError::at(
                        &value.origin,
                        format!("{name} must be true or false"),
                    ))
                }
            },
            "stages" => {
                for (stage, _, r) in &table(value, &name)?.entries {
                    let n = format!("executor.slurm.stages.{stage}");
                    s.stages
                        .insert(stage.clone(), resources(table(r, &n)?, &n, false)?);
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

const RESOURCE_KEYS: &[&str] = &[
    "partition",
    "account",
    "time",
    "mem",
    "cpus",
    "gpus",
    "gpu_flag",
    "extra",
    "signal_before",
];
const SLURM_KEYS: &[&str] = &[
    "max_queued",
    "retries",
    "poll_seconds",
    "lost_after_seconds",
    "oom_mem_factor",
    "requeue",
    "stages",
];

fn resources(t: &Table, prefix: &str, top: bool) -> Result<Resources, SpecError> {
    let mut r = Resources::default();
    for (key, origin, value) in &t.entries {
        let name = format!("{prefix}.{key}");
        let text = || string(value, &name).map(Some);
        match key.as_str() {
            "partition" => r.partition = text()?,
            "account" => r.account = text()?,
            "time" => r.time = text()?,
            "mem" => r.mem = text()?,
            "cpus" => r.cpus = Some(positive(value, &name)? as u32),
            "signal_before" => {
                // Slurm takes at most 65535 s, and delivers the signal within about 60 s of
                // the time asked.
                let n = positive(value, &name)?;
                if n > 65535 {
                    return Err(SpecError::at(
                        &value.origin,
                        format!("{name} is at most 65535 seconds (sbatch --signal's limit)"),
                    ));
                }
                r.signal_before = Some(n as u32);
            }
            "gpus" => {
                r.gpus = Some(match &value.value {
                    Value::Int(n) if *n >= 0 => n.to_string(),
                    _ => string(value, &name)?,
                })
            }
            "gpu_flag" => {
                let f = string(value, &name)?;
                if f != "gres" && f != "gpus" {
                    return Err(SpecError::at(
                        &value.origin,
                        format!("{name} is \"gres\" or \"gpus\""),
                    ));
                }
                r.gpu_flag = Some(f);
            }
            "extra" => {
                let Value::Array(items) = &value.value else {
                    return Err(SpecError::at(
                        &value.origin,
                        format!("{name} is a list of sbatch flags"),
                    )
                    .help("e.g. extra = [\"--qos=high\", \"--constraint=v100\"]"));
                };
                for item in items {
                    let flag = string(item, &name)?;
                    if let Some(m) = managed_flag(&flag) {
                        return Err(SpecError::at(
                            &item.origin,
                            format!("{name}: `{flag}` sets {m}, which drpipe manages itself"),
                        )
                        .help(match m {
                            "--gres" | "--gpus" | "-G" => {
                                "ask for GPUs with gpus = \"1\" (and gpu_flag)"
                            }
                            "--requeue" | "--no-requeue" => {
                                "retries are drpipe's: set retries, or requeue = true"
                            }
                            "--signal" => {
                                "set signal_before = SECONDS: the training checkpoints on it"
                            }
                            _ => "drpipe sets it on every job to track it; leave it out",
                        }));
                    }
                    r.extra.push(flag);
                }
            }
            k if top && SLURM_KEYS.contains(&k) => {}
            _ => {
                let mut valid = RESOURCE_KEYS.to_vec();
                if top {
                    valid.extend_from_slice(SLURM_KEYS);
                }
                return Err(SpecError::at(origin, format!("unknown key `{name}`"))
                    .help(format!("valid keys: {}", valid.join(", "))));
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
