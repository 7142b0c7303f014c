//! Token shards: strata's versioned binary format for tokenized text, written atomically and
//! read through a memory map; plus readers for the reference implementation's raw uint16 files.
//!
//! Layout (little-endian), 64-byte header then the tokens:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"STRATOK\0"` |
//! | 8..12 | format version (`u32`, currently 1) |
//! | 12..16 | token width in bytes (`u32`: 2 for u16, 4 for u32) |
//! | 16..24 | token count (`u64`) |
//! | 24..32 | vocabulary size (`u64`) |
//! | 32..40 | FNV-1a 64 checksum of bytes 0..32 |
//! | 40..64 | reserved, zero |

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use storage::atomic::{sync_parent, tmp_path};

use crate::error::DataError;

/// The first bytes of every shard.
pub const MAGIC: &[u8; 8] = b"STRATOK\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;

const REGENERATE: &str = "regenerate it with `strata data prepare`";

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Token width: u16 when every id fits (vocab <= 65536), else u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWidth {
    /// Two bytes per token.
    U16,
    /// Four bytes per token.
    U32,
}

impl TokenWidth {
    /// The narrowest width that holds ids below `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }

    /// Bytes per token.
    pub fn bytes(&self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

fn header(width: TokenWidth, count: u64, vocab_size: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(width.bytes() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&count.to_le_bytes());
    h[24..32].copy_from_slice(&vocab_size.to_le_bytes());
    let sum = fnv1a(&h[0..32]);
    h[32..40].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Streams tokens into a new shard; nothing appears at the destination until [`finish`]
/// renames the fsynced temporary file into place.
///
/// [`finish`]: ShardWriter::finish
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    width: TokenWidth,
    vocab_size: usize,
    count: u64,
}

impl ShardWriter {
    /// Starts a shard at `path` for ids below `vocab_size`.
    pub fn create(path: &Path, vocab_size: usize) -> Result<Self, DataError> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut out = BufWriter::new(file);
        let width = TokenWidth::for_vocab(vocab_size);
        out.write_all(&header(width, 0, vocab_size as u64))
            .map_err(|e| DataError::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out,
            width,
            vocab_size,
            count: 0,
        })
    }

    /// Appends tokens; an id outside the vocabulary is an error.
    pub fn write(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        for &t in tokens {
            if t as usize >= self.vocab_size {
                return Err(DataError::TokenOutOfRange {
                    id: t,
                    vocab_size: self.vocab_size,
                });
            }
            let r = match self.width {
                TokenWidth::U16 => self.out.write_all(&(t as u16).to_le_bytes()),
                TokenWidth::U32 => self.out.write_all(&t.to_le_bytes()),
            };
            r.map_err(|e| DataError::io(&self.tmp, e))?;
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the final header, fsyncs and renames the shard into place.
    pub fn finish(self) -> Result<PathBuf, DataError> {
        let Self {
            path,
            tmp,
            out,
            width,
            vocab_size,
            count,
        } = self;
        let mut file = out
            .into_inner()
            .map_err(|e| DataError::io(&tmp, e.into_error()))?;
        let io = |e| DataError::io(&tmp, e);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header(width, count, vocab_size as u64))
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
        sync_parent(&path);
        Ok(path)
    }
}

/// A read-only view of a token file through a memory map.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    map: Mmap,
    offset: usize,
    width: TokenWidth,
    len: usize,
    vocab_size: Option<usize>,
}

impl TokenFile {
    /// Opens a strata shard, checking magic, version, width, checksum and length.
    pub fn open_shard(path: &Path) -> Result<Self, DataError> {
        let map = map(path)?;
        let bad = |problem: String| DataError::BadShard {
            path: path.to_path_buf(),
            problem: format!("{problem}; {REGENERATE}"),
        };
        if map.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                map.len()
            )));
        }
        if &map[0..8] != MAGIC {
            return Err(bad("not a strata token shard (bad magic)".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(map[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(map[i..i + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}, this strata reads version {VERSION}"
            )));
        }
        if u64_at(32) != fnv1a(&map[0..32]) {
            return Err(bad("header checksum mismatch (corrupted header)".into()));
        }
        let width = match u32_at(12) {
            2 => TokenWidth::U16,
            4 => TokenWidth::U32,
            w => return Err(bad(format!("unsupported token width {w}"))),
        };
        let len = u64_at(16) as usize;
        let vocab_size = u64_at(24) as usize;
        let expected = HEADER_LEN + len * width.bytes();
        if map.len() != expected {
            return Err(bad(format!(
                "{} bytes on disk, the header promises {expected} (truncated or padded)",
                map.len()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            offset: HEADER_LEN,
            width,
            len,
            vocab_size: Some(vocab_size),
        })
    }

    /// Opens a headerless file of little-endian uint16 tokens: a plain token stream, or the
    /// reference implementation's rows of `max_seq_len + 1` tokens (docs/reference.md §4).
    pub fn open_raw_u16(path: &Path) -> Result<Self, DataError> {
        let map = map(path)?;
        if map.len() % 2 != 0 {
            return Err(DataError::BadShard {
                path: path.to_path_buf(),
                problem: format!("{} bytes is not a whole number of uint16 tokens", map.len()),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            len: map.len() / 2,
            map,
            offset: 0,
            width: TokenWidth::U16,
            vocab_size: None,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vocabulary size recorded in the header (None for raw files).
    pub fn vocab_size(&self) -> Option<usize> {
        self.vocab_size
    }

    /// Token `i`.
    pub fn get(&self, i: usize) -> u32 {
        let at = self.offset + i * self.width.bytes();
        match self.width {
            TokenWidth::U16 => u16::from_le_bytes([self.map[at], self.map[at + 1]]) as u32,
            TokenWidth::U32 => {
                u32::from_le_bytes(self.map[at..at + 4].try_into().expect("4 bytes"))
            }
        }
    }

    /// Tokens `start..start + len`, copied out.
    pub fn read(&self, start: usize, len: usize) -> Vec<u32> {
        (start..start + len).map(|i| self.get(i)).collect()
    }
}

fn map(path: &Path) -> Result<Mmap, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    // SAFETY: the map is read-only and shards are written once (atomically renamed into place),
    // never modified in place; a file truncated by someone else while mapped is outside our contract.
    unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))
}
