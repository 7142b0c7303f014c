//! Forward equals the merged matrix.

use super::*;

#[test]
fn forward_equals_merged_matrix_for_every_structure_and_shape() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 1);
    let mut checked = 0;
    for (d_in, d_out) in SHAPES {
        for structure in structures(d_in, d_out) {
            for (bias, inner_bias) in bias_options(structure) {
                let config = StructuredLinearConfig::new(d_in, d_out)
                    .with_structure(structure)
                    .with_bias(bias)
                    .with_inner_bias(inner_bias)
                    .with_init(Init::FanIn);
                let layer = config.init::<TB>(&device).unwrap();
                let layer = if bias {
                    with_random_bias(layer, &device)
                } else {
                    layer
                };
                let x =
                    Tensor::<TB, 3>::random([2, 3, d_in], Distribution::Normal(0.0, 1.0), &device);
                let y = layer.forward(x.clone());
                assert_eq!(y.dims(), [2, 3, d_out]);
                let w = layer.merged_weight();
                let mut expected = x.reshape([6, d_in]).matmul(w);
                if let Some(b) = layer.bias() {
                    expected = expected + b.unsqueeze::<2>();
                }
                assert_eq!(layer.bias().is_some(), bias || inner_bias);
                let err = rel_err(&values(y), &values(expected));
                assert!(
                    err < 1e-5,
                    "{structure:?} {d_in}x{d_out} bias={bias}: rel err {err}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "grid too small: {checked}");
}

#[test]
fn forward_accepts_any_number_of_leading_dimensions() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 2);
    let config =
        StructuredLinearConfig::new(8, 16).with_structure(Structure::BlockShuffle { n_blocks: 2 });
    let layer = config.init::<TB>(&device).unwrap();
    let x1 = Tensor::<TB, 1>::random([8], Distribution::Normal(0.0, 1.0), &device);
    let x4 = x1.clone().reshape([1, 1, 1, 8]);
    assert_eq!(layer.forward(x1.clone()).dims(), [16]);
    let y4 = layer.forward(x4);
    assert_eq!(y4.dims(), [1, 1, 1, 16]);
    assert_eq!(values(layer.forward(x1)), values(y4));
}

#[test]
fn to_dense_is_an_equivalent_dense_layer() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 3);
    for structure in structures(12, 24) {
        let layer = StructuredLinearConfig::new(12, 24)
            .with_structure(structure)
            .init::<TB>(&device)
            .unwrap();
        let layer = with_random_bias(layer, &device);
        let dense = layer.to_dense();
        assert_eq!(dense.structure(), Structure::Dense);
        let x = Tensor::<TB, 2>::random([5, 12], Distribution::Normal(0.0, 1.0), &device);
        let err = rel_err(&values(dense.forward(x.clone())), &values(layer.forward(x)));
        assert!(err < 1e-5, "{structure:?}: {err}");
    }
}
