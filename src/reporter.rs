//! The terminal reporter: turns executor events into one line per stage instance and
//! progress bars for long work. It only listens.

use crate::exec::Event;
use crate::plan::Plan;
use crate::progress::ProgressUpdate;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct TerminalReporter {
    labels: Vec<String>,
    verbosity: Verbosity,
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    tty: bool,
}

impl TerminalReporter {
    pub fn new(plan: &Plan, verbosity: Verbosity) -> TerminalReporter {
        let labels = plan
            .instances
            .iter()
            .map(|i| match i.cell_label() {
                Some(c) => format!("{} [{c}]", i.stage),
                None if i.cells.len() > 1 && i.scope != crate::spec::Scope::Experiment => {
                    format!("{} [{} cells]", i.stage, i.cells.len())
                }
                None => i.stage.clone(),
            })
            .collect();
        let target = if verbosity == Verbosity::Quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        TerminalReporter {
            labels,
            verbosity,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn line(&self, text: String) {
        if self.verbosity > Verbosity::Quiet {
            self.print(text);
        }
    }

    /// Above the bars on a terminal; plainly otherwise (indicatif draws nothing, and prints
    /// nothing, when stderr is a pipe or a CI log).
    fn print(&self, text: String) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    fn on_progress(&self, id: usize, update: ProgressUpdate) {
        let mut bars = self.bars.lock().expect("bars");
        match update {
            ProgressUpdate::Start { label, total } => {
                let bar = self.multi.add(ProgressBar::new(total));
                let style = ProgressStyle::with_template(
                    "  {prefix:.bold} {wide_bar:.cyan/blue} {pos}/{len} {per_sec} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("{} {label}", self.labels[id]));
                if let Some(old) = bars.insert(id, bar) {
                    old.finish_and_clear();
                }
            }
            ProgressUpdate::Inc(n) => {
                if let Some(b) = bars.get(&id) {
                    b.inc(n)
                }
            }
            ProgressUpdate::Message(m) => {
                if let Some(b) = bars.get(&id) {
                    b.set_message(m)
                }
            }
            ProgressUpdate::Finish => {
                if let Some(b) = bars.remove(&id) {
                    // Without a terminal there are no bars: a line per finished phase (e.g.
                    // per training epoch) keeps a log readable.
                    if !self.tty && self.verbosity > Verbosity::Quiet {
                        let msg = b.message();
                        let sep = if msg.is_empty() { "" } else { ": " };
                        eprintln!("           {}{sep}{msg}", b.prefix());
                    }
                    b.finish_and_clear()
                }
            }
        }
    }

    fn clear_bar(&self, id: usize) {
        if let Some(b) = self.bars.lock().expect("bars").remove(&id) {
            b.finish_and_clear();
        }
    }
}

impl crate::exec::Listener for TerminalReporter {
    fn event(&self, event: Event) {
        match event {
            Event::Cached { id } => {
                if self.verbosity == Verbosity::Verbose {
                    self.line(format!("  cached   {}", self.labels[id]))
                }
            }
            Event::Reused { id } => self.line(format!(
                "  reused   {} (built by another run)",
                self.labels[id]
            )),
            Event::Waiting { id } => self.line(format!(
                "  waiting  {}: another drpipe run is building it",
                self.labels[id]
            )),
            Event::Started { id, reasons } => {
                let why = if self.verbosity == Verbosity::Verbose {
                    format!(" ({})", reasons.join("; "))
                } else {
                    String::new()
                };
                self.line(format!("  running  {}{why}", self.labels[id]))
            }
            Event::Progress { id, update } => self.on_progress(id, update),
            Event::Finished {
                id,
                elapsed,
                summary,
            } => {
                self.clear_bar(id);
                self.line(format!(
                    "  ran      {} in {:.1}s: {summary}",
                    self.labels[id],
                    elapsed.as_secs_f64()
                ))
            }
            Event::Failed { id, error } => {
                self.clear_bar(id);
                self.print(format!("  FAILED   {}: {error}", self.labels[id]));
            }
            Event::Submitted { id, job, adopted } => self.line(format!(
                "  {}  {} as job {job}",
                if adopted { "adopted " } else { "queued  " },
                self.labels[id]
            )),
            Event::Retrying {
                id,
                attempt,
                reason,
            } => self.print(format!(
                "  retry    {} (attempt {attempt}): {reason}",
                self.labels[id]
            )),
            Event::Resuming { id, job } => self.print(format!(
                "  resume   {}: job {job} checkpointed ahead of its time limit; the next job \
                 goes on from there",
                self.labels[id]
            )),
            Event::Note { message } => self.print(format!("  note     {message}")),
            Event::Skipped {
                id,
                failed_upstream,
            } => self.line(format!(
                "  skipped  {} ({} failed)",
                self.labels[id], self.labels[failed_upstream]
            )),
        }
    }
}
