//! `drpipe status FILE`: where each stage instance stands, whichever executor runs it (or
//! ran it: this reads the cache, the run journal and the queue, and runs nothing).

use super::{args::StatusArgs, plan::Planned, CliResult, Env};
use crate::exec::status::{eta_seconds, statuses, State};

pub fn run(env: &Env, args: StatusArgs) -> CliResult {
    let planned = Planned::load(env, &args.experiment)?;
    let (exp, p) = (&planned.exp, &planned.plan);
    let run = planned.run();
    let all = statuses(&run);
    let label = |id: usize| {
        let i = &p.instances[id];
        match i.cell_label() {
            Some(c) => format!("{} [{c}]", i.stage),
            None => i.stage.clone(),
        }
    };
    let width = all.iter().map(|s| label(s.id).len()).max().unwrap_or(0);
    let cached = all.iter().filter(|s| s.state == State::Cached).count();
    println!("{}: {cached} of {} cached", exp.name, all.len());
    for s in &all {
        let what = match &s.state {
            State::Cached => "cached".to_string(),
            State::Queued { job } => format!("queued   job {job}"),
            State::Running { job, node } => format!("running  job {job} on {node}"),
            State::Failed { job, error, log } => {
                format!(
                    "FAILED   job {job}: {error}\n{:w$}  log: {}",
                    "",
                    log.display(),
                    w = width
                )
            }
            State::Lost { job, log } => format!(
                "lost     job {job} left the queue without an entry or exit record (log: {})",
                log.display()
            ),
            State::Partial => "building (a .partial entry exists)".into(),
            State::ToRun => "to run".into(),
        };
        println!("{:width$}  {what}", label(s.id));
        if let Some(last) = s.history.last() {
            let total = s.epochs.unwrap_or(0);
            let eta = eta_seconds(&s.history, total)
                .map(|e| format!(", ETA {}", hms(e)))
                .unwrap_or_default();
            println!(
                "{:width$}    epoch {}/{total}: train loss {:.3}, val loss {:.3}, val QWK {:.3}{eta}",
                "", last.epoch, last.train_loss, last.val_loss, last.val_qwk
            );
            if let Some(f) = &s.history_file {
                println!("{:width$}    history: {}", "", f.display());
            }
        }
    }
    Ok(())
}

fn hms(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
