//! Generation: sampler invariants and request validation.

use super::*;

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
        on_device: true,
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
