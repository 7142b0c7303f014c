//! Where each weight of a dense strata model sits in a Hugging Face checkpoint of its family,
//! and the two directions of the mapping. strata stores linear weights input-major (`[d_in,
//! d_out]`, as GPT-2's Conv1D); Llama's `nn.Linear` stores them output-major; GPT-2 fuses q, k
//! and v side by side in one `c_attn`.

use std::collections::BTreeMap;

use transformer::{NormKind, Position, TransformerConfig};

use crate::error::InteropError;
use crate::hf_config::Family;
use crate::tensors::{HostTensor, Tensors};

/// The tensors of a dense model of `config` and their shapes, by the names its checkpoints use
/// (the names and shapes [`crate::snapshot::shapes`] reads from a built model; a test keeps the
/// two equal), computed from the config alone, so that a checkpoint can be checked before the
/// model is built.
pub fn dense_shapes(config: &TransformerConfig) -> BTreeMap<String, Vec<usize>> {
    let (d, v) = (config.d_model, config.vocab_size);
    let mut out = BTreeMap::new();
    let norm = |name: String, out: &mut BTreeMap<String, Vec<usize>>| match config.norm {
        NormKind::LayerNorm => {
            out.insert(format!("{name}.Layer.gamma"), vec![d]);
            out.insert(format!("{name}.Layer.beta"), vec![d]);
        }
        NormKind::RmsNorm => {
            out.insert(format!("{name}.Rms.gamma"), vec![d]);
        }
    };
    out.insert("tok_emb".into(), vec![v, d]);
    if config.position == Position::Learned {
        out.insert("pos_emb".into(), vec![config.max_seq_len, d]);
    }
    for i in 0..config.n_layers {
        norm(format!("blocks.{i}.norm1"), &mut out);
        norm(format!("blocks.{i}.norm2"), &mut out);
        for place in config.places() {
            let lc = config.linear(i, place);
            let module = place.path().replace("attention.", "attn.");
            let name = format!("blocks.{i}.{module}.layer.Dense");
            out.insert(format!("{name}.weight"), vec![lc.d_in, lc.d_out]);
            if lc.bias {
                out.insert(format!("{name}.bias"), vec![lc.d_out]);
            }
        }
    }
    if config.final_norm {
        norm("final_norm".into(), &mut out);
    }
    if !config.tie_embeddings {
        out.insert("head".into(), vec![d, v]);
        if config.head_bias {
            out.insert("head_bias".into(), vec![v]);
        }
    }
    out
}

/// How a Hugging Face tensor holds strata tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The same values and shape.
    Same,
    /// The transpose of the one strata matrix.
    Transposed,
    /// The strata tensors side by side along the last dimension (GPT-2's `c_attn`).
    Columns,
}

/// One Hugging Face tensor and the strata tensors it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its name in the Hugging Face checkpoint.
    pub hf: String,
    /// The strata tensors, in order.
    pub strata: Vec<String>,
    /// How.
    pub form: Form,
}

fn link(hf: String, strata: &[String], form: Form) -> Link {
    Link {
        hf,
        strata: strata.to_vec(),
        form,
    }
}

/// Every link of a dense model of `config` in `family`, restricted to the strata tensors that
/// exist (`shapes`: the model's tensors and their shapes).
// Long on purpose: a table: every Hugging Face tensor of each family and its strata tensors, layer by layer.
pub fn links(
    family: Family,
    config: &TransformerConfig,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Vec<Link> {
    let mut out = Vec::new();
    let norm = match family {
        Family::Gpt2 => "Layer",
        _ => "Rms",
    };
    // (HF name of a norm, strata norm) -> weight (and bias) links.
    let norm_links = |hf: String, strata: String, out: &mut Vec<Link>| {
        out.push(link(
            format!("{hf}.weight"),
            &[format!("{strata}.{norm}.gamma")],
            Form::Same,
        ));
        out.push(link(
            format!("{hf}.bias"),
            &[format!("{strata}.{norm}.beta")],
            Form::Same,
        ));
    };
    let lin = |block: usize, place: &str, part: &str| {
        format!("blocks.{block}.{place}.layer.Dense.{part}")
    };
    match family {
        Family::Gpt2 => {
            out.push(link(
                "transformer.wte.weight".into(),
                &["tok_emb".into()],
                Form::Same,
            ));
            out.push(link(
                "transformer.wpe.weight".into(),
                &["pos_emb".into()],
                Form::Same,
            ));
            for i in 0..config.n_layers {
                let h = format!("transformer.h.{i}");
                norm_links(format!("{h}.ln_1"), format!("blocks.{i}.norm1"), &mut out);
                norm_links(format!("{h}.ln_2"), format!("blocks.{i}.norm2"), &mut out);
                for part in ["weight", "bias"] {
                    let qkv = ["attn.q", "attn.k", "attn.v"].map(|p| lin(i, p, part));
                    out.push(link(format!("{h}.attn.c_attn.{part}"), &qkv, Form::Columns));
                    for (hf, strata) in [
                        ("attn.c_proj", "attn.o"),
                        ("mlp.c_fc", "ffn.fc1"),
                        ("mlp.c_proj", "ffn.fc2"),
                    ] {
                        out.push(link(
                            format!("{h}.{hf}.{part}"),
                            &[lin(i, strata, part)],
                            Form::Same,
                        ));
                    }
                }
            }
            norm_links("transformer.ln_f".into(), "final_norm".into(), &mut out);
        }
        Family::Llama | Family::Qwen2 => {
            out.push(link(
                "model.embed_tokens.weight".into(),
                &["tok_emb".into()],
                Form::Same,
            ));
            for i in 0..config.n_layers {
                let h = format!("model.layers.{i}");
                norm_links(
                    format!("{h}.input_layernorm"),
                    format!("blocks.{i}.norm1"),
                    &mut out,
                );
                norm_links(
                    format!("{h}.post_attention_layernorm"),
                    format!("blocks.{i}.norm2"),
                    &mut out,
                );
                for (hf, strata) in [
                    ("self_attn.q_proj", "attn.q"),
                    ("self_attn.k_proj", "attn.k"),
                    ("self_attn.v_proj", "attn.v"),
                    ("self_attn.o_proj", "attn.o"),
                    ("mlp.gate_proj", "ffn.gate"),
                    ("mlp.up_proj", "ffn.fc1"),
                    ("mlp.down_proj", "ffn.fc2"),
                ] {
                    out.push(link(
                        format!("{h}.{hf}.weight"),
                        &[lin(i, strata, "weight")],
                        Form::Transposed,
                    ));
                    out.push(link(
                        format!("{h}.{hf}.bias"),
                        &[lin(i, strata, "bias")],
                        Form::Same,
                    ));
                }
            }
            norm_links("model.norm".into(), "final_norm".into(), &mut out);
        }
    }
    out.push(link(
        "lm_head.weight".into(),
        &["head".into()],
        Form::Transposed,
    ));
    out.retain(|l| l.strata.iter().all(|s| shapes.contains_key(s)));
    out
}

/// Whether a Hugging Face tensor that no link reads may be left out: buffers some checkpoints
/// carry (GPT-2's causal masks, Llama's `inv_freq`) and a tied head's copy of the embedding.
fn ignorable(name: &str, config: &TransformerConfig) -> bool {
    name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
        || (name == "lm_head.weight" && config.tie_embeddings)
}

/// The checkpoint's name for `name` (GPT-2 files written by `GPT2Model` have no
/// `transformer.` prefix).
fn normalise(family: Family, name: &str) -> String {
    match family {
        Family::Gpt2 if !name.starts_with("transformer.") && name != "lm_head.weight" => {
            format!("transformer.{name}")
        }
        _ => name.to_string(),
    }
}

/// The strata tensors held by the Hugging Face tensors `hf`: every link must find its tensor
/// with the expected shape, and every other tensor must be [`ignorable`].
pub fn from_hf(
    family: Family,
    config: &TransformerConfig,
    shapes: &BTreeMap<String, Vec<usize>>,
    hf: Tensors,
) -> Result<Tensors, InteropError> {
    let mut hf: Tensors = hf
        .into_iter()
        .map(|(k, v)| (normalise(family, &k), v))
        .collect();
    let mut out = Tensors::new();
    for l in links(family, config, shapes) {
        let t = hf.remove(&l.hf).ok_or_else(|| {
            InteropError::tensor(
                &l.hf,
                format!(
                    "is missing (a {} model of this config has it)",
                    family.model_type()
                ),
            )
        })?;
        let want: Vec<Vec<usize>> = l.strata.iter().map(|s| shapes[s].clone()).collect();
        let expected = match l.form {
            Form::Same => want[0].clone(),
            Form::Transposed => vec![want[0][1], want[0][0]],
            Form::Columns => {
                let mut shape = want[0].clone();
                *shape.last_mut().expect("a dim") =
                    want.iter().map(|w| *w.last().expect("a dim")).sum();
                shape
            }
        };
        if t.shape != expected {
            return Err(InteropError::tensor(
                &l.hf,
                format!(
                    "has shape {:?}; config.json implies {:?}",
                    t.shape, expected
                ),
            ));
        }
        match l.form {
            Form::Same => {
                out.insert(l.strata[0].clone(), t);
            }
            Form::Transposed => {
                out.insert(l.strata[0].clone(), t.transpose());
            }
            Form::Columns => {
                let mut start = 0;
                for (name, shape) in l.strata.iter().zip(&want) {
                    let width = *shape.last().expect("a dim");
                    out.insert(name.clone(), t.columns(start, width));
                    start += width;
                }
            }
        }
    }
    if let Some(name) = hf.keys().find(|n| !ignorable(n, config)) {
        return Err(InteropError::tensor(
            name,
            format!(
                "is not part of a {} model of this config (config.json and the weights disagree)",
                family.model_type()
            ),
        ));
    }
    Ok(out)
}

/// The Hugging Face tensors of the dense strata tensors `strata` (every one must be linked).
pub fn to_hf(
    family: Family,
    config: &TransformerConfig,
    strata: &Tensors,
) -> Result<Tensors, InteropError> {
    let shapes = strata
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone()))
        .collect();
    let links = links(family, config, &shapes);
    let mut out = Tensors::new();
    for l in &links {
        let t = match l.form {
            Form::Same => strata[&l.strata[0]].clone(),
            Form::Transposed => strata[&l.strata[0]].transpose(),
            Form::Columns => HostTensor::concat_columns(
                &l.strata
                    .iter()
                    .map(|s| strata[s].clone())
                    .collect::<Vec<_>>(),
            ),
        };
        out.insert(l.hf.clone(), t);
    }
    if let Some(name) = strata
        .keys()
        .find(|n| !links.iter().any(|l| l.strata.contains(n)))
    {
        return Err(InteropError::NotExportable(format!(
            "tensor {name} has no place in a {} checkpoint",
            family.model_type()
        )));
    }
    Ok(out)
}
