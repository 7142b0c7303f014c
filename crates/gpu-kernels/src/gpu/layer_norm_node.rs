//! Layer norm under autodiff on the cubecl backends: one node whose forward pass is the
//! layer-norm kernel and whose backward pass is the two backward kernels.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionTensor};

use super::layer_norm_ops::{cast, register, register_backward, Args};

type Fused<R, F, I, BT> = Fusion<CubeBackend<R, F, I, BT>>;

/// What the backward pass keeps: the input, gamma and epsilon.
type State<R> = (
    FusionTensor<FusionCubeRuntime<R>>,
    FusionTensor<FusionCubeRuntime<R>>,
    f64,
);

/// The node of a layer norm with a shift (parents x, gamma, beta).
#[derive(Debug)]
struct WithBeta;

/// The node of a layer norm without one (parents x, gamma).
#[derive(Debug)]
struct NoBeta;

impl<R, F, I, BT> Backward<Fused<R, F, I, BT>, 3> for WithBeta
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    type State = State<R>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, ng, nb] = ops.parents;
        let dy = grads.consume::<Fused<R, F, I, BT>>(&ops.node);
        let (x, gamma, eps) = ops.state;
        let (dx, dgamma, dbeta) = register_backward::<R, F, I, BT>(x, gamma, dy, eps, true);
        for (node, grad) in [(nx, Some(dx)), (ng, Some(dgamma)), (nb, dbeta)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Fused<R, F, I, BT>>(node.id, grad);
            }
        }
    }
}

impl<R, F, I, BT> Backward<Fused<R, F, I, BT>, 2> for NoBeta
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    type State = State<R>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, ng] = ops.parents;
        let dy = grads.consume::<Fused<R, F, I, BT>>(&ops.node);
        let (x, gamma, eps) = ops.state;
        let (dx, dgamma, _) = register_backward::<R, F, I, BT>(x, gamma, dy, eps, false);
        for (node, grad) in [(nx, dx), (ng, dgamma)] {
            if let Some(node) = node {
                grads.register::<Fused<R, F, I, BT>>(node.id, grad);
            }
        }
    }
}

/// The layer norm of `x` as one autodiff node (gamma and beta cast to `x`'s type first, as
/// tracked operations).
pub(super) fn tracked<R, F, I, BT, const D: usize>(
    (x, gamma, beta): Args<Autodiff<Fused<R, F, I, BT>>, D>,
    eps: f64,
) -> Tensor<Autodiff<Fused<R, F, I, BT>>, D>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let dtype = x.dtype();
    let x = x.into_primitive().tensor();
    let gamma = cast(gamma, dtype).into_primitive().tensor();
    let beta = beta.map(|b| cast(b, dtype).into_primitive().tensor());
    let y = register::<R, F, I, BT>(
        x.primitive.clone(),
        gamma.primitive.clone(),
        beta.as_ref().map(|b| b.primitive.clone()),
        eps,
    );
    let state = || (x.primitive.clone(), gamma.primitive.clone(), eps);
    let out = match beta {
        Some(beta) => match WithBeta
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match NoBeta
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
