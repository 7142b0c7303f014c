//! The progress display of `strata train`: one live line on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use trainer::train::{Event, Observer};

/// The progress display: one live line on a terminal, plain lines (every ~2% and at every
/// evaluation) otherwise.
pub struct Progress {
    live: bool,
    started: Instant,
    start_step: u64,
    total: u64,
    every: u64,
    dirty: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
            start_step: 0,
            total: 0,
            every: 1,
            dirty: false,
        }
    }

    /// Ends the live line.
    pub fn finish(&mut self) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Observer for Progress {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Started {
                plan,
                start_step,
                params,
            } => {
                self.started = Instant::now();
                self.start_step = start_step;
                self.total = plan.total_steps;
                self.every = (plan.total_steps / 50).max(1);
                let from = if start_step > 0 {
                    format!(", resuming after step {start_step}")
                } else {
                    String::new()
                };
                eprintln!(
                    "training {:.2}M parameters for {} steps ({} guided){from}",
                    params as f64 / 1e6,
                    plan.total_steps,
                    plan.guided_steps
                );
            }
            Event::Step(r) => {
                let done = r.step - self.start_step;
                let per_step = self.started.elapsed().as_secs_f64() / done.max(1) as f64;
                let eta = per_step * (self.total - r.step) as f64;
                let mut line = format!(
                    "step {}/{} | loss {:.4} | lr {:.2e} | alpha {:.3} | {:.0} tok/s | {:.3e} FLOPs | ETA {}",
                    r.step,
                    r.total_steps,
                    r.loss,
                    r.lr,
                    r.alpha,
                    r.tokens_per_s,
                    r.flops,
                    duration(eta)
                );
                if let Some(m) = r.mfu {
                    line += &format!(" | MFU {:.1}%", m * 100.0);
                }
                if let Some(v) = r.val_loss {
                    line += &format!(
                        " | val loss {v:.4} ppl {:.2}",
                        r.val_ppl.unwrap_or(f64::NAN)
                    );
                }
                if self.live {
                    eprint!("\r\x1b[2K{line}");
                    let _ = std::io::stderr().flush();
                    self.dirty = true;
                    if r.val_loss.is_some() {
                        self.finish();
                    }
                } else if r.val_loss.is_some() || r.step.is_multiple_of(self.every) {
                    eprintln!("{line}");
                }
            }
            Event::Checkpoint(path) => {
                if !self.live {
                    eprintln!("checkpoint {}", path.display());
                }
            }
            Event::Finished(_) => self.finish(),
            Event::Issued(_) => {}
        }
    }
}
