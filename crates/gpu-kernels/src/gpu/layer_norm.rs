//! Layer norm on the cubecl backends: which backend a call is on, and the plain (inference)
//! path; under autodiff, [`super::layer_norm_node`].

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::Fusion;

use super::layer_norm_ops::{cast, register, Args};
use crate::on_backend;

/// The kernel when `B` is burn's CUDA or wgpu backend, with or without autodiff, and `x` is
/// f32, f16 or bf16; the arguments back otherwise.
pub(crate) fn dispatch<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    eps: f64,
) -> Result<Tensor<B, D>, Args<B, D>> {
    let args = (x, gamma, beta);
    if !matches!(args.0.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return Err(args);
    }
    #[cfg(feature = "cuda")]
    let args = match on_runtime::<cubecl::cuda::CudaRuntime, u8, B, D>(args, eps) {
        Ok(y) => return Ok(y),
        Err(args) => args,
    };
    #[cfg(feature = "wgpu")]
    let args = match on_runtime::<cubecl::wgpu::WgpuRuntime, u32, B, D>(args, eps) {
        Ok(y) => return Ok(y),
        Err(args) => args,
    };
    let _ = eps;
    Err(args)
}

/// The kernel when `B` is burn's backend on runtime `R` (f32 default float, i32 integers,
/// booleans `BT`), plain or under autodiff.
#[allow(dead_code)] // without `cuda` or `wgpu`, nothing names a runtime
fn on_runtime<R: CubeRuntime, BT: BoolElement, B: Backend, const D: usize>(
    args: Args<B, D>,
    eps: f64,
) -> Result<Tensor<B, D>, Args<B, D>> {
    type Fused<R, BT> = Fusion<CubeBackend<R, f32, i32, BT>>;
    let args = match on_backend(args, |args: Args<Fused<R, BT>, D>| plain(args, eps)) {
        Ok(y) => return Ok(y),
        Err(args) => args,
    };
    on_backend(args, |args: Args<Autodiff<Fused<R, BT>>, D>| {
        super::layer_norm_node::tracked(args, eps)
    })
}

/// One forward operation on the fusion stream.
fn plain<R, F, I, BT, const D: usize>(
    (x, gamma, beta): Args<Fusion<CubeBackend<R, F, I, BT>>, D>,
    eps: f64,
) -> Tensor<Fusion<CubeBackend<R, F, I, BT>>, D>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let dtype = x.dtype();
    let param = |p: Tensor<_, 1>| cast(p, dtype).into_primitive().tensor();
    let y = register::<R, F, I, BT>(
        x.into_primitive().tensor(),
        param(gamma),
        beta.map(param),
        eps,
    );
    Tensor::from_primitive(TensorPrimitive::Float(y))
}
