//! The optimizer's work issued in groups of parameters of equal size, so that a GPU backend's
//! kernel fusion turns it into a few kernels per step instead of several per parameter tensor.
//!
//! burn's fusion (the CUDA and wgpu backends) fuses a run of element-wise operations on tensors
//! of one shape into one kernel, whichever tensors they belong to, and closes the kernel when the
//! shape changes. A model visited in module order alternates shapes (a norm's `[d]`, a
//! projection's `[d, d]`, a factor's `[d, r]`, ...), so the AdamW update of each parameter, and
//! each gradient's share of the global norm, used to be kernels of their own (measured on the
//! CUDA driver stand-in: ~2.5 and ~4 launches per parameter tensor). Issued in order of size,
//! the updates of all parameters of one size are one fused kernel (PyTorch's foreach / fused
//! AdamW, without a kernel of our own), and the sum of squares of a group is one element-wise
//! sum of the squared gradients reduced once.
//!
//! The update of each parameter is the same arithmetic in any order, so this changes no value;
//! the global norm adds the same squares in another order (within float rounding of before),
//! except on burn-flex, where the one-pass sum of squares per gradient is kept as it was. The
//! squares are summed per shape, not per size, so that a gradient the backward pass left
//! transposed is read in place rather than first copied to be flattened.
//!
//! A [`ModuleMapper`] visits parameters in module order, so the update takes every parameter out
//! of the model first ([`take`], leaving a one-element placeholder), updates them in order of
//! size, then puts the results back ([`put`]). Taking them out, rather than cloning them, keeps
//! each weight's buffer unshared, so a backend may update it in place.

use std::collections::{BTreeMap, HashMap};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Shape, Tensor, TensorPrimitive};

/// Tracks the dotted path of the parameter being visited.
#[derive(Default)]
pub(crate) struct PathStack(Vec<String>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }
    pub(crate) fn path(&self) -> String {
        self.0.join(".")
    }
}

/// One parameter taken out of the model for its update, weight and gradient flattened.
pub(crate) struct Taken<B: Backend> {
    pub id: ParamId,
    /// Dotted path (the optimizer state's key).
    pub path: String,
    /// The parameter's shape.
    pub dims: Vec<usize>,
    pub w: Tensor<B, 1>,
    pub g: Tensor<B, 1>,
}

/// Takes every parameter of `model` that has a gradient in `grads` out of it, in order of size
/// (module order among equal sizes); the model keeps one-element placeholders until [`put`].
pub(crate) fn take<AB, M>(model: M, grads: &GradientsParams) -> (M, Vec<Taken<AB::InnerBackend>>)
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
{
    struct Take<'a, B: Backend> {
        grads: &'a GradientsParams,
        path: PathStack,
        taken: Vec<Taken<B>>,
    }
    impl<AB: AutodiffBackend> ModuleMapper<AB> for Take<'_, AB::InnerBackend> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<AB, D>>,
        ) -> Param<Tensor<AB, D>> {
            let Some(grad) = self.grads.get::<AB::InnerBackend, D>(param.id) else {
                return param;
            };
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let n = dims.iter().product::<usize>();
            let placeholder = Tensor::<AB, D>::empty([1; D], &tensor.device());
            self.taken.push(Taken {
                id,
                path: self.path.path(),
                dims: dims.to_vec(),
                w: tensor.inner().reshape([n]),
                g: grad.reshape([n]),
            });
            Param::from_mapped_value(id, placeholder, mapper)
        }
    }
    let mut pass = Take {
        grads,
        path: PathStack::default(),
        taken: Vec::new(),
    };
    let model = model.map(&mut pass);
    let mut taken = pass.taken;
    taken.sort_by_key(|t| t.w.dims()[0]);
    (model, taken)
}

/// Puts the updated weights (by parameter, flattened, with their shapes) back into `model` in
/// place of [`take`]'s placeholders, as trainable leaves.
pub(crate) fn put<AB, M>(
    model: M,
    updated: HashMap<ParamId, (Tensor<AB::InnerBackend, 1>, Vec<usize>)>,
) -> M
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
{
    struct Put<B: Backend> {
        updated: HashMap<ParamId, (Tensor<B, 1>, Vec<usize>)>,
    }
    impl<AB: AutodiffBackend> ModuleMapper<AB> for Put<AB::InnerBackend> {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<AB, D>>,
        ) -> Param<Tensor<AB, D>> {
            let Some((w, dims)) = self.updated.remove(&param.id) else {
                return param;
            };
            let (id, _placeholder, mapper) = param.consume();
            let dims: [usize; D] = dims
                .try_into()
                .expect("the rank the parameter was taken with");
            let w = Tensor::<AB, D>::from_inner(w.reshape(dims)).require_grad();
            Param::from_mapped_value(id, w, mapper)
        }
    }
    model.map(&mut Put { updated })
}

/// The sum of the squares of every element of the gradients in `grads` of `model`'s parameters
/// (`[1]`; `None` without gradients). On burn-flex each gradient's one-pass sum, added in module
/// order; elsewhere a group of gradients of one shape at a time: their squares added element-wise
/// in their own layout (a transposed gradient is read as it is, not copied), then reduced once.
pub(crate) fn sum_squares<AB, M>(
    model: &M,
    grads: &GradientsParams,
) -> Option<Tensor<AB::InnerBackend, 1>>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
{
    struct Collect<'a, B: Backend> {
        grads: &'a GradientsParams,
        flex: Option<Tensor<B, 1>>,
        rest: Vec<(Vec<usize>, B::FloatTensorPrimitive)>,
    }
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for Collect<'_, AB::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) else {
                return;
            };
            match crate::step::optim_fused::sum_squares(g) {
                Ok(s) => {
                    self.flex = Some(match self.flex.take() {
                        Some(t) => t + s,
                        None => s,
                    })
                }
                Err(g) => self
                    .rest
                    .push((g.dims().to_vec(), g.into_primitive().tensor())),
            }
        }
    }
    let mut visitor = Collect {
        grads,
        flex: None,
        rest: Vec::new(),
    };
    model.visit(&mut visitor);
    let mut groups: BTreeMap<Vec<usize>, Vec<_>> = BTreeMap::new();
    for (dims, g) in visitor.rest {
        groups.entry(dims).or_default().push(g);
    }
    let grouped = groups
        .into_iter()
        .filter_map(|(dims, group)| group_sum_squares::<AB::InnerBackend>(&dims, group));
    visitor.flex.into_iter().chain(grouped).reduce(|a, b| a + b)
}

/// The sum of the squares of the elements of a group of tensors of shape `dims` (`[1]`).
fn group_sum_squares<B: Backend>(
    dims: &[usize],
    group: Vec<B::FloatTensorPrimitive>,
) -> Option<Tensor<B, 1>> {
    let squares = group
        .into_iter()
        .map(|g| B::float_mul(g.clone(), g))
        .reduce(B::float_add)?;
    // The squares are a fresh contiguous tensor: flattening them is free.
    let n = dims.iter().product::<usize>();
    let flat = B::float_reshape(squares, Shape::new([n]));
    Some(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(flat)).sum_dim(0))
}
