//! Slurm's command-line tools as drpipe uses them: `sbatch --parsable` to submit, one
//! `squeue` for all ids per look, `sacct` for the jobs `squeue` has forgotten, `scancel`. Argument building and output parsing are plain
//! functions, tested without a cluster.

use crate::spec::executor::Resources;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One job to submit.
pub struct Submission {
    pub name: String,
    pub comment: String,
    pub log: PathBuf,
    pub script: PathBuf,
    /// Job ids of parents still queued or running.
    pub after: Vec<String>,
    pub resources: Resources,
    pub requeue: bool,
    /// Nodes to avoid (a retry after NODE_FAIL).
    pub exclude: Vec<String>,
}

/// `sbatch`'s arguments, without the program name.
pub fn sbatch_args(s: &Submission) -> Vec<String> {
    let r = &s.resources;
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={}", s.name),
        format!("--comment={}", s.comment),
        format!("--output={}", s.log.display()),
        if s.requeue {
            "--requeue".into()
        } else {
            "--no-requeue".into()
        },
    ];
    if !s.after.is_empty() {
        a.push(format!("--dependency=afterok:{}", s.after.join(":")));
        a.push("--kill-on-invalid-dep=yes".into());
    }
    let mut opt = |flag: &str, v: &Option<String>| {
        if let Some(v) = v {
            a.push(format!("--{flag}={v}"));
        }
    };
    opt("partition", &r.partition);
    opt("account", &r.account);
    opt("time", &r.time);
    opt("mem", &r.mem);
    opt("cpus-per-task", &r.cpus.map(|c| c.to_string()));
    if let Some(g) = r.gpus.as_deref().filter(|_| r.gpu_count() > 0) {
        a.push(match r.gpu_flag.as_deref() {
            Some("gpus") => format!("--gpus={g}"),
            _ => format!("--gres=gpu:{g}"),
        });
    }
    if !s.exclude.is_empty() {
        a.push(format!("--exclude={}", s.exclude.join(",")));
    }
    if let Some(n) = r.signal_before {
        // B: to the batch shell, which `exec`s drpipe: a job of no steps has no one else.
        a.push(format!("--signal=B:USR1@{n}"));
    }
    a.extend(r.extra.iter().cloned());
    a.push(s.script.display().to_string());
    a
}

/// `mem` (`16G`, `500M`, `2T`, or megabytes without a unit) times `factor`, in megabytes
/// (what `--mem` takes everywhere); None when `mem` is not such a size.
pub fn scale_mem(mem: &str, factor: f64) -> Option<String> {
    let m = mem.trim();
    let (num, unit) = match m.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&m[..i], m[i..].to_ascii_uppercase()),
        None => (m, "M".to_string()),
    };
    let mb = num.parse::<f64>().ok()?
        * match unit.trim_end_matches('B') {
            "K" => 1.0 / 1024.0,
            "M" => 1.0,
            "G" => 1024.0,
            "T" => 1024.0 * 1024.0,
            _ => return None,
        };
    Some(format!("{}M", (mb * factor).ceil() as u64))
}

/// The id in `sbatch --parsable`'s answer (`ID` or `ID;CLUSTER`).
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

pub fn submit(s: &Submission) -> Result<String> {
    let args = sbatch_args(s);
    let out = Command::new("sbatch")
        .args(&args)
        .output()
        .map_err(|e| missing_tool("sbatch", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sbatch refused {}: {}(sbatch {})",
            s.name,
            String::from_utf8_lossy(&out.stderr),
            args.join(" ")
        );
    }
    parse_job_id(&stdout).ok_or_else(|| anyhow!("sbatch printed no job id: {stdout:?}"))
}

/// A job as `squeue` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub state: String,
    pub node: String,
    pub reason: String,
}

impl QueueEntry {
    /// Still queued or running: its outcome is to come.
    pub fn alive(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "PREEMPTED"
        )
    }
}

const FORMAT: &str = "%i|%T|%N|%r";

/// `squeue` lines `ID|STATE|NODE|REASON` by id.
pub fn parse_queue(stdout: &str) -> HashMap<String, QueueEntry> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().splitn(4, '|').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    QueueEntry {
                        state: f[1].to_string(),
                        node: f[2].to_string(),
                        reason: f[3].to_string(),
                    },
                )
            })
        })
        .collect()
}

/// One `squeue` for all `ids` (finished jobs too, while Slurm keeps them). Ids it no longer
/// knows are simply absent.
pub fn queue(ids: &[String]) -> Result<HashMap<String, QueueEntry>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", FORMAT, "-j", &ids.join(",")])
        .output()
        .map_err(|e| missing_tool("squeue", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Every id purged: Slurm calls that an error.
        if stderr.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        bail!("squeue failed: {stderr}");
    }
    Ok(parse_queue(&String::from_utf8_lossy(&out.stdout)))
}

/// What `sacct` says of jobs `squeue` no longer shows (Slurm forgets finished jobs after
/// `MinJobAge`, 300 s by default): `Ok(None)` where the cluster keeps no accounting, so the
/// driver stops asking; `Err` for a database that did not answer this time.
pub fn accounting(ids: &[String]) -> Result<Option<HashMap<String, QueueEntry>>> {
    if ids.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    // With -j and no start time sacct searches from the epoch; -X: allocations, not steps.
    let out = match Command::new("sacct")
        .args([
            "-n",
            "-P",
            "-X",
            "-o",
            "JobIDRaw,State,NodeList,Reason",
            "-j",
            &ids.join(","),
        ])
        .output()
    {
        Ok(out) => out,
        Err(_) => return Ok(None),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("accounting storage is disabled") {
        return Ok(None);
    }
    if !out.status.success() {
        bail!("sacct failed: {}", stderr.trim());
    }
    Ok(Some(parse_accounting(&String::from_utf8_lossy(
        &out.stdout,
    ))))
}

/// `sacct -P` lines `ID|STATE|NODES|REASON`; a state such as `CANCELLED by 1000` is cut to
/// its first word, `squeue`'s spelling.
pub fn parse_accounting(stdout: &str) -> HashMap<String, QueueEntry> {
    let mut jobs = parse_queue(stdout);
    for e in jobs.values_mut() {
        if let Some(first) = e.state.split_whitespace().next() {
            e.state = first.to_string();
        }
        if e.node == "None assigned" {
            e.node.clear();
        }
    }
    jobs
}

/// Live jobs whose comment is `comment` (a driver that died between `sbatch` and the
/// journal's `submitted` line).
pub fn find_by_comment(comment: &str) -> Result<Vec<String>> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i|%k"])
        .output()
        .map_err(|e| missing_tool("squeue", e))?;
    if !out.status.success() {
        bail!("squeue failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(_, c)| c.trim() == comment)
        .map(|(id, _)| id.trim().to_string())
        .collect())
}

pub fn cancel(ids: &[String]) {
    if !ids.is_empty() {
        let _ = Command::new("scancel").args(ids).output();
    }
}

fn missing_tool(tool: &str, e: std::io::Error) -> anyhow::Error {
    anyhow!(
        "cannot run `{tool}` ({e}): --executor slurm needs Slurm's client tools on PATH, on a \
         machine that can submit jobs (a login node); run with --executor local otherwise"
    )
}

/// The job's shell script: the hidden `drpipe job` command for one stage instance.
pub fn write_script(path: &Path, comment: &str, argv: &[String], gpus: u32) -> Result<()> {
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    let text = format!(
        "#!/bin/bash\n# {comment}: written by drpipe; runs one stage instance from the plan \
         and the cache.\nexport DRPIPE_JOB_GPUS={gpus}\nexec {}\n",
        quoted.join(" ")
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission {
            name: "train.cw_none.quickstart".into(),
            comment: "drpipe:abc".into(),
            log: "/o/jobs/x/slurm-%j.log".into(),
            script: "/o/jobs/x/job.sh".into(),
            after: vec!["11".into(), "12".into()],
            resources: Resources {
                partition: Some("gpu".into()),
                cpus: Some(4),
                gpus: Some("a100:2".into()),
                signal_before: Some(300),
                extra: vec!["--qos=high".into()],
                ..Resources::default()
            },
            requeue: false,
            exclude: vec!["n3".into()],
        }
    }

    #[test]
    fn sbatch_gets_dependencies_resources_and_the_managed_flags() {
        let a = sbatch_args(&submission());
        for want in [
            "--parsable",
            "--job-name=train.cw_none.quickstart",
            "--comment=drpipe:abc",
            "--no-requeue",
            "--dependency=afterok:11:12",
            "--kill-on-invalid-dep=yes",
            "--partition=gpu",
            "--cpus-per-task=4",
            "--gres=gpu:a100:2",
            "--exclude=n3",
            "--signal=B:USR1@300",
            "--qos=high",
        ] {
            assert!(a.contains(&want.to_string()), "{want} missing from {a:?}");
        }
        assert_eq!(a.last().unwrap(), "/o/jobs/x/job.sh");
        let mut s = submission();
        s.after.clear();
        s.resources.gpu_flag = Some("gpus".into());
        let a = sbatch_args(&s);
        assert!(!a.iter().any(|x| x.starts_with("--dependency")), "{a:?}");
        assert!(a.contains(&"--gpus=a100:2".to_string()));
    }

    #[test]
    fn memory_scales_in_megabytes() {
        assert_eq!(scale_mem("16G", 1.5).as_deref(), Some("24576M"));
        assert_eq!(scale_mem("500", 2.0).as_deref(), Some("1000M"));
        assert_eq!(scale_mem("1t", 1.0).as_deref(), Some("1048576M"));
        assert_eq!(scale_mem("lots", 2.0), None);
    }

    #[test]
    fn squeue_and_sbatch_answers_are_parsed() {
        assert_eq!(parse_job_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_job_id("77;cluster2").as_deref(), Some("77"));
        assert_eq!(parse_job_id("sbatch: error"), None);
        let q = parse_queue("5|RUNNING|node1|None\n6|PENDING||Dependency\njunk\n");
        assert_eq!(q.len(), 2);
        assert!(q["5"].alive() && q["6"].alive());
        assert_eq!(q["5"].node, "node1");
        let gone = parse_queue("7|CANCELLED|n|None\n8|OUT_OF_MEMORY|n|None\n");
        assert!(!gone["7"].alive() && !gone["8"].alive());
    }

    #[test]
    fn sacct_answers_are_read_as_squeue_would_show_them() {
        let a = parse_accounting(
            "41|CANCELLED by 1000|None assigned|None\n42|NODE_FAIL|n7|None\n43|COMPLETED|n1|None\n",
        );
        assert_eq!(a.len(), 3);
        assert_eq!(a["41"].state, "CANCELLED");
        assert_eq!(a["41"].node, "");
        assert_eq!(
            (a["42"].state.as_str(), a["42"].node.as_str()),
            ("NODE_FAIL", "n7")
        );
        assert!(!a["43"].alive());
    }

    #[test]
    fn the_script_quotes_what_the_shell_would_split() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("job.sh");
        let argv = ["/bin/drpipe", "job", "my exp.toml", "--set", "lr='x'"].map(String::from);
        write_script(&p, "drpipe:k", &argv, 1).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("export DRPIPE_JOB_GPUS=1"));
        assert!(
            text.contains(r"exec /bin/drpipe job 'my exp.toml' --set 'lr='\''x'\'''"),
            "{text}"
        );
    }
}
