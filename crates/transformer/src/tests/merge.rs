//! Pre-merge and self-guided models: merged and dispatching forms compute the same function.

use super::*;

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
        assert_close(&a, &b, 1e-9, &format!("{name}: merged logits differ"));
        let dispatching = Dispatching::new(model.clone(), 4);
        let c = values(dispatching.forward(tokens(&ids, 1)).unwrap());
        assert_close(&a, &c, 1e-9, &format!("{name}: dispatching logits differ"));
        let gen = GenerateConfig {
            max_new_tokens: 6,
            sampling: SamplingConfig {
                temperature: 0.0,
                ..Default::default()
            },
            stop_token: None,
            on_device: false,
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
    assert_close(&a, &b, 1e-9, "alpha 1 vs alpha 0 at initialisation");
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
    assert_close(&merged, &want, 1e-9, "merged mix");
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
    assert_close(&got, &want, 1e-9, "dispatching mix");
}
