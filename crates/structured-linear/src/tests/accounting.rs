//! Accounting and configuration.

use super::*;

#[test]
fn parameter_counts_follow_the_paper_formulas() {
    let lr =
        StructuredLinearConfig::new(2048, 8192).with_structure(Structure::LowRank { rank: 1024 });
    assert_eq!(lr.weight_params(), 10_485_760);
    // Transformer-s FFN weights (docs/reference.md §3): layer 0 dense, 11 structured layers of fc1 + fc2.
    let ffn = |structure: Structure| {
        let fc1 = StructuredLinearConfig::new(768, 3072).with_structure(structure);
        let fc2 = StructuredLinearConfig::new(3072, 768).with_structure(structure);
        2 * 768 * 3072 + 11 * (fc1.weight_params() + fc2.weight_params())
    };
    assert_eq!(ffn(Structure::Dense), 56_623_104);
    assert_eq!(ffn(Structure::LowRank { rank: 384 }), 37_158_912);
    assert_eq!(ffn(Structure::LowRank { rank: 192 }), 20_938_752);
    assert_eq!(
        ffn(Structure::BlockDense {
            n_blocks: 2,
            rank: 512
        }),
        37_158_912
    );
    assert_eq!(ffn(Structure::BlockShuffle { n_blocks: 4 }), 20_938_752);
    // The 63% / 32% settings are exactly 62.5% / 31.25% of dense.
    let fc1 = |s| {
        StructuredLinearConfig::new(2048, 8192)
            .with_structure(s)
            .params_ratio()
    };
    assert_eq!(fc1(Structure::LowRank { rank: 1024 }), 0.625);
    assert_eq!(fc1(Structure::LowRank { rank: 512 }), 0.3125);
    assert_eq!(fc1(Structure::BlockShuffle { n_blocks: 2 }), 0.625);
    assert_eq!(fc1(Structure::BlockShuffle { n_blocks: 4 }), 0.3125);
    assert_eq!(lr.forward_flops(3), 6 * 10_485_760);
}

#[test]
fn built_layers_hold_exactly_the_counted_parameters() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    for (d_in, d_out) in SHAPES {
        for structure in structures(d_in, d_out) {
            for (bias, inner_bias) in bias_options(structure) {
                let config = StructuredLinearConfig::new(d_in, d_out)
                    .with_structure(structure)
                    .with_bias(bias)
                    .with_inner_bias(inner_bias);
                let layer = config.init::<TB>(&device).unwrap();
                assert_eq!(
                    layer.num_params() as u64,
                    config.weight_params() + config.bias_params(),
                    "{structure:?} {d_in}x{d_out}"
                );
                assert_eq!(layer.structure(), structure);
                assert_eq!((layer.d_in(), layer.d_out()), (d_in, d_out));
                assert_eq!(layer.weight_params(), config.weight_params());
            }
        }
    }
}

#[test]
fn config_round_trips_through_json() {
    let configs = [
        StructuredLinearConfig::new(768, 3072),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::LowRank { rank: 384 })
            .with_init(Init::Svd { std: 0.02 }),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::BlockDense {
                n_blocks: 2,
                rank: 512,
            })
            .with_bias(false)
            .with_init(Init::Orthogonal { std: 0.02 }),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::BlockShuffle { n_blocks: 4 })
            .with_init(Init::FanIn),
    ];
    for config in configs {
        let json = serde_json::to_string(&config).unwrap();
        let back: StructuredLinearConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
    let parsed: StructuredLinearConfig = serde_json::from_str(
        r#"{"d_in": 8, "d_out": 4, "structure": {"kind": "lowrank", "rank": 2}}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        StructuredLinearConfig::new(8, 4).with_structure(Structure::LowRank { rank: 2 })
    );
    let unknown =
        serde_json::from_str::<StructuredLinearConfig>(r#"{"d_in": 8, "d_out": 4, "rnak": 2}"#);
    assert!(unknown.unwrap_err().to_string().contains("rnak"));
}

#[test]
// Long on purpose: a table of invalid configs and the error each must give.
fn each_invalid_config_gives_its_own_error() {
    let device: Device<TB> = Default::default();
    let cfg = |d_in, d_out, s| StructuredLinearConfig::new(d_in, d_out).with_structure(s);
    let cases = [
        (
            cfg(0, 4, Structure::Dense),
            ConfigError::Zero { field: "d_in" },
        ),
        (
            cfg(4, 0, Structure::Dense),
            ConfigError::Zero { field: "d_out" },
        ),
        (
            cfg(4, 8, Structure::LowRank { rank: 0 }),
            ConfigError::Zero { field: "rank" },
        ),
        (
            cfg(4, 8, Structure::LowRank { rank: 5 }),
            ConfigError::RankTooLarge { rank: 5, max: 4 },
        ),
        (
            cfg(
                8,
                4,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 6,
                },
            ),
            ConfigError::RankTooLarge { rank: 6, max: 4 },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 0,
                    rank: 4,
                },
            ),
            ConfigError::Zero { field: "n_blocks" },
        ),
        (
            cfg(
                9,
                8,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 4,
                },
            ),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 2,
                field: "d_in",
                value: 9,
            },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 4,
                    rank: 6,
                },
            ),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "rank",
                value: 6,
            },
        ),
        (
            cfg(8, 8, Structure::BlockShuffle { n_blocks: 0 }),
            ConfigError::Zero { field: "n_blocks" },
        ),
        (
            cfg(8, 6, Structure::BlockShuffle { n_blocks: 4 }),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "d_out",
                value: 6,
            },
        ),
        (
            cfg(6, 8, Structure::BlockShuffle { n_blocks: 4 }),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "d_in",
                value: 6,
            },
        ),
        (
            cfg(8, 8, Structure::BlockShuffle { n_blocks: 2 }).with_init(Init::Svd { std: 0.02 }),
            ConfigError::InitNotApplicable {
                init: "svd",
                structure: "blockshuffle",
            },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 4,
                },
            )
            .with_inner_bias(true),
            ConfigError::InnerBiasNotApplicable {
                structure: "blockdense",
            },
        ),
        (
            cfg(8, 8, Structure::Dense).with_init(Init::Normal { std: -1.0 }),
            ConfigError::BadStd { std: -1.0 },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected.clone()));
        let err = config.init::<TB>(&device).unwrap_err();
        assert_eq!(err, LayerError::Config(expected.clone()));
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(
        ConfigError::BlocksDoNotDivide {
            n_blocks: 4,
            field: "d_out",
            value: 6
        }
        .to_string(),
        "`n_blocks` = 4 does not divide `d_out` = 6"
    );
}

#[test]
fn at_alpha_one_the_structured_factors_still_get_gradients() {
    let device = Default::default();
    let _rng = seeded::<GradB>(&device, 5);
    let config = StructuredLinearConfig::new(8, 12).with_structure(Structure::LowRank { rank: 3 });
    let sg = SelfGuided::guided(config.init::<GradB>(&device).unwrap(), false);
    let x = Tensor::<GradB, 2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
    // alpha 1: the output is the guide's...
    let y = sg.forward(x.clone());
    let guide = x.clone().matmul(sg.guide.as_ref().unwrap().val());
    let guide = guide + sg.layer.bias().unwrap().unsqueeze::<2>();
    assert!(rel_err(&values(y.clone()), &values(guide)) < 1e-12);
    // ...but the structured factors are in the graph: they get (zero) gradients, so the
    // optimizer's weight decay and moments see them as the reference's do.
    let grads = y.sum().backward();
    let StructuredLinear::LowRank(l) = &sg.layer else {
        panic!("lowrank")
    };
    let gu = l.u.val().grad(&grads).expect("U has a gradient at alpha 1");
    assert!(values(gu).iter().all(|g| *g == 0.0));
}

#[test]
fn a_lowrank_inner_bias_is_mixed_with_the_structured_path() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 6);
    let config = StructuredLinearConfig::new(8, 12)
        .with_structure(Structure::LowRank { rank: 3 })
        .with_inner_bias(true);
    let mut layer = config.init::<TB>(&device).unwrap();
    // Non-zero biases, so every term shows.
    if let StructuredLinear::LowRank(l) = &mut layer {
        let rand = |n| Tensor::<TB, 1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        l.inner_bias = Some(burn::module::Param::from_tensor(rand(3)));
        l.bias = Some(burn::module::Param::from_tensor(rand(12)));
    }
    let mut sg = SelfGuided::guided(layer, false);
    // A guide that differs from the structured matrix.
    sg.guide = Some(burn::module::Param::from_tensor(Tensor::random(
        [8, 12],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    sg.set_alpha(0.3).unwrap();
    let x = Tensor::<TB, 2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
    let StructuredLinear::LowRank(l) = &sg.layer else {
        panic!("lowrank")
    };
    // The reference: o = a (x G) + (1 - a) ((x V + c) U) + b.
    let g = x.clone().matmul(sg.guide.as_ref().unwrap().val());
    let inner = l.inner_bias.as_ref().unwrap().val().unsqueeze::<2>();
    let s = (x.clone().matmul(l.v.val()) + inner).matmul(l.u.val());
    let b = l.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let want = g.mul_scalar(0.3) + s.mul_scalar(0.7) + b;
    let got = sg.forward(x.clone());
    assert!(rel_err(&values(got.clone()), &values(want)) < 1e-12);
    // The merged form of the mix computes the same.
    let merged = sg.to_dense().forward(x);
    assert!(rel_err(&values(merged), &values(got)) < 1e-12);
}
