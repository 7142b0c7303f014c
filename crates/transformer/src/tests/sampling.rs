//! Sampling on the device: the same choices as the host's sampler (seeded draws, greedy, top-k,
//! top-p), the same kept distribution, and generation that reads back one id per token.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::Cpu;

/// `rows` rows of `vocab` logits, spread like a model's (a few large, a long tail).
fn logits(rows: usize, vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows)
        .map(|_| {
            (0..vocab)
                .map(|_| {
                    let g: f32 = rng.random::<f32>() * 2.0 - 1.0;
                    4.0 * g * g * g
                })
                .collect()
        })
        .collect()
}

fn row<B: Backend>(values: &[Vec<f32>]) -> Tensor<B, 2> {
    let flat: Vec<f32> = values.iter().flatten().copied().collect();
    Tensor::from_data(
        TensorData::new(flat, [values.len(), values[0].len()]),
        &Default::default(),
    )
}

fn ids<B: Backend>(t: Tensor<B, 2, Int>) -> Vec<u32> {
    t.into_data().iter::<i64>().map(|i| i as u32).collect()
}

fn settings() -> Vec<SamplingConfig> {
    let c = |temperature, top_k, top_p| SamplingConfig {
        temperature,
        top_k,
        top_p,
        seed: 0,
    };
    vec![
        c(0.0, None, None),
        c(1.0, None, None),
        c(0.8, None, None),
        c(1.3, Some(5), None),
        c(0.7, None, Some(0.9)),
        c(1.0, Some(40), Some(0.5)),
        c(0.5, Some(1), None),
    ]
}

/// Seeded draws, one row at a time and four rows at once, on f32 and f64 backends.
fn draws_match<B: Backend>() {
    let rows = logits(16, 300, 11);
    for config in settings() {
        for seed in [0, 7] {
            let config = SamplingConfig { seed, ..config };
            let mut host = Sampler::new(config).unwrap();
            let expected: Vec<u32> = rows.iter().map(|r| host.sample(r)).collect();
            let mut device = DeviceSampler::new(config).unwrap();
            let one_by_one: Vec<u32> = rows
                .iter()
                .flat_map(|r| ids(device.sample(row::<B>(std::slice::from_ref(r)))))
                .collect();
            assert_eq!(one_by_one, expected, "{config:?}");
            let mut device = DeviceSampler::new(config).unwrap();
            let batched: Vec<u32> = rows
                .chunks(4)
                .flat_map(|r| ids(device.sample(row::<B>(r))))
                .collect();
            assert_eq!(batched, expected, "{config:?}, four rows at a time");
        }
    }
}

#[test]
fn device_draws_are_the_host_samplers_draws() {
    draws_match::<Cpu>();
    draws_match::<TB>();
}

#[test]
fn device_probabilities_are_the_host_distribution() {
    let rows = logits(6, 200, 3);
    for config in settings() {
        let host = Sampler::new(config).unwrap();
        let device = DeviceSampler::new(config).unwrap();
        let dense = values(device.probabilities(row::<Cpu>(&rows)));
        for (r, logits) in rows.iter().enumerate() {
            let dense = &dense[r * 200..(r + 1) * 200];
            let listed = host.distribution(logits);
            let kept = dense.iter().filter(|&&p| p > 0.0).count();
            assert_eq!(kept, listed.len(), "{config:?}: tokens kept");
            for (id, p) in listed {
                assert!(
                    (dense[id as usize] as f64 - p).abs() < 1e-5,
                    "{config:?}: token {id}: {} vs {p}",
                    dense[id as usize]
                );
            }
        }
    }
}

#[test]
fn greedy_ties_take_the_lowest_id_as_the_host_does() {
    let tied = vec![vec![0.5, 3.0, -1.0, 3.0, 2.0]];
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..Default::default()
    };
    let mut device = DeviceSampler::new(greedy).unwrap();
    assert_eq!(ids(device.sample(row::<Cpu>(&tied))), vec![1]);
    assert_eq!(Sampler::new(greedy).unwrap().sample(&tied[0]), 1);
}

#[test]
fn generation_samples_as_the_host_sampler_would() {
    let _rng = seeded::<TB>(5);
    let device = Default::default();
    let model = small(|_| {}).init::<TB>(&device).unwrap();
    let prompt = [3u32, 1, 4];
    for config in settings() {
        let config = SamplingConfig { seed: 9, ..config };
        let request = |on_device| GenerateConfig {
            max_new_tokens: 10,
            sampling: config,
            stop_token: None,
            on_device,
        };
        let got = generate(&model, &prompt, &request(true), &device).unwrap();
        let on_host = generate(&model, &prompt, &request(false), &device).unwrap();
        // The reference loop: the whole row of logits read back, sampled on the host.
        let mut host = Sampler::new(config).unwrap();
        let mut cache = KvCache::new(model.config());
        let mut input: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
        let mut expected = Vec::new();
        for _ in 0..10 {
            let n = input.len();
            let out = model
                .forward_cached(tokens::<TB>(&input, 1), &mut cache)
                .unwrap();
            let last: Vec<f32> = values(out.narrow(1, n - 1, 1))
                .into_iter()
                .map(|x| x as f32)
                .collect();
            let next = host.sample(&last);
            expected.push(next);
            input = vec![next as i64];
        }
        assert_eq!(got, expected, "{config:?}");
        assert_eq!(on_host, expected, "{config:?}, on the host");
    }
}
