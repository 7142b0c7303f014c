//! Typed errors of the transformer crate.

use structured_linear::LayerError;
use thiserror::Error;

/// A model configuration, input or generation request that cannot be used.
#[derive(Error, Debug, Clone, PartialEq)]
pub enum ModelError {
    /// A configuration field with an invalid value.
    #[error("`{field}`: {problem}")]
    Invalid {
        /// The field, dotted for nested ones (`ffn.fc1`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A structured layer that cannot be built at a place of the model.
    #[error("`{place}`: {source}")]
    Layer {
        /// Where in the model (`ffn.fc1`, `attention.q`).
        place: String,
        /// The layer's error.
        source: LayerError,
    },
    /// More tokens than the context or the KV cache holds.
    #[error("{needed} positions needed but only {capacity} fit (the context, or the KV cache's capacity)")]
    ContextOverflow {
        /// Positions the request needs.
        needed: usize,
        /// Positions available.
        capacity: usize,
    },
    /// A KV cache made for a model of another shape.
    #[error("KV cache mismatch: cache for {cache_layers} layers / {cache_positions} positions, model has {model_layers} / {model_positions}")]
    CacheForOtherModel {
        /// Layers the cache holds.
        cache_layers: usize,
        /// The context the cache was made for.
        cache_positions: usize,
        /// The model's layers.
        model_layers: usize,
        /// The model's `max_seq_len`.
        model_positions: usize,
    },
    /// A KV cache holding another batch size.
    #[error("KV cache mismatch: cache holds a batch of {cached}, got {given}")]
    CacheBatch {
        /// The batch size cached.
        cached: usize,
        /// The batch size of the call.
        given: usize,
    },
    /// Values that could not be read back from the device.
    #[error("reading {what} back from the device: {problem}")]
    Readback {
        /// What was read.
        what: &'static str,
        /// The backend's error.
        problem: String,
    },
    /// A precision the backend cannot compute in.
    #[error("precision {precision} is not supported by this backend on {device}; use f32, or `backend` cpu (burn-flex) / cuda")]
    PrecisionUnsupported {
        /// The precision asked for.
        precision: &'static str,
        /// The device.
        device: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (vocab_size {vocab_size})")]
    TokenOutOfRange {
        /// The token id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// An empty prompt or batch.
    #[error("empty input: {0}")]
    Empty(&'static str),
}

impl ModelError {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ModelError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
