//! Tests of the transformer on the CPU (burn-ndarray, f64): cache parity, causality, RoPE,
//! pre-merge, grouped-query attention against a direct computation, sampler invariants, the zoo
//! and its parameter counts, accounting, and that a tiny model can learn.
//!
//! Long on purpose: one file per crate of unit tests, in sections by concern; splitting it into
//! files is planned.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use structured_linear::Structure;

use crate::accounting::{forward_flops, params, training_flops};
use crate::zoo::{Zoo, ZooError};
use crate::*;

type TB = NdArray<f64>;
type AB = Autodiff<NdArray<f64>>;

/// The backend's random generator is global: tests that draw from it hold this lock.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded<B: Backend>(seed: u64) -> std::sync::MutexGuard<'static, ()> {
    let guard = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(&Default::default(), seed);
    guard
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn tokens<B: Backend>(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
    let t = ids.len() / batch;
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [batch, t]),
        &Default::default(),
    )
}

/// A small config; `f` adjusts it.
fn small(f: impl FnOnce(&mut TransformerConfig)) -> TransformerConfig {
    let mut c = TransformerConfig {
        vocab_size: 50,
        d_model: 32,
        d_attn: 32,
        d_ff: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 4,
        max_seq_len: 16,
        norm: NormKind::LayerNorm,
        norm_placement: NormPlacement::Pre,
        final_norm: true,
        activation: ActivationKind::Gelu,
        bias: true,
        position: Position::default(),
        tie_embeddings: true,
        head_bias: false,
        init_std: 0.1,
        dropout: 0.0,
        attn_dropout: 0.0,
        ffn: FfnStructure::default(),
        attention: AttentionStructure::default(),
        self_guided: false,
    };
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

#[test]
fn cached_decoding_equals_the_full_causal_forward() {
    let _rng = seeded::<TB>(1);
    for (name, config) in variants() {
        let model = config.init::<TB>(&Default::default()).unwrap();
        let ids: Vec<i64> = [sequence(10, 50, 0), sequence(10, 50, 1)].concat();
        let full = values(model.forward(tokens(&ids, 2)).unwrap());
        let mut cache = KvCache::new(&config);
        // Prefill 4 tokens, then one token at a time.
        let prefix: Vec<i64> = [&ids[0..4], &ids[10..14]].concat();
        let mut cached = vec![values(
            model
                .forward_cached(tokens(&prefix, 2), &mut cache)
                .unwrap(),
        )];
        for t in 4..10 {
            let step = [ids[t], ids[10 + t]];
            cached.push(values(
                model.forward_cached(tokens(&step, 2), &mut cache).unwrap(),
            ));
        }
        assert_eq!(cache.len(), 10);
        // Reassemble [batch, seq, vocab] from the pieces.
        let v = 50;
        let mut assembled = vec![0.0; full.len()];
        for b in 0..2 {
            for t in 0..10 {
                let (piece, pos, len) = if t < 4 { (0, t, 4) } else { (t - 3, 0, 1) };
                let src = &cached[piece][(b * len + pos) * v..(b * len + pos + 1) * v];
                assembled[(b * 10 + t) * v..(b * 10 + t + 1) * v].copy_from_slice(src);
            }
        }
        let diff = max_abs_diff(&assembled, &full);
        assert!(diff < 1e-9, "{name}: cached vs full differ by {diff}");
    }
}

#[test]
fn the_cache_refuses_to_overflow_and_resets() {
    let _rng = seeded::<TB>(2);
    let config = small(|_| {});
    let model = config.init::<TB>(&Default::default()).unwrap();
    let mut cache = KvCache::new(&config);
    model
        .forward_cached(tokens(&sequence(12, 50, 0), 1), &mut cache)
        .unwrap();
    let err = model
        .forward_cached(tokens(&sequence(5, 50, 0), 1), &mut cache)
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::ContextOverflow {
            needed: 17,
            capacity: 16
        }
    );
    assert_eq!(cache.len(), 12, "a refused call leaves the cache as it was");
    let err = model
        .forward_cached(tokens(&sequence(4, 50, 0), 2), &mut cache)
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::CacheBatch {
            cached: 1,
            given: 2
        }
    );
    cache.reset();
    assert!(cache.is_empty());
    model
        .forward_cached(tokens(&sequence(16, 50, 0), 1), &mut cache)
        .unwrap();
    let err = model.forward(tokens(&sequence(17, 50, 0), 1)).unwrap_err();
    assert!(matches!(
        err,
        ModelError::ContextOverflow { needed: 17, .. }
    ));
}

#[test]
fn changing_a_later_token_never_changes_earlier_logits() {
    let _rng = seeded::<TB>(3);
    for (name, config) in variants() {
        let model = config.init::<TB>(&Default::default()).unwrap();
        let a = sequence(12, 50, 0);
        let mut b = a.clone();
        b[7] = (b[7] + 1) % 50;
        let la = values(model.forward(tokens(&a, 1)).unwrap());
        let lb = values(model.forward(tokens(&b, 1)).unwrap());
        let v = 50;
        assert_eq!(
            la[..7 * v],
            lb[..7 * v],
            "{name}: positions before the change moved"
        );
        assert!(
            max_abs_diff(&la[7 * v..], &lb[7 * v..]) > 1e-6,
            "{name}: the change had no effect"
        );
    }
}

#[test]
fn rope_scores_depend_only_on_the_distance() {
    let _rng = seeded::<TB>(4);
    let device = Default::default();
    let q = Tensor::<TB, 4>::random([1, 1, 1, 16], Distribution::Normal(0.0, 1.0), &device);
    let k = Tensor::<TB, 4>::random([1, 1, 1, 16], Distribution::Normal(0.0, 1.0), &device);
    let rope = Rope::<TB>::new(32, 16, 10_000.0, &device);
    let score = |pq: usize, pk: usize| {
        let a = rope.apply(q.clone(), pq);
        let b = rope.apply(k.clone(), pk);
        values((a * b).sum())[0]
    };
    for (pq, pk) in [(5, 2), (9, 9), (3, 7)] {
        let base = score(pq, pk);
        for shift in [1, 4, 11] {
            let shifted = score(pq + shift, pk + shift);
            assert!(
                (base - shifted).abs() < 1e-10,
                "({pq},{pk}) shift {shift}: {base} vs {shifted}"
            );
        }
    }
    assert!(
        (score(5, 2) - score(5, 3)).abs() > 1e-6,
        "the score must depend on the distance"
    );
    // Rotation keeps the norm.
    let n0 = values(q.clone().powf_scalar(2.0).sum())[0];
    let n1 = values(rope.apply(q.clone(), 6).powf_scalar(2.0).sum())[0];
    assert!((n0 - n1).abs() < 1e-10);
}

#[test]
fn merged_and_dispatching_models_match_the_structured_one() {
    let _rng = seeded::<TB>(5);
    let device = Default::default();
    for (name, config) in variants() {
        let model = config.init::<TB>(&device).unwrap();
        let merged = model.merged();
        assert_eq!(
            merged.num_params() as u64,
            params(merged.config()).total,
            "{name}"
        );
        let ids = sequence(9, 50, 2);
        let a = values(model.forward(tokens(&ids, 1)).unwrap());
        let b = values(merged.forward(tokens(&ids, 1)).unwrap());
        assert!(max_abs_diff(&a, &b) < 1e-9, "{name}: merged logits differ");
        let dispatching = Dispatching::new(model.clone(), 4);
        let c = values(dispatching.forward(tokens(&ids, 1)).unwrap());
        assert!(
            max_abs_diff(&a, &c) < 1e-9,
            "{name}: dispatching logits differ"
        );
        let gen = GenerateConfig {
            max_new_tokens: 6,
            sampling: SamplingConfig {
                temperature: 0.0,
                ..Default::default()
            },
            stop_token: None,
        };
        let prompt: Vec<u32> = ids.iter().map(|&t| t as u32).collect();
        let g1 = generate(&model, &prompt, &gen, &device).unwrap();
        let g2 = generate(&merged, &prompt, &gen, &device).unwrap();
        let g3 = generate(&dispatching, &prompt, &gen, &device).unwrap();
        assert_eq!(g1.len(), 6);
        assert_eq!(g1, g2, "{name}: merged continuation differs");
        assert_eq!(g1, g3, "{name}: dispatching continuation differs");
    }
}

/// Grouped-query attention written out head by head with plain loops.
fn direct_attention(model: &Transformer<TB>, x: &[f64], t: usize) -> Vec<f64> {
    let c = model.config();
    let attn = &model.blocks[0].attn;
    let (d, h, kvh, hd) = (c.d_model, c.n_heads, c.n_kv_heads, c.head_dim());
    let project = |l: &structured_linear::SelfGuided<TB>| {
        let w = values(l.layer.merged_weight());
        let b = l.layer.bias().map(values).unwrap_or_default();
        let d_out = l.layer.d_out();
        let d_in = l.layer.d_in();
        move |input: &[f64]| -> Vec<f64> {
            (0..d_out)
                .map(|o| {
                    (0..d_in).map(|i| input[i] * w[i * d_out + o]).sum::<f64>()
                        + b.get(o).copied().unwrap_or(0.0)
                })
                .collect()
        }
    };
    let (pq, pk, pv, po) = (
        project(&attn.q),
        project(&attn.k),
        project(&attn.v),
        project(&attn.o),
    );
    let rows: Vec<&[f64]> = (0..t).map(|i| &x[i * d..(i + 1) * d]).collect();
    let q: Vec<Vec<f64>> = rows.iter().map(|r| pq(r)).collect();
    let k: Vec<Vec<f64>> = rows.iter().map(|r| pk(r)).collect();
    let v: Vec<Vec<f64>> = rows.iter().map(|r| pv(r)).collect();
    let mut out = Vec::new();
    for (i, qi) in q.iter().enumerate() {
        let mut concat = vec![0.0; h * hd];
        for head in 0..h {
            let kv = head / (h / kvh);
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|e| qi[head * hd + e] * k[j][kv * hd + e])
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for (j, s) in scores.iter().enumerate() {
                let w = (s - m).exp() / z;
                for e in 0..hd {
                    concat[head * hd + e] += w * v[j][kv * hd + e];
                }
            }
        }
        out.extend(po(&concat));
    }
    out
}

#[test]
fn grouped_query_attention_matches_a_direct_computation() {
    let _rng = seeded::<TB>(6);
    let device = Default::default();
    // n_kv_heads = n_heads is multi-head attention, 1 is multi-query, 2 is grouped.
    for n_kv_heads in [4, 2, 1] {
        let config = small(|c| {
            c.n_kv_heads = n_kv_heads;
            c.position = Position::Learned;
        });
        let model = config.init::<TB>(&device).unwrap();
        let t = 6;
        let x = Tensor::<TB, 3>::random([1, t, 32], Distribution::Normal(0.0, 1.0), &device);
        let fast = values(
            model.blocks[0]
                .attn
                .forward(x.clone(), &model.positions, 0, None),
        );
        let direct = direct_attention(&model, &values(x), t);
        let diff = max_abs_diff(&fast, &direct);
        assert!(diff < 1e-10, "n_kv_heads {n_kv_heads}: {diff}");
    }
}

#[test]
fn sampler_invariants() {
    let logits: Vec<f32> = vec![0.1, 2.0, -1.0, 1.5, 0.3, 1.9, -0.5, 0.0];
    // Temperature 0 is argmax, whatever the seed.
    for seed in 0..5 {
        let mut s = Sampler::new(SamplingConfig {
            temperature: 0.0,
            seed,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.sample(&logits), 1);
    }
    // Top-k never leaves the k best.
    let mut s = Sampler::new(SamplingConfig {
        temperature: 1.5,
        top_k: Some(3),
        seed: 7,
        ..Default::default()
    })
    .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        seen.insert(s.sample(&logits));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 3, 5]);
    // Top-p keeps the smallest prefix of the sorted distribution with mass >= p.
    let full = Sampler::new(SamplingConfig::default())
        .unwrap()
        .distribution(&logits);
    for p in [0.1, 0.5, 0.8, 0.95, 1.0] {
        let s = Sampler::new(SamplingConfig {
            top_p: Some(p),
            ..Default::default()
        })
        .unwrap();
        let kept = s.distribution(&logits);
        let mass: f64 = full[..kept.len()].iter().map(|(_, q)| q).sum();
        let mass_without_last: f64 = full[..kept.len() - 1].iter().map(|(_, q)| q).sum();
        assert!(
            mass >= p - 1e-12 && mass_without_last < p,
            "p = {p}: kept {}",
            kept.len()
        );
        let total: f64 = kept.iter().map(|(_, q)| q).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
    // A fixed seed repeats its draws; another seed does not.
    let draw = |seed| {
        let mut s = Sampler::new(SamplingConfig {
            seed,
            ..Default::default()
        })
        .unwrap();
        (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
    // Invalid settings are refused.
    for bad in [
        SamplingConfig {
            temperature: -1.0,
            ..Default::default()
        },
        SamplingConfig {
            top_k: Some(0),
            ..Default::default()
        },
        SamplingConfig {
            top_p: Some(1.5),
            ..Default::default()
        },
        SamplingConfig {
            top_p: Some(0.0),
            ..Default::default()
        },
    ] {
        assert!(Sampler::new(bad).is_err());
    }
}

#[test]
fn generation_validates_its_request_and_stops_at_the_stop_token() {
    let _rng = seeded::<TB>(8);
    let device = Default::default();
    let config = small(|_| {});
    let model = config.init::<TB>(&device).unwrap();
    let greedy = |max_new_tokens, stop_token| GenerateConfig {
        max_new_tokens,
        sampling: SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        },
        stop_token,
    };
    let out = generate(&model, &[1, 2, 3], &greedy(5, None), &device).unwrap();
    let stop = out[2];
    let first = out.iter().position(|&t| t == stop).unwrap();
    let stopped = generate(&model, &[1, 2, 3], &greedy(5, Some(stop)), &device).unwrap();
    assert_eq!(stopped, out[..=first].to_vec());
    assert!(matches!(
        generate(&model, &[], &greedy(5, None), &device),
        Err(ModelError::Empty(_))
    ));
    assert_eq!(
        generate(&model, &[60], &greedy(5, None), &device),
        Err(ModelError::TokenOutOfRange {
            id: 60,
            vocab_size: 50
        })
    );
    assert_eq!(
        generate(&model, &[1; 10], &greedy(8, None), &device),
        Err(ModelError::ContextOverflow {
            needed: 17,
            capacity: 16
        })
    );
    assert_eq!(
        generate(&model, &[1; 10], &greedy(7, None), &device)
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn self_guided_models_start_from_the_same_function_and_mix_one_alpha() {
    let _rng = seeded::<TB>(9);
    let config = small(|c| {
        c.ffn.fc1 = Structure::BlockShuffle { n_blocks: 2 };
        c.ffn.fc2 = Structure::BlockShuffle { n_blocks: 2 };
        c.self_guided = true;
    });
    let mut model = config.init::<TB>(&Default::default()).unwrap();
    let guided = model.linears().iter().filter(|l| l.guide.is_some()).count();
    assert_eq!(guided, 2, "one structured block: fc1 and fc2");
    let ids = tokens(&sequence(8, 50, 0), 1);
    let a = values(model.forward(ids.clone()).unwrap());
    model.set_alpha(0.0).unwrap();
    let b = values(model.forward(ids.clone()).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-9);
    assert!(model.set_alpha(1.2).is_err());
    model.set_alpha(0.25).unwrap();
    assert!(model
        .linears()
        .iter()
        .filter(|l| l.guide.is_some())
        .all(|l| l.alpha() == 0.25));
    model.drop_guides();
    assert!(model.linears().iter().all(|l| l.guide.is_none()));
}

#[test]
fn built_models_hold_exactly_the_counted_parameters() {
    let _rng = seeded::<TB>(10);
    for (name, config) in variants() {
        let model = config.init::<TB>(&Default::default()).unwrap();
        let p = params(&config);
        assert_eq!(model.num_params() as u64, p.total, "{name}");
        assert_eq!(
            p.total,
            p.embedding + p.head + p.attention_weights + p.ffn_weights + p.norms + p.biases
        );
    }
}

/// FFN weight counts of docs/reference.md §3's table.
const FFN_WEIGHTS: &[(&str, u64)] = &[
    ("s-dense", 56_623_104),
    ("s-lowrank-r384", 37_158_912),
    ("s-lowrank-r192", 20_938_752),
    ("s-blockdense-b2-r512", 37_158_912),
    ("s-blockshuffle-b4", 20_938_752),
    ("m-dense", 201_326_592),
    ("m-lowrank-r512", 128_974_848),
    ("m-lowrank-r256", 68_681_728),
    ("m-blockdense-b4-r768", 121_438_208),
    ("m-blockdense-b4-r384", 64_913_408),
    ("l-dense", 452_984_832),
    ("l-lowrank-r768", 290_193_408),
    ("l-lowrank-r384", 154_533_888),
    ("xl-dense", 805_306_368),
    ("xl-lowrank-r1024", 515_899_392),
    ("xl-lowrank-r512", 274_726_912),
    ("xl-blockdense-b4-r1536", 485_752_832),
    ("xl-blockdense-b4-r768", 259_653_632),
    ("xl-blockshuffle-b2", 515_899_392),
    ("xl-blockshuffle-b4", 274_726_912),
    ("m-gqa", 239_075_328),
    ("m-wide-lowrank-r512", 148_635_648),
    ("l-gqa", 547_356_672),
    ("l-wide-lowrank-r768", 339_345_408),
];

#[test]
fn the_zoo_has_every_name_with_the_documented_counts() {
    let zoo = Zoo::builtin().unwrap();
    let mut expected: Vec<String> = vec![];
    let grid = [
        (
            "s",
            [
                "lowrank-r384",
                "lowrank-r192",
                "blockdense-b2-r512",
                "blockdense-b2-r256",
                "blockshuffle-b2",
                "blockshuffle-b4",
            ],
        ),
        (
            "m",
            [
                "lowrank-r512",
                "lowrank-r256",
                "blockdense-b4-r768",
                "blockdense-b4-r384",
                "blockshuffle-b2",
                "blockshuffle-b4",
            ],
        ),
        (
            "l",
            [
                "lowrank-r768",
                "lowrank-r384",
                "blockdense-b2-r1024",
                "blockdense-b2-r512",
                "blockshuffle-b2",
                "blockshuffle-b4",
            ],
        ),
        (
            "xl",
            [
                "lowrank-r1024",
                "lowrank-r512",
                "blockdense-b4-r1536",
                "blockdense-b4-r768",
                "blockshuffle-b2",
                "blockshuffle-b4",
            ],
        ),
    ];
    for (size, structures) in grid {
        expected.push(format!("{size}-dense"));
        expected.extend(structures.iter().map(|s| format!("{size}-{s}")));
    }
    for name in [
        "m-gqa",
        "m-wide-lowrank-r512",
        "l-gqa",
        "l-wide-lowrank-r768",
        "lpa-130m",
        "lpa-130m-dense",
        "lpa-370m",
        "lpa-370m-dense",
        "tiny-dense",
    ] {
        expected.push(name.into());
    }
    for name in &expected {
        zoo.get(name).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut documented = 0;
    for entry in zoo.entries() {
        let p = params(&entry.config);
        if let Some(n) = entry.documented_params {
            assert_eq!(p.total, n, "{}: total params", entry.name);
            documented += 1;
        }
        // Every entry round-trips through JSON and TOML.
        let json = serde_json::to_string(&entry.config).unwrap();
        assert_eq!(
            serde_json::from_str::<TransformerConfig>(&json).unwrap(),
            entry.config,
            "{}",
            entry.name
        );
        let toml_text = toml::to_string(&entry.config).unwrap();
        assert_eq!(
            toml::from_str::<TransformerConfig>(&toml_text).unwrap(),
            entry.config,
            "{}",
            entry.name
        );
    }
    assert_eq!(documented, 28, "20 paper models, 4 wide/GQA, 4 LPA");
    for (name, ffn) in FFN_WEIGHTS {
        assert_eq!(
            params(&zoo.get(name).unwrap().config).ffn_weights,
            *ffn,
            "{name}: FFN weights"
        );
    }
}

#[test]
fn every_tiny_zoo_model_builds_and_runs() {
    let _rng = seeded::<TB>(12);
    let zoo = Zoo::builtin().unwrap();
    let tiny: Vec<_> = zoo
        .entries()
        .iter()
        .filter(|e| e.name.starts_with("tiny-"))
        .collect();
    assert!(tiny.len() >= 5);
    for entry in tiny {
        let model = entry.config.init::<TB>(&Default::default()).unwrap();
        assert_eq!(
            model.num_params() as u64,
            params(&entry.config).total,
            "{}",
            entry.name
        );
        let logits = model.forward(tokens(&sequence(12, 4096, 0), 1)).unwrap();
        assert_eq!(logits.dims(), [1, 12, 4096]);
        assert!(
            values(logits).iter().all(|x| x.is_finite()),
            "{}",
            entry.name
        );
    }
}

#[test]
fn mfu_is_achieved_over_peak_flops() {
    use crate::accounting::mfu;
    assert_eq!(mfu(3e12, 2.0, 3e12), 0.5);
    assert_eq!(mfu(1.0, 0.0, 1.0), 0.0);
    assert_eq!(mfu(1.0, 1.0, 0.0), 0.0);
}

#[test]
fn training_flops_follow_the_paper() {
    let zoo = Zoo::builtin().unwrap();
    let flops = |name: &str, tokens: f64| {
        let steps = (tokens / 524_288.0).floor() as u64;
        training_flops(&zoo.get(name).unwrap().config, steps * 524_288, 1024, false)
    };
    for (name, tokens, expected) in [
        ("xl-dense", 25.5e9, 2.102e20),
        ("xl-lowrank-r1024", 25.5e9, 1.660e20),
        ("xl-lowrank-r512", 25.5e9, 1.291e20),
        ("s-dense", 2.2e9, 1.695e18),
        ("m-dense", 6.7e9, 1.548e19),
        ("l-dense", 14.58e9, 7.034e19),
        ("m-wide-lowrank-r512", 10.58e9, 1.551e19),
    ] {
        let f = flops(name, tokens);
        assert!(
            (f / expected - 1.0).abs() < 5e-4,
            "{name}: {f:.4e} vs {expected:.3e}"
        );
    }
    // The causal-aware count halves (almost) the score term only.
    let c = &zoo.get("s-dense").unwrap().config;
    let (full, causal) = (
        forward_flops(c, 1024, false, false),
        forward_flops(c, 1024, true, false),
    );
    assert_eq!(
        causal.attention_scores * 2,
        full.attention_scores + 4 * 12 * 768
    );
    assert_eq!(causal.ffn, full.ffn);
    // Guides add their dense weights to the FFN term.
    let mut guided = zoo.get("s-lowrank-r192").unwrap().config.clone();
    guided.self_guided = true;
    let (plain, with) = (
        forward_flops(&guided, 1024, false, false),
        forward_flops(&guided, 1024, false, true),
    );
    assert_eq!(with.ffn - plain.ffn, 2 * 11 * 2 * 768 * 3072);
}

#[test]
fn malformed_zoo_files_name_the_file_and_the_field() {
    let base = r#"
[templates.t]
vocab_size = 64
max_seq_len = 16
d_model = 32
d_attn = 32
d_ff = 64
n_layers = 2
n_heads = 4
n_kv_heads = 4
"#;
    let parse =
        |extra: &str| Zoo::from_sources([("bad.toml".to_string(), format!("{base}\n{extra}"))]);
    assert!(parse("[[models]]\nname = \"ok\"\nextends = \"t\"\n").is_ok());
    let cases = [
        ("[[models]]\nname = \"m\"\nextends = \"t\"\nn_hedas = 4\n", "n_hedas"),
        ("[[models]]\nname = \"m\"\nextends = \"t\"\nn_kv_heads = 3\n", "n_kv_heads"),
        ("[[models]]\nname = \"m\"\nextends = \"t\"\nffn = { fc1 = { kind = \"lowrank\", rank = 99 } }\n", "ffn.fc1"),
        ("[[models]]\nname = \"m\"\nextends = \"nope\"\n", "nope"),
        ("[[models]]\nname = \"m\"\nextends = \"t\"\nffn = { fc1 = { kind = \"lowrank\", rnak = 9 } }\n", "rnak"),
        ("[[models]]\nextends = \"t\"\n", "name"),
        ("this is not toml", "bad.toml"),
    ];
    for (extra, field) in cases {
        let err = parse(extra).unwrap_err().to_string();
        assert!(err.starts_with("bad.toml"), "{err}");
        assert!(err.contains(field), "`{err}` does not name `{field}`");
    }
    let dup = parse(
        "[[models]]\nname = \"m\"\nextends = \"t\"\n[[models]]\nname = \"m\"\nextends = \"t\"\n",
    );
    assert!(dup.unwrap_err().to_string().contains("already defined"));
}

#[test]
fn unknown_names_suggest_close_ones() {
    let zoo = Zoo::builtin().unwrap();
    let err = zoo.get("s-lowrank-r193").unwrap_err();
    let ZooError::Unknown { hint, .. } = &err else {
        panic!("{err}")
    };
    assert!(hint.contains("s-lowrank-r192"), "{hint}");
    assert!(err
        .to_string()
        .starts_with("unknown model `s-lowrank-r193`"));
    let err = zoo.get("qqqqqqqqqqqqqq").unwrap_err().to_string();
    assert!(err.contains("strata zoo list"), "{err}");
}

#[test]
fn invalid_configs_name_their_field() {
    let base = small(|_| {});
    type Change = Box<dyn Fn(&mut TransformerConfig)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c.d_model = 0), "d_model"),
        (Box::new(|c| c.n_kv_heads = 3), "n_kv_heads"),
        (Box::new(|c| c.d_attn = 30), "d_attn"),
        (Box::new(|c| c.init_std = 0.0), "init_std"),
        (Box::new(|c| c.dropout = 1.0), "dropout"),
        (Box::new(|c| c.head_bias = true), "head_bias"),
        (Box::new(|c| c.ffn.fc2 = lowrank(40)), "ffn.fc2"),
        (
            Box::new(|c| c.attention.o = Structure::BlockShuffle { n_blocks: 3 }),
            "attention.o",
        ),
    ];
    for (change, field) in cases {
        let mut c = base.clone();
        change(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(field), "`{err}` does not name {field}");
        assert!(c.init::<TB>(&Default::default()).is_err());
    }
}

/// Trains on one fixed sequence until the model has memorised it.
fn memorise(config: TransformerConfig) -> (f64, f64) {
    let device = Default::default();
    let mut model = config.init::<AB>(&device).unwrap();
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init();
    let seq: Vec<i64> = (0..17).map(|i| ((i * 5 + 1) % 16) as i64).collect();
    let input = tokens::<AB>(&seq[..16], 1);
    let target = Tensor::<AB, 1, Int>::from_data(TensorData::new(seq[1..].to_vec(), [16]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut first = f64::NAN;
    let mut last = f64::NAN;
    for step in 0..200 {
        let logits = model
            .forward(input.clone())
            .unwrap()
            .reshape([16, config.vocab_size]);
        let loss = loss_fn.forward(logits, target.clone());
        last = values(loss.clone())[0];
        if step == 0 {
            first = last;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    (first, last)
}

#[test]
fn a_tiny_model_memorises_a_repeated_sequence() {
    let _rng = seeded::<AB>(11);
    let base = small(|c| c.vocab_size = 16);
    let mut structured = base.clone();
    structured.ffn.fc1 = lowrank(8);
    structured.ffn.fc2 = lowrank(8);
    for (name, config) in [("dense", base), ("lowrank", structured)] {
        let (first, last) = memorise(config);
        assert!(first > 2.0, "{name}: initial loss {first} (ln 16 = 2.77)");
        assert!(
            last < 0.05,
            "{name}: loss {first} -> {last} after 200 steps"
        );
    }
}

#[test]
fn a_cache_of_fixed_capacity_decodes_like_the_full_forward_on_fixed_shapes() {
    let _rng = seeded::<TB>(31);
    let config = small(|c| c.n_kv_heads = 2);
    let model = config.init::<TB>(&Default::default()).unwrap();
    let ids = sequence(9, 50, 3);
    let full = values(model.forward(tokens(&ids, 1)).unwrap());
    let v = 50;
    let mut cache = KvCache::with_capacity(&config, 9).unwrap();
    assert_eq!(cache.capacity(), 9);
    let mut pieces = values(
        model
            .forward_cached(tokens(&ids[..3], 1), &mut cache)
            .unwrap(),
    );
    let mut shapes = Vec::new();
    for t in 3..9 {
        pieces.extend(values(
            model
                .forward_cached(tokens(&ids[t..t + 1], 1), &mut cache)
                .unwrap(),
        ));
        // Every layer's buffers keep the capacity's shape: written in place, never grown.
        shapes.extend(cache.layers.iter().map(|l| l.shapes()));
    }
    assert!(max_abs_diff(&pieces, &full) < 1e-9);
    assert!(
        shapes.iter().all(|s| *s == Some([[1, 2, 9, 8]; 2])),
        "{shapes:?}"
    );
    // Full: one more token is refused with the cache's capacity.
    let err = model
        .forward_cached(tokens(&ids[..1], 1), &mut cache)
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::ContextOverflow {
            needed: 10,
            capacity: 9
        }
    );
    // After a reset another batch size may start; the logits do not depend on the old buffers.
    cache.reset();
    let two = [ids[..4].to_vec(), ids[..4].to_vec()].concat();
    let again = values(model.forward_cached(tokens(&two, 2), &mut cache).unwrap());
    assert!(max_abs_diff(&again[..4 * v], &full[..4 * v]) < 1e-9);
    assert!(max_abs_diff(&again[4 * v..], &full[..4 * v]) < 1e-9);
    // Capacities the model cannot hold are refused.
    assert!(matches!(
        KvCache::<TB>::with_capacity(&config, 17),
        Err(ModelError::ContextOverflow {
            needed: 17,
            capacity: 16
        })
    ));
    assert!(KvCache::<TB>::with_capacity(&config, 0).is_err());
}

#[test]
fn the_causal_mask_hides_the_future_and_unwritten_slots() {
    let config = small(|_| {});
    let model = config.init::<TB>(&Default::default()).unwrap();
    let mask = model.positions.causal_mask(2, 5, 2);
    let got: Vec<bool> = mask.into_data().to_vec().unwrap();
    // Queries at positions 2 and 3 over keys 0..5.
    assert_eq!(
        got,
        [
            [false, false, false, true, true],
            [false, false, false, false, true]
        ]
        .concat()
    );
}

#[test]
fn attention_dropout_acts_while_training_only() {
    let ids = sequence(8, 50, 4);
    let device = Default::default();
    let init = |p: f64| {
        let _rng = seeded::<AB>(41);
        small(|c| c.attn_dropout = p).init::<AB>(&device).unwrap()
    };
    let (with, without) = (init(0.5), init(0.0));
    let logits = |m: &Transformer<AB>| values(m.forward(tokens::<AB>(&ids, 1)).unwrap());
    // Training (autodiff): the attention probabilities are dropped at random.
    let _rng = seeded::<AB>(42);
    let (a, b) = (logits(&with), logits(&with));
    assert!(max_abs_diff(&a, &b) > 1e-6, "two training forwards differ");
    assert!(max_abs_diff(&a, &logits(&without)) > 1e-6);
    // Inference: no dropout, the same function as without it.
    use burn::module::AutodiffModule;
    let (x, y) = (with.valid(), without.valid());
    let (x, y) = (
        values(x.forward(tokens::<TB>(&ids, 1)).unwrap()),
        values(y.forward(tokens::<TB>(&ids, 1)).unwrap()),
    );
    assert!(max_abs_diff(&x, &y) < 1e-12);
    // Out of range is refused, naming the field.
    let mut bad = small(|_| {});
    bad.attn_dropout = 1.0;
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("attn_dropout"), "{e}");
}

#[test]
fn the_papers_structured_models_use_the_reference_initialisation() {
    use structured_linear::Init;
    let zoo = Zoo::builtin().unwrap();
    let mut checked = 0;
    for e in zoo.entries() {
        let paper_family = ["s-", "m-", "l-", "xl-"]
            .iter()
            .any(|p| e.name.starts_with(p));
        let ffn = &e.config.ffn;
        let want = match ffn.fc1 {
            Structure::LowRank { .. } => Some(Init::Svd { std: 0.02 }),
            Structure::BlockDense { .. } | Structure::BlockShuffle { .. } => {
                Some(Init::Orthogonal { std: 0.02 })
            }
            Structure::Dense => None,
        };
        if paper_family && want.is_some() {
            assert_eq!(ffn.init, want, "{}", e.name);
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        4 * 6 + 2,
        "every structured model of the grid and the wide ones"
    );
    // And the init is what the layers get: a shrunk s-lowrank model's FFN factors come from
    // an SVD, so the columns of U (and rows of V) are orthogonal.
    let mut c = zoo.get("s-lowrank-r192").unwrap().config.clone();
    (
        c.d_model,
        c.d_attn,
        c.d_ff,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
    ) = (32, 32, 128, 2, 2, 2);
    (c.vocab_size, c.max_seq_len) = (50, 16);
    c.ffn.fc1 = lowrank(8);
    c.ffn.fc2 = lowrank(8);
    let _rng = seeded::<TB>(43);
    let model = c.init::<TB>(&Default::default()).unwrap();
    let structured_linear::StructuredLinear::LowRank(l) = &model.blocks[1].ffn.fc1.layer else {
        panic!("layer 1's fc1 is lowrank");
    };
    let u = l.u.val(); // [rank, d_out]: rows are sqrt(s_i) u_i^T
    let gram = values(u.clone().matmul(u.transpose()));
    let r = 8;
    for i in 0..r {
        for j in 0..r {
            if i != j {
                assert!(
                    gram[i * r + j].abs() < 1e-9,
                    "U's rows are orthogonal: {gram:?}"
                );
            }
        }
    }
}

#[test]
fn a_model_inside_its_guided_phase_pre_merges_to_the_same_function() {
    let _rng = seeded::<TB>(44);
    let config = small(|c| {
        c.ffn.fc1 = lowrank(8);
        c.ffn.fc2 = lowrank(8);
        c.self_guided = true;
    });
    let mut model = config.init::<TB>(&Default::default()).unwrap();
    // Guides that differ from their structured layers, mixed at alpha 0.4.
    let device = Default::default();
    for block in model.blocks.iter_mut() {
        for l in [&mut block.ffn.fc1, &mut block.ffn.fc2] {
            if let Some(g) = l.guide.as_mut() {
                let dims = g.dims();
                *g = burn::module::Param::from_tensor(Tensor::random(
                    dims,
                    Distribution::Normal(0.0, 0.1),
                    &device,
                ));
            }
        }
    }
    model.set_alpha(0.4).unwrap();
    let ids = sequence(9, 50, 5);
    let want = values(model.forward(tokens(&ids, 1)).unwrap());
    let merged = values(model.merged().forward(tokens(&ids, 1)).unwrap());
    assert!(max_abs_diff(&merged, &want) < 1e-9, "merged mix");
    // The dispatching model keeps the guides: prefill (structured) and decoding (merged) agree
    // with the full forward.
    let dispatching = Dispatching::new(model, 2);
    let mut cache = KvCache::with_capacity(&config, 9).unwrap();
    let mut got = values(
        dispatching
            .forward_cached(tokens(&ids[..5], 1), &mut cache)
            .unwrap(),
    );
    for t in 5..9 {
        got.extend(values(
            LanguageModel::forward_cached(&dispatching, tokens(&ids[t..t + 1], 1), &mut cache)
                .unwrap(),
        ));
    }
    assert!(max_abs_diff(&got, &want) < 1e-9, "dispatching mix");
}
