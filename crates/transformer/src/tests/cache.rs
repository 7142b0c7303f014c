//! Cache parity: prefill + token-by-token decoding equal the full causal forward; capacity, overflow, reset.

use super::*;

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
        assert_close(&assembled, &full, 1e-9, &format!("{name}: cached vs full"));
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
    assert_close(
        &pieces,
        &full,
        1e-9,
        "decoded in pieces vs the full forward",
    );
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
    assert_close(
        &again[..4 * v],
        &full[..4 * v],
        1e-9,
        "the first row after the cache is reset",
    );
    assert_close(
        &again[4 * v..],
        &full[..4 * v],
        1e-9,
        "the second row after the cache is reset",
    );
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
