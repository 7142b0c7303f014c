//! Structured linear layers for burn: Dense, LowRank, BlockDense and Monarch-style BlockShuffle
//! behind one swappable module ([`StructuredLinear`]), with initialisations, exact merge to a
//! dense matrix (pre-merge), projection of a dense matrix onto a structure, the self-guided
//! wrapper ([`SelfGuided`]) and exact parameter/FLOP accounting. Nothing here knows about
//! transformers.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::Tensor;
//! use structured_linear::{Structure, StructuredLinearConfig};
//!
//! let device = Default::default();
//! let config = StructuredLinearConfig::new(64, 256).with_structure(Structure::LowRank { rank: 16 });
//! let layer = config.init::<NdArray>(&device).unwrap();
//! let y = layer.forward(Tensor::<NdArray, 3>::zeros([2, 5, 64], &device));
//! assert_eq!(y.dims(), [2, 5, 256]);
//! assert_eq!(config.weight_params(), 16 * (64 + 256));
//! ```

mod config;
mod error;
mod guided;
mod layers;
mod linalg;
mod linear;

pub use config::{block_shuffle_inner, Init, Structure, StructuredLinearConfig};
pub use error::{ConfigError, LayerError};
pub use guided::SelfGuided;
pub use layers::{shuffle, BlockDense, BlockShuffle, Dense, LowRank};
pub use linalg::singular_values;
pub use linear::StructuredLinear;

#[cfg(test)]
mod tests;
