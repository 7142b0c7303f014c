//! Initialisation.

use super::*;

#[test]
fn svd_init_is_the_best_rank_r_approximation_of_the_sampled_dense_matrix() {
    let device = Default::default();
    let (d_in, d_out, rank, std) = (24, 40, 6, 0.02);
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::LowRank { rank })
        .with_init(Init::Svd { std });
    // The init draws the dense matrix first: replay the same draw from the same seed.
    let _rng = seeded::<TB64>(&device, 7);
    let dense = Tensor::<TB64, 2>::random([d_in, d_out], Distribution::Normal(0.0, std), &device);
    TB64::seed(&device, 7);
    let layer = config.init::<TB64>(&device).unwrap();
    let dense = host(dense);
    let merged = host(layer.merged_weight());
    let s_dense = singular_values(&dense);
    let s_merged = singular_values(&merged);
    for k in 0..rank {
        assert!(
            (s_dense[k] - s_merged[k]).abs() < 1e-10 * s_dense[0],
            "sigma {k}"
        );
    }
    assert!(s_merged[rank] < 1e-10 * s_dense[0], "rank above r");
    // The product is the truncated SVD itself.
    let svd = dense.thin_svd().unwrap();
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let best = Mat::from_fn(d_in, d_out, |i, j| {
        (0..rank).map(|k| u[(i, k)] * s[k] * v[(j, k)]).sum::<f64>()
    });
    let (diff, norm): (f64, f64) = ((&best - &merged).norm_l2(), best.norm_l2());
    assert!(diff < 1e-10 * norm);
    // Both factors carry sqrt(S): V^T V = U U^T = diag(S_r).
    let StructuredLinear::LowRank(lr) = &layer else {
        panic!()
    };
    let (vh, uh) = (host(lr.v.val()), host(lr.u.val()));
    let vtv = vh.transpose() * &vh;
    let uut = &uh * uh.transpose();
    let (diff, norm): (f64, f64) = ((&vtv - &uut).norm_l2(), vtv.norm_l2());
    assert!(diff < 1e-10 * norm);
}

fn assert_orthonormal(m: &Mat<f64>, what: &str) {
    let g = if m.nrows() >= m.ncols() {
        m.transpose() * m
    } else {
        m * m.transpose()
    };
    let n = g.nrows();
    for i in 0..n {
        for j in 0..n {
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!(
                (g[(i, j)] - expected).abs() < 1e-5,
                "{what}: gram[{i},{j}] = {}",
                g[(i, j)]
            );
        }
    }
}

fn blocks_of<B: Backend>(t: Tensor<B, 3>) -> Vec<Mat<f64>> {
    let [b, n, m] = t.dims();
    t.chunk(b, 0)
        .into_iter()
        .map(|c| host(c.reshape([n, m])))
        .collect()
}

#[test]
fn orthogonal_init_makes_every_block_and_dense_factor_orthonormal() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 8);
    let init = Init::Orthogonal { std: 0.02 };
    for (d_in, d_out) in [(16, 32), (32, 16), (24, 24)] {
        let bd = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockDense {
                n_blocks: 4,
                rank: 8,
            })
            .with_init(init)
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockDense(bd) = bd else {
            panic!()
        };
        for (i, block) in blocks_of(bd.v.val()).iter().enumerate() {
            assert_orthonormal(block, &format!("BlockDense V_{i}"));
        }
        assert_orthonormal(&host(bd.u.val()), "BlockDense U");
        let bs = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: 4 })
            .with_init(init)
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockShuffle(bs) = bs else {
            panic!()
        };
        for (i, block) in blocks_of(bs.b1.val())
            .iter()
            .chain(&blocks_of(bs.b2.val()))
            .enumerate()
        {
            assert_orthonormal(block, &format!("BlockShuffle block {i}"));
        }
    }
}

#[test]
fn normal_and_fan_in_inits_have_the_configured_spread() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 9);
    let layer = StructuredLinearConfig::new(256, 512)
        .with_structure(Structure::LowRank { rank: 128 })
        .init::<TB>(&device)
        .unwrap();
    let StructuredLinear::LowRank(lr) = &layer else {
        panic!()
    };
    let v = values(lr.v.val());
    let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    assert!((std - 0.02).abs() < 0.001, "normal std {std}");
    assert!(values(layer.bias().unwrap()).iter().all(|b| *b == 0.0));
    let layer = StructuredLinearConfig::new(256, 512)
        .with_structure(Structure::BlockDense {
            n_blocks: 4,
            rank: 128,
        })
        .with_init(Init::FanIn)
        .init::<TB>(&device)
        .unwrap();
    let StructuredLinear::BlockDense(bd) = &layer else {
        panic!()
    };
    let v = values(bd.v.val());
    let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let expected = 1.0 / (64f64).sqrt(); // fan-in of a block: 256 / 4
    assert!(
        (std - expected).abs() < 0.01 * expected * 5.0,
        "fan-in std {std} vs {expected}"
    );
}

#[test]
fn a_seed_repeats_the_initialisation() {
    let device = Default::default();
    let config =
        StructuredLinearConfig::new(16, 32).with_structure(Structure::BlockShuffle { n_blocks: 4 });
    let _rng = seeded::<TB>(&device, 10);
    let a = values(config.init::<TB>(&device).unwrap().merged_weight());
    TB::seed(&device, 10);
    let b = values(config.init::<TB>(&device).unwrap().merged_weight());
    assert_eq!(a, b);
}
