//! A progress handle given to long-running work. The work only reports; how (or whether) it is
//! drawn is the reporter's business, so library code never touches the terminal.

use std::sync::Arc;

/// What a piece of work says about its progress.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressUpdate {
    /// A new phase of `total` units (images, steps, ...) begins.
    Start { label: String, total: u64 },
    /// `n` more units are done.
    Inc(u64),
    /// A short status line (e.g. "epoch 3/25 loss 0.512").
    Message(String),
    /// The phase is over.
    Finish,
}

/// Cheap to clone; `Progress::hidden()` discards everything (tests, library use).
#[derive(Clone)]
pub struct Progress {
    sink: Option<Arc<dyn Fn(ProgressUpdate) + Send + Sync>>,
}

impl Progress {
    pub fn hidden() -> Self {
        Progress { sink: None }
    }

    pub fn new(sink: impl Fn(ProgressUpdate) + Send + Sync + 'static) -> Self {
        Progress {
            sink: Some(Arc::new(sink)),
        }
    }

    fn send(&self, update: ProgressUpdate) {
        if let Some(sink) = &self.sink {
            sink(update)
        }
    }

    pub fn start(&self, label: &str, total: u64) {
        self.send(ProgressUpdate::Start {
            label: label.to_string(),
            total,
        })
    }

    pub fn inc(&self, n: u64) {
        self.send(ProgressUpdate::Inc(n))
    }

    pub fn message(&self, msg: impl Into<String>) {
        self.send(ProgressUpdate::Message(msg.into()))
    }

    pub fn finish(&self) {
        self.send(ProgressUpdate::Finish)
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "Progress"
        } else {
            "Progress(hidden)"
        })
    }
}
