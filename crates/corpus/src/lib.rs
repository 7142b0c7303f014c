//! strata's training data: `data prepare` (text files, folders of them or JSON lines -> a tokenizer, trained
//! byte-level BPE or the user's, token shards split by whole document, and a manifest), the
//! manifest's reader, `data import` of raw uint16 token files, and the record of a run's data.
//!
//! Documents are read one at a time (a text file is one document, a JSON line is one
//! document), so memory does not grow with the corpus: BPE training keeps word counts, and
//! encoding streams into shards of a bounded size.

mod error;
mod import;
pub mod loader;
mod manifest;
mod prepare;
mod record;
pub mod shard;
mod sources;
mod tokenizer;

pub use error::DataError;
pub use import::import_raw;
pub use loader::{Cursor, WindowLoader};
pub use manifest::{FileCheck, FileFormat, Manifest, Split};
pub use prepare::{prepare, PrepareConfig};
pub use record::DataRecord;
pub use shard::{ShardWriter, TokenFile, TokenWidth};
pub use storage::tokenizer::{find_eot, load_tokenizer, EOT, TOKENIZER};
pub use tokenizer::TokenizerSource;

/// The manifest's file name inside a data folder.
pub const MANIFEST: &str = "manifest.json";

#[cfg(test)]
mod tests;
