//! A strata model's tensors by name on the host (the names its checkpoints use), and loading
//! host tensors into a model with every check a checkpoint load makes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::store::ModuleSnapshot;
use burn::tensor::backend::Backend;
use transformer::Transformer;

use crate::error::InteropError;
use crate::tensors::{to_safetensors, HostTensor, Tensors, WeightType};

/// The model's tensors and their shapes, without reading their values.
pub fn shapes<B: Backend>(model: &Transformer<B>) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect()
}

/// The model's tensors, as f32.
pub fn tensors<B: Backend>(model: &Transformer<B>) -> Result<Tensors, InteropError> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|s| {
            let name = s.full_path();
            let data = s
                .to_data()
                .map_err(|e| InteropError::tensor(&name, format!("{e:?}")))?
                .convert::<f32>();
            let values = data
                .to_vec::<f32>()
                .map_err(|e| InteropError::tensor(&name, format!("{e:?}")))?;
            Ok((name, HostTensor::new(data.shape.to_vec(), values)))
        })
        .collect()
}

/// Loads `tensors` into `model`: exactly its tensors, with its shapes (`origin` names where
/// they came from, for errors).
pub fn load<B: Backend>(
    model: &mut Transformer<B>,
    tensors: &Tensors,
    origin: &Path,
) -> Result<(), InteropError> {
    let bytes = to_safetensors(tensors, WeightType::F32, HashMap::new())?;
    storage::weights::load_weights_from_bytes(bytes, origin, model)?;
    Ok(())
}
