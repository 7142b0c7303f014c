//! Fused kernels for strata's GPU backends.
//!
//! burn 0.21 has no layer-norm operation on its cubecl backends (CUDA, wgpu): `layer_norm` is
//! the trait's decomposition (two means, a subtraction, a square root, a division, the scale and
//! the shift), and without autotune (strata's GPU builds keep it off so that a cold start
//! compiles one kernel per operation) burn-fusion runs each of its reductions as a read kernel,
//! the reduction and a write kernel: about five launches per norm, on the host's critical path
//! when decoding one token at a time. Here it is one kernel.
//!
//! Each function is generic over burn's `Backend` and is called from the models' generic code;
//! when the backend is burn's CUDA or wgpu backend (features `cuda`, `wgpu`) and the tensor is a
//! float type the kernel handles, it registers the kernel as a custom operation of burn-fusion's
//! stream (`gpu` module); otherwise, and on every other backend, it is burn's own operation.

mod concrete;
mod layer_norm;

#[cfg(feature = "gpu")]
mod gpu;

pub use concrete::on_backend;
pub use layer_norm::layer_norm;
