//! Self-guided wrapper.

use super::*;

#[test]
fn self_guided_mixes_guide_and_structured_path() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 14);
    let layer = StructuredLinearConfig::new(8, 16)
        .with_structure(Structure::LowRank { rank: 2 })
        .with_init(Init::FanIn)
        .init::<TB>(&device)
        .unwrap();
    let layer = with_random_bias(layer, &device);
    let mut sg = SelfGuided::guided(layer.clone(), false);
    // Give the guide its own weights so that the two paths differ.
    let g = Tensor::<TB, 2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
    sg.guide = Some(Param::from_tensor(g.clone()));
    let x = Tensor::<TB, 3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
    let bias = layer.bias().unwrap().unsqueeze::<3>();
    let guide_out = x.clone().matmul(g.unsqueeze::<3>()) + bias.clone();
    let structured_out = layer.forward(x.clone());
    assert!(rel_err(&values(sg.forward(x.clone())), &values(guide_out.clone())) < 1e-6);
    sg.set_alpha(0.0).unwrap();
    assert_eq!(
        values(sg.forward(x.clone())),
        values(structured_out.clone())
    );
    sg.set_alpha(0.3).unwrap();
    let mix = guide_out.mul_scalar(0.3) + structured_out.clone().mul_scalar(0.7);
    assert!(rel_err(&values(sg.forward(x.clone())), &values(mix)) < 1e-6);
    assert_eq!(sg.set_alpha(1.5), Err(LayerError::BadAlpha { alpha: 1.5 }));
    assert!(sg.set_alpha(f64::NAN).is_err());
    assert_eq!(sg.alpha(), 0.3);
    sg.drop_guide();
    assert!(sg.guide.is_none() && !sg.guide_active());
    assert_eq!(values(sg.forward(x)), values(structured_out));
}

#[test]
fn the_guide_starts_equal_to_the_structured_layer_shuffle_included() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 15);
    for structure in structures(16, 32) {
        let layer = StructuredLinearConfig::new(16, 32)
            .with_structure(structure)
            .with_init(Init::FanIn)
            .init::<TB>(&device)
            .unwrap();
        let mut sg = SelfGuided::guided(layer, false);
        let x = Tensor::<TB, 2>::random([4, 16], Distribution::Normal(0.0, 1.0), &device);
        let from_guide = sg.forward(x.clone());
        sg.set_alpha(0.0).unwrap();
        let structured = sg.forward(x);
        let err = rel_err(&values(from_guide), &values(structured));
        assert!(err < 1e-5, "{structure:?}: {err}");
    }
}

#[test]
fn reduce_flop_draws_the_guide_with_probability_alpha() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 16);
    let layer = StructuredLinearConfig::new(8, 8)
        .with_structure(Structure::BlockShuffle { n_blocks: 2 })
        .init::<TB>(&device)
        .unwrap();
    let mut sg = SelfGuided::guided(layer, true);
    sg.set_alpha(0.3).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let used = (0..10_000).filter(|_| sg.draw_guide(&mut rng)).count();
    assert!(
        (2_800..=3_200).contains(&used),
        "guide used {used} times of 10000"
    );
    // A skipped draw is the structured path alone; a taken one the mix.
    let g = Tensor::<TB, 2>::random([8, 8], Distribution::Normal(0.0, 1.0), &device);
    sg.guide = Some(Param::from_tensor(g));
    let x = Tensor::<TB, 2>::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
    let (mix, plain) = (
        values(sg.forward(x.clone())),
        values(sg.layer.forward(x.clone())),
    );
    let (mut took, mut skipped) = (0, 0);
    for _ in 0..20 {
        let used = sg.resample(&mut rng);
        let y = values(sg.forward(x.clone()));
        let flops = sg.forward_flops(3);
        if used {
            assert_eq!(y, mix);
            assert_eq!(flops, 2 * 3 * (64 + sg.layer.weight_params()));
            took += 1;
        } else {
            assert_eq!(y, plain);
            assert_eq!(flops, 2 * 3 * sg.layer.weight_params());
            skipped += 1;
        }
    }
    assert!(took > 0 && skipped > 0);
    // Leaving reduce_flop mode puts the guide back in use.
    sg.set_reduce_flop(false);
    assert!(sg.guide_used());
    sg.set_reduce_flop(true);
    // Without reduce_flop every draw uses the guide; with alpha 0 none does.
    sg.set_reduce_flop(false);
    assert!((0..100).all(|_| sg.draw_guide(&mut rng)));
    sg.set_alpha(0.0).unwrap();
    assert!((0..100).all(|_| !sg.draw_guide(&mut rng)));
}

#[test]
fn guided_flops_count_the_guide_only_while_it_is_active() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    let config =
        StructuredLinearConfig::new(64, 256).with_structure(Structure::LowRank { rank: 16 });
    let layer = config.init::<TB>(&device).unwrap();
    let mut sg = SelfGuided::guided(layer, false);
    let (structured, dense) = (config.weight_params(), 64 * 256);
    // alpha 1: both paths are computed while the guide is in use (as the reference counts).
    assert_eq!(sg.forward_flops(10), 2 * 10 * (dense + structured));
    sg.set_alpha(0.5).unwrap();
    assert_eq!(sg.forward_flops(10), 2 * 10 * (dense + structured));
    sg.set_alpha(0.0).unwrap();
    assert_eq!(sg.forward_flops(10), config.forward_flops(10));
}
