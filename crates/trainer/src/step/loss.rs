//! The training loss: mean token cross-entropy with the output head's product fused into it
//! (the loss from logits, for evaluation, is `transformer::loss::cross_entropy`).
//!
//! The vocabulary-wide logits `[tokens, vocab]` are the largest tensor of a small model's step
//! (a 4096-token vocabulary at 1024 tokens: 16 MB, eight times any activation of the tiny zoo
//! models). Built from tensor operations under autodiff, the loss and its backward pass make a
//! dozen passes over them and keep them alive for the backward pass. [`head_cross_entropy`]
//! computes the logits, the loss and its gradient outside the autodiff graph, as fused
//! cross-entropy kernels do: the gradient of the mean cross-entropy with respect to the logits is
//! `(softmax(logits) - onehot(target)) / tokens`, formed in place from the exponentials the
//! loss already needs, and the head's two backward products are taken at once. The graph only
//! sees a surrogate whose gradients are exactly those (`sum(hidden * d_hidden) + sum(weight *
//! d_weight)`, the constants detached) and whose value is the loss.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};
use transformer::loss::to_f32;
use transformer::HeadWeight;

/// The mean cross-entropy of the logits `hidden · weight + bias` against `targets`, tracked
/// for the backward pass (the same value and gradients as [`cross_entropy`] of those logits,
/// within float rounding), without the logits entering the autodiff graph. Half-precision
/// inputs: the logits are taken to f32 for the loss, their gradient back to the inputs'
/// precision for the head's products, as autodiff does through a cast.
///
/// # Shapes
/// - hidden: `[tokens, d_model]`, weight: `[d_model, vocab]` (or `[vocab, d_model]` when tied,
///   see [`HeadWeight`]), bias: `[vocab]`, targets: `[tokens]` -> `[1]`
pub fn head_cross_entropy<B: AutodiffBackend>(
    hidden: Tensor<B, 2>,
    weight: HeadWeight<B>,
    bias: Option<Tensor<B, 1>>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [n, _] = hidden.dims();
    let dtype = hidden.dtype();
    let hidden_in = hidden.clone().inner();
    let weight_in = weight.clone().columns().inner();
    let [_, v] = weight_in.dims();
    let mut logits = hidden_in.clone().matmul(weight_in.clone());
    if let Some(bias) = &bias {
        logits = logits + bias.clone().inner().unsqueeze::<2>();
    }
    let logits = to_f32(logits);
    let targets = targets.inner().reshape([n, 1]);
    let picked = logits.clone().gather(1, targets.clone());
    let max = logits.clone().max_dim(1);
    let exp = (logits - max.clone()).exp();
    let sum = exp.clone().sum_dim(1);
    let loss = (sum.clone().log() + max - picked).mean();
    // d loss / d logits = (softmax - onehot) / n, in the exponentials' buffer.
    let scale = exact_recip(sum.mul_scalar(n as f64));
    let device = exp.device();
    let grad = (exp * scale).scatter(
        1,
        targets,
        Tensor::full([n, 1], -1.0 / n as f64, &device),
        IndexingUpdateOp::Add,
    );
    let grad = if grad.dtype() == dtype {
        grad
    } else {
        grad.cast(dtype)
    };
    let d_hidden = grad.clone().matmul(weight_in.transpose());
    // The weight's gradient in the weight's own layout, so that the surrogate's product with
    // it (and its backward pass) runs over two contiguous buffers: with the tied embedding
    // seen as its `[d_model, vocab]` transpose, that product walked a transposed view
    // element by element.
    let weight_term = match weight {
        HeadWeight::Columns(w) => {
            let d_w = hidden_in.transpose().matmul(grad.clone());
            (w * Tensor::from_inner(d_w)).sum()
        }
        HeadWeight::Rows(e) => {
            let d_e = grad.clone().transpose().matmul(hidden_in);
            (e * Tensor::from_inner(d_e)).sum()
        }
    };
    let mut surrogate = (hidden * Tensor::from_inner(d_hidden)).sum() + weight_term;
    if let Some(bias) = bias {
        let d_bias = grad.sum_dim(0).reshape([v]);
        surrogate = surrogate + (bias * Tensor::from_inner(d_bias)).sum();
    }
    let surrogate = to_f32(surrogate);
    // Exactly zero in value, the gradients above in the backward pass.
    surrogate.clone() - surrogate.detach() + Tensor::from_inner(loss)
}

/// `1 / x`, correctly rounded: burn-ndarray's `recip` is a SIMD approximation (x86's
/// `rcp`/`rcp14`, ~1e-4 relative) on the part of the buffer its alignment puts in vectors, so
/// neither exact nor the same from one run to the next. A division is both.
pub(crate) fn exact_recip<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.ones_like().div(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, Distribution, TensorData};
    use test_support::{assert_rel_close, scalar, values, Cpu64};
    use transformer::loss::cross_entropy;

    /// Loss value and gradients of hidden, weight and bias by both losses; `tied`: the weight
    /// is held as `[vocab, d_model]`, as a tied embedding is.
    fn both<B: AutodiffBackend>(with_bias: bool, tied: bool, device: &B::Device) -> [Vec<f64>; 2] {
        let (n, d, v) = (24, 8, 37);
        let _rng = test_support::seeded::<B>(device, 7);
        let leaf = |shape: [usize; 2]| {
            Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 1.5), device).require_grad()
        };
        let hidden = leaf([n, d]);
        let weight = if tied { leaf([v, d]) } else { leaf([d, v]) };
        let head = || {
            if tied {
                HeadWeight::Rows(weight.clone())
            } else {
                HeadWeight::Columns(weight.clone())
            }
        };
        let bias = with_bias.then(|| {
            Tensor::<B, 1>::random([v], Distribution::Normal(0.0, 1.0), device).require_grad()
        });
        let ids: Vec<i64> = (0..n as i64).map(|i| (i * 11 + 3) % v as i64).collect();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), device);
        let run = |fused: bool| {
            let loss = if fused {
                head_cross_entropy(hidden.clone(), head(), bias.clone(), targets.clone())
            } else {
                let mut logits = hidden.clone().matmul(head().columns());
                if let Some(b) = &bias {
                    logits = logits + b.clone().unsqueeze::<2>();
                }
                cross_entropy(logits.reshape([1, n, v]), targets.clone().reshape([1, n]))
            };
            let grads = loss.clone().backward();
            let mut out = values(loss);
            out.extend(values(hidden.grad(&grads).unwrap()));
            out.extend(values(weight.grad(&grads).unwrap()));
            if let Some(b) = &bias {
                out.extend(values(b.grad(&grads).unwrap()));
            }
            out
        };
        [run(true), run(false)]
    }

    #[test]
    fn fused_head_loss_equals_the_loss_of_the_logits_in_value_and_gradients() {
        for (with_bias, tied) in [(false, false), (true, false), (false, true), (true, true)] {
            let [fused, plain] = both::<Autodiff<Cpu64>>(with_bias, tied, &Default::default());
            // burn-ndarray's f32 and f64 backends share one device type, whose default float type is
            // set by whichever test creates a tensor first: f32 tolerance.
            assert_rel_close(&fused, &plain, 2e-5, "fused vs plain");
            let [fused, plain] = both::<Autodiff<Flex>>(with_bias, tied, &Default::default());
            assert_rel_close(&fused, &plain, 2e-5, "fused vs plain");
        }
    }

    #[test]
    fn fused_head_loss_in_half_precision_follows_the_f32_loss() {
        let device = Default::default();
        let (n, d, v) = (16, 8, 29);
        type B = Autodiff<Flex>;
        let _rng = test_support::seeded::<B>(&device, 3);
        let hidden = Tensor::<B, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<B, 2>::random([d, v], Distribution::Normal(0.0, 1.0), &device);
        let ids: Vec<i64> = (0..n as i64).map(|i| (i * 5) % v as i64).collect();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &device);
        let value = |h: Tensor<B, 2>, w: Tensor<B, 2>| -> f64 {
            let h = h.require_grad();
            let w = w.require_grad();
            let loss = head_cross_entropy(
                h.clone(),
                HeadWeight::Columns(w.clone()),
                None,
                targets.clone(),
            );
            assert_eq!(loss.dtype(), DType::F32);
            let grads = loss.backward();
            assert_eq!(h.grad(&grads).unwrap().dtype(), h.dtype());
            assert_eq!(w.grad(&grads).unwrap().dtype(), w.dtype());
            scalar(loss)
        };
        let full = value(hidden.clone(), weight.clone());
        let half = value(hidden.cast(DType::BF16), weight.cast(DType::BF16));
        assert!((full - half).abs() < 0.05 * full.abs(), "{full} vs {half}");
    }
}
