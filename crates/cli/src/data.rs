//! `strata data prepare | import`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use corpus::{self as data, PrepareConfig, TokenizerSource};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Tokenize text files, folders of them or JSON lines into token shards (trains a
    /// byte-level BPE unless --tokenizer is given).
    Prepare(PrepareArgs),
    /// Use existing raw uint16 token files (the reference's rows of 1025, or plain streams).
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Text files, folders (read recursively, sorted) and `.jsonl` files.
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Output folder (shards, tokenizer.json, manifest.json).
    #[arg(long)]
    out: PathBuf,
    /// Use this tokenizer.json instead of training one.
    #[arg(long, conflicts_with = "vocab_size")]
    tokenizer: Option<PathBuf>,
    /// Vocabulary size of the trained BPE.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// End-of-text token of a given tokenizer (default: <|endoftext|>, </s>, <eos>, ...).
    #[arg(long)]
    eot: Option<String>,
    /// Field holding the text in JSON lines.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// One document in this many goes to validation.
    #[arg(long, default_value_t = 10)]
    val_every: usize,
    /// Tokens per shard at most.
    #[arg(long, default_value_t = 1 << 26)]
    shard_tokens: usize,
    /// Replace prepared data already in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Training token files (raw little-endian uint16).
    #[arg(long, num_args = 1.., required = true)]
    train: Vec<PathBuf>,
    /// Validation token files.
    #[arg(long, num_args = 1.., required = true)]
    val: Vec<PathBuf>,
    /// Vocabulary size of the tokens.
    #[arg(long)]
    vocab_size: usize,
    /// The files hold independent rows of this many tokens (the reference's 1025): each
    /// window is one row (train with --seq-len row_len - 1). Default: one token stream.
    #[arg(long)]
    row_len: Option<usize>,
    /// Output folder (a manifest pointing at the files).
    #[arg(long)]
    out: PathBuf,
    /// Replace prepared data already in --out.
    #[arg(long)]
    force: bool,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Prepare(a) => {
            let mut c = PrepareConfig::new(a.input, a.out.clone());
            c.tokenizer = match a.tokenizer {
                Some(path) => TokenizerSource::File(path),
                None => TokenizerSource::Train {
                    vocab_size: a.vocab_size,
                },
            };
            c.eot = a.eot;
            c.text_field = a.text_field;
            c.val_every = a.val_every;
            c.shard_tokens = a.shard_tokens;
            c.force = a.force;
            let m = data::prepare(&c)?;
            println!(
                "prepared {}: vocab {} | train {} documents, {} tokens in {} shard(s) | validation {} documents, {} tokens",
                a.out.display(),
                m.vocab_size,
                m.train.documents,
                m.train.tokens,
                m.train.files.len(),
                m.validation.documents,
                m.validation.tokens
            );
        }
        DataCommand::Import(a) => {
            let m = data::import_raw(&a.train, &a.val, a.vocab_size, a.row_len, &a.out, a.force)?;
            println!(
                "imported into {}: train {} tokens, validation {} tokens (vocab {})",
                a.out.display(),
                m.train.tokens,
                m.validation.tokens,
                m.vocab_size
            );
        }
    }
    Ok(())
}
