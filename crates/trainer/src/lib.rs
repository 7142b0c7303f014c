//! strata's training side. So far: the token shard format (versioned header, atomic writes,
//! memory-mapped reads, readers for the reference's raw uint16 files) and a seeded, exactly
//! resumable window loader. The training loop, self-guided schedules and checkpoints build on
//! these.

mod error;
pub mod loader;
pub mod shard;

pub use error::DataError;
pub use loader::{Cursor, WindowLoader};
pub use shard::{ShardWriter, TokenFile, TokenWidth};

#[cfg(test)]
mod tests;
