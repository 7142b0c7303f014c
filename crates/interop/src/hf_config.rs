//! Hugging Face `config.json` <-> [`TransformerConfig`] for the families strata reads and
//! writes: GPT-2 (`GPT2LMHeadModel`), Llama (`LlamaForCausalLM`, e.g. SmolLM) and Qwen2
//! (`Qwen2ForCausalLM`). Settings strata cannot compute exactly are refused, naming the field.

use std::path::Path;

use serde_json::{json, Map, Value};
use transformer::{
    ActivationKind, AttentionStructure, FfnStructure, NormKind, NormPlacement, Position,
    TransformerConfig,
};

use crate::error::InteropError;
use crate::tensors::WeightType;

/// A Hugging Face model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GPT-2: learned positions, LayerNorm, tanh GELU, biases, fused q/k/v Conv1D weights.
    Gpt2,
    /// Llama: RMSNorm, SwiGLU, GQA, RoPE, no biases (or biases everywhere).
    Llama,
    /// Qwen2: Llama with biases on q, k and v only.
    Qwen2,
}

impl Family {
    /// `model_type` of the family.
    pub fn model_type(&self) -> &'static str {
        match self {
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
        }
    }

    /// The class `transformers` builds for it.
    pub fn architecture(&self) -> &'static str {
        match self {
            Family::Gpt2 => "GPT2LMHeadModel",
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// Reads the fields of one config file.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, InteropError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    InteropError::bad_file(
                        self.path,
                        format!("{key} must be a positive integer, got {v}"),
                    )
                }),
        }
    }

    fn need(&self, key: &str) -> Result<usize, InteropError> {
        self.usize(key)?
            .ok_or_else(|| InteropError::bad_file(self.path, format!("has no {key}")))
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, InteropError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                InteropError::bad_file(self.path, format!("{key} must be a number, got {v}"))
            }),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, InteropError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                InteropError::bad_file(self.path, format!("{key} must be true or false, got {v}"))
            }),
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.as_str())
    }

    fn refuse(&self, problem: impl std::fmt::Display) -> InteropError {
        InteropError::unsupported(self.path, problem)
    }
}

/// The family and strata config of the Hugging Face `config.json` at `path`.
pub fn read_config(path: &Path) -> Result<(Family, TransformerConfig), InteropError> {
    let text = std::fs::read_to_string(path).map_err(|e| InteropError::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| InteropError::bad_file(path, e))?;
    let map = value
        .as_object()
        .ok_or_else(|| InteropError::bad_file(path, "is not a JSON object"))?;
    let f = Fields { map, path };
    let model_type = f.str("model_type").unwrap_or_default();
    let architecture = f
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    let family = match (model_type, architecture) {
        ("gpt2", _) | (_, "GPT2LMHeadModel") => Family::Gpt2,
        ("llama", _) | (_, "LlamaForCausalLM") => Family::Llama,
        ("qwen2", _) | (_, "Qwen2ForCausalLM") => Family::Qwen2,
        _ => {
            return Err(f.refuse(format!(
                "model_type {model_type:?} ({architecture}) is not a family strata reads (gpt2, llama, qwen2)"
            )))
        }
    };
    let config = match family {
        Family::Gpt2 => gpt2(&f)?,
        Family::Llama | Family::Qwen2 => llama(&f, family)?,
    };
    config
        .validate()
        .map_err(|e| InteropError::unsupported(path, e))?;
    Ok((family, config))
}

/// Everything but the sizes, as the family fixes it.
fn base(vocab_size: usize, d_model: usize, n_layers: usize) -> TransformerConfig {
    TransformerConfig {
        vocab_size,
        d_model,
        d_attn: d_model,
        d_ff: 4 * d_model,
        n_layers,
        n_heads: 1,
        n_kv_heads: 1,
        max_seq_len: 1,
        norm: NormKind::LayerNorm,
        norm_placement: NormPlacement::Pre,
        final_norm: true,
        activation: ActivationKind::Gelu,
        bias: true,
        qkv_bias: false,
        norm_eps: 1e-5,
        position: Position::Learned,
        tie_embeddings: true,
        head_bias: false,
        init_std: 0.02,
        dropout: 0.0,
        attn_dropout: 0.0,
        ffn: FfnStructure {
            dense_first_layer: false,
            ..FfnStructure::default()
        },
        attention: AttentionStructure::default(),
        self_guided: false,
        overrides: Default::default(),
    }
}

fn gpt2(f: &Fields) -> Result<TransformerConfig, InteropError> {
    let d = f.need("n_embd")?;
    let mut c = base(f.need("vocab_size")?, d, f.need("n_layer")?);
    c.n_heads = f.need("n_head")?;
    c.n_kv_heads = c.n_heads;
    c.d_ff = f.usize("n_inner")?.unwrap_or(4 * d);
    c.max_seq_len = f.need("n_positions")?;
    c.norm_eps = f.f64("layer_norm_epsilon")?.unwrap_or(1e-5);
    c.init_std = f.f64("initializer_range")?.unwrap_or(0.02);
    c.tie_embeddings = f.bool("tie_word_embeddings", true)?;
    let act = f.str("activation_function").unwrap_or("gelu_new");
    if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
        return Err(f.refuse(format!(
            "activation_function {act:?}: strata's GELU is the tanh form (gelu_new, gelu_pytorch_tanh)"
        )));
    }
    for (key, default, supported) in [
        ("scale_attn_weights", true, true),
        ("scale_attn_by_inverse_layer_idx", false, false),
        ("add_cross_attention", false, false),
    ] {
        if f.bool(key, default)? != supported {
            return Err(f.refuse(format!("{key} = {} is not supported", !supported)));
        }
    }
    Ok(c)
}

fn llama(f: &Fields, family: Family) -> Result<TransformerConfig, InteropError> {
    let d = f.need("hidden_size")?;
    let mut c = base(f.need("vocab_size")?, d, f.need("num_hidden_layers")?);
    c.n_heads = f.need("num_attention_heads")?;
    c.n_kv_heads = f.usize("num_key_value_heads")?.unwrap_or(c.n_heads);
    let head_dim = match f.usize("head_dim")? {
        Some(h) => h,
        None if d.is_multiple_of(c.n_heads) => d / c.n_heads,
        None => {
            return Err(f.refuse(
                "hidden_size is not a multiple of num_attention_heads and there is no head_dim",
            ))
        }
    };
    c.d_attn = head_dim * c.n_heads;
    c.d_ff = f.need("intermediate_size")?;
    c.max_seq_len = f.need("max_position_embeddings")?;
    c.norm = NormKind::RmsNorm;
    c.norm_eps = f.f64("rms_norm_eps")?.unwrap_or(1e-6);
    c.init_std = f.f64("initializer_range")?.unwrap_or(0.02);
    c.activation = ActivationKind::SwiGlu;
    c.tie_embeddings = f.bool("tie_word_embeddings", false)?;
    let act = f.str("hidden_act").unwrap_or("silu");
    if act != "silu" {
        return Err(f.refuse(format!(
            "hidden_act {act:?}: strata's gated FFN is SwiGLU (silu)"
        )));
    }
    c.position = Position::Rope {
        base: rope_theta(f)?,
    };
    match family {
        Family::Qwen2 => {
            if f.bool("use_sliding_window", false)? {
                return Err(f.refuse("use_sliding_window = true is not supported"));
            }
            c.bias = false;
            c.qkv_bias = true;
        }
        _ => {
            let attention = f.bool("attention_bias", false)?;
            let mlp = f.bool("mlp_bias", false)?;
            if attention != mlp {
                return Err(f.refuse(format!(
                    "attention_bias = {attention} with mlp_bias = {mlp}: strata has biases on every linear layer or none"
                )));
            }
            c.bias = attention;
        }
    }
    Ok(c)
}

/// `rope_theta` (transformers 4) or `rope_parameters.rope_theta` (transformers 5); scaled RoPE
/// variants are refused.
fn rope_theta(f: &Fields) -> Result<f64, InteropError> {
    let params = f.get("rope_parameters").or_else(|| f.get("rope_scaling"));
    if let Some(p) = params {
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("default");
        if kind != "default" {
            return Err(f.refuse(format!(
                "rope_type {kind:?}: strata's RoPE is the default (unscaled) one"
            )));
        }
        if let Some(theta) = p.get("rope_theta").and_then(|t| t.as_f64()) {
            return Ok(theta);
        }
    }
    Ok(f.f64("rope_theta")?.unwrap_or(10_000.0))
}

/// The Hugging Face family `config` can be written in, or why none fits.
pub fn family_of(c: &TransformerConfig) -> Result<Family, InteropError> {
    let common = [
        (
            c.norm_placement == NormPlacement::Pre,
            "norms before each branch (norm_placement = pre)",
        ),
        (c.final_norm, "a final norm"),
        (!c.head_bias, "no head bias"),
        (
            !c.attention.lowrank_bias_first,
            "no LowRank inner biases (lowrank_bias_first = false)",
        ),
    ];
    let gpt2 = [
        (c.norm == NormKind::LayerNorm, "layernorm"),
        (c.activation == ActivationKind::Gelu, "gelu"),
        (c.bias, "biases (bias = true)"),
        (c.position == Position::Learned, "learned positions"),
        (c.n_kv_heads == c.n_heads, "no grouped-query attention"),
        (c.d_attn == c.d_model, "d_attn = d_model"),
    ];
    let llama = [
        (c.norm == NormKind::RmsNorm, "rmsnorm"),
        (c.activation == ActivationKind::SwiGlu, "swiglu"),
        (matches!(c.position, Position::Rope { .. }), "rope"),
    ];
    let missing = |reqs: &[(bool, &'static str)]| -> Vec<&'static str> {
        common
            .iter()
            .chain(reqs)
            .filter(|(ok, _)| !ok)
            .map(|(_, what)| *what)
            .collect()
    };
    let (to_gpt2, to_llama) = (missing(&gpt2), missing(&llama));
    if to_gpt2.is_empty() {
        return Ok(Family::Gpt2);
    }
    if to_llama.is_empty() {
        return Ok(if c.qkv_bias && !c.bias {
            Family::Qwen2
        } else {
            Family::Llama
        });
    }
    Err(InteropError::NotExportable(format!(
        "GPT-2 needs {}; Llama needs {} (Hugging Face has no family for this combination)",
        to_gpt2.join(", "),
        to_llama.join(", ")
    )))
}

/// The Hugging Face `config.json` of `c` in `family`, weights stored as `dtype`; `eot` is the
/// end-of-text token (bos / eos), if the tokenizer has one.
pub fn write_config(
    family: Family,
    c: &TransformerConfig,
    dtype: WeightType,
    eot: Option<u32>,
) -> Value {
    let mut v = match family {
        Family::Gpt2 => json!({
            "n_embd": c.d_model,
            "n_layer": c.n_layers,
            "n_head": c.n_heads,
            "n_inner": c.d_ff,
            "n_positions": c.max_seq_len,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": c.norm_eps,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": true,
        }),
        Family::Llama | Family::Qwen2 => {
            let Position::Rope { base } = c.position else {
                unreachable!("family_of checked rope")
            };
            let mut v = json!({
                "hidden_size": c.d_model,
                "intermediate_size": c.d_ff,
                "num_hidden_layers": c.n_layers,
                "num_attention_heads": c.n_heads,
                "num_key_value_heads": c.n_kv_heads,
                "head_dim": c.head_dim(),
                "max_position_embeddings": c.max_seq_len,
                "rms_norm_eps": c.norm_eps,
                "rope_theta": base,
                "hidden_act": "silu",
                "attention_dropout": 0.0,
            });
            if family == Family::Llama {
                v["attention_bias"] = json!(c.bias);
                v["mlp_bias"] = json!(c.bias);
            } else {
                v["use_sliding_window"] = json!(false);
            }
            v
        }
    };
    v["architectures"] = json!([family.architecture()]);
    v["model_type"] = json!(family.model_type());
    v["vocab_size"] = json!(c.vocab_size);
    v["tie_word_embeddings"] = json!(c.tie_embeddings);
    v["initializer_range"] = json!(c.init_std);
    v["torch_dtype"] = json!(dtype.torch_name());
    if let Some(id) = eot {
        v["bos_token_id"] = json!(id);
        v["eos_token_id"] = json!(id);
    }
    v
}
