//! Tokenizers: the source of a preparation's tokenizer, loading a `tokenizer.json`, training a
//! byte-level BPE on the training documents, and finding the end-of-text token.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::sources::{for_each_document, is_validation, Source};
use crate::error::DataError;
use storage::tokenizer::EOT;

/// Where the tokenizer comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerSource {
    /// Train a byte-level BPE of this many tokens (special tokens included) on the training
    /// split.
    Train {
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// Load a `tokenizer.json`.
    File(PathBuf),
}

/// Trains a byte-level BPE (GPT-2 style: bytes as the initial alphabet, no prefix space) on the
/// training documents (JSON lines read from `text_field`, document `i` held out when
/// [`is_validation`]`(i, val_every)`), with [`EOT`] as its one special token.
pub(super) fn train_tokenizer(
    sources: &[Source],
    text_field: &str,
    val_every: usize,
    vocab_size: usize,
) -> Result<Tokenizer, DataError> {
    let alphabet = ByteLevel::alphabet();
    if vocab_size < alphabet.len() + 2 {
        return Err(DataError::Setting {
            setting: "vocab_size",
            problem: format!(
                "{vocab_size} is too small: a byte-level BPE needs at least {}",
                alphabet.len() + 2
            ),
        });
    }
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(byte_level))
        .with_decoder(Some(byte_level))
        .with_post_processor(Some(byte_level));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(alphabet.into_iter().collect::<HashSet<char>>())
        .build()
        .into();
    // The tokenizer pulls documents from an iterator; a reading error ends the iteration and is
    // reported after training.
    let failure: Mutex<Option<DataError>> = Mutex::new(None);
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(64);
    std::thread::scope(|scope| {
        let failure = &failure;
        scope.spawn(move || {
            let result = for_each_document(sources, text_field, |i, text| {
                if !is_validation(i, val_every) && tx.send(text).is_err() {
                    return Err(DataError::Tokenizer("training stopped early".into()));
                }
                Ok(())
            });
            if let Err(e) = result {
                *failure.lock().expect("no panics while locked") = Some(e);
            }
        });
        tokenizer
            .train(&mut trainer, rx.into_iter())
            .map(|_| ())
            .map_err(|e| DataError::Tokenizer(e.to_string()))
    })?;
    if let Some(e) = failure.into_inner().expect("no panics while locked") {
        return Err(e);
    }
    Ok(tokenizer)
}
