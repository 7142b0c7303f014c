//! Gradient checks (f64, central differences along random directions, one parameter at a time).

use super::*;

/// Adds `eps * direction` to the `target`-th float parameter in visiting order.
pub(super) struct Perturb {
    pub(super) target: usize,
    pub(super) seen: usize,
    pub(super) eps: f64,
    /// Picks one of many random directions for the same tensor.
    pub(super) salt: u64,
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
pub(super) fn num_tensors<B: Backend, M: Module<B>>(module: &M) -> usize {
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
