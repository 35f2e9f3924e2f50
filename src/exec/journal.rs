//! What a scheduler-driven run leaves on the shared filesystem, beside the cache, so that
//! the filesystem stays the truth and any driver can pick a run up:
//!
//! ```text
//! <outputs>/jobs/<experiment>/
//!   journal.jsonl                 intent -> submitted (job id), one JSON object per line
//!   <stage>-<key>/job.sh          the job's command (rerunnable by hand)
//!   <stage>-<key>/slurm-<id>.log  its output
//!   <stage>-<key>/running.json    written by the job when it starts (host, pid, job id)
//!   <stage>-<key>/exit.json       written by the job when it ends (ok or the error)
//! ```
//!
//! An `intent` line is written before `sbatch` and a `submitted` line after it: a driver
//! killed between the two finds the job by its comment instead of submitting it again.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder of an experiment's job files.
pub fn jobs_dir(outputs: &Path, experiment: &str) -> PathBuf {
    outputs.join("jobs").join(experiment)
}

/// The folder of one stage instance's job files.
pub fn job_dir(outputs: &Path, experiment: &str, stage: &str, key: &str) -> PathBuf {
    jobs_dir(outputs, experiment).join(format!("{stage}-{key}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Record {
    Intent {
        stage: String,
        key: String,
        cell: Option<String>,
    },
    Submitted {
        stage: String,
        key: String,
        job: String,
        attempt: u32,
    },
}

/// The last thing the journal says about one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// `sbatch` may have run, its id unrecorded.
    Intended,
    Submitted {
        job: String,
        attempt: u32,
    },
}

pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal, its folder created (to write to it).
    pub fn open(outputs: &Path, experiment: &str) -> Result<Journal> {
        let dir = jobs_dir(outputs, experiment);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Journal::at(outputs, experiment))
    }

    /// The journal, to read (a run that never used a scheduler has none: no records).
    pub fn at(outputs: &Path, experiment: &str) -> Journal {
        Journal {
            path: jobs_dir(outputs, experiment).join("journal.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one write (whole lines, even with a reader at the same time).
    pub fn append(&self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        // After a torn last line (a driver killed mid-write), start a fresh one.
        if ends_torn(&mut f)? {
            line.insert(0, b'\n');
        }
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }

    /// Every record, in order; a torn last line (a driver killed mid-write) is ignored.
    pub fn records(&self) -> Result<Vec<Record>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context(format!("cannot read {}", self.path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// key -> the last record about it.
    pub fn known(&self) -> Result<BTreeMap<String, Known>> {
        let mut out = BTreeMap::new();
        for r in self.records()? {
            match r {
                Record::Intent { key, .. } => {
                    out.insert(key, Known::Intended);
                }
                Record::Submitted {
                    key, job, attempt, ..
                } => {
                    out.insert(key, Known::Submitted { job, attempt });
                }
            }
        }
        Ok(out)
    }
}

fn ends_torn(f: &mut std::fs::File) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// What a job writes when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub job: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}

/// What a job writes when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exit {
    pub job: String,
    pub ok: bool,
    pub error: String,
    pub host: String,
    pub seconds: f64,
    /// The job stopped itself, as asked, ahead of its time limit (SIGUSR1, `signal_before`)
    /// after checkpointing: the next job resumes it, and the driver counts no retry.
    #[serde(default)]
    pub resumable: bool,
}

/// Writes `value` as `dir/name` through a temporary file and a rename, so that a reader on
/// another node sees the whole record or none.
pub fn write_record<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("cannot write {}", dir.join(name).display()))
}

/// Reads `dir/name`; None when it is absent or not whole yet.
pub fn read_record<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_record_per_key_wins_and_a_torn_line_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path(), "exp").unwrap();
        let intent = |key: &str| Record::Intent {
            stage: "train".into(),
            key: key.into(),
            cell: Some("a".into()),
        };
        j.append(&intent("k1")).unwrap();
        j.append(&Record::Submitted {
            stage: "train".into(),
            key: "k1".into(),
            job: "41".into(),
            attempt: 1,
        })
        .unwrap();
        j.append(&intent("k2")).unwrap();
        // A driver killed in the middle of a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(b"{\"event\":\"submitted\",\"stage\":\"tr")
            .unwrap();
        drop(f);
        // The next record starts on a line of its own.
        j.append(&intent("k3")).unwrap();
        let known = j.known().unwrap();
        assert_eq!(known["k3"], Known::Intended);
        assert_eq!(
            known["k1"],
            Known::Submitted {
                job: "41".into(),
                attempt: 1
            }
        );
        assert_eq!(known["k2"], Known::Intended);
        assert_eq!(known.len(), 3);
    }

    #[test]
    fn records_are_read_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_record::<Exit>(d.path(), "exit.json").is_none());
        std::fs::write(d.path().join("exit.json"), "{\"job\":\"1\",\"ok\":tr").unwrap();
        assert!(read_record::<Exit>(d.path(), "exit.json").is_none());
        let e = Exit {
            job: "7".into(),
            ok: true,
            error: String::new(),
            host: "n1".into(),
            seconds: 1.5,
            resumable: false,
        };
        write_record(d.path(), "exit.json", &e).unwrap();
        let back: Exit = read_record(d.path(), "exit.json").unwrap();
        assert_eq!((back.job.as_str(), back.ok), ("7", true));
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }
}
