//! One training step: its primitives (batches, a micro-batch's forward and backward, the clipped
//! AdamW update), the loss, the optimizer, mixed precision, the schedules advanced once per
//! step, and a step timed by phase.

pub mod faults;
pub(crate) mod loss;
pub mod optim;
mod optim_fused;
mod optim_groups;
pub mod precision;
pub(crate) mod primitives;
pub mod profile;
pub mod schedule;
