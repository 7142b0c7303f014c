//! The model configuration, in the glossary of docs/reference.md §6, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use structured_linear::{Init, Structure, StructuredLinearConfig};

use crate::error::ModelError;

/// Normalisation layer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// LayerNorm with weight and bias.
    #[default]
    LayerNorm,
    /// RMSNorm, weight only.
    RmsNorm,
}

/// Where the norms sit in a block.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// `x + f(norm(x))` (the papers' models).
    #[default]
    Pre,
    /// `x + norm(f(x))`: the norm applied to each branch output (LPA's 370M setting).
    BranchOutput,
}

/// FFN activation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ActivationKind {
    /// GELU, tanh approximation (as the papers).
    #[default]
    Gelu,
    /// SwiGLU: `fc2(silu(gate(x)) * fc1(x))`, three matrices.
    SwiGlu,
    /// ReLU.
    Relu,
}

/// Position encoding.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Position {
    /// Rotary embeddings on queries and keys (half-split rotation), frequencies `base^(-2i/d)`.
    Rope {
        /// Frequency base (10000 in the papers).
        #[serde(default = "default_rope_base")]
        base: f64,
    },
    /// A learned absolute position embedding `[max_seq_len, d_model]`.
    Learned,
}

fn default_rope_base() -> f64 {
    10_000.0
}

impl Default for Position {
    fn default() -> Self {
        Position::Rope {
            base: default_rope_base(),
        }
    }
}

/// Structure of the FFN matrices.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FfnStructure {
    /// `d_model -> d_ff` (SwiGLU's gate and up projections too).
    #[serde(default)]
    pub fc1: Structure,
    /// `d_ff -> d_model`.
    #[serde(default)]
    pub fc2: Structure,
    /// Keep layer 0's FFN dense, as the papers do (default true).
    #[serde(default = "default_true")]
    pub dense_first_layer: bool,
    /// Initialisation of structured FFN layers (default: normal with `init_std`).
    #[serde(default)]
    pub init: Option<Init>,
}

impl Default for FfnStructure {
    fn default() -> Self {
        Self {
            fc1: Structure::Dense,
            fc2: Structure::Dense,
            dense_first_layer: true,
            init: None,
        }
    }
}

/// Structure of the attention projections (LPA: LowRank on all four).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AttentionStructure {
    /// `d_model -> d_attn`.
    #[serde(default)]
    pub q: Structure,
    /// `d_model -> kv_dim`.
    #[serde(default)]
    pub k: Structure,
    /// `d_model -> kv_dim`.
    #[serde(default)]
    pub v: Structure,
    /// `d_attn -> d_model`.
    #[serde(default)]
    pub o: Structure,
    /// LPA 370M: a LowRank q/k/v carries its bias after its first factor (`[rank]`) instead of
    /// on its output (o keeps its output bias). Only with `bias = true`.
    #[serde(default)]
    pub lowrank_bias_first: bool,
    /// Initialisation of structured attention layers (default: normal with `init_std`).
    #[serde(default)]
    pub init: Option<Init>,
}

fn default_true() -> bool {
    true
}

fn default_norm_eps() -> f64 {
    1e-5
}

fn default_init_std() -> f64 {
    0.02
}

/// A decoder-only transformer LM. Field names follow the glossary of docs/reference.md §6.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual stream width.
    pub d_model: usize,
    /// Attention width `n_heads * head_dim` (independent of `d_model`).
    pub d_attn: usize,
    /// FFN hidden width.
    pub d_ff: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); divides `n_heads`.
    pub n_kv_heads: usize,
    /// Context length: positions of the learned embedding and capacity of the KV cache.
    pub max_seq_len: usize,
    /// Norm kind (default layernorm).
    #[serde(default)]
    pub norm: NormKind,
    /// Norm placement (default pre).
    #[serde(default)]
    pub norm_placement: NormPlacement,
    /// A norm after the last block (default true).
    #[serde(default = "default_true")]
    pub final_norm: bool,
    /// FFN activation (default gelu, tanh form).
    #[serde(default)]
    pub activation: ActivationKind,
    /// Biases on the attention and FFN linear layers (default true).
    #[serde(default = "default_true")]
    pub bias: bool,
    /// Biases on the q, k and v projections even when `bias` is false (Qwen2's layout; default
    /// false).
    #[serde(default)]
    pub qkv_bias: bool,
    /// Epsilon of every norm (default 1e-5, as burn, GPT-2 and SmolLM; Llama-2 uses 1e-6).
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Position encoding (default rope, base 10000).
    #[serde(default)]
    pub position: Position,
    /// Output head shares the token embedding (default true).
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// A bias on the untied output head (default false).
    #[serde(default)]
    pub head_bias: bool,
    /// Standard deviation of every linear weight and embedding at initialisation (default 0.02).
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// Dropout probability on attention/FFN outputs and embeddings (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout probability on the attention probabilities (softmax weights) while training
    /// (default 0).
    #[serde(default)]
    pub attn_dropout: f64,
    /// FFN structure (default dense).
    #[serde(default)]
    pub ffn: FfnStructure,
    /// Attention projection structure (default dense).
    #[serde(default)]
    pub attention: AttentionStructure,
    /// Give every structured layer a dense guide for self-guided training (default false).
    #[serde(default)]
    pub self_guided: bool,
    /// Structures of single layers that differ from `ffn` / `attention`, keyed by layer and
    /// place, e.g. `"3.ffn.fc1"` or `"0.attention.q"` (a conversion that sizes every matrix by
    /// its own spectrum writes these; default none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Structure>,
}

/// The key of `place` in block `layer` in [`TransformerConfig::overrides`].
pub fn override_key(layer: usize, place: Place) -> String {
    format!("{layer}.{}", place.path())
}

/// A place in a block where a linear layer sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Output projection.
    O,
    /// FFN input projection (SwiGLU: the up projection).
    Fc1,
    /// SwiGLU gate (same shape and structure as fc1).
    Gate,
    /// FFN output projection.
    Fc2,
}

impl Place {
    /// Whether the place is one of the attention projections.
    pub fn is_attention(&self) -> bool {
        matches!(self, Place::Q | Place::K | Place::V | Place::O)
    }

    /// The dotted config path of the place.
    pub fn path(&self) -> &'static str {
        match self {
            Place::Q => "attention.q",
            Place::K => "attention.k",
            Place::V => "attention.v",
            Place::O => "attention.o",
            Place::Fc1 => "ffn.fc1",
            Place::Gate => "ffn.gate",
            Place::Fc2 => "ffn.fc2",
        }
    }
}

impl TransformerConfig {
    /// Head dimension `d_attn / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_attn / self.n_heads.max(1)
    }

    /// Key/value width `head_dim * n_kv_heads`.
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_heads
    }

    /// The places of one block's linear layers.
    pub fn places(&self) -> Vec<Place> {
        let mut places = vec![Place::Q, Place::K, Place::V, Place::O, Place::Fc1];
        if self.activation == ActivationKind::SwiGlu {
            places.push(Place::Gate);
        }
        places.push(Place::Fc2);
        places
    }

    /// The configuration of the linear layer at `place` in block `layer`.
    pub fn linear(&self, layer: usize, place: Place) -> StructuredLinearConfig {
        let (d, a, kv, ff) = (self.d_model, self.d_attn, self.kv_dim(), self.d_ff);
        let dense_ffn = self.ffn.dense_first_layer && layer == 0;
        let (d_in, d_out, structure) = match place {
            Place::Q => (d, a, self.attention.q),
            Place::K => (d, kv, self.attention.k),
            Place::V => (d, kv, self.attention.v),
            Place::O => (a, d, self.attention.o),
            Place::Fc1 | Place::Gate => (d, ff, self.ffn.fc1),
            Place::Fc2 => (ff, d, self.ffn.fc2),
        };
        let structure = match place {
            _ if !self.overrides.is_empty() => {
                match self.overrides.get(&override_key(layer, place)) {
                    Some(s) => *s,
                    None if dense_ffn && !place.is_attention() => Structure::Dense,
                    None => structure,
                }
            }
            Place::Fc1 | Place::Gate | Place::Fc2 if dense_ffn => Structure::Dense,
            _ => structure,
        };
        let lowrank = matches!(structure, Structure::LowRank { .. });
        let bias_first = self.bias
            && self.attention.lowrank_bias_first
            && lowrank
            && matches!(place, Place::Q | Place::K | Place::V);
        let init = if place.is_attention() {
            self.attention.init
        } else {
            self.ffn.init
        };
        let init = match (structure, init) {
            (Structure::Dense, _) | (_, None) => Init::Normal { std: self.init_std },
            (_, Some(init)) => init,
        };
        let qkv = matches!(place, Place::Q | Place::K | Place::V);
        let bias = self.bias || (self.qkv_bias && qkv);
        StructuredLinearConfig::new(d_in, d_out)
            .with_structure(structure)
            .with_bias(bias && !bias_first)
            .with_inner_bias(bias_first)
            .with_init(init)
    }

    /// Checks every field; the error names the first bad one.
    // Long on purpose: a check list, one check per field, each with its own message.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_attn", self.d_attn),
            ("d_ff", self.d_ff),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("max_seq_len", self.max_seq_len),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ModelError::invalid(field, "must be at least 1"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ModelError::invalid(
                "n_kv_heads",
                format!(
                    "{} does not divide n_heads = {}",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        if !self.d_attn.is_multiple_of(self.n_heads) {
            return Err(ModelError::invalid(
                "d_attn",
                format!(
                    "{} is not a multiple of n_heads = {}",
                    self.d_attn, self.n_heads
                ),
            ));
        }
        if let Position::Rope { base } = self.position {
            if !self.head_dim().is_multiple_of(2) {
                return Err(ModelError::invalid(
                    "position",
                    format!("rope needs an even head dimension, got {}", self.head_dim()),
                ));
            }
            if !(base.is_finite() && base > 1.0) {
                return Err(ModelError::invalid(
                    "position.base",
                    format!("must be > 1, got {base}"),
                ));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(ModelError::invalid(
                "norm_eps",
                format!("must lie in (0, 1), got {}", self.norm_eps),
            ));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(ModelError::invalid(
                "init_std",
                format!("must be positive, got {}", self.init_std),
            ));
        }
        for (field, p) in [
            ("dropout", self.dropout),
            ("attn_dropout", self.attn_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::invalid(
                    field,
                    format!("must lie in [0, 1), got {p}"),
                ));
            }
        }
        if self.head_bias && self.tie_embeddings {
            return Err(ModelError::invalid(
                "head_bias",
                "needs an untied head (tie_embeddings = false)",
            ));
        }
        if self.attention.lowrank_bias_first && !self.bias {
            return Err(ModelError::invalid(
                "attention.lowrank_bias_first",
                "needs bias = true",
            ));
        }
        let places = self.places();
        for key in self.overrides.keys() {
            let known =
                (0..self.n_layers).any(|l| places.iter().any(|&p| override_key(l, p) == *key));
            if !known {
                return Err(ModelError::invalid(
                    "overrides",
                    format!("{key:?} names no linear layer of this model (e.g. \"1.ffn.fc1\")"),
                ));
            }
        }
        // Every linear layer of a structured block (layer 1 when the first stays dense), and
        // every layer with a structure of its own.
        let layer = usize::from(self.n_layers > 1);
        let overridden = (0..self.n_layers).filter(|&l| {
            places
                .iter()
                .any(|&p| self.overrides.contains_key(&override_key(l, p)))
        });
        let layers: Vec<usize> = [0, layer].into_iter().chain(overridden).collect();
        for place in places {
            for &l in &layers {
                self.linear(l, place)
                    .validate()
                    .map_err(|e| ModelError::Layer {
                        place: place.path().into(),
                        source: e.into(),
                    })?;
            }
        }
        Ok(())
    }
}
