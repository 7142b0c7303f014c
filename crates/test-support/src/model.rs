//! The one shrunk model configuration the tests build on, as TOML text so that every crate
//! (the transformer's own unit tests included) parses it into its own `TransformerConfig`.
//!
//! The recipe of the tiny zoo models (pre-LayerNorm, tanh GELU, biases, RoPE, tied embeddings,
//! dense FFN) at width 32 with 2 layers, 4 heads, vocab 50 and context 16: small enough that a
//! forward and backward pass takes milliseconds in f64 on the CPU and a shader compiles quickly
//! on a software GPU driver. Tests change the fields they are about on the parsed value.

use serde::de::DeserializeOwned;

/// The shrunk model (see the module's documentation).
pub const SMALL_MODEL: &str = r#"
vocab_size = 50
d_model = 32
d_attn = 32
d_ff = 64
n_layers = 2
n_heads = 4
n_kv_heads = 4
max_seq_len = 16
norm = "layernorm"
norm_placement = "pre"
final_norm = true
activation = "gelu"
bias = true
position = { kind = "rope", base = 10000.0 }
tie_embeddings = true
head_bias = false
init_std = 0.1
"#;

/// [`SMALL_MODEL`] parsed into the caller's config type.
pub fn small_model<C: DeserializeOwned>() -> C {
    toml::from_str(SMALL_MODEL).unwrap_or_else(|e| panic!("SMALL_MODEL does not parse: {e}"))
}
