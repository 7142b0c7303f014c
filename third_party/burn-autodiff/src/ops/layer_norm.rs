//! strata patch: layer normalization as one autodiff node.
//!
//! The release does not override `ModuleOps::layer_norm`, so under autodiff it was the trait's
//! default decomposition (mean, subtract, square, mean, add, sqrt, divide, scale, shift): nine
//! nodes, each keeping its inputs, and a backward pass of about twenty operations with their
//! broadcast reductions. Here the forward pass is the backend's own `layer_norm` (burn-flex has
//! a fused row kernel; the others use the same decomposition as before), and the backward pass
//! recomputes the row statistics from the saved input and applies the closed form
//!
//! ```text
//! x̂ = (x - mean) * rstd,  g = dy * gamma
//! dx = rstd * (g - mean(g) - x̂ * mean(g * x̂)),  dgamma = Σ_rows dy * x̂,  dbeta = Σ_rows dy
//! ```

use alloc::vec;

use crate::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    graph::NodeRef,
    ops::{Backward, Ops, OpsKind},
    tensor::AutodiffTensor,
};
use burn_backend::{Backend, Shape, TensorMetadata, tensor::FloatTensor};

/// What the backward pass keeps: the input, gamma and epsilon.
type State<B> = (FloatTensor<B>, FloatTensor<B>, f64);

#[derive(Debug)]
struct LayerNormWithBeta;

#[derive(Debug)]
struct LayerNormNoBeta;

impl<B: Backend> Backward<B, 3> for LayerNormWithBeta {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, epsilon) = ops.state;
        register::<B>(
            grads, node_x, node_gamma, node_beta, x, gamma, grad, epsilon,
        );
    }
}

impl<B: Backend> Backward<B, 2> for LayerNormNoBeta {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, epsilon) = ops.state;
        register::<B>(grads, node_x, node_gamma, None, x, gamma, grad, epsilon);
    }
}

/// The gradients of the tracked parents, computed over `[rows, d]` views.
/// `1 / x`, correctly rounded. burn-ndarray's `float_recip` is a SIMD approximation (x86's
/// `rcp`/`rcp14`, ~1e-4 relative) on the part of the buffer its alignment puts in vectors, so
/// it is neither exact nor the same from one run to the next; a division is both.
pub(crate) fn exact_recip<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let ones = B::float_ones(x.shape(), &B::float_device(&x), x.dtype().into());
    B::float_div(ones, x)
}

#[allow(clippy::too_many_arguments)]
fn register<B: Backend>(
    grads: &mut Gradients,
    node_x: Option<NodeRef>,
    node_gamma: Option<NodeRef>,
    node_beta: Option<NodeRef>,
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
) {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let row_shape = Shape::from(vec![rows, d]);
    let x = B::float_reshape(x, row_shape.clone());
    let dy = B::float_reshape(grad, row_shape);

    let mean = B::float_mean_dim(x.clone(), 1);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
    let rstd = exact_recip::<B>(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    let x_hat = B::float_mul(centered, rstd.clone());

    if let Some(node) = node_beta {
        let d_beta = B::float_sum_dim(dy.clone(), 0);
        grads.register::<B>(node.id, B::float_reshape(d_beta, Shape::from(vec![d])));
    }
    if let Some(node) = node_gamma {
        let d_gamma = B::float_sum_dim(B::float_mul(dy.clone(), x_hat.clone()), 0);
        grads.register::<B>(node.id, B::float_reshape(d_gamma, Shape::from(vec![d])));
    }
    if let Some(node) = node_x {
        let g = B::float_mul(dy, B::float_reshape(gamma, Shape::from(vec![1, d])));
        let mean_g = B::float_mean_dim(g.clone(), 1);
        let mean_g_x_hat = B::float_mean_dim(B::float_mul(g.clone(), x_hat.clone()), 1);
        let inner = B::float_sub(B::float_sub(g, mean_g), B::float_mul(x_hat, mean_g_x_hat));
        let dx = B::float_mul(inner, rstd);
        grads.register::<B>(node.id, B::float_reshape(dx, shape));
    }
}

/// `ModuleOps::layer_norm` for the autodiff backend: one node (see the module's doc).
pub(crate) fn layer_norm<B: Backend, C: CheckpointStrategy>(
    tensor: AutodiffTensor<B>,
    gamma: AutodiffTensor<B>,
    beta: Option<AutodiffTensor<B>>,
    epsilon: f64,
) -> AutodiffTensor<B> {
    match beta {
        Some(beta) => match LayerNormWithBeta
            .prepare::<C>([tensor.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (tensor.primitive.clone(), gamma.primitive.clone(), epsilon);
                let output = B::layer_norm(
                    tensor.primitive,
                    gamma.primitive,
                    Some(beta.primitive),
                    epsilon,
                );
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm(
                tensor.primitive,
                gamma.primitive,
                Some(beta.primitive),
                epsilon,
            )),
        },
        None => match LayerNormNoBeta
            .prepare::<C>([tensor.node.clone(), gamma.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (tensor.primitive.clone(), gamma.primitive.clone(), epsilon);
                prep.finish(
                    state,
                    B::layer_norm(tensor.primitive, gamma.primitive, None, epsilon),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm(
                tensor.primitive,
                gamma.primitive,
                None,
                epsilon,
            )),
        },
    }
}
