//! Tokenizer files: loading a `tokenizer.json` (the tokenizers crate's panics on malformed files
//! turned into errors) and finding its end-of-text token.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::StorageError;

/// The tokenizer's file name inside a data folder and a checkpoint.
pub const TOKENIZER: &str = "tokenizer.json";
/// The end-of-text token of tokenizers strata trains.
pub const EOT: &str = "<|endoftext|>";
/// Names tried, in order, for the end-of-text token of a user's tokenizer.
pub const EOT_CANDIDATES: &[&str] = &[
    EOT,
    "</s>",
    "<eos>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "[SEP]",
];

/// Loads a `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, StorageError> {
    if !path.is_file() {
        return Err(StorageError::Tokenizer(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let cannot =
        |e: String| StorageError::Tokenizer(format!("{}: cannot load: {e}", path.display()));
    // The tokenizers crate panics on some malformed files instead of failing: such a panic is
    // caught (quietly) and reported as the file's error.
    match catch_quietly(|| Tokenizer::from_file(path)) {
        Ok(Ok(tokenizer)) => Ok(tokenizer),
        Ok(Err(e)) => Err(cannot(e.to_string())),
        Err(panic) => Err(cannot(format!("not a valid tokenizer ({panic})"))),
    }
}

/// Runs `f`, turning a panic into its message without printing it (the panic hook is
/// swapped for the call; calls are serialised, the hook being global).
fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.map_err(|panic| panic_message(panic.as_ref()))
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "it panicked".to_string()
    }
}

/// The end-of-text token of `tokenizer`: the one named, or the first of the usual names
/// (`<|endoftext|>`, `</s>`, `<eos>`, ...) it has.
pub fn find_eot(tokenizer: &Tokenizer, name: Option<&str>) -> Result<u32, StorageError> {
    match name {
        Some(n) => tokenizer.token_to_id(n).ok_or_else(|| {
            StorageError::Tokenizer(format!("the tokenizer has no token {n:?} (`eot`)"))
        }),
        None => EOT_CANDIDATES
            .iter()
            .find_map(|n| tokenizer.token_to_id(n))
            .ok_or_else(|| {
                StorageError::Tokenizer(format!(
                    "the tokenizer has none of the end-of-text tokens {EOT_CANDIDATES:?}; name one with `eot`"
                ))
            }),
    }
}
