//! SIGINT / SIGTERM during `strata train`: the first signal asks the run to stop after the step
//! in progress, with a checkpoint (the trainer polls the flag between steps; the run then exits
//! 0 and says how to resume); a second one exits at once (status 130 for SIGINT, 143 for
//! SIGTERM), leaving the checkpoints already on disk as they are: a checkpoint being written at
//! that moment lives under a temporary name and is removed when the run resumes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Set by the first SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the handlers and returns the flag the training loop polls.
pub fn stop_on_signals() -> Result<&'static AtomicBool> {
    for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
        // Registered first, so it sees the flag as it was before this signal: set means this
        // is the second signal.
        flag::register_conditional_shutdown(signal, status, &STOP)
            .context("cannot install the signal handlers")?;
        flag::register(signal, &STOP).context("cannot install the signal handlers")?;
    }
    // Say at once that the signal was seen (a handler itself must not print).
    std::thread::spawn(|| loop {
        if STOP.load(Ordering::SeqCst) {
            eprintln!(
                "stopping after the current step and writing a checkpoint (a second signal exits at once)"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    Ok(&STOP)
}
