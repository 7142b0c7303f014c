//! Exact parameter counts and FLOPs of a model, computed from its configuration alone
//! (docs/reference.md §3), so that even the 1.3B models are counted without allocating them.

use serde::Serialize;

use structured_linear::Structure;

use crate::config::{NormKind, Position, TransformerConfig};

/// Where a model's parameters are. `total` is the sum of the other fields.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParamBreakdown {
    /// Every trained parameter (embeddings counted once when tied; guides excluded).
    pub total: u64,
    /// Token embedding, plus the learned position embedding.
    pub embedding: u64,
    /// Untied output head weights (0 when tied).
    pub head: u64,
    /// Weights of the q, k, v, o projections.
    pub attention_weights: u64,
    /// Weights of the FFN matrices.
    pub ffn_weights: u64,
    /// Norm weights and biases.
    pub norms: u64,
    /// Biases of the linear layers and the head.
    pub biases: u64,
    /// Dense guide weights added by self-guided training (not in `total`).
    pub guide_weights: u64,
    /// The part of `guide_weights` that guides attention projections (LPA with SGT).
    pub attention_guide_weights: u64,
}

/// Parameter breakdown of a configuration.
pub fn params(config: &TransformerConfig) -> ParamBreakdown {
    let (d, v) = (config.d_model as u64, config.vocab_size as u64);
    let mut p = ParamBreakdown {
        embedding: v * d,
        ..Default::default()
    };
    if config.position == Position::Learned {
        p.embedding += config.max_seq_len as u64 * d;
    }
    if !config.tie_embeddings {
        p.head = d * v;
        if config.head_bias {
            p.biases += v;
        }
    }
    let norm = match config.norm {
        NormKind::LayerNorm => 2 * d,
        NormKind::RmsNorm => d,
    };
    p.norms = 2 * norm * config.n_layers as u64 + if config.final_norm { norm } else { 0 };
    for layer in 0..config.n_layers {
        for place in config.places() {
            let linear = config.linear(layer, place);
            let weights = linear.weight_params();
            let guide = if config.self_guided && linear.structure != Structure::Dense {
                (linear.d_in * linear.d_out) as u64
            } else {
                0
            };
            if place.is_attention() {
                p.attention_weights += weights;
                p.attention_guide_weights += guide;
            } else {
                p.ffn_weights += weights;
            }
            p.biases += linear.bias_params();
            p.guide_weights += guide;
        }
    }
    p.total = p.embedding + p.head + p.attention_weights + p.ffn_weights + p.norms + p.biases;
    p
}

/// Forward FLOPs (2 per multiply-add) as the paper counts them (docs/reference.md §3).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct FlopCounts {
    /// Projections of q, k, v, o (all layers), per token.
    pub attention_projections: u64,
    /// Scores and weighted values (all layers), per token at the given context.
    pub attention_scores: u64,
    /// FFN matrices (all layers), per token.
    pub ffn: u64,
    /// Output head (logits), per token.
    pub head: u64,
    /// Sum of the above: forward FLOPs per token.
    pub forward_per_token: u64,
}

/// Forward FLOPs per token for sequences of `seq_len` tokens.
///
/// The paper's formula: `2 (P_attn + P_ffn) + 2 L sdp / T + 2 V d`, where `sdp = 2 T^2 d_attn` per
/// sequence (no causal halving) and `P_*` are weight counts (for dense attention `2 P_attn` is the
/// paper's `2 (qo + kv)`). With `causal`, the score term counts only the `T (T + 1) / 2` visible
/// pairs. `guides` adds the dense guide weights of self-guided training to the FFN (and any
/// structured attention) term. Norms, softmax, activations and embedding lookups are not counted.
pub fn forward_flops(
    config: &TransformerConfig,
    seq_len: usize,
    causal: bool,
    guides: bool,
) -> FlopCounts {
    let p = params(config);
    let (l, t, da) = (config.n_layers as u64, seq_len as u64, config.d_attn as u64);
    // Guides of structured attention projections (LPA with SGT) count with the attention.
    let (attn_guides, ffn_guides) = if guides {
        (
            p.attention_guide_weights,
            p.guide_weights - p.attention_guide_weights,
        )
    } else {
        (0, 0)
    };
    let scores = if causal {
        // 2 (QK^T and AV) x 2 FLOPs x d_attn x visible pairs / T tokens.
        4 * l * da * (t + 1) / 2
    } else {
        4 * l * da * t
    };
    let mut f = FlopCounts {
        attention_projections: 2 * (p.attention_weights + attn_guides),
        attention_scores: scores,
        ffn: 2 * (p.ffn_weights + ffn_guides),
        head: 2 * config.vocab_size as u64 * config.d_model as u64,
        forward_per_token: 0,
    };
    f.forward_per_token = f.attention_projections + f.attention_scores + f.ffn + f.head;
    f
}

/// Training FLOPs for `tokens` tokens in sequences of `seq_len`: 3 x forward (docs/reference.md §3).
pub fn training_flops(
    config: &TransformerConfig,
    tokens: u64,
    seq_len: usize,
    causal: bool,
) -> f64 {
    3.0 * tokens as f64 * forward_flops(config, seq_len, causal, false).forward_per_token as f64
}

/// Model FLOPs utilisation: achieved FLOP/s over the device's peak FLOP/s.
pub fn mfu(flops: f64, seconds: f64, peak_flops_per_second: f64) -> f64 {
    if seconds <= 0.0 || peak_flops_per_second <= 0.0 {
        return 0.0;
    }
    flops / seconds / peak_flops_per_second
}

/// Estimated memory of one training replica (see [`training_memory`]), in bytes.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrainingMemory {
    /// f32 master weights (guides included), plus their half-precision copy when the passes
    /// run in bf16 / f16.
    pub weights: u64,
    /// f32 gradients.
    pub gradients: u64,
    /// AdamW's two f32 moments.
    pub optimizer: u64,
    /// Activations autodiff keeps for the backward pass of one micro-batch.
    pub activations: u64,
    /// The estimated peak: the weights, and the larger of (activations + gradients) during the
    /// backward pass and (gradients + moments) during the update.
    pub peak: u64,
}

/// Estimates the memory of training `config` on micro-batches of `batch` sequences of
/// `seq_len` tokens, activations stored in `activation_bytes` per value (4 for f32, 2 for
/// bf16 / f16). The activation count follows what burn's autodiff keeps per token and block
/// (norm inputs and outputs, q/k/v and their rotated copies, the attention scores and
/// probabilities of every head, the FFN's hidden values, structured layers' inner values, the
/// residual stream) and, once, the logits with their softmax and gradient. Against the peak
/// resident memory of `strata bench train` on the CPU it falls short by about the process's
/// own 50-70 MB for tiny-dense (batch 32 x 128), s-dense (2 x 256) and s-lowrank-r192
/// (4 x 512); see docs/reliability.md.
pub fn training_memory(
    config: &TransformerConfig,
    batch: usize,
    seq_len: usize,
    activation_bytes: u64,
) -> TrainingMemory {
    let p = params(config);
    let n = (p.total + p.guide_weights) as f64;
    let (d, a, ff) = (
        config.d_model as f64,
        config.d_attn as f64,
        config.d_ff as f64,
    );
    let kv = config.kv_dim() as f64;
    let heads = config.n_heads as f64;
    let hidden = match config.activation {
        crate::config::ActivationKind::SwiGlu => 5.0 * ff,
        _ => 3.0 * ff,
    };
    let mut per_token = 0.0;
    for layer in 0..config.n_layers {
        per_token += 8.0 * d + 2.0 * a + 4.0 * kv + 3.0 * heads * seq_len as f64 + hidden;
        for place in config.places() {
            let linear = config.linear(layer, place);
            per_token += match linear.structure {
                Structure::Dense => 0.0,
                Structure::LowRank { rank } | Structure::BlockDense { rank, .. } => rank as f64,
                Structure::BlockShuffle { .. } => linear.d_in.max(linear.d_out) as f64,
            };
            if config.self_guided && linear.structure != Structure::Dense {
                per_token += 2.0 * linear.d_out as f64;
            }
        }
    }
    per_token += 3.0 * config.vocab_size as f64 + 2.0 * d;
    let tokens = (batch * seq_len) as f64;
    let half_copy = if activation_bytes < 4 { 2.0 * n } else { 0.0 };
    let bytes = |x: f64| x.min(u64::MAX as f64) as u64;
    let m = TrainingMemory {
        weights: bytes(4.0 * n + half_copy),
        gradients: bytes(4.0 * n),
        optimizer: bytes(8.0 * n),
        activations: bytes(tokens * per_token * activation_bytes as f64),
        peak: 0,
    };
    TrainingMemory {
        peak: m.weights.saturating_add(
            (m.activations.saturating_add(m.gradients)).max(m.gradients + m.optimizer),
        ),
        ..m
    }
}
