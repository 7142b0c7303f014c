//! The arithmetic a model computes in: f32, or bf16 / f16 weights and activations cast from f32
//! master weights ([`cast_params`]). Attention scores are normalised in f32 for half inputs and
//! the loss is taken in f32 ([`crate::loss::cross_entropy`]).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorMetadata, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Arithmetic of the forward and backward passes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bfloat16 compute, f32 weights.
    Bf16,
    /// float16 compute with dynamic loss scaling, f32 weights.
    F16,
}

impl Precision {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The compute type, `None` for f32 (no casts).
    pub fn compute_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// Whether the gradients need loss scaling (f16).
    pub fn scaled(self) -> bool {
        self == Precision::F16
    }

    /// Fails with a clear message when backend `B` cannot compute in this precision on `device`
    /// (burn-ndarray has no half types; wgpu needs a GPU with f16 for `f16`).
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<(), ModelError> {
        match self.compute_dtype() {
            Some(dtype) if !B::supports_dtype(device, DType::from(dtype)) => {
                Err(ModelError::PrecisionUnsupported {
                    precision: self.name(),
                    device: format!("{device:?}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// `module` as the passes compute with it: cast to the half type ([`cast_params`]), or
    /// unchanged for f32.
    pub fn apply<B: Backend, M: Module<B>>(self, module: M) -> M {
        match self.compute_dtype() {
            Some(dtype) => cast_params(module, dtype),
            None => module,
        }
    }

    /// `tensor` as the passes compute with it: cast to the half type, or unchanged for f32.
    pub fn apply_tensor<B: Backend, const D: usize>(self, tensor: Tensor<B, D>) -> Tensor<B, D> {
        match self.compute_dtype() {
            Some(dtype) => tensor.cast(dtype),
            None => tensor,
        }
    }
}

/// `module` with every float parameter cast to `dtype`, in the autodiff graph when `B` is an
/// autodiff backend (the parameter ids are kept, so gradients can be read off the f32 module).
///
/// The casts are issued in order of shape (module order among equal shapes), so that a GPU
/// backend's fusion makes one kernel of the casts of all parameters of one shape rather than
/// one kernel per parameter (as strata's optimizer issues its updates).
pub fn cast_params<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    struct Collect<B: Backend>(Vec<(Vec<usize>, ParamId, B::FloatTensorPrimitive)>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            self.0
                .push((t.dims().to_vec(), param.id, t.into_primitive().tensor()));
        }
    }
    struct Put<B: Backend>(HashMap<ParamId, B::FloatTensorPrimitive>);
    impl<B: Backend> ModuleMapper<B> for Put<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            match self.0.remove(&param.id) {
                Some(cast) => param.map(|_| Tensor::from_primitive(TensorPrimitive::Float(cast))),
                None => param,
            }
        }
    }
    let mut params = Collect::<B>(Vec::new());
    module.visit(&mut params);
    let mut params = params.0;
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let cast = params
        .into_iter()
        .map(|(_, id, t)| match FloatDType::from(t.dtype()) == dtype {
            true => (id, t),
            false => (id, B::float_cast(t, dtype)),
        })
        .collect();
    module.map(&mut Put(cast))
}
