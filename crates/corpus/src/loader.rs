//! Training windows drawn from memory-mapped token files in a deterministic, seeded order that
//! can be resumed exactly: the [`Cursor`] is part of every checkpoint.
//!
//! The token files are read as one stream and cut into windows of `seq_len + 1` tokens with
//! stride `seq_len` (input = first `seq_len`, target = last `seq_len`): consecutive windows
//! share one token, so every token is a target once. Files of independent rows (the reference's
//! rows of 1025 tokens) use a stride of the row length instead ([`WindowLoader::with_stride`]),
//! so a window is a row. Each epoch visits every
//! window once in the order of a Fisher-Yates shuffle seeded by `(seed, epoch)`.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::DataError;
use crate::shard::TokenFile;

/// Where the loader stands: the next window is `order(epoch)[index]` (saved in checkpoints).
pub use storage::Cursor;

/// Draws windows from a set of token files.
#[derive(Debug)]
pub struct WindowLoader {
    files: Vec<TokenFile>,
    /// Start of each file in the concatenated stream.
    starts: Vec<usize>,
    total: usize,
    seq_len: usize,
    /// Tokens between the starts of consecutive windows.
    stride: usize,
    seed: u64,
    shuffle: bool,
    cursor: Cursor,
    order: Vec<u32>,
    order_epoch: Option<u64>,
}

impl WindowLoader {
    /// A loader over `files` for windows of `seq_len + 1` tokens; `shuffle = false` keeps the
    /// file order (validation).
    pub fn new(
        files: Vec<TokenFile>,
        seq_len: usize,
        seed: u64,
        shuffle: bool,
    ) -> Result<Self, DataError> {
        if seq_len == 0 {
            return Err(DataError::Invalid(
                "sequence length must be at least 1".into(),
            ));
        }
        let mut starts = Vec::with_capacity(files.len());
        let mut total = 0;
        for f in &files {
            starts.push(total);
            total += f.len();
        }
        let loader = Self {
            files,
            starts,
            total,
            seq_len,
            stride: seq_len,
            seed,
            shuffle,
            cursor: Cursor::default(),
            order: Vec::new(),
            order_epoch: None,
        };
        if loader.windows() == 0 {
            return Err(DataError::TooFewTokens {
                tokens: total,
                needed: seq_len + 1,
            });
        }
        Ok(loader)
    }

    /// Starts windows `stride` tokens apart (default `seq_len`); files of rows of
    /// `seq_len + 1` tokens take `stride = seq_len + 1`, so each window is one row.
    pub fn with_stride(mut self, stride: usize) -> Result<Self, DataError> {
        if stride == 0 {
            return Err(DataError::Invalid(
                "the window stride must be at least 1".into(),
            ));
        }
        self.stride = stride;
        self.order_epoch = None;
        Ok(self)
    }

    /// Windows per epoch.
    pub fn windows(&self) -> usize {
        if self.total < self.seq_len + 1 {
            0
        } else {
            (self.total - self.seq_len - 1) / self.stride + 1
        }
    }

    /// Tokens in all files.
    pub fn tokens(&self) -> usize {
        self.total
    }

    /// The current position.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Continues from a saved position.
    pub fn seek(&mut self, cursor: Cursor) -> Result<(), DataError> {
        if cursor.index as usize > self.windows() {
            return Err(DataError::Invalid(format!(
                "cursor index {} is past the {} windows of this data (a checkpoint of other data?)",
                cursor.index,
                self.windows()
            )));
        }
        self.cursor = cursor;
        Ok(())
    }

    fn ensure_order(&mut self) {
        if self.order_epoch == Some(self.cursor.epoch) {
            return;
        }
        let n = self.windows();
        self.order = (0..n as u32).collect();
        if self.shuffle {
            let mut rng = StdRng::seed_from_u64(
                self.seed ^ self.cursor.epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            self.order.shuffle(&mut rng);
        }
        self.order_epoch = Some(self.cursor.epoch);
    }

    /// Token `i` of the concatenated stream.
    fn token(&self, i: usize) -> u32 {
        let f = self.starts.partition_point(|&s| s <= i) - 1;
        self.files[f].get(i - self.starts[f])
    }

    /// Window `w`: `seq_len + 1` tokens starting at `w * stride`.
    pub fn window(&self, w: usize) -> Vec<u32> {
        let start = w * self.stride;
        (start..start + self.seq_len + 1)
            .map(|i| self.token(i))
            .collect()
    }

    /// The next window, advancing the cursor (and the epoch at its end).
    pub fn next_window(&mut self) -> Vec<u32> {
        if self.cursor.index as usize >= self.windows() {
            self.cursor = Cursor {
                epoch: self.cursor.epoch + 1,
                index: 0,
            };
        }
        self.ensure_order();
        let w = self.order[self.cursor.index as usize] as usize;
        self.cursor.index += 1;
        self.window(w)
    }

    /// The next `batch` windows.
    pub fn next_batch(&mut self, batch: usize) -> Vec<Vec<u32>> {
        (0..batch).map(|_| self.next_window()).collect()
    }

    /// The windows in order (no shuffling, the cursor untouched), in batches of `batch_size`:
    /// `max_batches` batches, or every window when `max_batches` is 0. What validation scores.
    pub fn batches_in_order(
        &self,
        batch_size: usize,
        max_batches: usize,
    ) -> impl Iterator<Item = Vec<Vec<u32>>> + '_ {
        let batch_size = batch_size.max(1);
        let n = match max_batches {
            0 => self.windows(),
            m => self.windows().min(m.saturating_mul(batch_size)),
        };
        (0..n).step_by(batch_size).map(move |start| {
            (start..(start + batch_size).min(n))
                .map(|w| self.window(w))
                .collect()
        })
    }
}
