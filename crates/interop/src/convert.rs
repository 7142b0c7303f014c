//! `strata convert`: a dense (or any) checkpoint as a structured one. Each chosen matrix is
//! replaced by its best approximation in the structure ([`StructuredLinear::factorize`]:
//! truncated SVD, per block for BlockDense, per sub-matrix for BlockShuffle), sized by one
//! rank, a parameter budget, or the spectral energy each matrix keeps. With `self_guided` the
//! original matrix stays beside each structured one as its guide at alpha = 1, so the converted
//! model computes exactly the original until `strata train --init ... --sgt` decays alpha.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use serde::Serialize;
use storage::tokenizer::TOKENIZER;
use storage::weights::load_model;
use storage::{checkpoint, TrainState};
use structured_linear::{
    singular_values, SelfGuided, Structure, StructuredLinear, StructuredLinearConfig,
};
use transformer::{accounting, override_key, Place, Transformer, TransformerConfig};

use crate::error::InteropError;
use crate::folder::{check_out, replace};

/// The structure a conversion puts in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `U V`.
    LowRank,
    /// Block-diagonal then dense (`--blocks` blocks).
    BlockDense,
    /// Monarch-style (`--blocks` blocks; its size is fixed by them).
    BlockShuffle,
}

/// How large each structured matrix is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    /// This inner rank everywhere (LowRank, BlockDense).
    Rank(usize),
    /// At most this fraction of each matrix's dense parameters, as large as that allows.
    ParamsRatio(f64),
    /// Per matrix, the smallest rank keeping this fraction of its squared singular values
    /// (LowRank, BlockDense: over its row blocks).
    Energy(f64),
    /// No size given: BlockShuffle takes `blocks` blocks; LowRank and BlockDense need a size.
    Unsized,
}

/// What to convert, and how.
#[derive(Clone, Debug)]
pub struct ConvertSpec {
    /// Structure of the FFN matrices (fc1, SwiGLU's gate, fc2), if converted.
    pub ffn: Option<Kind>,
    /// Structure of the attention projections q, k, v, o (LPA), if converted.
    pub attention: Option<Kind>,
    /// Size of each structured matrix.
    pub size: Size,
    /// Blocks of BlockDense and BlockShuffle (BlockShuffle under `ParamsRatio`: the fewest
    /// blocks that meet the budget, and this is ignored).
    pub blocks: usize,
    /// Keep block 0 dense (as the papers do for models trained from scratch).
    pub keep_first_dense: bool,
    /// Keep each original matrix as the guide of its structured layer (alpha = 1).
    pub self_guided: bool,
    /// Replace a folder at the output path.
    pub force: bool,
}

/// One converted matrix.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// Block.
    pub layer: usize,
    /// `ffn.fc1`, `attention.q`, ...
    pub place: String,
    /// The structure put in place.
    pub structure: Structure,
    /// Its inner rank (LowRank, BlockDense).
    pub rank: Option<usize>,
    /// Weight parameters of the structure.
    pub params: u64,
    /// Weight parameters of the dense matrix it replaces.
    pub dense_params: u64,
    /// `||W - W_structured||_F / ||W||_F`.
    pub rel_error: f64,
    /// Fraction of `||W||_F^2` the structured matrix keeps, `1 - rel_error^2` (the projection is
    /// orthogonal).
    pub energy_kept: f64,
}

/// What a conversion wrote.
#[derive(Serialize, Clone, Debug)]
pub struct ConvertReport {
    /// Every converted matrix.
    pub layers: Vec<LayerReport>,
    /// Parameters of the source model (as a dense model).
    pub params_before: u64,
    /// Parameters of the converted model (guides excluded).
    pub params_after: u64,
    /// The checkpoint folder written.
    pub out: PathBuf,
    /// Its model.
    pub config: TransformerConfig,
}

/// Places converted by `spec` in a model of `config`.
fn converted(spec: &ConvertSpec, layer: usize, place: Place) -> Option<Kind> {
    if spec.keep_first_dense && layer == 0 {
        return None;
    }
    if place.is_attention() {
        spec.attention
    } else {
        spec.ffn
    }
}

/// The structure of a `d_in -> d_out` matrix `weight` under `kind` and `size`.
pub fn choose<B: Backend>(
    kind: Kind,
    size: Size,
    blocks: usize,
    weight: &Tensor<B, 2>,
) -> Result<Structure, InteropError> {
    let [d_in, d_out] = weight.dims();
    let dense = (d_in * d_out) as f64;
    let max_rank = d_in.min(d_out);
    let s =
        match (kind, size) {
            (Kind::BlockShuffle, Size::ParamsRatio(x)) => (2..=max_rank)
                .map(|b| Structure::BlockShuffle { n_blocks: b })
                .find(|s| {
                    (s.weight_params(d_in, d_out) as f64) <= x * dense
                        && structured_linear::StructuredLinearConfig::new(d_in, d_out)
                            .with_structure(*s)
                            .validate()
                            .is_ok()
                })
                .ok_or_else(|| {
                    InteropError::Invalid(format!(
                        "no BlockShuffle of a {d_in} x {d_out} matrix has at most {x} of its parameters"
                    ))
                })?,
            (Kind::BlockShuffle, Size::Rank(_) | Size::Unsized) => {
                Structure::BlockShuffle { n_blocks: blocks }
            }
            (Kind::BlockShuffle, Size::Energy(_)) => return Err(InteropError::Invalid(
                "blockshuffle is sized by its blocks (`blocks`) or `size.params_ratio`, not `size.energy`"
                    .into(),
            )),
            (Kind::LowRank | Kind::BlockDense, Size::Unsized) => {
                return Err(InteropError::Invalid(
                    "give the size: `size.rank` R, `size.params_ratio` X or `size.energy` E".into(),
                ))
            }
            (Kind::LowRank, Size::Rank(r)) => Structure::LowRank { rank: r },
            (Kind::BlockDense, Size::Rank(r)) => Structure::BlockDense {
                n_blocks: blocks,
                rank: r,
            },
            (Kind::LowRank, Size::ParamsRatio(x)) => Structure::LowRank {
                rank: ((x * dense / (d_in + d_out) as f64).floor() as usize).clamp(1, max_rank),
            },
            (Kind::BlockDense, Size::ParamsRatio(x)) => {
                let per = (d_in / blocks.max(1) + d_out) as f64;
                let r = (x * dense / per).floor() as usize / blocks * blocks;
                Structure::BlockDense {
                    n_blocks: blocks,
                    // At least one per block; more blocks than the matrix allows are left to the
                    // layer config's validation, which names them.
                    rank: r.min(max_rank / blocks * blocks).max(blocks),
                }
            }
            (Kind::LowRank, Size::Energy(e)) => {
                let s = singular_values(weight.clone())
                    .map_err(|e| InteropError::Invalid(e.to_string()))?;
                Structure::LowRank {
                    rank: energy_rank(&[s], e).clamp(1, max_rank),
                }
            }
            (Kind::BlockDense, Size::Energy(e)) => {
                if blocks == 0 || !d_in.is_multiple_of(blocks) {
                    return Err(InteropError::Invalid(format!(
                        "`blocks` {blocks} does not divide d_in = {d_in}"
                    )));
                }
                let p = d_in / blocks;
                let spectra = (0..blocks)
                    .map(|i| singular_values(weight.clone().narrow(0, i * p, p)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| InteropError::Invalid(e.to_string()))?;
                let per_block = energy_rank(&spectra, e).clamp(1, p.min(d_out));
                Structure::BlockDense {
                    n_blocks: blocks,
                    rank: per_block * blocks,
                }
            }
        };
    Ok(s)
}

/// The smallest `k` such that the `k` largest singular values of every spectrum together keep
/// at least `energy` of the total squared mass.
fn energy_rank(spectra: &[Vec<f64>], energy: f64) -> usize {
    let total: f64 = spectra.iter().flatten().map(|s| s * s).sum();
    let longest = spectra.iter().map(Vec::len).max().unwrap_or(0);
    let mut kept = 0.0;
    for k in 0..longest {
        kept += spectra
            .iter()
            .filter_map(|s| s.get(k))
            .map(|s| s * s)
            .sum::<f64>();
        if kept >= energy * total * (1.0 - 1e-12) {
            return k + 1;
        }
    }
    longest.max(1)
}

/// The dense weight and bias of every linear layer of a merged model.
fn dense_of<B: Backend>(layer: &SelfGuided<B>) -> (Tensor<B, 2>, Option<Tensor<B, 1>>) {
    (layer.layer.merged_weight(), layer.layer.bias())
}

/// The layer at `place` of block `layer`; `config.places()` lists only places the model has.
fn linear_ref<B: Backend>(model: &Transformer<B>, layer: usize, place: Place) -> &SelfGuided<B> {
    model.blocks[layer]
        .linear(place)
        .expect("a place of the model")
}

fn frobenius_sq<B: Backend>(m: Tensor<B, 2>) -> f64 {
    m.clone().mul(m).sum().into_scalar().elem::<f64>()
}

/// Converts the checkpoint `from` (a checkpoint folder or a run folder: its newest) by `spec`
/// into the checkpoint folder `out`, on `device`.
pub fn convert<B: Backend>(
    from: &Path,
    out: &Path,
    spec: &ConvertSpec,
    device: &B::Device,
) -> Result<ConvertReport, InteropError> {
    check_out(out, spec.force)?;
    check_spec(spec)?;
    let dir = checkpoint::resolve(from)?;
    let (source, _) = load_model::<B>(&dir, device)?;
    let source = source.merged();
    let base = source.config().clone();
    let chosen = choose_all(spec, &source)?;
    let config = converted_config(&base, &chosen, spec.self_guided)?;
    let (model, reports) = factorize_all(&source, &config, spec.self_guided, device)?;
    let state = TrainState {
        guides: model.has_guides(),
        alpha: if model.has_guides() { 1.0 } else { 0.0 },
        ..TrainState::default()
    };
    let mut model = model;
    if state.guides {
        model.set_alpha(1.0)?;
    }
    let tokenizer = Some(dir.join(TOKENIZER)).filter(|t| t.is_file());
    replace(out, spec.force, |tmp| {
        checkpoint::save_model(tmp, &model, &state, tokenizer.as_deref())
    })?;
    Ok(ConvertReport {
        layers: reports,
        params_before: accounting::params(&base).total,
        params_after: accounting::params(&config).total,
        out: out.to_path_buf(),
        config,
    })
}

/// Refuses a request that converts nothing or sizes its structures impossibly.
fn check_spec(spec: &ConvertSpec) -> Result<(), InteropError> {
    if spec.ffn.is_none() && spec.attention.is_none() {
        return Err(InteropError::Invalid(
            "nothing to convert: give `ffn` and/or `attention`".into(),
        ));
    }
    match spec.size {
        Size::Rank(0) => {
            return Err(InteropError::Invalid(
                "`size.rank` must be at least 1".into(),
            ))
        }
        Size::ParamsRatio(x) if !(x > 0.0 && x < 1.0) => {
            return Err(InteropError::Invalid(format!(
                "`size.params_ratio` {x} must lie in (0, 1)"
            )))
        }
        Size::Energy(e) if !(e > 0.0 && e <= 1.0) => {
            return Err(InteropError::Invalid(format!(
                "`size.energy` {e} must lie in (0, 1]"
            )))
        }
        _ => {}
    }
    let uses_blocks = [spec.ffn, spec.attention]
        .iter()
        .any(|k| matches!(k, Some(Kind::BlockDense | Kind::BlockShuffle)));
    if uses_blocks && spec.blocks < 2 {
        return Err(InteropError::Invalid(format!(
            "`blocks` {} must be at least 2",
            spec.blocks
        )));
    }
    Ok(())
}

/// The structure of every converted matrix, by (layer, place path).
type Chosen = BTreeMap<(usize, String), (Place, Structure)>;

/// Chooses the structure of every matrix the request converts, from the matrix itself.
fn choose_all<B: Backend>(
    spec: &ConvertSpec,
    source: &Transformer<B>,
) -> Result<Chosen, InteropError> {
    let base = source.config();
    let mut chosen = Chosen::new();
    for layer in 0..base.n_layers {
        for place in base.places() {
            if let Some(kind) = converted(spec, layer, place) {
                let (w, _) = dense_of(linear_ref(source, layer, place));
                let s = choose(kind, spec.size, spec.blocks, &w).map_err(|e| match e {
                    InteropError::Invalid(m) => {
                        InteropError::Invalid(format!("{}: {m}", path(layer, place)))
                    }
                    e => e,
                })?;
                chosen.insert((layer, place.path().to_string()), (place, s));
            }
        }
    }
    Ok(chosen)
}

/// The converted model's config: each place's first structure as its default, the rest as
/// overrides.
fn converted_config(
    base: &TransformerConfig,
    chosen: &Chosen,
    self_guided: bool,
) -> Result<TransformerConfig, InteropError> {
    let mut config = base.clone();
    config.ffn.dense_first_layer = false;
    let first = |p: Place| {
        chosen
            .values()
            .find(|(q, _)| *q == p)
            .map(|(_, s)| *s)
            .unwrap_or(Structure::Dense)
    };
    config.ffn.fc1 = first(Place::Fc1);
    config.ffn.fc2 = first(Place::Fc2);
    config.attention.q = first(Place::Q);
    config.attention.k = first(Place::K);
    config.attention.v = first(Place::V);
    config.attention.o = first(Place::O);
    for layer in 0..base.n_layers {
        for place in base.places() {
            let want = chosen
                .get(&(layer, place.path().to_string()))
                .map_or(Structure::Dense, |(_, s)| *s);
            if config.linear(layer, place).structure != want {
                config.overrides.insert(override_key(layer, place), want);
            }
        }
    }
    config.self_guided = self_guided;
    config
        .validate()
        .map_err(|e| InteropError::Invalid(format!("the converted model: {e}")))?;
    Ok(config)
}

/// The model of `config`: the source's embeddings, norms and head; each linear layer
/// factorised from the source's (with the dense matrix as its guide when `self_guided`).
fn factorize_all<B: Backend>(
    source: &Transformer<B>,
    config: &TransformerConfig,
    self_guided: bool,
    device: &B::Device,
) -> Result<(Transformer<B>, Vec<LayerReport>), InteropError> {
    let mut model = config.init::<B>(device)?;
    model.tok_emb = source.tok_emb.clone();
    model.pos_emb = source.pos_emb.clone();
    model.final_norm = source.final_norm.clone();
    model.head = source.head.clone();
    model.head_bias = source.head_bias.clone();
    let mut reports = Vec::new();
    for layer in 0..config.n_layers {
        model.blocks[layer].norm1 = source.blocks[layer].norm1.clone();
        model.blocks[layer].norm2 = source.blocks[layer].norm2.clone();
        for place in config.places() {
            let (w, bias) = dense_of(linear_ref(source, layer, place));
            let lc = config.linear(layer, place);
            let built = StructuredLinear::factorize(&lc, w.clone(), bias).map_err(|source| {
                InteropError::Layer {
                    place: path(layer, place),
                    source,
                }
            })?;
            let is_structured = lc.structure != Structure::Dense;
            if is_structured {
                reports.push(layer_report(layer, place, &lc, &built, w.clone()));
            }
            *model.blocks[layer]
                .linear_mut(place)
                .expect("a place of the model") = if is_structured && self_guided {
                SelfGuided::with_guide(built, w)
            } else {
                SelfGuided::plain(built)
            };
        }
    }
    Ok((model, reports))
}

/// How well the structured layer `built` approximates its dense matrix `w`.
fn layer_report<B: Backend>(
    layer: usize,
    place: Place,
    lc: &StructuredLinearConfig,
    built: &StructuredLinear<B>,
    w: Tensor<B, 2>,
) -> LayerReport {
    let norm = frobenius_sq(w.clone());
    let err = frobenius_sq(built.merged_weight() - w);
    let rel = if norm > 0.0 { (err / norm).sqrt() } else { 0.0 };
    LayerReport {
        layer,
        place: place.path().into(),
        structure: lc.structure,
        rank: match lc.structure {
            Structure::LowRank { rank } | Structure::BlockDense { rank, .. } => Some(rank),
            _ => None,
        },
        params: lc.structure.weight_params(lc.d_in, lc.d_out),
        dense_params: (lc.d_in * lc.d_out) as u64,
        rel_error: rel,
        energy_kept: 1.0 - rel * rel,
    }
}

fn path(layer: usize, place: Place) -> String {
    format!("blocks.{layer}.{}", place.path())
}
