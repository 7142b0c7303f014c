//! The norms: LayerNorm (one kernel on the GPU backends) and RMSNorm.

use burn::module::{Module, Param};
use burn::nn::{Initializer, RmsNorm, RmsNormConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::NormKind;

/// LayerNorm or RMSNorm.
#[derive(Module, Debug)]
pub enum Norm<B: Backend> {
    /// LayerNorm (weight and bias).
    Layer(LayerNorm<B>),
    /// RMSNorm (weight only).
    Rms(RmsNorm<B>),
}

/// LayerNorm over the last dimension with a weight and a bias: burn's `LayerNorm` with the
/// same parameters (`gamma`, `beta`) and result, computed by [`gpu_kernels::layer_norm`], one
/// kernel per call on the CUDA and wgpu backends instead of burn's decomposition.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// The scale, ones at initialisation.
    pub gamma: Param<Tensor<B, 1>>,
    /// The shift, zeros at initialisation.
    pub beta: Option<Param<Tensor<B, 1>>>,
    epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// # Shapes
    /// - x: `[..., d]` -> same
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let beta = self.beta.as_ref().map(|b| b.val());
        gpu_kernels::layer_norm(x, self.gamma.val(), beta, self.epsilon)
    }
}

impl<B: Backend> Norm<B> {
    pub(crate) fn new(kind: NormKind, d: usize, epsilon: f64, device: &B::Device) -> Self {
        match kind {
            NormKind::LayerNorm => Norm::Layer(LayerNorm {
                gamma: Initializer::Ones.init([d], device),
                beta: Some(Initializer::Zeros.init([d], device)),
                epsilon,
            }),
            NormKind::RmsNorm => {
                Norm::Rms(RmsNormConfig::new(d).with_epsilon(epsilon).init(device))
            }
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]` -> same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}
