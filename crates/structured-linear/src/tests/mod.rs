//! Tests of the layer zoo on the CPU (burn-ndarray), one file per concern (merge equivalence,
//! the index-by-index BlockShuffle reference, gradient checks, initialisations, factorisation,
//! self-guided mixing, accounting and configuration); this one holds the shared helpers.

use burn::backend::Autodiff;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use faer::Mat;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::{rel_err, seeded, values};

use test_support::Cpu64;

use crate::{
    ConfigError, Init, LayerError, SelfGuided, Structure, StructuredLinear, StructuredLinearConfig,
};

// Every test runs in f64: burn keys a device's default float type by device, and NdArray<f32>
// and NdArray<f64> share one device, so mixing them in one process races on that setting.
type TB = Cpu64;
type TB64 = Cpu64;
type GradB = Autodiff<Cpu64>;

fn frob(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn host<B: Backend>(t: Tensor<B, 2>) -> Mat<f64> {
    let [r, c] = t.dims();
    let v = values(t);
    Mat::from_fn(r, c, |i, j| v[i * c + j])
}

fn singular_values(m: &Mat<f64>) -> Vec<f64> {
    m.singular_values().unwrap()
}

/// Every structure that is valid for `d_in x d_out` among a fixed grid of ranks and block counts.
fn structures(d_in: usize, d_out: usize) -> Vec<Structure> {
    let min = d_in.min(d_out);
    let mut out = vec![Structure::Dense];
    for rank in [1, 2, 4, min / 2, min] {
        out.push(Structure::LowRank { rank });
        for n_blocks in [1, 2, 3, 4] {
            out.push(Structure::BlockDense { n_blocks, rank });
        }
    }
    for n_blocks in [1, 2, 3, 4, 8] {
        out.push(Structure::BlockShuffle { n_blocks });
    }
    out.into_iter()
        .filter(|s| {
            StructuredLinearConfig::new(d_in, d_out)
                .with_structure(*s)
                .validate()
                .is_ok()
        })
        .collect()
}

/// Output bias on/off, and for LowRank also the inner bias on/off.
fn bias_options(structure: Structure) -> Vec<(bool, bool)> {
    match structure {
        Structure::LowRank { .. } => {
            vec![(true, false), (false, false), (true, true), (false, true)]
        }
        _ => vec![(true, false), (false, false)],
    }
}

const SHAPES: [(usize, usize); 7] = [
    (8, 8),
    (8, 16),
    (16, 8),
    (12, 24),
    (24, 12),
    (6, 6),
    (12, 12),
];

/// Gives a layer a random bias (its only 1-D parameter) so that the bias path is exercised.
fn with_random_bias<B: Backend>(
    layer: StructuredLinear<B>,
    device: &B::Device,
) -> StructuredLinear<B> {
    struct RandomBias<'a, B: Backend>(&'a B::Device);
    impl<B: Backend> ModuleMapper<B> for RandomBias<'_, B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if D != 1 {
                return param;
            }
            let (id, tensor, mapper) = param.consume();
            let bias = Tensor::random(tensor.shape(), Distribution::Normal(0.0, 1.0), self.0)
                .require_grad();
            Param::from_mapped_value(id, bias, mapper)
        }
    }
    layer.map(&mut RandomBias(device))
}

mod accounting;
mod blockshuffle;
mod factorize;
mod gradients;
mod guided;
mod init;
mod merge;
