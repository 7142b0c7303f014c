//! Schedules advanced once per optimizer step: the learning rate (linear warmup, then cosine to a
//! floor) and self-guided training's plan (guided steps, alpha, fixedflop's replay of data).

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Linear warmup to `peak` over `warmup` steps, then cosine decay to `min_ratio * peak` at
/// step `total` (and flat after it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Steps the schedule spans.
    pub total: u64,
    /// Floor as a fraction of `peak` (the reference: 0.1).
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The rate for optimizer step `step` (0-based): `peak * (step + 1) / warmup` during
    /// warmup, so the first step is not wasted at zero; then
    /// `min + (peak - min) * (1 + cos(pi * p)) / 2` with `p` the fraction of the decay done.
    pub fn at(&self, step: u64) -> f64 {
        let floor = self.peak * self.min_ratio;
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let p = ((step - self.warmup) as f64 / span as f64).min(1.0);
        floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// How alpha decays from 1 to 0 over the guided steps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum AlphaShape {
    /// `alpha(t) = (1 + cos(pi t / T_g)) / 2` (the paper's default).
    #[default]
    Cosine,
    /// `alpha(t) = 1 - t / T_g`.
    Linear,
}

/// How the guided phase fits in the run (docs/reference.md §2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SgtMode {
    /// Guide during the first `ratio * N` of `N` steps.
    Fixedstep,
    /// Spend the dense model's FLOPs: `g = ratio * N` extra steps, guide during `[0, g)`, plain
    /// during `[g, N)`, and replay the data of steps `[0, g)` during the final `g` steps.
    Fixedflop,
}

/// Self-guided training settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SgtConfig {
    /// fixedstep or fixedflop.
    pub mode: SgtMode,
    /// Fraction of the base steps that are guided (fixedstep) or added (fixedflop).
    pub ratio: f64,
    /// Alpha's decay.
    pub shape: AlphaShape,
    /// Evaluate each guide only with probability alpha (a Bernoulli draw per layer and
    /// micro-batch).
    pub reduce_flop: bool,
}

/// The steps of a run: how many, which are guided, alpha at each, and whose data each uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Steps the data budget asks for (`N`).
    pub base_steps: u64,
    /// Optimizer steps of the run (`N`, or `N + g` with fixedflop); the LR schedule spans them.
    pub total_steps: u64,
    /// Guided steps `T_g` (0 without self-guided training).
    pub guided_steps: u64,
    /// Alpha's decay.
    pub shape: AlphaShape,
    /// First step that replays data (fixedflop: `N`); `total_steps` when nothing is replayed.
    pub replay_from: u64,
}

impl Plan {
    /// The plan for `base_steps` steps with optional self-guided training.
    pub fn new(base_steps: u64, sgt: Option<&SgtConfig>) -> Result<Self, TrainError> {
        if base_steps == 0 {
            return Err(TrainError::Setting {
                setting: "budget",
                problem: "the run has no steps: raise the step or token budget".into(),
            });
        }
        let Some(sgt) = sgt else {
            return Ok(Self {
                base_steps,
                total_steps: base_steps,
                guided_steps: 0,
                shape: AlphaShape::Cosine,
                replay_from: base_steps,
            });
        };
        if !(sgt.ratio > 0.0 && sgt.ratio <= 1.0) {
            return Err(TrainError::Setting {
                setting: "sgt.ratio",
                problem: format!("{} must lie in (0, 1]", sgt.ratio),
            });
        }
        // The reference's int(): floor.
        let g = ((sgt.ratio * base_steps as f64).floor() as u64).max(1);
        if sgt.mode == SgtMode::Fixedstep && g >= base_steps {
            return Err(TrainError::Setting {
                setting: "sgt.ratio",
                problem: format!(
                    "fixedstep with ratio {} guides every one of the {base_steps} steps, so the \
                     guides would never be dropped and the final model would not be the \
                     structured one; use a ratio below 1 (or fixedflop)",
                    sgt.ratio
                ),
            });
        }
        Ok(match sgt.mode {
            SgtMode::Fixedstep => Self {
                base_steps,
                total_steps: base_steps,
                guided_steps: g,
                shape: sgt.shape,
                replay_from: base_steps,
            },
            SgtMode::Fixedflop => Self {
                base_steps,
                total_steps: base_steps + g,
                guided_steps: g,
                shape: sgt.shape,
                replay_from: base_steps,
            },
        })
    }

    /// Whether step `step` uses the guides.
    pub fn guided(&self, step: u64) -> bool {
        step < self.guided_steps
    }

    /// Alpha at step `step`: from 1 at step 0 down to 0 at `T_g` and after.
    pub fn alpha(&self, step: u64) -> f64 {
        if !self.guided(step) {
            return 0.0;
        }
        let t = step as f64 / self.guided_steps as f64;
        match self.shape {
            AlphaShape::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            AlphaShape::Linear => 1.0 - t,
        }
    }

    /// The step whose data step `step` trains on: itself, or during fixedflop's replay
    /// (`[N, N + g)`) the step `g` earlier in the guided phase (`step - N`). A pure function of
    /// the step, so resuming inside the replay reads the right data.
    pub fn data_step(&self, step: u64) -> u64 {
        if step >= self.replay_from {
            step - self.replay_from
        } else {
            step
        }
    }
}
