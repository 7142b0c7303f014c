//! Tests that the patched backend crates (`third_party/burn-flex`, `third_party/burn-autodiff`, see their
//! STRATA-PATCH.md) compute what the released ones do: the one-node softmax and layer norm
//! against their decompositions in value and gradients; sums' and means' gradients as broadcast
//! views and a tied embedding's two gradients against values worked out by hand; and
//! burn-flex's parallel elementwise paths, vectorised exp, GELU through a vectorised erf,
//! in-place scatter, row-wise and tiled layout copies, uncleared product outputs, wide products and parallel fills against burn-ndarray in
//! f64; and exact reciprocals in backward passes (division, logarithm, layer norm) on both CPU
//! backends.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::embedding;
use burn::tensor::{activation::softmax, IndexingUpdateOp, Int, Tensor, TensorData};
use test_support::{assert_rel_close, values, Cpu64};

/// Softmax along `dim` of a seeded input with masked (-inf) entries, and the gradient of a
/// weighted sum of it, by burn's softmax (the patched node) and by its decomposition.
fn softmax_both<B: AutodiffBackend>(dim: usize) -> [Vec<f64>; 2] {
    let device = Default::default();
    let shape = [3, 40, 37];
    // Host data (the same on every backend): a spread of values, some masked to -inf, none in
    // the first row and column of each matrix so that every softmax row has a finite entry.
    let mut state = 12_345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut xs = Vec::new();
    let mut ws = Vec::new();
    for i in 0..3 * 40 * 37 {
        let (r, c) = ((i / 37) % 40, i % 37);
        let masked = next() < 0.2 && r > 0 && c > 0;
        xs.push(if masked {
            f64::NEG_INFINITY
        } else {
            next() * 12.0 - 6.0
        });
        ws.push(next() * 2.0 - 1.0);
    }
    let x = Tensor::<B, 3>::from_data(TensorData::new(xs, shape), &device);
    let weights = Tensor::<B, 3>::from_data(TensorData::new(ws, shape), &device);
    let run = |patched: bool| {
        let x = x.clone().require_grad();
        let y = if patched {
            softmax(x.clone(), dim)
        } else {
            let max = x.clone().detach().max_dim(dim);
            let e = (x.clone() - max).exp();
            e.clone() / e.sum_dim(dim)
        };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let mut out = values(y);
        out.extend(values(x.grad(&grads).unwrap()));
        out
    };
    [run(true), run(false)]
}

#[test]
fn the_one_node_softmax_equals_its_decomposition_in_value_and_gradient() {
    for dim in [2, 1] {
        let [patched, plain] = softmax_both::<Autodiff<Cpu64>>(dim);
        // burn-ndarray's f32 and f64 backends share one device type, whose default float type is
        // set by whichever test creates a tensor first: f32 tolerance.
        assert_rel_close(&patched, &plain, 2e-5, "patched vs plain");
        let [patched, plain] = softmax_both::<Autodiff<Flex>>(dim);
        assert_rel_close(&patched, &plain, 1e-5, "patched vs plain");
        let [flex, _] = softmax_both::<Autodiff<Flex>>(dim);
        let [reference, _] = softmax_both::<Autodiff<Cpu64>>(dim);
        assert_rel_close(&flex, &reference, 1e-5, "flex vs reference");
    }
}

/// Layer normalization of a seeded `[2, 9, 48]` input with gamma and (optionally) beta, and the
/// gradients of a weighted sum of it with respect to all three, by burn's `layer_norm` (the
/// patched node) and by its decomposition.
fn layer_norm_both<B: AutodiffBackend>(with_beta: bool) -> [Vec<f64>; 2] {
    let device = Default::default();
    let (shape, d) = ([2, 9, 48], 48);
    let n = 2 * 9 * d;
    let xs: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1009) as f64 / 100.0 - 5.0 + (i / d) as f64)
        .collect();
    let ws: Vec<f64> = (0..n).map(|i| ((i * 31) % 17) as f64 / 8.0 - 1.0).collect();
    let x = Tensor::<B, 3>::from_data(TensorData::new(xs, shape), &device);
    let weights = Tensor::<B, 3>::from_data(TensorData::new(ws, shape), &device);
    let gamma = Tensor::<B, 1>::from_data(
        TensorData::new(
            (0..d).map(|i| 0.5 + i as f64 / 40.0).collect::<Vec<_>>(),
            [d],
        ),
        &device,
    );
    let beta = Tensor::<B, 1>::from_data(
        TensorData::new(
            (0..d).map(|i| i as f64 / 20.0 - 1.0).collect::<Vec<_>>(),
            [d],
        ),
        &device,
    );
    let run = |patched: bool| {
        let (x, gamma, beta) = (
            x.clone().require_grad(),
            gamma.clone().require_grad(),
            beta.clone().require_grad(),
        );
        let eps = 1e-5;
        let y = if patched {
            let b = with_beta.then(|| beta.clone().into_primitive().tensor());
            Tensor::<B, 3>::from_primitive(burn::tensor::TensorPrimitive::Float(B::layer_norm(
                x.clone().into_primitive().tensor(),
                gamma.clone().into_primitive().tensor(),
                b,
                eps,
            )))
        } else {
            let centered = x.clone() - x.clone().mean_dim(2);
            let var = (centered.clone() * centered.clone()).mean_dim(2);
            let y = centered / var.add_scalar(eps).sqrt() * gamma.clone().unsqueeze::<3>();
            if with_beta {
                y + beta.clone().unsqueeze::<3>()
            } else {
                y
            }
        };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let mut out = values(y);
        out.extend(values(x.grad(&grads).unwrap()));
        out.extend(values(gamma.grad(&grads).unwrap()));
        if with_beta {
            out.extend(values(beta.grad(&grads).unwrap()));
        }
        out
    };
    [run(true), run(false)]
}

#[test]
fn the_one_node_layer_norm_equals_its_decomposition_in_value_and_gradients() {
    for with_beta in [true, false] {
        let [patched, plain] = layer_norm_both::<Autodiff<Cpu64>>(with_beta);
        // f32 tolerance: see the softmax test above.
        assert_rel_close(&patched, &plain, 2e-5, "patched vs plain");
        let [patched, plain] = layer_norm_both::<Autodiff<Flex>>(with_beta);
        assert_rel_close(&patched, &plain, 2e-5, "patched vs plain");
        let [flex, _] = layer_norm_both::<Autodiff<Flex>>(with_beta);
        let [reference, _] = layer_norm_both::<Autodiff<Cpu64>>(with_beta);
        assert_rel_close(&flex, &reference, 2e-5, "flex vs reference");
        // burn-ndarray's approximate `recip` (~1e-4) would miss this.
        let [ndarray, _] = layer_norm_both::<Autodiff<NdArray<f32>>>(with_beta);
        assert_rel_close(&ndarray, &reference, 2e-5, "ndarray vs reference");
    }
}

/// The gradients of `y / x` (with respect to `y`) and of `ln x`, and `1 / x` in f32.
fn reciprocal_gradients<B: AutodiffBackend>() -> [Vec<f32>; 3] {
    let device = Default::default();
    let x: Vec<f32> = (0..1027).map(|i| 0.5 + i as f32 * 1.37e-3).collect();
    // f32 whatever the device's default (the f64 tests share burn-ndarray's device).
    let f32_leaf = |t: Tensor<B, 1>| t.cast(burn::tensor::DType::F32).detach().require_grad();
    let x_t = f32_leaf(Tensor::from_floats(x.as_slice(), &device));
    let y = f32_leaf(Tensor::ones([x.len()], &device));
    let grads = (y.clone() / x_t.clone()).sum().backward();
    let d_y = y.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    let grads = x_t.clone().log().sum().backward();
    let d_log = x_t
        .grad(&grads)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    [x.iter().map(|x| 1.0 / x).collect(), d_y, d_log]
}

/// Both are `1 / x` to the bit on burn-ndarray, whose `recip` (which they took) is an
/// approximation on an alignment-dependent part of the buffer. (burn-flex's `recip` is exact;
/// the layer-norm test above covers both backends.)
#[test]
fn reciprocals_in_backward_passes_are_exact() {
    let [want, d_div, d_log] = reciprocal_gradients::<Autodiff<NdArray<f32>>>();
    assert_eq!(d_div, want, "d(y / x)/dy");
    assert_eq!(d_log, want, "d(ln x)/dx");
}

/// Elementwise operations large enough to run in parallel chunks (and a small one that does
/// not), exp over the whole float range, and scatter-add, on burn-flex (f32) against
/// burn-ndarray (f64).
fn elementwise<B: Backend>(n: usize) -> Vec<f64> {
    let device = Default::default();
    let data: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 2003) as f64 / 32.0 - 31.0)
        .collect();
    let x = Tensor::<B, 1>::from_data(TensorData::new(data, [n]), &device);
    let rows = Tensor::<B, 2>::from_data(
        TensorData::new(
            (0..n).map(|i| (i % 97) as f64).collect::<Vec<_>>(),
            [n / 50, 50],
        ),
        &device,
    );
    let row = Tensor::<B, 1>::from_data(
        TensorData::new((0..50).map(|i| i as f64 * 0.5).collect::<Vec<_>>(), [50]),
        &device,
    );
    let mut out = values(x.clone().exp());
    out.extend(values(x.clone().div_scalar(8.0).exp()));
    out.extend(values(burn::tensor::activation::sigmoid(
        x.clone().div_scalar(10.0),
    )));
    out.extend(values(x.clone() * x.clone().add_scalar(1.0)));
    out.extend(values(x.clone().mul_scalar(3.0).sub_scalar(1.0)));
    out.extend(values(rows.clone() + row.clone().unsqueeze::<2>()));
    out.extend(values(rows.clone() * rows.clone().sum_dim(1)));
    // One scalar broadcast over the whole tensor (a gradient times the clipping factor).
    out.extend(values(
        x.clone() * x.clone().narrow(0, 0, 1).div_scalar(4.0),
    ));
    let zeros = Tensor::<B, 2>::zeros([n / 50, 50], &device);
    let ids: Vec<i64> = (0..(n / 50) as i64).map(|i| (i * 13) % 50).collect();
    let idx = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n / 50, 1]), &device);
    out.extend(values(zeros.scatter(
        1,
        idx,
        Tensor::ones([n / 50, 1], &device),
        IndexingUpdateOp::Add,
    )));
    out
}

#[test]
fn burn_flex_elementwise_paths_match_f64() {
    for n in [1_000, 200_000] {
        let flex = elementwise::<Flex>(n);
        let reference = elementwise::<Cpu64>(n);
        // Inputs exact in f32 (multiples of 1/32): only the operations round.
        assert_rel_close(&flex, &reference, 1e-6, "flex vs reference");
    }
}

/// GELU (the erf form) of `[-8, 8)` on a transposed view and the gradient of a weighted sum
/// of it, on burn-flex, and GELU of an input another handle still holds (so both the in-place
/// and the copying paths run); with the inputs and weights.
fn gelu_and_gradient(n: usize) -> [Vec<f64>; 4] {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let data: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 4096) as f64 / 256.0 - 8.0)
        .collect();
    let x = Tensor::<B, 2>::from_data(TensorData::new(data, [n / 64, 64]), &device);
    let weights = Tensor::<B, 2>::from_data(TensorData::new(ramp(n, 37), [64, n / 64]), &device);
    let xg = x.clone().require_grad();
    let y = burn::tensor::activation::gelu(xg.clone().swap_dims(0, 1));
    let mut out = values(y.clone());
    let grads = (y * weights.clone()).sum().backward();
    out.extend(values(xg.grad(&grads).expect("gradient of x")));
    let inner = x.clone().inner();
    let kept = inner.clone();
    out.extend(values(burn::tensor::activation::gelu(inner)));
    let xs = values(x.clone());
    assert_eq!(values(kept), xs, "the held input was left as it was");
    [out, values(x.swap_dims(0, 1)), values(weights), xs]
}

#[test]
fn burn_flex_gelu_and_its_gradient_match_f64() {
    let gelu = |x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()));
    let slope = |x: f64| {
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        0.5 * (1.0 + libm::erf(x / 2f64.sqrt())) + x * pdf
    };
    for n in [1_024, 262_144] {
        let [got, xt, w, x] = gelu_and_gradient(n);
        // y = gelu(x^T); dL/dx = (w * gelu'(x^T))^T, x^T laid out as [64, n / 64].
        let mut want: Vec<f64> = xt.iter().map(|&v| gelu(v)).collect();
        want.extend((0..n).map(|k| w[(k % 64) * (n / 64) + k / 64] * slope(x[k])));
        want.extend(x.iter().map(|&v| gelu(v)));
        // The vectorised erf is within 5e-7 of the exact one, and inputs are exact in f32.
        assert_rel_close(&got, &want, 2e-6, "flex vs exact");
    }
}

/// Layout copies (permuted 4-D views, innermost dimension contiguous or not, with an offset),
/// matrix products (2-D and batched) written into memory that a freed NaN buffer just held,
/// and zero / constant fills, at size `n` per tensor.
fn copies_products_fills<B: Backend>(n: usize) -> Vec<f64> {
    let device = Default::default();
    let d = 32;
    let (b, h) = (2, 4);
    let t = n / (b * h * d);
    let data: Vec<f64> = (0..b * t * h * d)
        .map(|i| ((i * 7919) % 2003) as f64 / 64.0 - 15.0)
        .collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(data, [b, t, h, d]), &device);
    // Heads and tokens swapped (rows of `d` stay contiguous), then the last two dimensions
    // swapped (no contiguous row), then a view with an offset.
    let mut out = values(x.clone().swap_dims(1, 2).reshape([b * h * t * d]));
    out.extend(values(x.clone().swap_dims(2, 3).reshape([b * t * h * d])));
    out.extend(values(
        x.clone()
            .slice([0..b, 1..t, 1..h, 0..d])
            .swap_dims(1, 2)
            .reshape([b * (h - 1) * (t - 1) * d]),
    ));
    // Permutations that move the contiguous dimension away from the end (BlockShuffle's
    // shuffles, tiled copies), whole and with an offset.
    out.extend(values(
        x.clone().permute([3, 1, 0, 2]).reshape([b * t * h * d]),
    ));
    out.extend(values(
        x.clone()
            .slice([0..b, 1..t, 0..h, 1..d])
            .permute([1, 3, 0, 2])
            .reshape([b * (t - 1) * h * (d - 1)]),
    ));
    drop(Tensor::<B, 1>::full([4 * n], f64::NAN, &device));
    let q = x.clone().swap_dims(1, 2);
    let k = x.clone().swap_dims(1, 2).div_scalar(8.0);
    out.extend(values(q.matmul(k.swap_dims(2, 3)).reshape([b * h * t * t])));
    let m = x.reshape([b * t * h, d]);
    let w = Tensor::<B, 2>::from_data(
        TensorData::new(
            (0..d * 3 * d)
                .map(|i| (i % 13) as f64 / 16.0 - 0.375)
                .collect::<Vec<_>>(),
            [d, 3 * d],
        ),
        &device,
    );
    out.extend(values(m.matmul(w).reshape([b * t * h * 3 * d])));
    drop(Tensor::<B, 1>::full([4 * n], f64::NAN, &device));
    out.extend(values(Tensor::<B, 1>::zeros([n], &device)));
    out.extend(values(Tensor::<B, 1>::full([n], 2.5, &device)));
    out
}

#[test]
fn burn_flex_copies_products_and_fills_match_f64() {
    for n in [2_048, 262_144] {
        let flex = copies_products_fills::<Flex>(n);
        let reference = copies_products_fills::<Cpu64>(n);
        assert_eq!(flex.len(), reference.len());
        // Inputs exact in f32; the products' sums round.
        assert_rel_close(&flex, &reference, 1e-5, "flex vs reference");
    }
}

/// Deterministic values in [-1, 1) for a test input, exact in f32 (multiples of 1/512).
fn ramp(n: usize, k: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * k) % 1013) as f64 / 512.0 - 1.0)
        .collect()
}

/// The gradients of sums and means (whole tensor and along a dimension), which the patched
/// autodiff hands back as broadcast views instead of tensors of ones times the gradient, each
/// used downstream the way a training step uses a gradient (scaled, added to); and the other
/// operand of a product, which the swapped-operand product must leave as it was.
fn reduction_gradients<B: AutodiffBackend>() -> Vec<f64> {
    let device = Default::default();
    let (r, c) = (6, 40);
    let x = Tensor::<B, 2>::from_data(TensorData::new(ramp(r * c, 7), [r, c]), &device);
    let y = Tensor::<B, 2>::from_data(TensorData::new(ramp(r * c, 11), [r, c]), &device);
    let w_rows = Tensor::<B, 2>::from_data(TensorData::new(ramp(r, 5), [r, 1]), &device);
    let w_cols = Tensor::<B, 2>::from_data(TensorData::new(ramp(c, 3), [1, c]), &device);
    let grad_of = |f: &dyn Fn(Tensor<B, 2>) -> Tensor<B, 1>| {
        let x = x.clone().require_grad();
        let grads = f(x.clone()).backward();
        let g = x.grad(&grads).unwrap();
        let mut out = values(g.clone());
        out.extend(values(g.clone().mul_scalar(0.5) + g.clone()));
        out.extend(values(g.clone() * y.clone().inner()));
        out
    };
    let mut out = grad_of(&|x| (x * y.clone()).sum());
    // The product's other operand held only by the graph (added into in place) ...
    out.extend(grad_of(&|x| (x * y.clone().mul_scalar(2.0)).sum()));
    // ... and held here too (must stay as it was).
    out.extend(values(y.clone()));
    out.extend(grad_of(&|x| x.sum()));
    out.extend(grad_of(&|x| x.mean()));
    out.extend(grad_of(&|x| (x.sum_dim(1) * w_rows.clone()).sum()));
    out.extend(grad_of(&|x| (x.mean_dim(0) * w_cols.clone()).sum()));
    out
}

/// What [`reduction_gradients`] must give, worked out by hand.
fn reduction_gradients_expected() -> Vec<f64> {
    let (r, c) = (6, 40);
    let y = ramp(r * c, 11);
    let (w_rows, w_cols) = (ramp(r, 5), ramp(c, 3));
    let used = |g: Vec<f64>| {
        let mut out = g.clone();
        out.extend(g.iter().map(|v| v * 1.5));
        out.extend(g.iter().zip(&y).map(|(a, b)| a * b));
        out
    };
    let mut out = used(y.clone());
    out.extend(used(y.iter().map(|v| 2.0 * v).collect()));
    out.extend(y.clone());
    out.extend(used(vec![1.0; r * c]));
    out.extend(used(vec![1.0 / (r * c) as f64; r * c]));
    out.extend(used((0..r * c).map(|i| w_rows[i / c]).collect()));
    out.extend(used((0..r * c).map(|i| w_cols[i % c] / r as f64).collect()));
    out
}

#[test]
fn sum_and_mean_gradients_as_broadcast_views_are_exact() {
    let expected = reduction_gradients_expected();
    assert_rel_close(
        &reduction_gradients::<Autodiff<Flex>>(),
        &expected,
        1e-6,
        "flex vs by hand",
    );
    assert_rel_close(
        &reduction_gradients::<Autodiff<Cpu64>>(),
        &expected,
        1e-6,
        "ndarray vs by hand",
    );
}

/// The gradient of an embedding table used twice, as a lookup (with repeated tokens) and as a
/// tied output head's weight, in both orders of the two terms and with the lookup alone: the
/// patched lookup adds its rows into the gradient the table already has.
fn tied_embedding_gradients<B: AutodiffBackend>() -> Vec<f64> {
    let device = Default::default();
    let (v, d, b, t) = (50, 8, 2, 5);
    let table = Tensor::<B, 2>::from_data(TensorData::new(ramp(v * d, 7), [v, d]), &device);
    let ids: Vec<i64> = vec![3, 17, 3, 49, 0, 17, 17, 8, 3, 21];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
    let a = Tensor::<B, 3>::from_data(TensorData::new(ramp(b * t * d, 11), [b, t, d]), &device);
    let head = Tensor::<B, 2>::from_data(TensorData::new(ramp(v * d, 5), [v, d]), &device);
    let mut out = Vec::new();
    for case in 0..3 {
        let e = table.clone().require_grad();
        let lookup = || (embedding(e.clone(), ids.clone()) * a.clone()).sum();
        let tied = || (e.clone() * head.clone()).sum();
        let loss = match case {
            0 => lookup() + tied(),
            1 => tied() + lookup(),
            _ => lookup(),
        };
        out.extend(values(e.grad(&loss.backward()).unwrap()));
    }
    out.extend(values(head));
    out
}

#[test]
fn a_tied_embedding_gets_the_sum_of_both_gradients() {
    let (v, d) = (50, 8);
    let ids = [3, 17, 3, 49, 0, 17, 17, 8, 3, 21];
    let (a, head) = (ramp(10 * d, 11), ramp(v * d, 5));
    let mut lookup = vec![0.0; v * d];
    for (i, &id) in ids.iter().enumerate() {
        for j in 0..d {
            lookup[id * d + j] += a[i * d + j];
        }
    }
    let both: Vec<f64> = lookup.iter().zip(&head).map(|(l, h)| l + h).collect();
    let mut expected = both.clone();
    expected.extend(both);
    expected.extend(lookup);
    expected.extend(head);
    let flex = tied_embedding_gradients::<Autodiff<Flex>>();
    assert_rel_close(&flex, &expected, 1e-6, "flex vs by hand");
    let ndarray = tied_embedding_gradients::<Autodiff<Cpu64>>();
    assert_rel_close(&ndarray, &expected, 1e-6, "ndarray vs by hand");
}

/// A "wide" product (tokens times a vocabulary, which burn-flex computes column-major and
/// transposes), with the weight contiguous and as the transposed view of a tied table.
fn wide_products<B: Backend>() -> Vec<f64> {
    let device = Default::default();
    let (m, k, n) = (64, 72, 20_011);
    let h = Tensor::<B, 2>::from_data(TensorData::new(ramp(m * k, 7), [m, k]), &device);
    let table = Tensor::<B, 2>::from_data(TensorData::new(ramp(n * k, 3), [n, k]), &device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(ramp(k * n, 5), [k, n]), &device);
    let mut out = values(h.clone().matmul(w));
    out.extend(values(h.matmul(table.transpose())));
    out
}

#[test]
fn burn_flex_wide_products_match_f64() {
    let flex = wide_products::<Flex>();
    let reference = wide_products::<Cpu64>();
    assert_eq!(flex.len(), 2 * 64 * 20_011);
    assert_rel_close(&flex, &reference, 1e-5, "flex vs reference");
}
