//! strata and pretrained models: import from and export to Hugging Face checkpoints, and
//! conversion of dense checkpoints into structured ones.
//!
//! - [`import_hf`]: a GPT-2, Llama or Qwen2 checkpoint (`config.json`, safetensors in one file
//!   or shards, f32 / bf16 / f16, `tokenizer.json`) as a strata checkpoint folder, which `strata
//!   eval`, `generate`, `convert`, `export` and `train --init` read;
//! - [`convert()`]: structured FFNs and/or attention projections (LowRank, BlockDense,
//!   BlockShuffle) projected from the pretrained matrices, sized by rank, parameter budget or
//!   kept spectral energy, optionally with the pretrained matrices as self-guided-training
//!   guides (the papers' self-guided training, arXiv 2406.16450, used to heal the conversion);
//! - [`export_hf`]: every structured layer merged, written in the family's Hugging Face layout.
//!
//! Every step checks everything before it writes, and writes a folder beside its place and
//! renames it into place, so a failure leaves nothing half-written.

pub mod convert;
mod error;
pub mod export;
mod folder;
pub mod hf_config;
pub mod import;
pub mod layout;
pub mod snapshot;
pub mod tensors;

pub use convert::{convert, ConvertReport, ConvertSpec, Kind, LayerReport, Size};
pub use error::InteropError;
pub use export::{export_hf, ExportOptions, ExportReport};
pub use hf_config::Family;
pub use import::{import_hf, ImportOptions, ImportReport};
pub use tensors::WeightType;
