//! AdamW's update, and the clipping norm's sum of squares, as one pass over each parameter on
//! burn-flex, the CPU backend.
//!
//! The generic update (`optim.rs`) is about fifteen tensor operations per parameter, each a
//! full pass over memory: a quarter of an s-size model's CPU training step. PyTorch's answer is
//! its fused / foreach AdamW; burn has none, so when the inner backend is burn-flex and the
//! tensors are f32, the update reads each element of the weight, gradient and moments once and
//! writes weight and moments once, in parallel chunks. It does the same f32 operations in the
//! same order as the generic path, so the two agree to the bit (tested below). Other backends
//! and precisions keep the generic path.

use gpu_kernels::on_backend;

use burn::backend::flex::{par, Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Shape, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// One parameter's update, in f32 (each constant rounded from f64 as burn rounds a scalar
/// operand).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Update {
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// `1 - lr * weight_decay`, or `None` when the parameter does not decay.
    pub decay: Option<f32>,
    /// The second moment's bias correction `1 - beta2^t`.
    pub bc2: f32,
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step: f32,
}

/// Weight, gradient, clipping factor (`[1]`) and moments (`None` on a parameter's first
/// update), all flattened.
pub(crate) type Inputs<B> = (
    Tensor<B, 1>,
    Tensor<B, 1>,
    Tensor<B, 1>,
    Option<(Tensor<B, 1>, Tensor<B, 1>)>,
);

/// The updated weight, first and second moments.
pub(crate) type Outputs<B> = (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>);

/// The updated weight and moments when `B` is burn-flex and every tensor is f32; otherwise the
/// inputs back, untouched, for the generic path.
pub(crate) fn update<B: Backend>(inputs: Inputs<B>, u: &Update) -> Result<Outputs<B>, Inputs<B>> {
    let f32_only = {
        let (w, g, s, moments) = &inputs;
        [w.dtype(), g.dtype(), s.dtype()]
            .into_iter()
            .chain(moments.iter().flat_map(|(m, v)| [m.dtype(), v.dtype()]))
            .all(|d| d == DType::F32)
    };
    if !f32_only {
        return Err(inputs);
    }
    on_backend(inputs, |flex: Inputs<Flex>| update_flex(flex, u))
}

/// The sum of the squares of `g`'s elements (`[1]`) when `B` is burn-flex and `g` is f32, read
/// once in parallel chunks (each summed in short f32 lanes into f64, the chunks' sums added in
/// order, so the result does not depend on the threads); otherwise `g` back for the generic
/// `(g * g).sum()`, which builds the squares as a tensor first. For the global gradient norm
/// that clipping needs.
pub(crate) fn sum_squares<B: Backend, const D: usize>(
    g: Tensor<B, D>,
) -> Result<Tensor<B, 1>, Tensor<B, D>> {
    if g.dtype() != DType::F32 {
        return Err(g);
    }
    on_backend(g, sum_squares_flex::<D>)
}

fn sum_squares_flex<const D: usize>(g: Tensor<Flex, D>) -> Tensor<Flex, 1> {
    let n = g.shape().num_elements();
    let (g, start) = contiguous(g.into_primitive().tensor());
    let x = &g.storage::<f32>()[start..start + n];
    // Sixteen f32 lanes over blocks of 256 elements (16 terms per lane), each block's lanes
    // added into an f64 total: a long f32 lane would lose digits on a large gradient.
    let chunk = |x: &[f32]| -> f64 {
        let mut total = 0f64;
        let mut blocks = x.chunks_exact(256);
        for block in &mut blocks {
            let mut lanes = [0f32; 16];
            for row in block.chunks_exact(16) {
                for (lane, &v) in lanes.iter_mut().zip(row) {
                    *lane += v * v;
                }
            }
            total += lanes.iter().map(|&l| l as f64).sum::<f64>();
        }
        let tail: f64 = blocks.remainder().iter().map(|&v| (v * v) as f64).sum();
        total + tail
    };
    let total: f64 = if n >= par::PAR_MIN && rayon::current_num_threads() > 1 {
        let sums: Vec<f64> = x.par_chunks(CHUNK).map(chunk).collect();
        sums.into_iter().sum()
    } else {
        x.chunks(CHUNK).map(chunk).sum()
    };
    Tensor::from_data(
        TensorData::new(vec![total as f32], [1]),
        &Default::default(),
    )
}

/// Elements per parallel chunk (below burn-flex's `PAR_MIN` elements the update stays on the
/// calling thread, as burn-flex's own elementwise work does).
const CHUNK: usize = 1 << 14;

fn update_flex((w, g, s, moments): Inputs<Flex>, u: &Update) -> Outputs<Flex> {
    let n = w.dims()[0];
    let scale: f32 = s.into_scalar().elem();
    let (g, start) = contiguous(primitive(g));
    let g = &g.storage::<f32>()[start..start + n];
    let mut w = owned(w);
    let (mut m, mut v) = match moments {
        Some((m, v)) => (owned(m), owned(v)),
        None => (zeros(n), zeros(n)),
    };
    let (ws, ms, vs) = (
        w.storage_mut::<f32>(),
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
    );
    let run = |w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
        for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            // The generic path's operations, in its order.
            let g = g * scale;
            *m = *m * u.beta1 + g * u.one_minus_beta1;
            *v = *v * u.beta2 + (g * g) * u.one_minus_beta2;
            let decayed = match u.decay {
                Some(d) => *w * d,
                None => *w,
            };
            let denom = (*v / u.bc2).sqrt() + u.eps;
            *w = decayed - (*m / denom) * u.step;
        }
    };
    if n >= par::PAR_MIN && rayon::current_num_threads() > 1 {
        ws[..n]
            .par_chunks_mut(CHUNK)
            .zip(ms[..n].par_chunks_mut(CHUNK))
            .zip(vs[..n].par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((w, m), v), g)| run(w, m, v, g));
    } else {
        run(&mut ws[..n], &mut ms[..n], &mut vs[..n], g);
    }
    let wrap = |t: FlexTensor| Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t));
    (wrap(w), wrap(m), wrap(v))
}

fn primitive(t: Tensor<Flex, 1>) -> FlexTensor {
    t.into_primitive().tensor()
}

/// The tensor itself when its elements lie in order in its buffer, else a contiguous copy;
/// and where in the buffer they start.
fn contiguous(t: FlexTensor) -> (FlexTensor, usize) {
    match t.layout().contiguous_offsets() {
        Some((start, _)) => (t, start),
        None => (t.to_contiguous(), 0),
    }
}

/// The tensor's buffer when it alone holds it, contiguous from its start; otherwise a copy
/// (so the update never writes into memory another tensor reads).
fn owned(t: Tensor<Flex, 1>) -> FlexTensor {
    let n = t.dims()[0];
    let t = primitive(t);
    if t.is_unique() && t.layout().contiguous_offsets() == Some((0, n)) {
        return t;
    }
    let data = par::map_collect(&t.to_contiguous().storage::<f32>()[..n], |x| x);
    FlexTensor::from_data(TensorData::new(data, [n]))
}

fn zeros(n: usize) -> FlexTensor {
    FlexTensor::zeros(Shape::new([n]), DType::F32)
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};

    use crate::step::optim::{clip_scale, global_grad_norm, AdamW, AdamWConfig, Decay};

    type AB = Autodiff<Flex>;

    /// A matrix large enough for the parallel path and a vector that is not.
    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        w: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    fn values(n: usize, k: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * k) % 1013) as f32 / 512.0 - 1.0)
            .collect()
    }

    /// Three clipped updates of `Two`, by the fused or the generic path; the weights after.
    fn train(fused: bool, decay: Decay) -> Vec<f32> {
        let device = Default::default();
        let (rows, cols) = (300, 200);
        let mut model = Two::<AB> {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(rows * cols, 7), [rows, cols]),
                &device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(cols, 3), [cols]),
                &device,
            )),
        };
        let x = Tensor::<AB, 2>::from_data(
            TensorData::new(values(rows * cols, 11), [rows, cols]),
            &device,
        );
        let config = AdamWConfig {
            decay,
            ..AdamWConfig::default()
        };
        let mut optim = AdamW::new(config);
        if !fused {
            optim = optim.unfused();
        }
        for _ in 0..3 {
            let y = model.w.val() * x.clone() + model.b.val().unsqueeze::<2>();
            let loss = (y.clone() * y).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let norm = global_grad_norm(&model, &grads, &device);
            model = optim.step(model, &grads, 1e-2, clip_scale(norm, 1.0, 1.0));
        }
        let mut out = model.w.val().into_data().to_vec::<f32>().unwrap();
        out.extend(model.b.val().into_data().to_vec::<f32>().unwrap());
        out
    }

    #[test]
    fn the_fused_update_equals_the_generic_one_to_the_bit() {
        for decay in [Decay::All, Decay::Matrices] {
            let fused = train(true, decay);
            let generic = train(false, decay);
            assert_eq!(fused.len(), generic.len());
            let first = fused
                .iter()
                .zip(&generic)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert!(first.is_none(), "{decay:?}: first difference at {first:?}");
            // And the update did something.
            assert_ne!(fused, train_start(), "{decay:?}");
        }
    }

    #[test]
    fn the_one_pass_sum_of_squares_equals_the_exact_one() {
        use test_support::Cpu64;
        let device = Default::default();
        // Below and above the parallel threshold, and a transposed (non-contiguous) view.
        for (rows, cols) in [(7, 13), (600, 500)] {
            let data = values(rows * cols, 7);
            // Exact: the values are multiples of 1/512, their squares and sum exact in f64.
            let exact: f64 = data.iter().map(|&v| v as f64 * v as f64).sum();
            let flex = Tensor::<Flex, 2>::from_data(TensorData::new(data, [rows, cols]), &device);
            for g in [flex.clone(), flex.transpose()] {
                let fused = super::sum_squares(g).expect("burn-flex, f32");
                let fused = fused.into_scalar() as f64;
                assert!(
                    (fused - exact).abs() <= 1e-6 * exact,
                    "{rows}x{cols}: {fused} vs {exact}"
                );
            }
        }
        // Other backends get their tensor back for the generic path.
        let other = Tensor::<Cpu64, 1>::from_data(
            TensorData::new(values(10, 3), [10]),
            &Default::default(),
        );
        assert!(super::sum_squares(other).is_err());
    }

    fn train_start() -> Vec<f32> {
        let mut out = values(300 * 200, 7);
        out.extend(values(200, 3));
        out
    }
}
