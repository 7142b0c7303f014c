//! Tests of the shard format and the window loader: round-trips, every corruption case,
//! raw uint16 files, loader determinism and exact resume of the cursor.

use std::fs;

use crate::shard::{fnv1a, HEADER_LEN};
use crate::{Cursor, DataError, ShardWriter, TokenFile, TokenWidth, WindowLoader};
use storage::atomic::{tmp_path, write_atomic};

fn scratch(name: &str) -> test_support::Scratch {
    test_support::Scratch::new(&format!("shard-{name}"))
}

fn tokens(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(i >> 3) % vocab)
        .collect()
}

fn write_shard(path: &std::path::Path, toks: &[u32], vocab: usize) {
    let mut w = ShardWriter::create(path, vocab).unwrap();
    w.write(&toks[..toks.len() / 2]).unwrap();
    w.write(&toks[toks.len() / 2..]).unwrap();
    assert_eq!(w.len(), toks.len() as u64);
    w.finish().unwrap();
}

#[test]
fn shards_round_trip_in_both_widths() {
    let dir = scratch("roundtrip");
    for (vocab, width) in [(50_000usize, TokenWidth::U16), (100_000, TokenWidth::U32)] {
        let toks = tokens(1000, vocab as u32);
        let path = dir.join(format!("v{vocab}.bin"));
        write_shard(&path, &toks, vocab);
        assert!(!tmp_path(&path).exists(), "the temp file is renamed away");
        let f = TokenFile::open_shard(&path).unwrap();
        assert_eq!(f.len(), 1000);
        assert_eq!(f.vocab_size(), Some(vocab));
        assert_eq!(f.read(0, 1000), toks);
        let size = fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(size, HEADER_LEN + 1000 * width.bytes());
    }
    // Ids at the top of the u16 range survive.
    let path = dir.join("edge.bin");
    write_shard(&path, &[0, 65_535, 1, 65_534], 65_536);
    assert_eq!(
        TokenFile::open_shard(&path).unwrap().read(0, 4),
        vec![0, 65_535, 1, 65_534]
    );
}

#[test]
fn an_unfinished_writer_leaves_nothing_at_the_destination() {
    let dir = scratch("unfinished");
    let path = dir.join("a.bin");
    write_shard(&path, &tokens(10, 100), 100);
    let before = fs::read(&path).unwrap();
    {
        let mut w = ShardWriter::create(&path, 100).unwrap();
        w.write(&tokens(500, 100)).unwrap();
        // Dropped without finish(): the old shard must be untouched.
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    let mut w = ShardWriter::create(&path, 100).unwrap();
    let err = w.write(&[5, 100]).unwrap_err();
    assert!(matches!(
        err,
        DataError::TokenOutOfRange {
            id: 100,
            vocab_size: 100
        }
    ));
}

#[test]
fn every_corruption_is_refused_with_a_hint() {
    let dir = scratch("corrupt");
    let good = dir.join("good.bin");
    write_shard(&good, &tokens(100, 1000), 1000);
    let bytes = fs::read(&good).unwrap();
    let case = |name: &str, mutate: &dyn Fn(&mut Vec<u8>), expect: &str| {
        let mut b = bytes.clone();
        mutate(&mut b);
        let path = dir.join(name);
        fs::write(&path, &b).unwrap();
        let err = TokenFile::open_shard(&path).unwrap_err().to_string();
        assert!(err.contains(expect), "{name}: `{err}` lacks `{expect}`");
        assert!(
            err.contains("strata data prepare"),
            "{name}: no regeneration hint in `{err}`"
        );
        assert!(err.contains(name), "{name}: the message names the file");
    };
    case("magic.bin", &|b| b[0] = b'X', "bad magic");
    case(
        "version.bin",
        &|b| {
            b[8] = 9;
            let sum = fnv1a(&b[0..32]);
            b[32..40].copy_from_slice(&sum.to_le_bytes());
        },
        "version 9",
    );
    case("checksum.bin", &|b| b[20] ^= 1, "checksum");
    case("truncated.bin", &|b| b.truncate(b.len() - 3), "truncated");
    case("tiny.bin", &|b| b.truncate(10), "shorter than");
    case(
        "width.bin",
        &|b| {
            b[12] = 3;
            let sum = fnv1a(&b[0..32]);
            b[32..40].copy_from_slice(&sum.to_le_bytes());
        },
        "token width 3",
    );
    let missing = TokenFile::open_shard(&dir.join("missing.bin")).unwrap_err();
    assert!(matches!(missing, DataError::Io { .. }));
}

#[test]
fn raw_uint16_files_read_as_token_streams() {
    let dir = scratch("raw");
    let toks: Vec<u32> = tokens(2050, 32_000);
    let bytes: Vec<u8> = toks
        .iter()
        .flat_map(|&t| (t as u16).to_le_bytes())
        .collect();
    let path = dir.join("rows.bin");
    write_atomic(&path, &bytes).unwrap();
    let f = TokenFile::open_raw_u16(&path).unwrap();
    assert_eq!(f.len(), 2050);
    assert_eq!(f.vocab_size(), None);
    assert_eq!(f.read(0, 2050), toks);
    // The reference's layout: rows of 1025 tokens, each read back as one window of
    // seq_len + 1 = 1025 (stride 1025: every row, none straddling two).
    let loader = WindowLoader::new(vec![f], 1024, 0, false)
        .unwrap()
        .with_stride(1025)
        .unwrap();
    assert_eq!(loader.windows(), 2);
    for row in 0..2 {
        assert_eq!(
            loader.window(row),
            toks[row * 1025..(row + 1) * 1025].to_vec()
        );
    }
    // As a plain stream (stride seq_len) the second window starts inside the first row.
    let stream = WindowLoader::new(
        vec![TokenFile::open_raw_u16(&path).unwrap()],
        1024,
        0,
        false,
    )
    .unwrap();
    assert_eq!(stream.window(1), toks[1024..2049].to_vec());
    let odd = dir.join("odd.bin");
    write_atomic(&odd, &[1, 2, 3]).unwrap();
    assert!(TokenFile::open_raw_u16(&odd)
        .unwrap_err()
        .to_string()
        .contains("uint16"));
}

fn loader(dir: &std::path::Path, seed: u64) -> WindowLoader {
    let a = dir.join("a.bin");
    let b = dir.join("b.bin");
    if !a.exists() {
        write_shard(&a, &tokens(333, 500), 500);
        write_shard(
            &b,
            &tokens(170, 500)
                .iter()
                .map(|t| (t + 7) % 500)
                .collect::<Vec<_>>(),
            500,
        );
    }
    let files = vec![
        TokenFile::open_shard(&a).unwrap(),
        TokenFile::open_shard(&b).unwrap(),
    ];
    WindowLoader::new(files, 16, seed, true).unwrap()
}

#[test]
fn the_loader_is_deterministic_covers_every_window_and_crosses_files() {
    let dir = scratch("loader");
    let mut l1 = loader(&dir, 42);
    let mut l2 = loader(&dir, 42);
    let windows = l1.windows();
    assert_eq!(windows, (503 - 1) / 16);
    let epoch1: Vec<Vec<u32>> = l1.next_batch(windows);
    assert_eq!(epoch1, l2.next_batch(windows), "same seed, same order");
    // An epoch is a permutation of all windows.
    let mut sorted = epoch1.clone();
    sorted.sort();
    let mut all: Vec<Vec<u32>> = (0..windows).map(|w| l1.window(w)).collect();
    all.sort();
    assert_eq!(sorted, all);
    // Windows overlap by one token (the target of one is the input of the next).
    assert_eq!(l1.window(0)[16], l1.window(1)[0]);
    // The window that spans both files joins them.
    let a = TokenFile::open_shard(&dir.join("a.bin")).unwrap();
    let b = TokenFile::open_shard(&dir.join("b.bin")).unwrap();
    let spanning = l1.window(333 / 16);
    let start = (333 / 16) * 16;
    let expected: Vec<u32> = a
        .read(start, 333 - start)
        .into_iter()
        .chain(b.read(0, 17 - (333 - start)))
        .collect();
    assert_eq!(spanning, expected);
    // The next epoch reshuffles; another seed gives another order.
    let epoch2 = l1.next_batch(windows);
    assert_ne!(epoch1, epoch2);
    assert_eq!(
        l1.cursor(),
        Cursor {
            epoch: 1,
            index: windows as u64
        }
    );
    assert_ne!(loader(&dir, 43).next_batch(windows), epoch1);
}

#[test]
fn a_saved_cursor_resumes_exactly() {
    let dir = scratch("resume");
    let mut straight = loader(&dir, 7);
    let expected = straight.next_batch(70); // crosses into the second epoch
    let mut first = loader(&dir, 7);
    let head = first.next_batch(25);
    let saved = serde_json::to_string(&first.cursor()).unwrap();
    let mut resumed = loader(&dir, 7);
    resumed.seek(serde_json::from_str(&saved).unwrap()).unwrap();
    let tail = resumed.next_batch(45);
    assert_eq!([head, tail].concat(), expected);
    let err = resumed
        .seek(Cursor {
            epoch: 0,
            index: 10_000,
        })
        .unwrap_err();
    assert!(err.to_string().contains("past the"));
}

#[test]
fn too_little_data_is_an_error() {
    let dir = scratch("little");
    let path = dir.join("s.bin");
    write_shard(&path, &tokens(10, 50), 50);
    let err =
        WindowLoader::new(vec![TokenFile::open_shard(&path).unwrap()], 16, 0, true).unwrap_err();
    assert!(matches!(
        err,
        DataError::TooFewTokens {
            tokens: 10,
            needed: 17
        }
    ));
    let err =
        WindowLoader::new(vec![TokenFile::open_shard(&path).unwrap()], 0, 0, true).unwrap_err();
    assert!(matches!(err, DataError::Invalid(_)));
}
