//! Exact parameter counts of every structure, straight from docs/reference.md §1's formulas.

use crate::config::{Structure, StructuredLinearConfig};

/// Inner dimension `q` of a BlockShuffle layer: each first-factor block maps `d_in / b -> q`
/// and each second-factor block maps `q -> d_out / b`, with `q = min(d_in, d_out) / b`.
pub fn block_shuffle_inner(d_in: usize, d_out: usize, n_blocks: usize) -> usize {
    d_in.min(d_out) / n_blocks
}

/// Number of weight parameters of a layer (biases excluded).
///
/// - Dense: `d_in * d_out`
/// - LowRank: `r * (d_in + d_out)`
/// - BlockDense: `r * d_in / b + d_out * r`
/// - BlockShuffle: `d_in^2 / b + d_out * d_in / b` if `d_in < d_out`, else `d_out * d_in / b + d_out^2 / b`
pub fn weight_params(config: &StructuredLinearConfig) -> u64 {
    let d_in = config.d_in as u64;
    let d_out = config.d_out as u64;
    match config.structure {
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
