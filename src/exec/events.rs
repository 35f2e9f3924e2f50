//! What the executor tells the outside world. The terminal reporter (or a test) listens; it
//! never reaches into execution.

use crate::progress::ProgressUpdate;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The instance's entry exists: nothing to do.
    Cached {
        id: usize,
    },
    /// Another process is building this entry; we wait for it.
    Waiting {
        id: usize,
    },
    /// Another process built it while we waited: reused, not rebuilt.
    Reused {
        id: usize,
    },
    Started {
        id: usize,
        reasons: Vec<String>,
    },
    Progress {
        id: usize,
        update: ProgressUpdate,
    },
    Finished {
        id: usize,
        elapsed: Duration,
        summary: String,
    },
    Failed {
        id: usize,
        error: String,
    },
    /// Handed to a scheduler as job `job` (`adopted`: a job an earlier driver submitted,
    /// found still alive and taken over).
    Submitted {
        id: usize,
        job: String,
        adopted: bool,
    },
    /// Its job ended without an entry; submitted again (`attempt` counts from 1).
    Retrying {
        id: usize,
        attempt: u32,
        reason: String,
    },
    /// Its job stopped itself ahead of its time limit after checkpointing; the next job
    /// resumes it (not a failure: no retry is counted).
    Resuming {
        id: usize,
        job: String,
    },
    /// Something the user should know that concerns no one instance.
    Note {
        message: String,
    },
    /// Not run because an upstream instance failed.
    Skipped {
        id: usize,
        failed_upstream: usize,
    },
}

/// Something that receives events; shared across executor threads.
pub trait Listener: Send + Sync {
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> Listener for F {
    fn event(&self, event: Event) {
        self(event)
    }
}
