//! strata's test harness (a dev-dependency, and `cargo xtask chaos`'s), one module per
//! concern: the test backends and their seeding ([`backend`]), reading values back and
//! comparing them ([`compare`]), the one shrunk model configuration ([`model`]), self-cleaning
//! scratch folders ([`scratch`]), small generated text corpora ([`corpus`]), the
//! kill-anywhere harness ([`chaos`]) and pages opened in a headless browser ([`browser`]).
//! Without the default `burn` feature only the last five.

#[cfg(feature = "burn")]
pub mod backend;
pub mod browser;
pub mod chaos;
#[cfg(feature = "burn")]
pub mod compare;
pub mod corpus;
pub mod model;
pub mod scratch;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use backend::Gpu;
#[cfg(feature = "burn")]
pub use backend::{copy_weights, rng_lock, seeded, Cpu, Cpu64};
#[cfg(feature = "burn")]
pub use compare::{assert_close, assert_rel_close, max_abs_diff, rel_err, scalar, values};
pub use corpus::{grammar_corpus, pattern_corpus};
pub use model::{small_model, SMALL_MODEL};
pub use scratch::Scratch;
