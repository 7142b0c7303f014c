//! Tests of the transformer on the CPU (burn-ndarray, f64), one file per concern; this one holds
//! the shared helpers (seeded backend, value extraction, small configs and token sequences).

use burn::backend::Autodiff;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use structured_linear::Structure;
use test_support::{assert_close, max_abs_diff, small_model, values, Cpu64};

use crate::accounting::{forward_flops, params, training_flops};
use crate::zoo::{Zoo, ZooError};
use crate::*;

type TB = Cpu64;
type AB = Autodiff<Cpu64>;

/// Seeds `B`'s generator on its default device and holds the harness's random-generator lock.
fn seeded<B: Backend>(seed: u64) -> std::sync::MutexGuard<'static, ()> {
    test_support::seeded::<B>(&Default::default(), seed)
}

fn tokens<B: Backend>(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
    let t = ids.len() / batch;
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [batch, t]),
        &Default::default(),
    )
}

/// The harness's shrunk config (`test_support::SMALL_MODEL`); `f` adjusts it.
fn small(f: impl FnOnce(&mut TransformerConfig)) -> TransformerConfig {
    let mut c: TransformerConfig = small_model();
    f(&mut c);
    c.validate().unwrap();
    c
}

fn lowrank(rank: usize) -> Structure {
    Structure::LowRank { rank }
}

/// The configurations the equivalence tests run over.
fn variants() -> Vec<(&'static str, TransformerConfig)> {
    vec![
        ("dense", small(|_| {})),
        (
            "lowrank",
            small(|c| {
                c.ffn.fc1 = lowrank(8);
                c.ffn.fc2 = lowrank(8);
            }),
        ),
        (
            "blockshuffle",
            small(|c| {
                c.ffn.fc1 = Structure::BlockShuffle { n_blocks: 4 };
                c.ffn.fc2 = Structure::BlockShuffle { n_blocks: 4 };
                c.ffn.dense_first_layer = false;
            }),
        ),
        (
            "per-layer structures",
            small(|c| {
                c.ffn.fc1 = lowrank(8);
                c.ffn.fc2 = lowrank(8);
                c.overrides.insert(override_key(1, Place::Fc1), lowrank(4));
                c.overrides.insert(override_key(0, Place::Q), lowrank(6));
                c.overrides.insert(
                    override_key(1, Place::Fc2),
                    Structure::BlockDense {
                        n_blocks: 2,
                        rank: 8,
                    },
                );
            }),
        ),
        (
            "gqa",
            small(|c| {
                c.n_kv_heads = 2;
                c.d_attn = 48;
                c.n_heads = 4;
            }),
        ),
        (
            "lpa",
            small(|c| {
                c.attention = AttentionStructure {
                    q: lowrank(8),
                    k: lowrank(8),
                    v: lowrank(8),
                    o: lowrank(8),
                    ..Default::default()
                };
                c.norm = NormKind::RmsNorm;
                c.activation = ActivationKind::SwiGlu;
                c.bias = false;
                c.tie_embeddings = false;
                c.head_bias = true;
            }),
        ),
        (
            // Qwen2's layout: no biases but on q, k and v; RMSNorm with its epsilon; SwiGLU; GQA.
            "qwen2-style",
            small(|c| {
                c.norm = NormKind::RmsNorm;
                c.norm_eps = 1e-6;
                c.activation = ActivationKind::SwiGlu;
                c.bias = false;
                c.qkv_bias = true;
                c.n_kv_heads = 2;
                c.tie_embeddings = false;
            }),
        ),
        (
            "lpa-370m-style",
            small(|c| {
                c.attention = AttentionStructure {
                    q: lowrank(8),
                    k: lowrank(8),
                    v: lowrank(8),
                    o: lowrank(8),
                    lowrank_bias_first: true,
                    init: None,
                };
                c.norm_placement = NormPlacement::BranchOutput;
                c.final_norm = false;
                c.activation = ActivationKind::Relu;
                c.position = Position::Learned;
                c.tie_embeddings = false;
                c.head_bias = true;
            }),
        ),
    ]
}

fn sequence(n: usize, vocab: usize, salt: usize) -> Vec<i64> {
    (0..n)
        .map(|i| ((i * 7 + salt * 13 + 3) % vocab) as i64)
        .collect()
}

mod accounting;
mod attention;
mod cache;
mod generation;
mod learning;
mod merge;
mod sampling;
mod zoo;
