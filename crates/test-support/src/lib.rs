//! strata's test harness (a dev-dependency only), one module per concern: the test backends
//! and their seeding ([`backend`]), reading values back and comparing them ([`compare`]), the
//! one shrunk model configuration ([`model`]), self-cleaning scratch folders ([`scratch`]) and
//! small generated text corpora ([`corpus`]).

pub mod backend;
pub mod compare;
pub mod corpus;
pub mod model;
pub mod scratch;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use backend::Gpu;
pub use backend::{copy_weights, rng_lock, seeded, Cpu, Cpu64};
pub use compare::{assert_close, max_abs_diff, rel_err, scalar, values};
pub use corpus::{grammar_corpus, pattern_corpus};
pub use model::{small_model, SMALL_MODEL};
pub use scratch::Scratch;
