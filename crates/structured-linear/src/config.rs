//! Configuration of a structured linear layer: sizes, structure, initialisation, and validation.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Which structured matrix replaces the dense weight of a linear layer.
///
/// Serialised as an internally tagged JSON/TOML object, e.g. `{"kind": "lowrank", "rank": 256}`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Structure {
    /// One dense `[d_in, d_out]` matrix.
    #[default]
    Dense,
    /// `y = U (V x)` with inner dimension `rank`.
    LowRank {
        /// Inner dimension `r`, `1 <= r <= min(d_in, d_out)`.
        rank: usize,
    },
    /// `y = U (blockdiag(V_1..V_b) x)`: a block-diagonal map to `rank` features, then a dense one.
    BlockDense {
        /// Number of diagonal blocks `b`; divides `d_in` and `rank`.
        n_blocks: usize,
        /// Inner dimension `r`, `1 <= r <= min(d_in, d_out)`.
        rank: usize,
    },
    /// Monarch-style product: block-diagonal, fixed shuffle, block-diagonal (docs/reference.md §1).
    BlockShuffle {
        /// Number of blocks `b` in both factors; divides `d_in` and `d_out`.
        n_blocks: usize,
    },
}

impl Structure {
    /// Short lowercase name: `dense`, `lowrank`, `blockdense` or `blockshuffle`.
    pub fn name(&self) -> &'static str {
        match self {
            Structure::Dense => "dense",
            Structure::LowRank { .. } => "lowrank",
            Structure::BlockDense { .. } => "blockdense",
            Structure::BlockShuffle { .. } => "blockshuffle",
        }
    }

    /// Number of weight parameters of a `d_in -> d_out` layer of this structure (biases
    /// excluded), exact (docs/reference.md §1):
    ///
    /// - Dense: `d_in * d_out`
    /// - LowRank: `r * (d_in + d_out)`
    /// - BlockDense: `r * d_in / b + d_out * r`
    /// - BlockShuffle: `d_in^2 / b + d_out * d_in / b` if `d_in < d_out`, else
    ///   `d_out * d_in / b + d_out^2 / b`
    pub fn weight_params(&self, d_in: usize, d_out: usize) -> u64 {
        let (d_in, d_out) = (d_in as u64, d_out as u64);
        match *self {
            Structure::Dense => d_in * d_out,
            Structure::LowRank { rank } => rank as u64 * (d_in + d_out),
            Structure::BlockDense { n_blocks, rank } => {
                let (b, r) = (n_blocks as u64, rank as u64);
                r * d_in / b + d_out * r
            }
            Structure::BlockShuffle { n_blocks } => {
                let b = n_blocks as u64;
                if d_in < d_out {
                    d_in * d_in / b + d_out * d_in / b
                } else {
                    d_out * d_in / b + d_out * d_out / b
                }
            }
        }
    }
}

/// Inner dimension `q` of a BlockShuffle layer: each first-factor block maps `d_in / b -> q`
/// and each second-factor block maps `q -> d_out / b`, with `q = min(d_in, d_out) / b`.
pub fn block_shuffle_inner(d_in: usize, d_out: usize, n_blocks: usize) -> usize {
    d_in.min(d_out) / n_blocks
}

/// How the factors of a layer are initialised.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Init {
    /// Every factor ~ N(0, std^2) (the papers use std = 0.02).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// Every factor (every block) ~ N(0, 1 / fan_in), where fan_in is that factor's input size.
    FanIn,
    /// LowRank only (Dense: same as `normal`): sample a dense N(0, std^2) matrix and keep its best
    /// rank-r approximation, split as `U sqrt(S)` and `sqrt(S) V^T`.
    Svd {
        /// Standard deviation of the sampled dense matrix.
        std: f64,
    },
    /// Sample every factor as `normal`, then replace each block and each dense factor by the
    /// nearest (semi-)orthogonal matrix `U V^T` of its own SVD (the reference's "ortho" post-init).
    Orthogonal {
        /// Standard deviation of the initial sample (it does not change the result's scale).
        std: f64,
    },
}

impl Default for Init {
    fn default() -> Self {
        Init::Normal { std: 0.02 }
    }
}

impl Init {
    /// Short lowercase name of the scheme.
    pub fn name(&self) -> &'static str {
        match self {
            Init::Normal { .. } => "normal",
            Init::FanIn => "fanin",
            Init::Svd { .. } => "svd",
            Init::Orthogonal { .. } => "orthogonal",
        }
    }
}

fn default_true() -> bool {
    true
}

/// Configuration of a [`StructuredLinear`](crate::StructuredLinear) layer mapping `d_in -> d_out`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StructuredLinearConfig {
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
    /// Whether one bias `[d_out]` is added after the product (default true).
    #[serde(default = "default_true")]
    pub bias: bool,
    /// The structure of the weight (default dense).
    #[serde(default)]
    pub structure: Structure,
    /// LowRank only: a bias `[rank]` added after the first factor, `y = (x V + c) U (+ b)`
    /// (LPA's 370M setting puts the q/k/v bias there). Default false.
    #[serde(default)]
    pub inner_bias: bool,
    /// The initialisation scheme (default normal, std 0.02).
    #[serde(default)]
    pub init: Init,
}

impl StructuredLinearConfig {
    /// A dense layer `d_in -> d_out` with bias and the default initialisation.
    pub fn new(d_in: usize, d_out: usize) -> Self {
        Self {
            d_in,
            d_out,
            bias: true,
            structure: Structure::Dense,
            inner_bias: false,
            init: Init::default(),
        }
    }

    /// Sets the structure.
    pub fn with_structure(mut self, structure: Structure) -> Self {
        self.structure = structure;
        self
    }

    /// Sets whether a bias is used.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets whether a LowRank layer has a bias after its first factor.
    pub fn with_inner_bias(mut self, inner_bias: bool) -> Self {
        self.inner_bias = inner_bias;
        self
    }

    /// Sets the initialisation scheme.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Checks every constraint of docs/reference.md §1 and returns the first violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.d_in == 0 {
            return Err(ConfigError::Zero { field: "d_in" });
        }
        if self.d_out == 0 {
            return Err(ConfigError::Zero { field: "d_out" });
        }
        let max_rank = self.d_in.min(self.d_out);
        let check_rank = |rank: usize| {
            if rank == 0 {
                Err(ConfigError::Zero { field: "rank" })
            } else if rank > max_rank {
                Err(ConfigError::RankTooLarge {
                    rank,
                    max: max_rank,
                })
            } else {
                Ok(())
            }
        };
        let divides = |n_blocks: usize, field: &'static str, value: usize| {
            if value.is_multiple_of(n_blocks) {
                Ok(())
            } else {
                Err(ConfigError::BlocksDoNotDivide {
                    n_blocks,
                    field,
                    value,
                })
            }
        };
        match self.structure {
            Structure::Dense => {}
            Structure::LowRank { rank } => check_rank(rank)?,
            Structure::BlockDense { n_blocks, rank } => {
                check_rank(rank)?;
                if n_blocks == 0 {
                    return Err(ConfigError::Zero { field: "n_blocks" });
                }
                divides(n_blocks, "d_in", self.d_in)?;
                divides(n_blocks, "rank", rank)?;
            }
            Structure::BlockShuffle { n_blocks } => {
                if n_blocks == 0 {
                    return Err(ConfigError::Zero { field: "n_blocks" });
                }
                divides(n_blocks, "d_in", self.d_in)?;
                divides(n_blocks, "d_out", self.d_out)?;
            }
        }
        if self.inner_bias && !matches!(self.structure, Structure::LowRank { .. }) {
            return Err(ConfigError::InnerBiasNotApplicable {
                structure: self.structure.name(),
            });
        }
        match self.init {
            Init::Normal { std } | Init::Svd { std } | Init::Orthogonal { std } => {
                if !(std.is_finite() && std > 0.0) {
                    return Err(ConfigError::BadStd { std });
                }
            }
            Init::FanIn => {}
        }
        if let Init::Svd { .. } = self.init {
            if !matches!(self.structure, Structure::Dense | Structure::LowRank { .. }) {
                return Err(ConfigError::InitNotApplicable {
                    init: self.init.name(),
                    structure: self.structure.name(),
                });
            }
        }
        Ok(())
    }

    /// Number of weight parameters (biases excluded), exact.
    pub fn weight_params(&self) -> u64 {
        self.structure.weight_params(self.d_in, self.d_out)
    }

    /// Number of bias parameters: `d_out` for the output bias, plus `rank` for an inner bias.
    pub fn bias_params(&self) -> u64 {
        let inner = match self.structure {
            Structure::LowRank { rank } if self.inner_bias => rank as u64,
            _ => 0,
        };
        inner + if self.bias { self.d_out as u64 } else { 0 }
    }

    /// Forward FLOPs of the product for `tokens` input vectors, 2 per multiply-add.
    ///
    /// Every weight is used in exactly one multiply-add per token, so this is
    /// `2 * tokens * weight_params` for every structure; bias additions are not counted (docs/reference.md §3).
    pub fn forward_flops(&self, tokens: u64) -> u64 {
        2 * tokens * self.weight_params()
    }

    /// Ratio of this layer's weights to the dense `d_in x d_out` matrix's.
    pub fn params_ratio(&self) -> f64 {
        self.weight_params() as f64 / (self.d_in as f64 * self.d_out as f64)
    }
}
