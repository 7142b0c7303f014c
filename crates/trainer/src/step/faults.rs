//! Faults injected into training steps: a hook a caller passes in ([`RunOptions::faults`]) to
//! see what a run does when a step goes wrong (a replica that panics, a loss or gradients that
//! are not finite). A run without one never asks.
//!
//! [`RunOptions::faults`]: crate::run::train::RunOptions::faults

/// Decides, step by step, which faults to inject. Every method defaults to "none".
pub trait FaultHook: Send + Sync + std::fmt::Debug {
    /// Whether the replica of global rank `rank` panics in `step` (0-based).
    fn replica_panics(&self, _rank: usize, _step: u64) -> bool {
        false
    }

    /// Whether every gradient of `step` (0-based) is made non-finite (the loss stays finite).
    fn poison_gradients(&self, _step: u64) -> bool {
        false
    }

    /// Whether the loss of `step` (0-based) reads back as NaN.
    fn poison_loss(&self, _step: u64) -> bool {
        false
    }
}

/// The usual plan: at most one fault of each kind, at a given step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The replica of this global rank panics in this step.
    pub panic_at: Option<(usize, u64)>,
    /// The gradients of this step are not finite.
    pub nan_gradients_at: Option<u64>,
    /// The loss of this step reads back as NaN.
    pub nan_loss_at: Option<u64>,
}

impl FaultHook for FaultPlan {
    fn replica_panics(&self, rank: usize, step: u64) -> bool {
        self.panic_at == Some((rank, step))
    }

    fn poison_gradients(&self, step: u64) -> bool {
        self.nan_gradients_at == Some(step)
    }

    fn poison_loss(&self, step: u64) -> bool {
        self.nan_loss_at == Some(step)
    }
}
