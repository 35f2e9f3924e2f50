//! The local executor: instances in dependency order, `jobs` at once, in this process.

use super::{instance, Event, Executor, Listener, Outcome, Run};
use std::sync::{Arc, Condvar, Mutex};

pub struct Local {
    pub jobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Done,
    Failed,
}

impl Executor for Local {
    fn execute(&self, run: &Run, listener: Arc<dyn Listener>) -> Outcome {
        let n = run.plan.instances.len();
        let states = Mutex::new((vec![State::Pending; n], Outcome::default()));
        let wake = Condvar::new();
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.max(1) {
                scope.spawn(|| worker(run, &listener, &states, &wake));
            }
        });
        states.into_inner().expect("executor state").1
    }
}

fn worker(
    shared: &Run,
    listener: &Arc<dyn Listener>,
    states: &Mutex<(Vec<State>, Outcome)>,
    wake: &Condvar,
) {
    let instances = &shared.plan.instances;
    loop {
        let id = {
            let mut guard = states.lock().expect("executor state");
            loop {
                let (st, outcome) = &mut *guard;
                // Skip instances whose upstream failed (transitively, as ids are topological).
                for i in 0..st.len() {
                    if st[i] == State::Pending {
                        if let Some(&(bad, _)) = instances[i]
                            .upstream
                            .iter()
                            .find(|(u, _)| st[*u] == State::Failed)
                        {
                            st[i] = State::Failed;
                            outcome.skipped += 1;
                            listener.event(Event::Skipped {
                                id: i,
                                failed_upstream: bad,
                            });
                        }
                    }
                }
                let ready = (0..st.len()).find(|&i| {
                    st[i] == State::Pending
                        && instances[i]
                            .upstream
                            .iter()
                            .all(|(u, _)| st[*u] == State::Done)
                });
                if let Some(i) = ready {
                    st[i] = State::Running;
                    break Some(i);
                }
                if !st.contains(&State::Pending) {
                    break None;
                }
                guard = wake.wait(guard).expect("executor state");
            }
        };
        let Some(id) = id else {
            wake.notify_all();
            return;
        };
        let result = instance::run(shared, &instances[id], listener);
        let mut guard = states.lock().expect("executor state");
        let (st, outcome) = &mut *guard;
        match result {
            Ok(ran) => {
                st[id] = State::Done;
                if ran {
                    outcome.ran += 1
                } else {
                    outcome.cached += 1
                }
            }
            Err(e) => {
                st[id] = State::Failed;
                let msg = format!("{e:#}");
                listener.event(Event::Failed {
                    id,
                    error: msg.clone(),
                });
                outcome.failed.push((id, msg));
            }
        }
        drop(guard);
        wake.notify_all();
    }
}
