//! Layer norm's forward and backward passes as custom operations of burn-fusion's stream on the
//! cubecl backends.

use std::marker::PhantomData;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use super::layer_norm_grad_kernel::launch_backward;
use super::layer_norm_kernel::launch;

/// The arguments of [`crate::layer_norm`] but `eps`.
pub(super) type Args<B, const D: usize> = (Tensor<B, D>, Tensor<B, 1>, Option<Tensor<B, 1>>);

/// `p` in `dtype` (no operation when it is already).
pub(super) fn cast<B: Backend>(p: Tensor<B, 1>, dtype: DType) -> Tensor<B, 1> {
    if p.dtype() == dtype {
        p
    } else {
        p.cast(dtype)
    }
}

/// Registers one layer-norm operation on the fusion stream of `x`.
pub(super) fn register<R, F, I, BT>(
    x: FusionTensor<FusionCubeRuntime<R>>,
    gamma: FusionTensor<FusionCubeRuntime<R>>,
    beta: Option<FusionTensor<FusionCubeRuntime<R>>>,
    eps: f64,
) -> FusionTensor<FusionCubeRuntime<R>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let client = x.client.clone();
    let mut inputs = vec![&x, &gamma];
    inputs.extend(beta.as_ref());
    let streams = OperationStreams::with_inputs(inputs);
    let out = TensorIr::uninit(client.create_empty_handle(), x.shape.clone(), x.dtype);
    let mut irs = vec![x.into_ir(), gamma.into_ir()];
    irs.extend(beta.map(|b| b.into_ir()));
    let desc = CustomOpIr::new("strata_layer_norm", &irs, &[out]);
    let op = LayerNormOp::<CubeBackend<R, F, I, BT>> {
        desc: desc.clone(),
        eps,
        _backend: PhantomData,
    };
    client
        .register(streams, OperationIr::Custom(desc), op)
        .output()
}

/// The operation burn-fusion runs when its stream reaches it (inputs x, gamma and, when there
/// is one, beta).
#[derive(Debug)]
struct LayerNormOp<B> {
    desc: CustomOpIr,
    eps: f64,
    _backend: PhantomData<fn() -> B>,
}

impl<R, F, I, BT> Operation<FusionCubeRuntime<R>> for LayerNormOp<CubeBackend<R, F, I, BT>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>,
    ) {
        type B<R, F, I, BT> = CubeBackend<R, F, I, BT>;
        let inputs = &self.desc.inputs;
        let x = handles.get_float_tensor::<B<R, F, I, BT>>(&inputs[0]);
        let gamma = handles.get_float_tensor::<B<R, F, I, BT>>(&inputs[1]);
        let beta = inputs
            .get(2)
            .map(|beta| handles.get_float_tensor::<B<R, F, I, BT>>(beta));
        let y = launch(x, gamma, beta, self.eps);
        handles.register_float_tensor::<B<R, F, I, BT>>(&self.desc.outputs[0].id, y);
    }
}

/// Registers the backward pass of one layer norm (`x`, `gamma`, the output's gradient `dy`) on
/// the fusion stream: `(dx, dgamma, dbeta)`, `dbeta` only when `has_beta`.
pub(super) fn register_backward<R, F, I, BT>(
    x: FusionTensor<FusionCubeRuntime<R>>,
    gamma: FusionTensor<FusionCubeRuntime<R>>,
    dy: FusionTensor<FusionCubeRuntime<R>>,
    eps: f64,
    has_beta: bool,
) -> Grads<R>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let client = x.client.clone();
    let streams = OperationStreams::with_inputs([&x, &gamma, &dy]);
    let param = || TensorIr::uninit(client.create_empty_handle(), gamma.shape.clone(), x.dtype);
    let mut outs = vec![
        TensorIr::uninit(client.create_empty_handle(), x.shape.clone(), x.dtype),
        param(),
    ];
    outs.extend(has_beta.then(param));
    let irs = [x.into_ir(), gamma.into_ir(), dy.into_ir()];
    let desc = CustomOpIr::new("strata_layer_norm_backward", &irs, &outs);
    let op = LayerNormBackwardOp::<CubeBackend<R, F, I, BT>> {
        desc: desc.clone(),
        eps,
        _backend: PhantomData,
    };
    let mut out = client
        .register(streams, OperationIr::Custom(desc), op)
        .into_iter();
    let (dx, dgamma) = (out.next().expect("dx"), out.next().expect("dgamma"));
    (dx, dgamma, out.next())
}

/// `(dx, dgamma, dbeta)` on the fusion stream.
pub(super) type Grads<R> = (
    FusionTensor<FusionCubeRuntime<R>>,
    FusionTensor<FusionCubeRuntime<R>>,
    Option<FusionTensor<FusionCubeRuntime<R>>>,
);

/// The backward operation burn-fusion runs when its stream reaches it (outputs dx, dgamma and,
/// when the norm has a shift, dbeta).
#[derive(Debug)]
struct LayerNormBackwardOp<B> {
    desc: CustomOpIr,
    eps: f64,
    _backend: PhantomData<fn() -> B>,
}

impl<R, F, I, BT> Operation<FusionCubeRuntime<R>> for LayerNormBackwardOp<CubeBackend<R, F, I, BT>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>,
    ) {
        type B<R, F, I, BT> = CubeBackend<R, F, I, BT>;
        let [x, gamma, dy] =
            [0, 1, 2].map(|i| handles.get_float_tensor::<B<R, F, I, BT>>(&self.desc.inputs[i]));
        let outs = &self.desc.outputs;
        let (dx, dgamma, dbeta) = launch_backward(x, gamma, dy, self.eps, outs.len() == 3);
        handles.register_float_tensor::<B<R, F, I, BT>>(&outs[0].id, dx);
        handles.register_float_tensor::<B<R, F, I, BT>>(&outs[1].id, dgamma);
        if let Some(dbeta) = dbeta {
            handles.register_float_tensor::<B<R, F, I, BT>>(&outs[2].id, dbeta);
        }
    }
}
