pub(crate) mod base;
pub(crate) mod state;

pub use base::{OrchestratorHandle, spawn_global_orchestrator, start_global_orchestrator};
