//! Step results left on the device until a logging point, then read back in one transfer.
//!
//! On a GPU every read of a device value waits for the work queued before it, so reading each
//! step's loss and gradient norm would stall the host once per step. The loop instead keeps
//! them as device tensors and reads all pending ones together with burn's `Transaction` (one
//! synchronisation) at its logging points: about once a [`READ_INTERVAL`], and before every
//! evaluation and checkpoint, so a non-finite step is caught before its weights are saved.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, Transaction};

use crate::error::TrainError;
use crate::run::metrics::StepRecord;

/// Host time after which pending steps are read even when nothing else asks for it.
pub const READ_INTERVAL: Duration = Duration::from_secs(1);

/// One step whose loss and gradient norm are still on the device.
struct Entry<B: Backend> {
    /// The step's record, complete but for `loss`, `grad_norm` and the rates.
    record: StepRecord,
    /// Whether the record goes to the metrics log.
    logged: bool,
    loss: Tensor<B, 1>,
    grad_norm: Tensor<B, 1>,
}

/// Steps run but not yet read.
pub(crate) struct Pending<B: Backend> {
    entries: Vec<Entry<B>>,
    /// When the previous read finished, and the tokens and FLOPs done by then.
    last_read: Instant,
    last_tokens: u64,
    last_flops: f64,
}

impl<B: Backend> Pending<B> {
    /// Nothing pending; `tokens` and `flops` done so far.
    pub fn new(tokens: u64, flops: f64) -> Self {
        Self {
            entries: Vec::new(),
            last_read: Instant::now(),
            last_tokens: tokens,
            last_flops: flops,
        }
    }

    /// Adds a step (its `loss` and `grad_norm`, `[1]` each, unread).
    pub fn push(
        &mut self,
        record: StepRecord,
        logged: bool,
        loss: Tensor<B, 1>,
        grad_norm: Tensor<B, 1>,
    ) {
        self.entries.push(Entry {
            record,
            logged,
            loss,
            grad_norm,
        });
    }

    /// Whether a logged step has waited a [`READ_INTERVAL`].
    pub fn due(&self) -> bool {
        self.entries.iter().any(|e| e.logged) && self.last_read.elapsed() >= READ_INTERVAL
    }

    /// Reads every pending loss and gradient norm in one transfer and returns the logged
    /// records, in step order, complete. Fails on the first step whose loss, or (unless it was
    /// a skipped f16 step) gradient norm, is not finite, unless `--skip-nonfinite` skipped it. The
    /// tokens/s and MFU of the returned records are those of all steps since the previous
    /// read (`peak_flops` for MFU).
    pub fn read(&mut self, peak_flops: Option<f64>) -> Result<Vec<StepRecord>, TrainError> {
        let entries = std::mem::take(&mut self.entries);
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let (tokens, flops) = (last.record.tokens, last.record.flops);
        let mut transaction = Transaction::default();
        for e in &entries {
            transaction = transaction
                .register(e.loss.clone())
                .register(e.grad_norm.clone());
        }
        let data = transaction
            .try_execute()
            .map_err(|e| TrainError::Readback(format!("{e:?}")))?;
        let seconds = self.last_read.elapsed().as_secs_f64().max(1e-9);
        let tokens_per_s = (tokens - self.last_tokens) as f64 / seconds;
        let mfu =
            peak_flops.map(|p| transformer::accounting::mfu(flops - self.last_flops, seconds, p));
        (self.last_read, self.last_tokens, self.last_flops) = (Instant::now(), tokens, flops);
        let mut records = Vec::new();
        for (e, pair) in entries.into_iter().zip(data.chunks(2)) {
            let value = |i: usize| -> Result<f64, TrainError> {
                pair[i]
                    .clone()
                    .convert::<f64>()
                    .to_vec::<f64>()
                    .ok()
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| TrainError::Readback("a step result without a value".into()))
            };
            let (loss, grad_norm) = (value(0)?, value(1)?);
            let step = e.record.step;
            // A step skipped under `--skip-nonfinite` was counted (and allowed) when issued.
            let allowed = e.record.skipped_nonfinite();
            if !loss.is_finite() && !allowed {
                let (what, value) = ("loss", loss);
                return Err(TrainError::NonFinite { what, value, step });
            }
            // A scaled (f16) step with a non-finite norm is an expected, skipped step.
            if !grad_norm.is_finite() && e.record.loss_scale.is_none() && !allowed {
                let (what, value) = ("gradients", grad_norm);
                return Err(TrainError::NonFinite { what, value, step });
            }
            if e.logged {
                records.push(StepRecord {
                    loss,
                    grad_norm,
                    tokens_per_s,
                    mfu,
                    ..e.record
                });
            }
        }
        Ok(records)
    }
}
