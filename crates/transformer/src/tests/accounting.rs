//! Accounting: FLOPs as the paper counts them, MFU.

use super::*;

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
fn the_training_memory_estimate_adds_up_and_scales_with_the_batch() {
    let zoo = Zoo::builtin().unwrap();
    let c = &zoo.get("s-lowrank-r192").unwrap().config;
    let one = crate::accounting::training_memory(c, 1, 256, 4);
    let four = crate::accounting::training_memory(c, 4, 256, 4);
    let p = params(c).total;
    assert_eq!(one.weights, 4 * p);
    assert_eq!(one.gradients, 4 * p);
    assert_eq!(one.optimizer, 8 * p);
    assert_eq!(four.activations, 4 * one.activations, "linear in the batch");
    assert_eq!(
        four.peak,
        four.weights + (four.activations + four.gradients).max(four.gradients + four.optimizer)
    );
    // Half-precision passes: half the activation bytes, plus a 2-byte copy of the weights.
    let half = crate::accounting::training_memory(c, 4, 256, 2);
    assert_eq!(2 * half.activations, four.activations);
    assert_eq!(half.weights, 6 * p);
    // Guides add their weights and their outputs.
    let mut guided = c.clone();
    guided.self_guided = true;
    let g = crate::accounting::training_memory(&guided, 4, 256, 4);
    assert_eq!(g.weights, 4 * (p + params(&guided).guide_weights));
    assert!(g.activations > four.activations);
    // Longer sequences cost more per token (the attention scores).
    let long = crate::accounting::training_memory(c, 1, 1024, 4);
    assert!(long.activations > 4 * one.activations);
}

#[test]
fn qkv_bias_adds_biases_to_q_k_v_only_and_norm_eps_is_used() {
    let plain = small(|c| {
        c.bias = false;
        c.n_kv_heads = 2;
    });
    let mut qwen = plain.clone();
    qwen.qkv_bias = true;
    let kv = plain.kv_dim() as u64;
    assert_eq!(
        params(&qwen).biases - params(&plain).biases,
        plain.n_layers as u64 * (plain.d_attn as u64 + 2 * kv),
        "q, k and v biases in every layer"
    );
    for place in [Place::O, Place::Fc1, Place::Fc2] {
        assert!(!qwen.linear(0, place).bias, "{place:?} stays without bias");
    }
    // The epsilon reaches the norms: a huge one changes the function, and it is validated.
    let _rng = seeded::<TB>(3);
    let model = plain.init::<TB>(&Default::default()).unwrap();
    let mut loose = plain.clone();
    loose.norm_eps = 0.5;
    let mut other = loose.init::<TB>(&Default::default()).unwrap();
    test_support::copy_weights(&model, &mut other);
    let ids = tokens(&sequence(8, 50, 1), 1);
    let (a, b) = (
        values(model.forward(ids.clone()).unwrap()),
        values(other.forward(ids).unwrap()),
    );
    assert!(max_abs_diff(&a, &b) > 1e-3);
    let mut bad = plain.clone();
    bad.norm_eps = 0.0;
    assert!(bad.validate().unwrap_err().to_string().contains("norm_eps"));
}
