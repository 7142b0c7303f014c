//! GELU, tanh approximation (the papers' activation): `x * sigmoid(2 sqrt(2/pi) (x + 0.044715
//! x^3))`, the same function as `0.5 x (1 + tanh(...))`.
//!
//! burn 0.21 has no tanh-GELU backend operation (`gelu_approximate` composes it through tanh),
//! so on a generic backend it is six element-wise operations (eight more in the backward
//! pass), each a pass over the FFN's hidden activations. On burn-flex, the CPU backend, with
//! f32 tensors, it is one pass forward and one backward instead: a node of burn-autodiff's
//! custom-operation API under `Autodiff<Flex>`, a plain pass on `Flex`, its loops compiled for
//! AVX2 + FMA when the CPU has them (burn-flex's `par::vectorised`) and run in parallel chunks.
//! The backend is recognised by its type at run time (`gpu_kernels::on_backend`);
//! every other backend, and half precision, take the composed form.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::{par, Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use gpu_kernels::on_backend;

/// `2 sqrt(2 / pi)`.
const C: f64 = 1.595_769_121_605_730_7;
/// The cubic term's coefficient inside the sigmoid.
const C3: f64 = C * 0.044_715;

/// GELU, tanh approximation, of `x` (one pass each way on burn-flex in f32).
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() != DType::F32 {
        return composed(x);
    }
    let x = match on_backend(x, tracked::<D>) {
        Ok(y) => return y,
        Err(x) => x,
    };
    match on_backend(x, untracked::<D>) {
        Ok(y) => y,
        Err(x) => composed(x),
    }
}

/// The composed form, on any backend.
pub(crate) fn composed<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let inner = x.clone() * (x.clone() * x.clone()).mul_scalar(C3).add_scalar(C);
    x * sigmoid(inner)
}

#[inline(always)]
fn sigmoid_f32(u: f32) -> f32 {
    1.0 / (1.0 + par::exp_f32(-u))
}

#[inline(always)]
fn value(x: f32) -> f32 {
    x * sigmoid_f32(x * (x * x * C3 as f32 + C as f32))
}

/// The derivative of [`value`] at `x`.
#[inline(always)]
fn slope(x: f32) -> f32 {
    let s = sigmoid_f32(x * (x * x * C3 as f32 + C as f32));
    s + x * s * (1.0 - s) * (C as f32 + 3.0 * C3 as f32 * x * x)
}

/// The f32 elements of `t` in order: `t` or a contiguous copy of it, and their range in its
/// storage.
fn values(t: &FlexTensor) -> (FlexTensor, std::ops::Range<usize>) {
    let n = t.layout().shape().num_elements();
    match t.layout().contiguous_offsets() {
        Some((start, _)) => (t.clone(), start..start + n),
        None => (t.to_contiguous(), 0..n),
    }
}

/// `out[i] = value(x[i])`, the loop to compile for AVX2.
#[inline(always)]
fn value_slice((out, x): (&mut [MaybeUninit<f32>], &[f32])) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = MaybeUninit::new(value(x));
    }
}

/// `out[i] = g[i] * slope(x[i])`, the loop to compile for AVX2.
#[inline(always)]
fn grad_slice((out, g, x): (&mut [MaybeUninit<f32>], &[f32], &[f32])) {
    for ((o, &g), &x) in out.iter_mut().zip(g).zip(x) {
        *o = MaybeUninit::new(g * slope(x));
    }
}

/// The tanh GELU of every element of `x`: a new contiguous tensor of its shape, written in
/// parallel chunks by the vectorised loop.
fn forward_flex(x: &FlexTensor) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let (x, range) = values(x);
    let x = &x.storage::<f32>()[range];
    let out = par::collect_chunks(x.len(), |start, chunk| {
        let end = start + chunk.len();
        par::vectorised(value_slice, (chunk, &x[start..end]))
    });
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// `g * gelu'(x)`, element by element, as [`forward_flex`] writes the value.
fn backward_flex(g: &FlexTensor, x: &FlexTensor) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let ((g, gr), (x, xr)) = (values(g), values(x));
    let (g, x) = (&g.storage::<f32>()[gr], &x.storage::<f32>()[xr]);
    let out = par::collect_chunks(x.len(), |start, chunk| {
        let end = start + chunk.len();
        par::vectorised(grad_slice, (chunk, &g[start..end], &x[start..end]))
    });
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// The backward pass of one tanh-GELU node: `g * gelu'(x)` from the saved input.
#[derive(Debug)]
struct GeluTanhBackward;

impl Backward<Flex, 1> for GeluTanhBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| backward_flex(&g, &x));
    }
}

/// The tanh GELU of `x` as one autodiff node.
fn tracked<const D: usize>(x: Tensor<Autodiff<Flex>, D>) -> Tensor<Autodiff<Flex>, D> {
    let x = x.into_primitive().tensor();
    let y = forward_flex(&x.primitive);
    let out = match GeluTanhBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(x.primitive, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The tanh GELU of `x` on plain burn-flex.
fn untracked<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
    let y = forward_flex(&x.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Value and gradient of the one-node form against the composed form on burn-flex, on a
    /// contiguous and a transposed input.
    #[test]
    fn one_node_tanh_gelu_equals_the_composed_form_in_value_and_gradient() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        B::seed(&device, 5);
        let base = Tensor::<B, 2>::random([64, 300], Distribution::Normal(0.0, 3.0), &device);
        for transposed in [false, true] {
            let x = if transposed {
                base.clone().transpose()
            } else {
                base.clone()
            };
            let run = |one_node: bool| {
                let leaf = x.clone().detach().require_grad();
                let y = if one_node {
                    gelu_tanh(leaf.clone())
                } else {
                    composed(leaf.clone())
                };
                let w = Tensor::<B, 2>::ones(y.dims(), &device).mul_scalar(0.5) + y.clone();
                let grads = (y.clone() * w).sum().backward();
                let g = leaf.grad(&grads).unwrap();
                (
                    y.inner().into_data().to_vec::<f32>().unwrap(),
                    g.into_data().to_vec::<f32>().unwrap(),
                )
            };
            let (y1, g1) = run(true);
            let (y0, g0) = run(false);
            for (a, b) in y1.iter().zip(&y0).chain(g1.iter().zip(&g0)) {
                assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
        // Without autodiff, on plain burn-flex.
        let x = Tensor::<Flex, 1>::from_floats([-9.0, -1.5, -0.1, 0.0, 0.3, 2.0, 12.0], &device);
        let a = gelu_tanh(x.clone()).into_data().to_vec::<f32>().unwrap();
        let b = composed(x).into_data().to_vec::<f32>().unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
