//! Host tensors by name: reading safetensors files (one file, or the shards an index names)
//! into f32, the layout changes of the Hugging Face families (transpose, fused q/k/v), and
//! writing them back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::InteropError;

/// A row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Tensors by name, sorted.
pub type Tensors = BTreeMap<String, HostTensor>;

impl HostTensor {
    /// A tensor of `shape` holding `data`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// The transpose of a matrix.
    pub fn transpose(&self) -> Self {
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut data = Vec::with_capacity(self.data.len());
        for j in 0..cols {
            data.extend((0..rows).map(|i| self.data[i * cols + j]));
        }
        Self::new(vec![cols, rows], data)
    }

    /// The first `n` rows of a matrix.
    pub fn rows(&self, n: usize) -> Self {
        let cols = self.shape[1];
        Self::new(vec![n, cols], self.data[..n * cols].to_vec())
    }

    /// Columns `start..start + width` of a matrix (elements of a vector).
    pub fn columns(&self, start: usize, width: usize) -> Self {
        match self.shape[..] {
            [n] if start + width <= n => {
                Self::new(vec![width], self.data[start..][..width].to_vec())
            }
            [rows, cols] => {
                let data = (0..rows)
                    .flat_map(|i| self.data[i * cols + start..][..width].iter().copied())
                    .collect();
                Self::new(vec![rows, width], data)
            }
            _ => unreachable!("columns of a {:?} tensor", self.shape),
        }
    }

    /// Matrices (or vectors) side by side, along their last dimension.
    pub fn concat_columns(parts: &[HostTensor]) -> Self {
        let width: usize = parts.iter().map(|p| *p.shape.last().expect("a dim")).sum();
        if parts[0].shape.len() == 1 {
            return Self::new(
                vec![width],
                parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
            );
        }
        let rows = parts[0].shape[0];
        let mut data = Vec::with_capacity(rows * width);
        for i in 0..rows {
            for p in parts {
                let w = p.shape[1];
                data.extend_from_slice(&p.data[i * w..][..w]);
            }
        }
        Self::new(vec![rows, width], data)
    }
}

/// Reads every tensor of the safetensors file `path` as f32 (from f32, bf16, f16 or f64).
pub fn read_file(path: &Path, into: &mut Tensors) -> Result<(), InteropError> {
    let bytes = std::fs::read(path).map_err(|e| InteropError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| InteropError::bad_file(path, format!("not a safetensors file: {e}")))?;
    for (name, view) in file.iter() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(InteropError::tensor(
                    name,
                    format!(
                        "is stored as {other:?} in {}; strata reads f32, bf16, f16 and f64 weights",
                        path.display()
                    ),
                ))
            }
        };
        into.insert(
            name.to_string(),
            HostTensor::new(view.shape().to_vec(), data),
        );
    }
    Ok(())
}

/// The weights of a Hugging Face model folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
pub fn read_hf_weights(dir: &Path) -> Result<Tensors, InteropError> {
    let mut tensors = Tensors::new();
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        read_file(&single, &mut tensors)?;
    } else if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| InteropError::io(&index, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| InteropError::bad_file(&index, e))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| InteropError::bad_file(&index, "has no weight_map object"))?;
        let mut shards: Vec<&str> = Vec::new();
        for file in map.values() {
            let file = file.as_str().ok_or_else(|| {
                InteropError::bad_file(&index, "a weight_map value is not a file name")
            })?;
            if file.contains('/') || file.contains("..") {
                return Err(InteropError::bad_file(
                    &index,
                    format!("names a shard outside the folder: {file}"),
                ));
            }
            if !shards.contains(&file) {
                shards.push(file);
            }
        }
        shards.sort_unstable();
        for shard in shards {
            read_file(&dir.join(shard), &mut tensors)?;
        }
        for name in map.keys() {
            if !tensors.contains_key(name) {
                return Err(InteropError::tensor(
                    name,
                    format!("is listed in {} but in none of its shards", index.display()),
                ));
            }
        }
    } else {
        return Err(InteropError::bad_file(
            dir,
            "holds neither model.safetensors nor model.safetensors.index.json (strata reads safetensors weights only)",
        ));
    }
    Ok(tensors)
}

/// The element type of written weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// f32.
    F32,
    /// bfloat16.
    Bf16,
    /// float16.
    F16,
}

impl WeightType {
    /// The name Hugging Face configs use (`torch_dtype` / `dtype`).
    pub fn torch_name(&self) -> &'static str {
        match self {
            WeightType::F32 => "float32",
            WeightType::Bf16 => "bfloat16",
            WeightType::F16 => "float16",
        }
    }
}

/// `tensors` as a safetensors file of element type `dtype`, with `metadata`.
pub fn to_safetensors(
    tensors: &Tensors,
    dtype: WeightType,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, InteropError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = match dtype {
                WeightType::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                WeightType::Bf16 => t
                    .data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                WeightType::F16 => t
                    .data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let st_dtype = match dtype {
        WeightType::F32 => Dtype::F32,
        WeightType::Bf16 => Dtype::BF16,
        WeightType::F16 => Dtype::F16,
    };
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(st_dtype, shape.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| InteropError::tensor(name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| InteropError::Invalid(format!("serialising weights: {e}")))
}
