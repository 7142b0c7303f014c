//! Structured layers in a few lines: build each structure, check that it equals its merged dense
//! matrix (pre-merge), project a dense matrix onto low rank, and mix in a self-guided dense guide.
//!
//! Run with `cargo run -p strata-examples --example structured_layers`.

use burn::backend::NdArray;
use burn::tensor::{Distribution, Tensor};
use structured_linear::{SelfGuided, Structure, StructuredLinear, StructuredLinearConfig};

type B = NdArray;

fn main() -> anyhow::Result<()> {
    let device = Default::default();
    let (d_in, d_out) = (256, 1024);
    let x = Tensor::<B, 3>::random([2, 8, d_in], Distribution::Normal(0.0, 1.0), &device);
    for structure in [
        Structure::Dense,
        Structure::LowRank { rank: 64 },
        Structure::BlockDense {
            n_blocks: 4,
            rank: 128,
        },
        Structure::BlockShuffle { n_blocks: 4 },
    ] {
        let config = StructuredLinearConfig::new(d_in, d_out).with_structure(structure);
        let layer = config.init::<B>(&device)?;
        let y = layer.forward(x.clone());
        let merged = layer.to_dense().forward(x.clone());
        let diff = (y.clone() - merged).abs().max().into_scalar();
        println!(
            "{:<13} weights {:>7} ({:>5.1}% of dense), FLOPs/token {:>7}, |structured - merged| = {diff:.1e}",
            structure.name(),
            config.weight_params(),
            100.0 * config.params_ratio(),
            config.forward_flops(1),
        );
    }

    // Best rank-64 approximation of a dense matrix.
    let w = Tensor::<B, 2>::random([d_in, d_out], Distribution::Normal(0.0, 0.02), &device);
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::LowRank { rank: 64 })
        .with_bias(false);
    let low = StructuredLinear::factorize(&config, w.clone(), None)?;
    let err = (low.merged_weight() - w.clone())
        .powf_scalar(2.0)
        .sum()
        .sqrt()
        .into_scalar()
        / w.powf_scalar(2.0).sum().sqrt().into_scalar();
    println!("rank-64 projection of a random matrix: relative error {err:.3}");

    // Self-guided: the guide starts equal to the structured layer; alpha mixes the two.
    let layer = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::BlockShuffle { n_blocks: 4 })
        .init::<B>(&device)?;
    let mut guided = SelfGuided::guided(layer, false);
    for alpha in [1.0, 0.5, 0.0] {
        guided.set_alpha(alpha)?;
        println!(
            "alpha {alpha:.1}: forward FLOPs for 16 tokens {}",
            guided.forward_flops(16)
        );
    }
    Ok(())
}
