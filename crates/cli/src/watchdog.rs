//! The stall watchdog of `strata train`: a run whose training makes no progress for a set time
//! (no step issued or logged, no kernel compiled) ends with an `error:` line and a non-zero
//! exit instead of leaving its user waiting forever. Checkpoints are written atomically, so
//! the last one stays intact and `--resume` continues from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trainer::train::{Event, Observer};

use crate::backend;

/// Watches a run's progress from a thread of its own, until dropped.
pub struct Watchdog {
    /// When progress was last seen; None once the watchdog is dropped.
    last: Arc<Mutex<Option<Instant>>>,
}

impl Watchdog {
    /// Starts watching: when nothing happens for `timeout`, the process exits with code 1
    /// after printing what it was doing (`what`).
    pub fn start(timeout: Duration, what: String) -> Self {
        let last = Arc::new(Mutex::new(Some(Instant::now())));
        let seen = last.clone();
        std::thread::spawn(move || {
            let mut kernels = backend::gpu().map_or(0, |g| g.compiled_kernels());
            loop {
                std::thread::sleep(Duration::from_millis(500).min(timeout));
                // Kernels being compiled are progress too (a cold GPU compiles for minutes).
                let now = backend::gpu().map_or(0, |g| g.compiled_kernels());
                let mut guard = seen.lock().unwrap_or_else(|e| e.into_inner());
                let Some(last) = guard.as_mut() else {
                    return; // the run is over
                };
                if now != kernels {
                    kernels = now;
                    *last = Instant::now();
                }
                if last.elapsed() >= timeout {
                    eprintln!(
                        "error: no progress for {} s while {what}; the backend may be stuck \
                         (the last checkpoint is intact: continue with --resume; \
                         --stall-timeout sets the limit, 0 turns it off)",
                        timeout.as_secs_f64()
                    );
                    std::process::exit(1);
                }
            }
        });
        Self { last }
    }

    /// Records progress.
    pub fn beat(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = last.as_mut() {
            *last = Instant::now();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// An observer that feeds the watchdog on every event before passing it on.
pub struct Watched<'a> {
    /// The observer the events go to.
    pub inner: &'a mut (dyn Observer + Send),
    /// The watchdog fed.
    pub dog: Option<&'a Watchdog>,
}

impl Observer for Watched<'_> {
    fn event(&mut self, event: Event<'_>) {
        if let Some(dog) = self.dog {
            dog.beat();
        }
        self.inner.event(event);
    }
}
