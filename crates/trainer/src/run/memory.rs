//! Requests that cannot fit: a run whose estimated memory
//! ([`transformer::accounting::training_memory`]) exceeds what the machine or the GPU has is
//! refused before its first step, with the estimate, instead of swapping for minutes or being
//! killed for lack of memory.

use transformer::accounting;

use crate::config::TrainConfig;
use crate::error::TrainError;

/// Memory available to a run, for the check before its first step.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimit {
    /// Bytes available.
    pub bytes: u64,
    /// Whether the devices share it (CPU replicas in one process's memory), so that every
    /// replica's estimate counts against it; otherwise each device has this much.
    pub shared: bool,
    /// What holds it, for the message ("this machine", "the GPU").
    pub place: &'static str,
}

/// Refuses a run whose estimated memory exceeds `limit`.
pub(crate) fn check_memory(
    config: &TrainConfig,
    model: &transformer::TransformerConfig,
    devices: usize,
    limit: MemoryLimit,
) -> Result<(), TrainError> {
    let bytes = if config.precision.compute_dtype().is_some() {
        2
    } else {
        4
    };
    let m = accounting::training_memory(model, config.batch_size, config.seq_len, bytes);
    let replicas = if limit.shared { devices as u64 } else { 1 };
    let need = m.peak.saturating_mul(replicas);
    if need <= limit.bytes {
        return Ok(());
    }
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    Err(TrainError::TooLarge {
        need: gib(need),
        detail: format!(
            "{}weights, gradients and AdamW {} + activations {} for {} x {} tokens",
            if replicas > 1 {
                format!("{replicas} replicas x (")
            } else {
                String::new()
            },
            gib(m.weights + m.gradients + m.optimizer),
            gib(m.activations),
            config.batch_size,
            config.seq_len
        ) + if replicas > 1 { ")" } else { "" },
        place: limit.place,
        available: gib(limit.bytes),
    })
}
