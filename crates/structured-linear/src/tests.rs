//! Tests of the layer zoo on the CPU (burn-ndarray): merge equivalence, the slow BlockShuffle
//! reference, gradient checks, initialisations, factorisation, self-guided mixing, accounting
//! and configuration errors.
//!
//! Long on purpose: one file per crate of unit tests, in sections by concern (layers, merge,
//! gradients, init, factorize, self-guided, accounting); splitting it into files is planned.

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use faer::Mat;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{
    ConfigError, Init, LayerError, SelfGuided, Structure, StructuredLinear, StructuredLinearConfig,
};

// Every test runs in f64: burn keys a device's default float type by device, and NdArray<f32>
// and NdArray<f64> share one device, so mixing them in one process races on that setting.
type TB = NdArray<f64>;
type TB64 = NdArray<f64>;
type GradB = Autodiff<NdArray<f64>>;

/// The backends' random generators are global: tests that draw from them take this lock first so
/// that a seed always gives the same numbers, whatever else runs in parallel.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded<B: Backend>(device: &B::Device, seed: u64) -> std::sync::MutexGuard<'static, ()> {
    let guard = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, seed);
    guard
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

fn frob(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn host<B: Backend>(t: Tensor<B, 2>) -> Mat<f64> {
    let [r, c] = t.dims();
    let v = values(t);
    Mat::from_fn(r, c, |i, j| v[i * c + j])
}

fn singular_values(m: &Mat<f64>) -> Vec<f64> {
    m.singular_values().unwrap()
}

/// Every structure that is valid for `d_in x d_out` among a fixed grid of ranks and block counts.
fn structures(d_in: usize, d_out: usize) -> Vec<Structure> {
    let min = d_in.min(d_out);
    let mut out = vec![Structure::Dense];
    for rank in [1, 2, 4, min / 2, min] {
        out.push(Structure::LowRank { rank });
        for n_blocks in [1, 2, 3, 4] {
            out.push(Structure::BlockDense { n_blocks, rank });
        }
    }
    for n_blocks in [1, 2, 3, 4, 8] {
        out.push(Structure::BlockShuffle { n_blocks });
    }
    out.into_iter()
        .filter(|s| {
            StructuredLinearConfig::new(d_in, d_out)
                .with_structure(*s)
                .validate()
                .is_ok()
        })
        .collect()
}

/// Output bias on/off, and for LowRank also the inner bias on/off.
fn bias_options(structure: Structure) -> Vec<(bool, bool)> {
    match structure {
        Structure::LowRank { .. } => {
            vec![(true, false), (false, false), (true, true), (false, true)]
        }
        _ => vec![(true, false), (false, false)],
    }
}

const SHAPES: [(usize, usize); 7] = [
    (8, 8),
    (8, 16),
    (16, 8),
    (12, 24),
    (24, 12),
    (6, 6),
    (12, 12),
];

/// Gives a layer a random bias (its only 1-D parameter) so that the bias path is exercised.
fn with_random_bias<B: Backend>(
    layer: StructuredLinear<B>,
    device: &B::Device,
) -> StructuredLinear<B> {
    struct RandomBias<'a, B: Backend>(&'a B::Device);
    impl<B: Backend> ModuleMapper<B> for RandomBias<'_, B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if D != 1 {
                return param;
            }
            let (id, tensor, mapper) = param.consume();
            let bias = Tensor::random(tensor.shape(), Distribution::Normal(0.0, 1.0), self.0)
                .require_grad();
            Param::from_mapped_value(id, bias, mapper)
        }
    }
    layer.map(&mut RandomBias(device))
}

// ---------------------------------------------------------------------------------------------
// Forward equals the merged matrix.

#[test]
fn forward_equals_merged_matrix_for_every_structure_and_shape() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 1);
    let mut checked = 0;
    for (d_in, d_out) in SHAPES {
        for structure in structures(d_in, d_out) {
            for (bias, inner_bias) in bias_options(structure) {
                let config = StructuredLinearConfig::new(d_in, d_out)
                    .with_structure(structure)
                    .with_bias(bias)
                    .with_inner_bias(inner_bias)
                    .with_init(Init::FanIn);
                let layer = config.init::<TB>(&device).unwrap();
                let layer = if bias {
                    with_random_bias(layer, &device)
                } else {
                    layer
                };
                let x =
                    Tensor::<TB, 3>::random([2, 3, d_in], Distribution::Normal(0.0, 1.0), &device);
                let y = layer.forward(x.clone());
                assert_eq!(y.dims(), [2, 3, d_out]);
                let w = layer.merged_weight();
                let mut expected = x.reshape([6, d_in]).matmul(w);
                if let Some(b) = layer.bias() {
                    expected = expected + b.unsqueeze::<2>();
                }
                assert_eq!(layer.bias().is_some(), bias || inner_bias);
                let err = rel_err(&values(y), &values(expected));
                assert!(
                    err < 1e-5,
                    "{structure:?} {d_in}x{d_out} bias={bias}: rel err {err}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "grid too small: {checked}");
}

#[test]
fn forward_accepts_any_number_of_leading_dimensions() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 2);
    let config =
        StructuredLinearConfig::new(8, 16).with_structure(Structure::BlockShuffle { n_blocks: 2 });
    let layer = config.init::<TB>(&device).unwrap();
    let x1 = Tensor::<TB, 1>::random([8], Distribution::Normal(0.0, 1.0), &device);
    let x4 = x1.clone().reshape([1, 1, 1, 8]);
    assert_eq!(layer.forward(x1.clone()).dims(), [16]);
    let y4 = layer.forward(x4);
    assert_eq!(y4.dims(), [1, 1, 1, 16]);
    assert_eq!(values(layer.forward(x1)), values(y4));
}

#[test]
fn to_dense_is_an_equivalent_dense_layer() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 3);
    for structure in structures(12, 24) {
        let layer = StructuredLinearConfig::new(12, 24)
            .with_structure(structure)
            .init::<TB>(&device)
            .unwrap();
        let layer = with_random_bias(layer, &device);
        let dense = layer.to_dense();
        assert_eq!(dense.structure(), Structure::Dense);
        let x = Tensor::<TB, 2>::random([5, 12], Distribution::Normal(0.0, 1.0), &device);
        let err = rel_err(&values(dense.forward(x.clone())), &values(layer.forward(x)));
        assert!(err < 1e-5, "{structure:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// BlockShuffle against docs/reference.md §1 written out index by index.

/// The Monarch product of docs/reference.md §1, element by element, with the factors in the paper's
/// `[out, in]` form: `b1[i][j][u]` and `b2[c][t][m]`.
fn slow_block_shuffle(x: &[f64], b1: &[Vec<Vec<f64>>], b2: &[Vec<Vec<f64>>]) -> Vec<f64> {
    let k = b1.len();
    let q = b1[0].len();
    let p = b1[0][0].len();
    let l = b2.len();
    let s = b2[0].len();
    let r = b2[0][0].len();
    assert_eq!(k * p, x.len());
    assert_eq!(l * r, k * q);
    // Step 1: y1[i*q + j] = B1[i] x_i.
    let mut y1 = vec![0.0; k * q];
    for i in 0..k {
        for j in 0..q {
            y1[i * q + j] = (0..p).map(|u| b1[i][j][u] * x[i * p + u]).sum();
        }
    }
    // Step 2: read y1 as an [r, l] row-major grid and take its columns.
    let z: Vec<Vec<f64>> = (0..l)
        .map(|c| (0..r).map(|m| y1[m * l + c]).collect())
        .collect();
    // Step 3: w_c = B2[c] z_c, output (c, t) at t*l + c.
    let mut out = vec![0.0; s * l];
    for c in 0..l {
        for t in 0..s {
            out[t * l + c] = (0..r).map(|m| b2[c][t][m] * z[c][m]).sum();
        }
    }
    out
}

/// Splits a `[b, n, m]` (input-major) block tensor into the paper's `[out, in]` blocks.
fn paper_blocks<B: Backend>(t: Tensor<B, 3>) -> Vec<Vec<Vec<f64>>> {
    let [b, n, m] = t.dims();
    let v = values(t);
    (0..b)
        .map(|i| {
            (0..m)
                .map(|o| (0..n).map(|u| v[i * n * m + u * m + o]).collect())
                .collect()
        })
        .collect()
}

#[test]
fn block_shuffle_equals_the_index_formula_of_the_paper() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 4);
    // (6, 6, 2) has q = 3, not a multiple of b: the general shuffle path; the others the fast one.
    for (d_in, d_out, b) in [
        (6, 6, 2),
        (8, 16, 2),
        (16, 8, 4),
        (12, 24, 3),
        (24, 12, 2),
        (16, 16, 4),
        (9, 6, 3),
    ] {
        let config = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: b })
            .with_bias(false)
            .with_init(Init::FanIn);
        let layer = config.init::<TB64>(&device).unwrap();
        let StructuredLinear::BlockShuffle(bs) = &layer else {
            panic!("not a BlockShuffle")
        };
        let (b1, b2) = (paper_blocks(bs.b1.val()), paper_blocks(bs.b2.val()));
        let x = Tensor::<TB64, 2>::random([3, d_in], Distribution::Normal(0.0, 1.0), &device);
        let xs = values(x.clone());
        let y = values(layer.forward(x));
        for n in 0..3 {
            let expected = slow_block_shuffle(&xs[n * d_in..(n + 1) * d_in], &b1, &b2);
            let err = rel_err(&y[n * d_out..(n + 1) * d_out], &expected);
            assert!(err < 1e-12, "{d_in}x{d_out} b={b}: {err}");
        }
        // The merged matrix follows the same formula: row a is the image of basis vector a.
        let w = values(layer.merged_weight());
        for a in 0..d_in {
            let mut e = vec![0.0; d_in];
            e[a] = 1.0;
            let col = slow_block_shuffle(&e, &b1, &b2);
            let err = rel_err(&w[a * d_out..(a + 1) * d_out], &col);
            assert!(err < 1e-12, "merged row {a}, {d_in}x{d_out} b={b}: {err}");
        }
    }
}

#[test]
fn block_shuffle_has_the_reference_factor_shapes() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    let shapes = |d_in: usize, d_out: usize, b: usize| {
        let layer = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: b })
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockShuffle(bs) = layer else {
            panic!("not a BlockShuffle")
        };
        (bs.b1.dims(), bs.b2.dims())
    };
    // d_in < d_out: B1 [b, d_in/b, d_in/b], B2 [b, d_out/b, d_in/b] in [out, in] form.
    assert_eq!(shapes(16, 32, 4), ([4, 4, 4], [4, 4, 8]));
    // else: B1 [b, d_out/b, d_in/b], B2 [b, d_out/b, d_out/b].
    assert_eq!(shapes(32, 16, 4), ([4, 8, 4], [4, 4, 4]));
}

// ---------------------------------------------------------------------------------------------
// Gradient checks (f64, central differences along random directions, one parameter at a time).

/// Adds `eps * direction` to the `target`-th float parameter in visiting order.
struct Perturb {
    target: usize,
    seen: usize,
    eps: f64,
    /// Picks one of many random directions for the same tensor.
    salt: u64,
}

fn direction(index: usize, len: usize, salt: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(1000 + index as u64 + 7919 * salt);
    (0..len).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect()
}

impl<B: Backend> ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let index = self.seen;
        self.seen += 1;
        if index != self.target {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let d = direction(index, shape.num_elements(), self.salt);
        let delta = Tensor::<B, D>::from_data(TensorData::new(d, shape), &tensor.device());
        Param::from_mapped_value(id, tensor + delta.mul_scalar(self.eps), mapper)
    }
}

/// Collects `sum(grad * direction)` for every float parameter in visiting order.
struct DirectionalGrads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<f64>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for DirectionalGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let index = self.out.len();
        let grad = param
            .val()
            .grad(self.grads)
            .expect("every parameter has a gradient");
        let g = values(grad);
        let d = direction(index, g.len(), 0);
        self.out.push(g.iter().zip(&d).map(|(a, b)| a * b).sum());
    }
}

fn check_gradients<M, F>(module: M, d_in: usize, d_out: usize, forward: F)
where
    M: Module<GradB> + Clone,
    F: Fn(&M, Tensor<GradB, 2>) -> Tensor<GradB, 2>,
{
    let device = Default::default();
    let x = Tensor::<GradB, 2>::random([4, d_in], Distribution::Normal(0.0, 1.0), &device);
    let r = Tensor::<GradB, 2>::random([4, d_out], Distribution::Normal(0.0, 1.0), &device);
    let loss = |m: &M, x: Tensor<GradB, 2>| -> f64 { values((forward(m, x) * r.clone()).sum())[0] };
    // Analytic gradients.
    let xg = x.clone().detach().require_grad();
    let out = (forward(&module, xg.clone()) * r.clone()).sum();
    let grads = out.backward();
    let mut visitor = DirectionalGrads::<GradB> {
        grads: &grads,
        out: vec![],
    };
    module.visit(&mut visitor);
    let eps = 1e-5;
    for (index, analytic) in visitor.out.iter().enumerate() {
        let plus = module.clone().map(&mut Perturb {
            target: index,
            seen: 0,
            eps,
            salt: 0,
        });
        let minus = module.clone().map(&mut Perturb {
            target: index,
            seen: 0,
            eps: -eps,
            salt: 0,
        });
        let numeric = (loss(&plus, x.clone()) - loss(&minus, x.clone())) / (2.0 * eps);
        let err = (numeric - analytic).abs() / analytic.abs().max(1e-8);
        assert!(
            err < 1e-6,
            "parameter {index}: numeric {numeric} vs analytic {analytic}"
        );
    }
    assert_eq!(visitor.out.len(), num_tensors(&module));
    // Input gradient, element by element.
    let gx = values(xg.grad(&grads).expect("input gradient"));
    let xv = values(x.clone());
    for e in 0..xv.len() {
        let shifted = |delta: f64| {
            let mut v = xv.clone();
            v[e] += delta;
            Tensor::<GradB, 2>::from_data(TensorData::new(v, [4, d_in]), &device)
        };
        let numeric = (loss(&module, shifted(eps)) - loss(&module, shifted(-eps))) / (2.0 * eps);
        assert!(
            (numeric - gx[e]).abs() < 1e-6 * gx[e].abs().max(1.0),
            "input {e}: {numeric} vs {}",
            gx[e]
        );
    }
}

/// Number of float parameter tensors of a module.
fn num_tensors<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
            self.0 += 1;
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

#[test]
fn finite_differences_match_gradients_of_every_factor_and_the_input() {
    let device = Default::default();
    let _rng = seeded::<GradB>(&device, 5);
    let cases = [
        (6, 10, Structure::Dense),
        (6, 10, Structure::LowRank { rank: 3 }),
        (10, 6, Structure::LowRank { rank: 6 }),
        (7, 5, Structure::LowRank { rank: 2 }),
        (
            8,
            6,
            Structure::BlockDense {
                n_blocks: 2,
                rank: 4,
            },
        ),
        (
            6,
            9,
            Structure::BlockDense {
                n_blocks: 3,
                rank: 6,
            },
        ),
        (6, 6, Structure::BlockShuffle { n_blocks: 2 }),
        (8, 16, Structure::BlockShuffle { n_blocks: 2 }),
        (12, 8, Structure::BlockShuffle { n_blocks: 4 }),
    ];
    for (d_in, d_out, structure) in cases {
        // The odd LowRank case also carries an inner bias.
        let inner_bias = d_in == 7;
        let layer = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(structure)
            .with_inner_bias(inner_bias)
            .with_init(Init::FanIn)
            .init::<GradB>(&device)
            .unwrap();
        let layer = with_random_bias(layer, &device);
        let factors = if structure == Structure::Dense { 1 } else { 2 };
        assert_eq!(num_tensors(&layer), factors + 1 + usize::from(inner_bias));
        check_gradients(layer, d_in, d_out, |m, x| m.forward(x));
    }
}

#[test]
fn finite_differences_match_gradients_of_the_self_guided_mix() {
    let device = Default::default();
    let _rng = seeded::<GradB>(&device, 6);
    let layer = StructuredLinearConfig::new(8, 12)
        .with_structure(Structure::BlockShuffle { n_blocks: 2 })
        .with_init(Init::FanIn)
        .init::<GradB>(&device)
        .unwrap();
    let mut guided = SelfGuided::guided(with_random_bias(layer, &device), false);
    guided.set_alpha(0.3).unwrap();
    check_gradients(guided, 8, 12, |m, x| m.forward(x));
}

// ---------------------------------------------------------------------------------------------
// Initialisation.

#[test]
fn svd_init_is_the_best_rank_r_approximation_of_the_sampled_dense_matrix() {
    let device = Default::default();
    let (d_in, d_out, rank, std) = (24, 40, 6, 0.02);
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::LowRank { rank })
        .with_init(Init::Svd { std });
    // The init draws the dense matrix first: replay the same draw from the same seed.
    let _rng = seeded::<TB64>(&device, 7);
    let dense = Tensor::<TB64, 2>::random([d_in, d_out], Distribution::Normal(0.0, std), &device);
    TB64::seed(&device, 7);
    let layer = config.init::<TB64>(&device).unwrap();
    let dense = host(dense);
    let merged = host(layer.merged_weight());
    let s_dense = singular_values(&dense);
    let s_merged = singular_values(&merged);
    for k in 0..rank {
        assert!(
            (s_dense[k] - s_merged[k]).abs() < 1e-10 * s_dense[0],
            "sigma {k}"
        );
    }
    assert!(s_merged[rank] < 1e-10 * s_dense[0], "rank above r");
    // The product is the truncated SVD itself.
    let svd = dense.thin_svd().unwrap();
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let best = Mat::from_fn(d_in, d_out, |i, j| {
        (0..rank).map(|k| u[(i, k)] * s[k] * v[(j, k)]).sum::<f64>()
    });
    let (diff, norm): (f64, f64) = ((&best - &merged).norm_l2(), best.norm_l2());
    assert!(diff < 1e-10 * norm);
    // Both factors carry sqrt(S): V^T V = U U^T = diag(S_r).
    let StructuredLinear::LowRank(lr) = &layer else {
        panic!()
    };
    let (vh, uh) = (host(lr.v.val()), host(lr.u.val()));
    let vtv = vh.transpose() * &vh;
    let uut = &uh * uh.transpose();
    let (diff, norm): (f64, f64) = ((&vtv - &uut).norm_l2(), vtv.norm_l2());
    assert!(diff < 1e-10 * norm);
}

fn assert_orthonormal(m: &Mat<f64>, what: &str) {
    let g = if m.nrows() >= m.ncols() {
        m.transpose() * m
    } else {
        m * m.transpose()
    };
    let n = g.nrows();
    for i in 0..n {
        for j in 0..n {
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!(
                (g[(i, j)] - expected).abs() < 1e-5,
                "{what}: gram[{i},{j}] = {}",
                g[(i, j)]
            );
        }
    }
}

fn blocks_of<B: Backend>(t: Tensor<B, 3>) -> Vec<Mat<f64>> {
    let [b, n, m] = t.dims();
    t.chunk(b, 0)
        .into_iter()
        .map(|c| host(c.reshape([n, m])))
        .collect()
}

#[test]
fn orthogonal_init_makes_every_block_and_dense_factor_orthonormal() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 8);
    let init = Init::Orthogonal { std: 0.02 };
    for (d_in, d_out) in [(16, 32), (32, 16), (24, 24)] {
        let bd = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockDense {
                n_blocks: 4,
                rank: 8,
            })
            .with_init(init)
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockDense(bd) = bd else {
            panic!()
        };
        for (i, block) in blocks_of(bd.v.val()).iter().enumerate() {
            assert_orthonormal(block, &format!("BlockDense V_{i}"));
        }
        assert_orthonormal(&host(bd.u.val()), "BlockDense U");
        let bs = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(Structure::BlockShuffle { n_blocks: 4 })
            .with_init(init)
            .init::<TB>(&device)
            .unwrap();
        let StructuredLinear::BlockShuffle(bs) = bs else {
            panic!()
        };
        for (i, block) in blocks_of(bs.b1.val())
            .iter()
            .chain(&blocks_of(bs.b2.val()))
            .enumerate()
        {
            assert_orthonormal(block, &format!("BlockShuffle block {i}"));
        }
    }
}

#[test]
fn normal_and_fan_in_inits_have_the_configured_spread() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 9);
    let layer = StructuredLinearConfig::new(256, 512)
        .with_structure(Structure::LowRank { rank: 128 })
        .init::<TB>(&device)
        .unwrap();
    let StructuredLinear::LowRank(lr) = &layer else {
        panic!()
    };
    let v = values(lr.v.val());
    let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    assert!((std - 0.02).abs() < 0.001, "normal std {std}");
    assert!(values(layer.bias().unwrap()).iter().all(|b| *b == 0.0));
    let layer = StructuredLinearConfig::new(256, 512)
        .with_structure(Structure::BlockDense {
            n_blocks: 4,
            rank: 128,
        })
        .with_init(Init::FanIn)
        .init::<TB>(&device)
        .unwrap();
    let StructuredLinear::BlockDense(bd) = &layer else {
        panic!()
    };
    let v = values(bd.v.val());
    let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let expected = 1.0 / (64f64).sqrt(); // fan-in of a block: 256 / 4
    assert!(
        (std - expected).abs() < 0.01 * expected * 5.0,
        "fan-in std {std} vs {expected}"
    );
}

#[test]
fn a_seed_repeats_the_initialisation() {
    let device = Default::default();
    let config =
        StructuredLinearConfig::new(16, 32).with_structure(Structure::BlockShuffle { n_blocks: 4 });
    let _rng = seeded::<TB>(&device, 10);
    let a = values(config.init::<TB>(&device).unwrap().merged_weight());
    TB::seed(&device, 10);
    let b = values(config.init::<TB>(&device).unwrap().merged_weight());
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------------
// Factorize.

fn random_matrix(rows: usize, cols: usize, device: &Device<TB64>) -> Tensor<TB64, 2> {
    Tensor::random([rows, cols], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn lowrank_factorize_is_exact_on_rank_r_and_optimal_on_random_matrices() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 11);
    let (d_in, d_out, rank) = (20, 30, 5);
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(Structure::LowRank { rank })
        .with_bias(false);
    let low = random_matrix(d_in, rank, &device).matmul(random_matrix(rank, d_out, &device));
    let layer = StructuredLinear::factorize(&config, low.clone(), None).unwrap();
    assert!(rel_err(&values(layer.merged_weight()), &values(low)) < 1e-10);

    let w = random_matrix(d_in, d_out, &device);
    let layer = StructuredLinear::factorize(&config, w.clone(), None).unwrap();
    let err = frob(&values(layer.merged_weight() - w.clone()));
    let s = singular_values(&host(w));
    let discarded = s[rank..].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (err - discarded).abs() < 1e-9 * discarded,
        "{err} vs {discarded}"
    );
}

/// The projection error of `factorize` for `structure`, and the smallest error after nudging
/// one of its factors along any of 32 random directions per factor, both ways (never smaller
/// for an optimal projection).
fn projection_errors(structure: Structure, w: Tensor<TB64, 2>) -> (f64, f64) {
    let [d_in, d_out] = w.dims();
    let config = StructuredLinearConfig::new(d_in, d_out)
        .with_structure(structure)
        .with_bias(false);
    let layer = StructuredLinear::factorize(&config, w.clone(), None).unwrap();
    let err = frob(&values(layer.merged_weight() - w.clone()));
    let mut worst_nudge = f64::INFINITY;
    for target in 0..num_tensors(&layer) {
        for salt in 0..16 {
            for eps in [1e-3, -1e-3] {
                let nudged = layer.clone().map(&mut Perturb {
                    target,
                    seen: 0,
                    eps,
                    salt,
                });
                let e = frob(&values(nudged.merged_weight() - w.clone()));
                worst_nudge = worst_nudge.min(e);
            }
        }
    }
    (err, worst_nudge)
}

#[test]
fn blockdense_and_blockshuffle_projections_are_exact_in_class_and_measured_on_random() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 12);
    let cases = [
        (
            12,
            24,
            Structure::BlockDense {
                n_blocks: 3,
                rank: 6,
            },
        ),
        (
            24,
            12,
            Structure::BlockDense {
                n_blocks: 2,
                rank: 8,
            },
        ),
        (8, 16, Structure::BlockShuffle { n_blocks: 2 }),
        (16, 8, Structure::BlockShuffle { n_blocks: 4 }),
        (6, 6, Structure::BlockShuffle { n_blocks: 2 }),
        (24, 24, Structure::BlockShuffle { n_blocks: 3 }),
    ];
    for (d_in, d_out, structure) in cases {
        let config = StructuredLinearConfig::new(d_in, d_out)
            .with_structure(structure)
            .with_bias(false)
            .with_init(Init::FanIn);
        // A matrix of the class is recovered exactly.
        let member = config.init::<TB64>(&device).unwrap().merged_weight();
        let (err, _) = projection_errors(structure, member.clone());
        assert!(
            err < 1e-10 * frob(&values(member)),
            "{structure:?} in-class error {err}"
        );
        // A random matrix: the error is below the matrix's norm, and nudging the factors never
        // lowers it (first-order optimality).
        let w = random_matrix(d_in, d_out, &device);
        let norm = frob(&values(w.clone()));
        let (err, nudged) = projection_errors(structure, w);
        let ratio = err / norm;
        assert!(
            ratio < 1.0 && ratio > 0.0,
            "{structure:?}: relative error {ratio}"
        );
        assert!(
            nudged >= err,
            "{structure:?}: nudged {nudged} < projected {err}"
        );
    }
}

#[test]
fn blockdense_projection_error_equals_the_discarded_singular_values_of_each_row_block() {
    let device = Default::default();
    let _rng = seeded::<TB64>(&device, 13);
    let (d_in, d_out, b, rank) = (12, 20, 3, 6);
    let w = random_matrix(d_in, d_out, &device);
    let (err, _) = projection_errors(Structure::BlockDense { n_blocks: b, rank }, w.clone());
    let h = host(w);
    let (p, rb) = (d_in / b, rank / b);
    let discarded: f64 = (0..b)
        .map(|i| {
            let s = singular_values(&h.subrows(i * p, p).to_owned());
            s[rb..].iter().map(|x| x * x).sum::<f64>()
        })
        .sum();
    assert!((err - discarded.sqrt()).abs() < 1e-9 * err);
}

#[test]
fn factorize_rejects_wrong_shapes_and_biases() {
    let device = Default::default();
    let config = StructuredLinearConfig::new(4, 6).with_structure(Structure::LowRank { rank: 2 });
    let w = Tensor::<TB64, 2>::zeros([6, 4], &device);
    let err =
        StructuredLinear::factorize(&config, w, Some(Tensor::zeros([6], &device))).unwrap_err();
    assert!(matches!(
        err,
        LayerError::ShapeMismatch {
            rows: 6,
            cols: 4,
            ..
        }
    ));
    let w = Tensor::<TB64, 2>::zeros([4, 6], &device);
    let err = StructuredLinear::factorize(&config, w.clone(), None).unwrap_err();
    assert!(matches!(
        err,
        LayerError::BiasPresence {
            given: false,
            configured: true
        }
    ));
    let err = StructuredLinear::factorize(&config, w.clone(), Some(Tensor::zeros([5], &device)))
        .unwrap_err();
    assert!(matches!(err, LayerError::BiasMismatch { len: 5, d_out: 6 }));
    let nan = Tensor::<TB64, 2>::full([4, 6], f64::NAN, &device);
    let err =
        StructuredLinear::factorize(&config, nan, Some(Tensor::zeros([6], &device))).unwrap_err();
    assert!(matches!(err, LayerError::Svd(_)));
}

// ---------------------------------------------------------------------------------------------
// Self-guided wrapper.

#[test]
fn self_guided_mixes_guide_and_structured_path() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 14);
    let layer = StructuredLinearConfig::new(8, 16)
        .with_structure(Structure::LowRank { rank: 2 })
        .with_init(Init::FanIn)
        .init::<TB>(&device)
        .unwrap();
    let layer = with_random_bias(layer, &device);
    let mut sg = SelfGuided::guided(layer.clone(), false);
    // Give the guide its own weights so that the two paths differ.
    let g = Tensor::<TB, 2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
    sg.guide = Some(Param::from_tensor(g.clone()));
    let x = Tensor::<TB, 3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
    let bias = layer.bias().unwrap().unsqueeze::<3>();
    let guide_out = x.clone().matmul(g.unsqueeze::<3>()) + bias.clone();
    let structured_out = layer.forward(x.clone());
    assert!(rel_err(&values(sg.forward(x.clone())), &values(guide_out.clone())) < 1e-6);
    sg.set_alpha(0.0).unwrap();
    assert_eq!(
        values(sg.forward(x.clone())),
        values(structured_out.clone())
    );
    sg.set_alpha(0.3).unwrap();
    let mix = guide_out.mul_scalar(0.3) + structured_out.clone().mul_scalar(0.7);
    assert!(rel_err(&values(sg.forward(x.clone())), &values(mix)) < 1e-6);
    assert_eq!(sg.set_alpha(1.5), Err(LayerError::BadAlpha { alpha: 1.5 }));
    assert!(sg.set_alpha(f64::NAN).is_err());
    assert_eq!(sg.alpha(), 0.3);
    sg.drop_guide();
    assert!(sg.guide.is_none() && !sg.guide_active());
    assert_eq!(values(sg.forward(x)), values(structured_out));
}

#[test]
fn the_guide_starts_equal_to_the_structured_layer_shuffle_included() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 15);
    for structure in structures(16, 32) {
        let layer = StructuredLinearConfig::new(16, 32)
            .with_structure(structure)
            .with_init(Init::FanIn)
            .init::<TB>(&device)
            .unwrap();
        let mut sg = SelfGuided::guided(layer, false);
        let x = Tensor::<TB, 2>::random([4, 16], Distribution::Normal(0.0, 1.0), &device);
        let from_guide = sg.forward(x.clone());
        sg.set_alpha(0.0).unwrap();
        let structured = sg.forward(x);
        let err = rel_err(&values(from_guide), &values(structured));
        assert!(err < 1e-5, "{structure:?}: {err}");
    }
}

#[test]
fn reduce_flop_draws_the_guide_with_probability_alpha() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 16);
    let layer = StructuredLinearConfig::new(8, 8)
        .with_structure(Structure::BlockShuffle { n_blocks: 2 })
        .init::<TB>(&device)
        .unwrap();
    let mut sg = SelfGuided::guided(layer, true);
    sg.set_alpha(0.3).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let used = (0..10_000).filter(|_| sg.draw_guide(&mut rng)).count();
    assert!(
        (2_800..=3_200).contains(&used),
        "guide used {used} times of 10000"
    );
    // A skipped draw is the structured path alone; a taken one the mix.
    let g = Tensor::<TB, 2>::random([8, 8], Distribution::Normal(0.0, 1.0), &device);
    sg.guide = Some(Param::from_tensor(g));
    let x = Tensor::<TB, 2>::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
    let (mix, plain) = (
        values(sg.forward(x.clone())),
        values(sg.layer.forward(x.clone())),
    );
    let (mut took, mut skipped) = (0, 0);
    for _ in 0..20 {
        let used = sg.resample(&mut rng);
        let y = values(sg.forward(x.clone()));
        let flops = sg.forward_flops(3);
        if used {
            assert_eq!(y, mix);
            assert_eq!(flops, 2 * 3 * (64 + sg.layer.weight_params()));
            took += 1;
        } else {
            assert_eq!(y, plain);
            assert_eq!(flops, 2 * 3 * sg.layer.weight_params());
            skipped += 1;
        }
    }
    assert!(took > 0 && skipped > 0);
    // Leaving reduce_flop mode puts the guide back in use.
    sg.set_reduce_flop(false);
    assert!(sg.guide_used());
    sg.set_reduce_flop(true);
    // Without reduce_flop every draw uses the guide; with alpha 0 none does.
    sg.set_reduce_flop(false);
    assert!((0..100).all(|_| sg.draw_guide(&mut rng)));
    sg.set_alpha(0.0).unwrap();
    assert!((0..100).all(|_| !sg.draw_guide(&mut rng)));
}

#[test]
fn guided_flops_count_the_guide_only_while_it_is_active() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    let config =
        StructuredLinearConfig::new(64, 256).with_structure(Structure::LowRank { rank: 16 });
    let layer = config.init::<TB>(&device).unwrap();
    let mut sg = SelfGuided::guided(layer, false);
    let (structured, dense) = (config.weight_params(), 64 * 256);
    // alpha 1: both paths are computed while the guide is in use (as the reference counts).
    assert_eq!(sg.forward_flops(10), 2 * 10 * (dense + structured));
    sg.set_alpha(0.5).unwrap();
    assert_eq!(sg.forward_flops(10), 2 * 10 * (dense + structured));
    sg.set_alpha(0.0).unwrap();
    assert_eq!(sg.forward_flops(10), config.forward_flops(10));
}

// ---------------------------------------------------------------------------------------------
// Accounting and configuration.

#[test]
fn parameter_counts_follow_the_paper_formulas() {
    let lr =
        StructuredLinearConfig::new(2048, 8192).with_structure(Structure::LowRank { rank: 1024 });
    assert_eq!(lr.weight_params(), 10_485_760);
    // Transformer-s FFN weights (docs/reference.md §3): layer 0 dense, 11 structured layers of fc1 + fc2.
    let ffn = |structure: Structure| {
        let fc1 = StructuredLinearConfig::new(768, 3072).with_structure(structure);
        let fc2 = StructuredLinearConfig::new(3072, 768).with_structure(structure);
        2 * 768 * 3072 + 11 * (fc1.weight_params() + fc2.weight_params())
    };
    assert_eq!(ffn(Structure::Dense), 56_623_104);
    assert_eq!(ffn(Structure::LowRank { rank: 384 }), 37_158_912);
    assert_eq!(ffn(Structure::LowRank { rank: 192 }), 20_938_752);
    assert_eq!(
        ffn(Structure::BlockDense {
            n_blocks: 2,
            rank: 512
        }),
        37_158_912
    );
    assert_eq!(ffn(Structure::BlockShuffle { n_blocks: 4 }), 20_938_752);
    // The 63% / 32% settings are exactly 62.5% / 31.25% of dense.
    let fc1 = |s| {
        StructuredLinearConfig::new(2048, 8192)
            .with_structure(s)
            .params_ratio()
    };
    assert_eq!(fc1(Structure::LowRank { rank: 1024 }), 0.625);
    assert_eq!(fc1(Structure::LowRank { rank: 512 }), 0.3125);
    assert_eq!(fc1(Structure::BlockShuffle { n_blocks: 2 }), 0.625);
    assert_eq!(fc1(Structure::BlockShuffle { n_blocks: 4 }), 0.3125);
    assert_eq!(lr.forward_flops(3), 6 * 10_485_760);
}

#[test]
fn built_layers_hold_exactly_the_counted_parameters() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 0);
    for (d_in, d_out) in SHAPES {
        for structure in structures(d_in, d_out) {
            for (bias, inner_bias) in bias_options(structure) {
                let config = StructuredLinearConfig::new(d_in, d_out)
                    .with_structure(structure)
                    .with_bias(bias)
                    .with_inner_bias(inner_bias);
                let layer = config.init::<TB>(&device).unwrap();
                assert_eq!(
                    layer.num_params() as u64,
                    config.weight_params() + config.bias_params(),
                    "{structure:?} {d_in}x{d_out}"
                );
                assert_eq!(layer.structure(), structure);
                assert_eq!((layer.d_in(), layer.d_out()), (d_in, d_out));
                assert_eq!(layer.weight_params(), config.weight_params());
            }
        }
    }
}

#[test]
fn config_round_trips_through_json() {
    let configs = [
        StructuredLinearConfig::new(768, 3072),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::LowRank { rank: 384 })
            .with_init(Init::Svd { std: 0.02 }),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::BlockDense {
                n_blocks: 2,
                rank: 512,
            })
            .with_bias(false)
            .with_init(Init::Orthogonal { std: 0.02 }),
        StructuredLinearConfig::new(768, 3072)
            .with_structure(Structure::BlockShuffle { n_blocks: 4 })
            .with_init(Init::FanIn),
    ];
    for config in configs {
        let json = serde_json::to_string(&config).unwrap();
        let back: StructuredLinearConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
    let parsed: StructuredLinearConfig = serde_json::from_str(
        r#"{"d_in": 8, "d_out": 4, "structure": {"kind": "lowrank", "rank": 2}}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        StructuredLinearConfig::new(8, 4).with_structure(Structure::LowRank { rank: 2 })
    );
    let unknown =
        serde_json::from_str::<StructuredLinearConfig>(r#"{"d_in": 8, "d_out": 4, "rnak": 2}"#);
    assert!(unknown.unwrap_err().to_string().contains("rnak"));
}

#[test]
fn each_invalid_config_gives_its_own_error() {
    let device: Device<TB> = Default::default();
    let cfg = |d_in, d_out, s| StructuredLinearConfig::new(d_in, d_out).with_structure(s);
    let cases = [
        (
            cfg(0, 4, Structure::Dense),
            ConfigError::Zero { field: "d_in" },
        ),
        (
            cfg(4, 0, Structure::Dense),
            ConfigError::Zero { field: "d_out" },
        ),
        (
            cfg(4, 8, Structure::LowRank { rank: 0 }),
            ConfigError::Zero { field: "rank" },
        ),
        (
            cfg(4, 8, Structure::LowRank { rank: 5 }),
            ConfigError::RankTooLarge { rank: 5, max: 4 },
        ),
        (
            cfg(
                8,
                4,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 6,
                },
            ),
            ConfigError::RankTooLarge { rank: 6, max: 4 },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 0,
                    rank: 4,
                },
            ),
            ConfigError::Zero { field: "n_blocks" },
        ),
        (
            cfg(
                9,
                8,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 4,
                },
            ),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 2,
                field: "d_in",
                value: 9,
            },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 4,
                    rank: 6,
                },
            ),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "rank",
                value: 6,
            },
        ),
        (
            cfg(8, 8, Structure::BlockShuffle { n_blocks: 0 }),
            ConfigError::Zero { field: "n_blocks" },
        ),
        (
            cfg(8, 6, Structure::BlockShuffle { n_blocks: 4 }),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "d_out",
                value: 6,
            },
        ),
        (
            cfg(6, 8, Structure::BlockShuffle { n_blocks: 4 }),
            ConfigError::BlocksDoNotDivide {
                n_blocks: 4,
                field: "d_in",
                value: 6,
            },
        ),
        (
            cfg(8, 8, Structure::BlockShuffle { n_blocks: 2 }).with_init(Init::Svd { std: 0.02 }),
            ConfigError::InitNotApplicable {
                init: "svd",
                structure: "blockshuffle",
            },
        ),
        (
            cfg(
                8,
                8,
                Structure::BlockDense {
                    n_blocks: 2,
                    rank: 4,
                },
            )
            .with_inner_bias(true),
            ConfigError::InnerBiasNotApplicable {
                structure: "blockdense",
            },
        ),
        (
            cfg(8, 8, Structure::Dense).with_init(Init::Normal { std: -1.0 }),
            ConfigError::BadStd { std: -1.0 },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected.clone()));
        let err = config.init::<TB>(&device).unwrap_err();
        assert_eq!(err, LayerError::Config(expected.clone()));
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(
        ConfigError::BlocksDoNotDivide {
            n_blocks: 4,
            field: "d_out",
            value: 6
        }
        .to_string(),
        "`n_blocks` = 4 does not divide `d_out` = 6"
    );
}

#[test]
fn at_alpha_one_the_structured_factors_still_get_gradients() {
    let device = Default::default();
    let _rng = seeded::<GradB>(&device, 5);
    let config = StructuredLinearConfig::new(8, 12).with_structure(Structure::LowRank { rank: 3 });
    let sg = SelfGuided::guided(config.init::<GradB>(&device).unwrap(), false);
    let x = Tensor::<GradB, 2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
    // alpha 1: the output is the guide's...
    let y = sg.forward(x.clone());
    let guide = x.clone().matmul(sg.guide.as_ref().unwrap().val());
    let guide = guide + sg.layer.bias().unwrap().unsqueeze::<2>();
    assert!(rel_err(&values(y.clone()), &values(guide)) < 1e-12);
    // ...but the structured factors are in the graph: they get (zero) gradients, so the
    // optimizer's weight decay and moments see them as the reference's do.
    let grads = y.sum().backward();
    let StructuredLinear::LowRank(l) = &sg.layer else {
        panic!("lowrank")
    };
    let gu = l.u.val().grad(&grads).expect("U has a gradient at alpha 1");
    assert!(values(gu).iter().all(|g| *g == 0.0));
}

#[test]
fn a_lowrank_inner_bias_is_mixed_with_the_structured_path() {
    let device = Default::default();
    let _rng = seeded::<TB>(&device, 6);
    let config = StructuredLinearConfig::new(8, 12)
        .with_structure(Structure::LowRank { rank: 3 })
        .with_inner_bias(true);
    let mut layer = config.init::<TB>(&device).unwrap();
    // Non-zero biases, so every term shows.
    if let StructuredLinear::LowRank(l) = &mut layer {
        let rand = |n| Tensor::<TB, 1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        l.inner_bias = Some(burn::module::Param::from_tensor(rand(3)));
        l.bias = Some(burn::module::Param::from_tensor(rand(12)));
    }
    let mut sg = SelfGuided::guided(layer, false);
    // A guide that differs from the structured matrix.
    sg.guide = Some(burn::module::Param::from_tensor(Tensor::random(
        [8, 12],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    sg.set_alpha(0.3).unwrap();
    let x = Tensor::<TB, 2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
    let StructuredLinear::LowRank(l) = &sg.layer else {
        panic!("lowrank")
    };
    // The reference: o = a (x G) + (1 - a) ((x V + c) U) + b.
    let g = x.clone().matmul(sg.guide.as_ref().unwrap().val());
    let inner = l.inner_bias.as_ref().unwrap().val().unsqueeze::<2>();
    let s = (x.clone().matmul(l.v.val()) + inner).matmul(l.u.val());
    let b = l.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let want = g.mul_scalar(0.3) + s.mul_scalar(0.7) + b;
    let got = sg.forward(x.clone());
    assert!(rel_err(&values(got.clone()), &values(want)) < 1e-12);
    // The merged form of the mix computes the same.
    let merged = sg.to_dense().forward(x);
    assert!(rel_err(&values(merged), &values(got)) < 1e-12);
}
