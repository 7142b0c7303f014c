//! Factorize.

use super::gradients::{num_tensors, Perturb};
use super::*;

fn random_matrix(rows: usize, cols: usize, device: &Device<TB64>) -> Tensor<TB64, 2> {
    Tensor::random([rows, cols], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn lowrank_factorize_is_exact_on_rank_r_and_optimal_on_random_matrices() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 11);
    let (d_in, d_out, rank) = (20, 30, 5);
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::LowRank { rank })
        .with_bias(false);
    let low = random_matrix(d_in, rank, &device).matmul(random_matrix(rank, d_out, &device));
    let layer = StructuredLinear::factorize(&config, low.clone(), None).unwrap();
    assert!(rel_err(&values(layer.merged_weight()), &values(low)) < 1e-10);

    let w = random_matrix(d_in, d_out, &device);
    let layer = StructuredLinear::factorize(&config, w.clone(), None).unwrap();
    let err = frob(&values(layer.merged_weight() - w.clone()));
    let s = singular_values(&host(w));
    let discarded = s[rank..].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (err - discarded).abs() < 1e-9 * discarded,
        "{err} vs {discarded}"
    );
}

/// The projection error of `factorize` for `structure`, and the smallest error after nudging
/// one of its factors along any of 32 random directions per factor, both ways (never smaller
/// for an optimal projection).
fn projection_errors(structure: Structure, w: Tensor<TB64, 2>) -> (f64, f64) {
    let [d_in, d_out] = w.dims();
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(structure)
        .with_bias(false);
    let layer = StructuredLinear::factorize(&config, w.clone(), None).unwrap();
    let err = frob(&values(layer.merged_weight() - w.clone()));
    let mut worst_nudge = f64::INFINITY;
    for target in 0..num_tensors(&layer) {
        for salt in 0..16 {
            for eps in [1e-3, -1e-3] {
                let nudged = layer.clone().map(&mut Perturb {
                    target,
                    seen: 0,
                    eps,
                    salt,
                });
                let e = frob(&values(nudged.merged_weight() - w.clone()));
                worst_nudge = worst_nudge.min(e);
            }
        }
    }
    (err, worst_nudge)
}

#[test]
fn blockdense_and_blockshuffle_projections_are_exact_in_class_and_measured_on_random() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 12);
    let cases = [
        (
            12,
            24,
            Structure::BlockDense {
                n_blocks: 3,
                rank: 6,
            },
        ),
        (
            24,
            12,
            Structure::BlockDense {
                n_blocks: 2,
                rank: 8,
            },
        ),
        (8, 16, Structure::BlockShuffle { n_blocks: 2 }),
        (16, 8, Structure::BlockShuffle { n_blocks: 4 }),
        (6, 6, Structure::BlockShuffle { n_blocks: 2 }),
        (24, 24, Structure::BlockShuffle { n_blocks: 3 }),
    ];
    for (d_in, d_out, structure) in cases {
        let config = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(structure)
            .with_bias(false)
            .with_init(Init::FanIn);
        // A matrix of the class is recovered exactly.
        let member = config.init::<TB64>(&device).unwrap().merged_weight();
        let (err, _) = projection_errors(structure, member.clone());
        assert!(
            err < 1e-10 * frob(&values(member)),
            "{structure:?} in-class error {err}"
        );
        // A random matrix: the error is below the matrix's norm, and nudging the factors never
        // lowers it (first-order optimality).
        let w = random_matrix(d_in, d_out, &device);
        let norm = frob(&values(w.clone()));
        let (err, nudged) = projection_errors(structure, w);
        let ratio = err / norm;
        assert!(
            ratio < 1.0 && ratio > 0.0,
            "{structure:?}: relative error {ratio}"
        );
        assert!(
            nudged >= err,
            "{structure:?}: nudged {nudged} < projected {err}"
        );
    }
}

#[test]
fn blockdense_projection_error_equals_the_discarded_singular_values_of_each_row_block() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 13);
    let (d_in, d_out, b, rank) = (12, 20, 3, 6);
    let w = random_matrix(d_in, d_out, &device);
    let (err, _) = projection_errors(Structure::BlockDense { n_blocks: b, rank }, w.clone());
    let h = host(w);
    let (p, rb) = (d_in / b, rank / b);
    let discarded: f64 = (0..b)
        .map(|i| {
            let s = singular_values(&h.subrows(i * p, p).to_owned());
            s[rb..].iter().map(|x| x * x).sum::<f64>()
        })
        .sum();
    assert!((err - discarded.sqrt()).abs() < 1e-9 * err);
}

#[test]
fn factorize_rejects_wrong_shapes_and_biases() {
    let device = Default::default();
    let config = StructuredLinearConfig::new(4, 6).with_structure(Structure::LowRank { rank: 2 });
    let w = Tensor::<TB64, 2>::zeros([6, 4], &device);
    let err =
        StructuredLinear::factorize(&config, w, Some(Tensor::zeros([6], &device))).unwrap_err();
    assert!(matches!(
        err,
        LayerError::ShapeMismatch {
            rows: 6,
            cols: 4,
            ..
        }
    ));
    let w = Tensor::<TB64, 2>::zeros([4, 6], &device);
    let err = StructuredLinear::factorize(&config, w.clone(), None).unwrap_err();
    assert!(matches!(
        err,
        LayerError::BiasPresence {
            given: false,
            configured: true
        }
    ));
    let err = StructuredLinear::factorize(&config, w.clone(), Some(Tensor::zeros([5], &device)))
        .unwrap_err();
    assert!(matches!(err, LayerError::BiasMismatch { len: 5, d_out: 6 }));
    let nan = Tensor::<TB64, 2>::full([4, 6], f64::NAN, &device);
    let err =
        StructuredLinear::factorize(&config, nan, Some(Tensor::zeros([6], &device))).unwrap_err();
    assert!(matches!(err, LayerError::Svd(_)));
}
