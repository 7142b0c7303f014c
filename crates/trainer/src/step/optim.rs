//! AdamW with PyTorch's update rule and clipping by the *global* gradient norm, with its state
//! keyed by parameter path so it can be saved, restored exactly, and survive the guides being
//! dropped from the model.
//!
//! Weight decay applies either to every parameter (one group, as the papers' reference
//! implementation does: [`Decay::All`]) or to matrices only (every parameter of rank >= 2:
//! linear weights, structured factors, guides and the embeddings; not biases and norm weights:
//! the GPT-2 / nanoGPT convention, [`Decay::Matrices`]). burn's own `AdamW` keeps its state in
//! a form we cannot key by path and its built-in clipping is per tensor, hence this module.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::step::loss::exact_recip;
use crate::step::optim_fused::{self, Update};
use crate::step::optim_groups::{self, PathStack, Taken};
use storage::canonical::canonical_safetensors;
use storage::write_atomic;

/// AdamW hyper-parameters, PyTorch's defaults spelled out except the weight decay (the
/// reference recipe's 0.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AdamWConfig {
    /// AdamW's first-moment decay (0.9).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Self::RECIPE.beta1))]
    pub beta1: f64,
    /// AdamW's second-moment decay (0.999, docs/reference.md §4).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Self::RECIPE.beta2))]
    pub beta2: f64,
    /// AdamW's epsilon (1e-8, PyTorch's; burn's default is 1e-5).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Self::RECIPE.eps))]
    pub eps: f64,
    /// AdamW's decoupled weight decay (0.1).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = Self::RECIPE.weight_decay))]
    pub weight_decay: f64,
    /// Which parameters decay: all (one group, the papers' reference) or matrices (not biases
    /// and norm weights: GPT-2 / nanoGPT). A run config without the field is an older run,
    /// which decayed matrices only.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = Self::RECIPE.decay))]
    pub decay: Decay,
}

/// Which parameters weight decay applies to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Decay {
    /// Every parameter, one group: the papers' reference implementation (the default recipe).
    All,
    /// Matrices only (rank >= 2), not biases and norm weights: GPT-2 / nanoGPT.
    #[default]
    Matrices,
}

impl Decay {
    /// Whether a parameter of rank `rank` decays.
    pub fn applies(self, rank: usize) -> bool {
        match self {
            Decay::All => true,
            Decay::Matrices => rank >= 2,
        }
    }
}

impl AdamWConfig {
    /// The reference recipe's AdamW: PyTorch's betas and epsilon, weight decay 0.1 on every
    /// parameter.
    pub const RECIPE: AdamWConfig = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decay: Decay::All,
    };
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self::RECIPE
    }
}

/// Moments of one parameter while a state file is read: `m` and `v` as found.
type HalfRead<B> = (Option<Tensor<B, 1>>, Option<Tensor<B, 1>>);

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
struct Moments<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
}

/// AdamW over a module's parameters; `B` is the inner (non-autodiff) backend.
#[derive(Clone, Debug)]
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    /// Updates done so far (the bias-correction time step).
    steps: u64,
    moments: BTreeMap<String, Moments<B>>,
    /// Whether the one-pass update (`optim_fused`) may be used; off only to test it against
    /// the generic path.
    fused: bool,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            steps: 0,
            moments: BTreeMap::new(),
            fused: true,
        }
    }

    /// The same optimizer, always taking the generic tensor-operation update.
    #[cfg(test)]
    pub(crate) fn unfused(mut self) -> Self {
        self.fused = false;
        self
    }

    /// Updates done so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter that has a gradient in `grads`, with learning rate `lr`
    /// and the gradients multiplied by `grad_scale` (`[1]`, on the device: the clipping factor
    /// is computed from the gradients there and never read back) first.
    pub fn step<AB, M>(
        &mut self,
        model: M,
        grads: &GradientsParams,
        lr: f64,
        grad_scale: Tensor<B, 1>,
    ) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.steps += 1;
        let (model, taken) = optim_groups::take::<AB, M>(model, grads);
        let mut updated = HashMap::with_capacity(taken.len());
        for param in taken {
            let (id, dims) = (param.id, param.dims.clone());
            updated.insert(id, (self.update_one(param, lr, &grad_scale), dims));
        }
        optim_groups::put::<AB, M>(model, updated)
    }

    /// Forgets the moments of parameters `model` no longer has (the guides, once dropped).
    pub fn retain_params<AB, M>(&mut self, model: &M)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let paths = param_paths::<AB, M>(model);
        self.moments.retain(|path, _| paths.contains(path));
    }

    /// Checks that every loaded moment belongs to a parameter of `model` of its size (a state
    /// read from `path` by [`AdamW::load`]), so that a mismatched file fails here, naming
    /// itself, and not in the middle of a step.
    pub fn check_fits<B2: Backend, M: burn::module::Module<B2>>(
        &self,
        model: &M,
        path: &Path,
    ) -> Result<(), TrainError> {
        let sizes = param_sizes(model);
        for (name, Moments { m, v }) in &self.moments {
            let Some(&n) = sizes.get(name) else {
                return Err(TrainError::checkpoint(
                    path,
                    format!("holds moments of `{name}`, which the model does not have"),
                ));
            };
            if m.dims() != [n] || v.dims() != [n] {
                return Err(TrainError::checkpoint(
                    path,
                    format!(
                        "the moments of `{name}` have {} and {} elements, the parameter {n}",
                        m.dims()[0],
                        v.dims()[0]
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes the state (moments by parameter path and the step count) atomically as
    /// safetensors.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors = Vec::new();
        for (name, moments) in &self.moments {
            for (kind, t) in [("m", &moments.m), ("v", &moments.v)] {
                tensors.push((format!("{name}#{kind}"), t.to_data()));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, data)| {
                let dtype = safetensors_dtype(data.dtype).ok_or_else(|| {
                    TrainError::checkpoint(path, format!("cannot store {:?}", data.dtype))
                })?;
                let view = safetensors::tensor::TensorView::new(
                    dtype,
                    data.shape.to_vec(),
                    data.as_bytes(),
                )
                .map_err(|e| TrainError::checkpoint(path, e))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        let meta = std::collections::HashMap::from([
            ("steps".to_string(), self.steps.to_string()),
            (
                "config".to_string(),
                serde_json::to_string(&self.config).expect("plain struct"),
            ),
        ]);
        let bytes = safetensors::serialize(views, Some(meta))
            .map_err(|e| TrainError::checkpoint(path, e))?;
        write_atomic(path, &canonical_safetensors(bytes))?;
        Ok(())
    }

    /// Reads a state written by [`AdamW::save`]; the hyper-parameters stay this optimizer's.
    pub fn load(&mut self, path: &Path, device: &B::Device) -> Result<(), TrainError> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::checkpoint(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| TrainError::checkpoint(path, format!("not an optimizer state: {e}")))?;
        let steps = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TrainError::checkpoint(path, "optimizer state without a step count"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| TrainError::checkpoint(path, format!("not an optimizer state: {e}")))?;
        let mut moments: BTreeMap<String, HalfRead<B>> = BTreeMap::new();
        for (name, view) in st.tensors() {
            let (param, kind) = name
                .rsplit_once('#')
                .ok_or_else(|| TrainError::checkpoint(path, format!("unexpected tensor {name}")))?;
            let dtype = burn_dtype(view.dtype()).ok_or_else(|| {
                TrainError::checkpoint(path, format!("unsupported dtype of {name}"))
            })?;
            // Moments are flat; kept in f32 whatever they were stored as.
            if view.shape().len() != 1 {
                return Err(TrainError::checkpoint(
                    path,
                    format!("{name} has shape {:?}; moments are flat", view.shape()),
                ));
            }
            let data =
                TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
            let t = Tensor::<B, 1>::from_data(data, device).cast(burn::tensor::FloatDType::F32);
            let slot = moments.entry(param.to_string()).or_default();
            match kind {
                "m" => slot.0 = Some(t),
                "v" => slot.1 = Some(t),
                _ => {
                    return Err(TrainError::checkpoint(
                        path,
                        format!("unexpected tensor {name}"),
                    ))
                }
            }
        }
        self.moments = moments
            .into_iter()
            .map(|(name, pair)| match pair {
                (Some(m), Some(v)) => Ok((name, Moments { m, v })),
                _ => Err(TrainError::checkpoint(
                    path,
                    format!("incomplete moments of {name}"),
                )),
            })
            .collect::<Result<_, _>>()?;
        self.steps = steps;
        Ok(())
    }
}

fn safetensors_dtype(dtype: DType) -> Option<safetensors::Dtype> {
    Some(match dtype {
        DType::F64 => safetensors::Dtype::F64,
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        _ => return None,
    })
}

fn burn_dtype(dtype: safetensors::Dtype) -> Option<DType> {
    Some(match dtype {
        safetensors::Dtype::F64 => DType::F64,
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        _ => return None,
    })
}

impl<B: Backend> AdamW<B> {
    /// The updated weight (flattened) of one parameter taken out of the model, its moments
    /// updated in the state: the one-pass update on burn-flex, the tensor operations elsewhere
    /// (which a GPU backend fuses with those of the other parameters of its size).
    fn update_one(&mut self, param: Taken<B>, lr: f64, grad_scale: &Tensor<B, 1>) -> Tensor<B, 1> {
        let Taken {
            path, dims, w, g, ..
        } = param;
        let c = self.config;
        let t = self.steps as i32;
        let moments = self.moments.remove(&path).map(|m| (m.m, m.v));
        let decays = c.decay.applies(dims.len()) && c.weight_decay > 0.0;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let update = Update {
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            decay: decays.then_some((1.0 - lr * c.weight_decay) as f32),
            bc2: bc2 as f32,
            eps: c.eps as f32,
            step: (lr / bc1) as f32,
        };
        let inputs = (w, g, grad_scale.clone(), moments);
        let fused = if self.fused {
            optim_fused::update(inputs, &update)
        } else {
            Err(inputs)
        };
        let (w, m, v) = match fused {
            Ok(done) => done,
            Err((w, g, scale, moments)) => {
                // `[n] * [1]` broadcasts: an `expand` here would end the GPU's fused kernel.
                let g = g * scale;
                let (m, v) = match moments {
                    Some((m, v)) => (
                        m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1),
                        v.mul_scalar(c.beta2) + (g.clone() * g).mul_scalar(1.0 - c.beta2),
                    ),
                    None => (
                        g.clone().mul_scalar(1.0 - c.beta1),
                        (g.clone() * g).mul_scalar(1.0 - c.beta2),
                    ),
                };
                let w = if decays {
                    w.mul_scalar(1.0 - lr * c.weight_decay)
                } else {
                    w
                };
                // PyTorch: p -= lr / bc1 * m / (sqrt(v / bc2) + eps).
                let denom = v.clone().div_scalar(bc2).sqrt().add_scalar(c.eps);
                let w = w - (m.clone() / denom).mul_scalar(lr / bc1);
                (w, m, v)
            }
        };
        self.moments.insert(path, Moments { m, v });
        w
    }
}

/// Dotted paths of `model`'s float parameters, as [`AdamW`] keys its state.
fn param_paths<B: Backend, M: burn::module::Module<B>>(
    model: &M,
) -> std::collections::HashSet<String> {
    param_sizes(model).into_keys().collect()
}

/// `model`'s float parameters by dotted path, with their numbers of elements.
fn param_sizes<B: Backend, M: burn::module::Module<B>>(
    model: &M,
) -> std::collections::HashMap<String, usize> {
    struct Paths {
        stack: PathStack,
        out: std::collections::HashMap<String, usize>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = param.shape().num_elements();
            self.out.insert(self.stack.path(), n);
        }
    }
    let mut visitor = Paths {
        stack: PathStack::default(),
        out: Default::default(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// The global L2 norm of all gradients in `grads` over `model`'s parameters (one number, as
/// `torch.nn.utils.clip_grad_norm_` computes), on the device: `[1]`.
pub fn global_grad_norm<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    model: &M,
    grads: &GradientsParams,
    device: &burn::tensor::Device<AB::InnerBackend>,
) -> Tensor<AB::InnerBackend, 1> {
    let total = optim_groups::sum_squares::<AB, M>(model, grads);
    match total {
        Some(t) => t.sqrt(),
        None => Tensor::zeros([1], device),
    }
}

/// The factor that turns gradients of a loss multiplied by `loss_scale`, of global norm
/// `scaled_norm` (`[1]`, on the device), into gradients of the loss clipped to global norm
/// `max_norm` (PyTorch's `min(1, max_norm / (norm + 1e-6))`; no clipping when
/// `max_norm <= 0`), computed on the device.
pub fn clip_scale<B: Backend>(
    scaled_norm: Tensor<B, 1>,
    max_norm: f64,
    loss_scale: f64,
) -> Tensor<B, 1> {
    if max_norm <= 0.0 {
        return scaled_norm.zeros_like().add_scalar(1.0 / loss_scale);
    }
    // min(1, max_norm / (norm + 1e-6)) with norm = scaled_norm / loss_scale.
    exact_recip(scaled_norm.div_scalar(loss_scale).add_scalar(1e-6))
        .mul_scalar(max_norm)
        .clamp_max(1.0)
        .div_scalar(loss_scale)
}
