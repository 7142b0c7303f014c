//! The kernels on burn's cubecl backends.

pub(crate) mod layer_norm;
mod layer_norm_grad_kernel;
mod layer_norm_kernel;
mod layer_norm_node;
mod layer_norm_ops;
