//! Holds the examples of this folder; see `Cargo.toml` for the list.
