//! Learning: a tiny model memorises a repeated sequence.

use super::*;

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
