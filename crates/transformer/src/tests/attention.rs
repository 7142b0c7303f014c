//! Attention: causality, RoPE, grouped-query attention against a direct computation, the mask, dropout.

use super::*;

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
fn rope_rotates_each_half_split_pair_by_its_angle() {
    let _rng = seeded::<TB>(12);
    let device = Default::default();
    let (b, t, h, d, base) = (2, 3, 2, 8, 10_000.0f64);
    let x = Tensor::<TB, 4>::random([b, t, h, d], Distribution::Normal(0.0, 1.0), &device);
    let rope = Rope::<TB>::new(16, d, base, &device);
    let xs = values(x.clone());
    for offset in [0, 5] {
        let got = values(rope.apply(x.clone(), offset));
        let mut want = vec![0.0; xs.len()];
        for (row, chunk) in xs.chunks(d).enumerate() {
            let pos = (offset + (row / h) % t) as f64;
            for i in 0..d / 2 {
                let angle = pos * base.powf(-2.0 * i as f64 / d as f64);
                let (x1, x2) = (chunk[i], chunk[i + d / 2]);
                want[row * d + i] = x1 * angle.cos() - x2 * angle.sin();
                want[row * d + i + d / 2] = x2 * angle.cos() + x1 * angle.sin();
            }
        }
        assert_close(&got, &want, 1e-12, &format!("offset {offset}"));
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
        let fast = values(model.blocks[0].attn.forward(
            x.clone(),
            &crate::attention::PassPositions::new(&model.positions, 0),
            None,
        ));
        let direct = direct_attention(&model, &values(x), t);
        assert_close(&fast, &direct, 1e-10, &format!("n_kv_heads {n_kv_heads}"));
    }
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
    assert_close(&x, &y, 1e-12, "inference with vs without attention dropout");
    // Out of range is refused, naming the field.
    let mut bad = small(|_| {});
    bad.attn_dropout = 1.0;
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("attn_dropout"), "{e}");
}
