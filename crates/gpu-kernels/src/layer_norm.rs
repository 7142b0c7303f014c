//! `layer_norm`: one kernel on the cubecl backends, burn's operation elsewhere.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

/// Layer normalisation of `x` over its last dimension: `gamma * (x - mean) / sqrt(var + eps)`,
/// plus `beta` when given (the biased variance, as burn's `LayerNorm` and PyTorch's), with
/// burn's `ModuleOps::layer_norm` semantics: every backend gives the same result within float
/// rounding. On burn's CUDA and wgpu backends (crate features `cuda`, `wgpu`) it is one kernel
/// per call, and under autodiff one node with a two-kernel backward pass.
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    eps: f64,
) -> Tensor<B, D> {
    #[cfg(feature = "gpu")]
    let (x, gamma, beta) = match crate::gpu::layer_norm::dispatch(x, gamma, beta, eps) {
        Ok(y) => return y,
        Err(args) => args,
    };
    let y = B::layer_norm(
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.map(|b| b.into_primitive().tensor()),
        eps,
    );
    Tensor::from_primitive(TensorPrimitive::Float(y))
}
