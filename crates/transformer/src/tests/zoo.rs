//! The zoo and configs: names, documented counts, every tiny model runs, bad files and fields, init.

use super::*;

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
// Long on purpose: a table: every zoo model with its documented parameter counts.
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
        "smollm-135m",
        "smollm-135m-lowrank-r208",
        "smollm-135m-lpa-r144",
        "tiny-llama",
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
    assert_eq!(
        documented, 31,
        "20 paper models, 4 wide/GQA, 4 LPA, 3 Llama-family (SmolLM-135M: 134,515,008 as its checkpoint holds)"
    );
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
fn per_layer_structures_override_their_place_and_bad_keys_are_refused() {
    let c = small(|c| {
        c.ffn.fc1 = lowrank(8);
        c.overrides.insert(override_key(1, Place::Fc1), lowrank(4));
        c.overrides.insert(override_key(0, Place::O), lowrank(5));
    });
    assert_eq!(c.linear(1, Place::Fc1).structure, lowrank(4));
    assert_eq!(c.linear(0, Place::O).structure, lowrank(5));
    assert_eq!(
        c.linear(0, Place::Fc1).structure,
        Structure::Dense,
        "first layer dense"
    );
    assert_eq!(c.linear(1, Place::Q).structure, Structure::Dense);
    let _g = seeded::<TB>(1);
    let model = c.init::<TB>(&Default::default()).unwrap();
    assert_eq!(model.num_params() as u64, params(&c).total);
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<TransformerConfig>(&json).unwrap(), c);
    // A key naming no layer, and a structure that does not fit its layer.
    let mut bad = c.clone();
    bad.overrides.insert("9.ffn.fc1".into(), lowrank(4));
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("9.ffn.fc1"));
    let mut bad = c.clone();
    bad.overrides
        .insert(override_key(1, Place::Fc2), lowrank(1000));
    assert!(bad.validate().is_err());
    // Pre-merge clears them with the structures.
    assert!(model.merged().config().overrides.is_empty());
}
