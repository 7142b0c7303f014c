//! The gradient all-reduce of a data-parallel step, in one flat buffer: every gradient is
//! flattened in the model's parameter order and concatenated, the buffer is averaged over the
//! replicas with one `burn::collective::all_reduce`, and the result is cut back into the
//! gradients (as PyTorch DDP's buckets, with a single bucket).
//!
//! One collective per step instead of one per parameter tensor (each of which is a
//! synchronised round trip between nodes), and an order fixed by the model's structure rather
//! than by parameter ids, which differ between processes (burn's `GradientsParams::all_reduce`
//! pairs tensors by sorted ids, which only match within one process).

use burn::collective::{self, CollectiveError, PeerId, ReduceOperation};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};
use transformer::Transformer;

struct Gather<'a, B: Backend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B, 1>>,
    layout: Vec<(ParamId, Vec<usize>)>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Gather<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.remove::<AB::InnerBackend, D>(param.id) {
            let shape = g.dims().to_vec();
            let n: usize = shape.iter().product();
            self.parts.push(g.reshape([n]));
            self.layout.push((param.id, shape));
        }
    }
}

struct Scatter<'a, B: Backend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B, 1>,
    layout: &'a [(ParamId, Vec<usize>)],
    next: usize,
    offset: usize,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Scatter<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let Some((id, shape)) = self.layout.get(self.next) else {
            return;
        };
        if *id != param.id {
            return;
        }
        let n: usize = shape.iter().product();
        let dims: [usize; D] = std::array::from_fn(|i| shape[i]);
        let g = self.flat.clone().narrow(0, self.offset, n).reshape(dims);
        self.grads.register::<AB::InnerBackend, D>(*id, g);
        self.offset += n;
        self.next += 1;
    }
}

/// Averages `grads` (of `model`'s parameters) over every replica of the run; `peer` is this
/// replica's global rank. Every replica must hold gradients for the same parameters.
pub(crate) fn all_reduce_mean<AB: AutodiffBackend>(
    model: &Transformer<AB>,
    mut grads: GradientsParams,
    peer: PeerId,
) -> Result<GradientsParams, CollectiveError> {
    let mut gather = Gather::<AB::InnerBackend> {
        grads: &mut grads,
        parts: Vec::new(),
        layout: Vec::new(),
    };
    model.visit(&mut gather);
    let (parts, layout) = (gather.parts, gather.layout);
    if parts.is_empty() {
        return Ok(grads);
    }
    let flat = Tensor::cat(parts, 0).into_primitive().tensor();
    let reduced = collective::all_reduce::<AB::InnerBackend>(peer, flat, ReduceOperation::Mean)?;
    let mut scatter = Scatter::<AB::InnerBackend> {
        grads: &mut grads,
        flat: Tensor::from_primitive(TensorPrimitive::Float(reduced)),
        layout: &layout,
        next: 0,
        offset: 0,
    };
    model.visit(&mut scatter);
    Ok(grads)
}
