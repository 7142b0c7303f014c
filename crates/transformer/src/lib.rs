//! Decoder-only transformer language models whose linear layers are structured matrices.
//!
//! - [`TransformerConfig`] in the glossary of docs/reference.md §6, validated field by field;
//! - [`Transformer`]: grouped-query causal attention (RoPE or learned positions), GELU /
//!   SwiGLU / ReLU FFN, pre-norm or branch-output norms, structure per place (FFN fc1/fc2 with a
//!   dense first layer; attention q/k/v/o for LPA), self-guided layers with one model-wide alpha;
//! - an explicit [`KvCache`] for prefill and token-by-token decoding;
//! - [`generate`] with temperature, top-k, top-p and a seed, sampled on the device
//!   ([`DeviceSampler`]); pre-merge ([`Transformer::merged`])
//!   and a token-count [`Dispatching`] model;
//! - the loss of token windows and a model's validation loss ([`loss`], [`evaluate`]);
//! - the arithmetic it computes in ([`Precision`]: f32, or bf16 / f16 cast from f32 weights);
//! - exact parameter and FLOP accounting ([`accounting`]) and the model [`zoo`].

pub mod accounting;
mod attention;
mod cache;
mod config;
mod error;
mod gelu;
mod generate;
pub mod loss;
mod model;
mod norm;
mod place;
pub mod precision;
mod sampling;
pub mod zoo;

pub use attention::{Attention, Positions, Rope};
pub use cache::KvCache;
pub use config::{
    override_key, ActivationKind, AttentionStructure, FfnStructure, NormKind, NormPlacement, Place,
    Position, TransformerConfig,
};
pub use error::ModelError;
pub use gelu::gelu_tanh;
pub use generate::{
    generate, Dispatching, GenerateConfig, LanguageModel, NextToken, DEFAULT_DISPATCH_THRESHOLD,
};
pub use loss::{evaluate, EvalResult};
pub use model::{Block, Ffn, HeadWeight, Transformer};
pub use norm::{LayerNorm, Norm};
pub use precision::Precision;
pub use sampling::{search_shape, DeviceSampler, Sampler, SamplingConfig};

#[cfg(test)]
mod tests;
