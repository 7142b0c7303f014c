//! Typed errors of the structured-linear crate.

use thiserror::Error;

/// A layer configuration that cannot be built; each variant names the offending field.
#[derive(Error, Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// A size that must be positive is zero.
    #[error("`{field}` must be at least 1, got 0")]
    Zero {
        /// The field name.
        field: &'static str,
    },
    /// The rank exceeds `min(d_in, d_out)`.
    #[error("`rank` = {rank} exceeds min(d_in, d_out) = {max}")]
    RankTooLarge {
        /// The configured rank.
        rank: usize,
        /// The largest valid rank.
        max: usize,
    },
    /// `n_blocks` does not divide a dimension it must divide.
    #[error("`n_blocks` = {n_blocks} does not divide `{field}` = {value}")]
    BlocksDoNotDivide {
        /// The block count.
        n_blocks: usize,
        /// The dimension's field name.
        field: &'static str,
        /// The dimension's value.
        value: usize,
    },
    /// A standard deviation that is not a positive finite number.
    #[error("`init.std` must be a positive finite number, got {std}")]
    BadStd {
        /// The configured value.
        std: f64,
    },
    /// An inner bias on a structure other than LowRank.
    #[error("`inner_bias` applies to lowrank layers only, not to `{structure}`")]
    InnerBiasNotApplicable {
        /// The structure's name.
        structure: &'static str,
    },
    /// An initialisation scheme that the structure does not support.
    #[error("`init` = {init} does not apply to structure `{structure}`")]
    InitNotApplicable {
        /// The scheme's name.
        init: &'static str,
        /// The structure's name.
        structure: &'static str,
    },
}

/// An operation on a layer that cannot be carried out.
#[derive(Error, Debug, Clone, PartialEq)]
pub enum LayerError {
    /// The layer configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A matrix handed to `factorize` does not have the configured shape.
    #[error("matrix has shape [{rows}, {cols}], expected [d_in, d_out] = [{d_in}, {d_out}]")]
    ShapeMismatch {
        /// Rows of the given matrix.
        rows: usize,
        /// Columns of the given matrix.
        cols: usize,
        /// Configured input size.
        d_in: usize,
        /// Configured output size.
        d_out: usize,
    },
    /// A bias vector of the wrong length.
    #[error("bias has length {len}, expected d_out = {d_out}")]
    BiasMismatch {
        /// Given length.
        len: usize,
        /// Configured output size.
        d_out: usize,
    },
    /// A bias was given for a layer configured without one, or none for one with a bias.
    #[error("bias given = {given}, but the configuration says bias = {configured}")]
    BiasPresence {
        /// Whether a bias was given.
        given: bool,
        /// Whether the configuration has one.
        configured: bool,
    },
    /// A mixing weight outside `[0, 1]`.
    #[error("self-guided `alpha` must lie in [0, 1], got {alpha}")]
    BadAlpha {
        /// The value given.
        alpha: f64,
    },
    /// The matrix holds non-finite values, or the SVD did not converge.
    #[error("singular value decomposition failed: {0}")]
    Svd(String),
}
