//! Small generated text corpora to prepare and train on: a fixed word pattern a tiny model
//! learns within a few steps, and sentences from a small seeded grammar.

use std::fs;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Writes `docs` documents of `words` words each as `dir/text/NN.txt` and returns that
/// folder. The words cycle through a short vocabulary in a fixed pattern shifted per
/// document: a corpus a tiny model learns within a few steps.
pub fn pattern_corpus(dir: &Path, docs: usize, words: usize) -> PathBuf {
    const WORDS: &[&str] = &[
        "the cat",
        "a dog",
        "sees",
        "likes",
        "the river",
        "some bread",
        "today.",
        "again.",
    ];
    let text = dir.join("text");
    fs::create_dir_all(&text).unwrap();
    for d in 0..docs {
        let doc: Vec<&str> = (0..words)
            .map(|i| WORDS[(i * 7 + d * 3 + i / 5) % WORDS.len()])
            .collect();
        fs::write(text.join(format!("{d:02}.txt")), doc.join(" ")).unwrap();
    }
    text
}

/// Writes `docs` documents of sentences from a small seeded grammar (predictable to a model,
/// far from uniform) as `dir/text/doc-NNN.txt` and returns that folder.
pub fn grammar_corpus(dir: &Path, docs: usize, seed: u64) -> PathBuf {
    let text = dir.join("text");
    fs::create_dir_all(&text).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..docs {
        fs::write(
            text.join(format!("doc-{i:03}.txt")),
            grammar_document(&mut rng),
        )
        .unwrap();
    }
    text
}

fn grammar_document(rng: &mut StdRng) -> String {
    const SUBJECTS: &[&str] = &[
        "the cat",
        "a dog",
        "my friend",
        "the old man",
        "our teacher",
        "the farmer",
    ];
    const VERBS: &[&str] = &["sees", "likes", "finds", "takes", "paints", "follows"];
    const OBJECTS: &[&str] = &[
        "the red ball",
        "a small house",
        "the river",
        "some bread",
        "the garden",
    ];
    const ENDS: &[&str] = &[" today.", " again.", ".", " every morning."];
    let n = rng.random_range(15..30);
    (0..n)
        .map(|_| {
            format!(
                "{} {} {}{}",
                SUBJECTS[rng.random_range(0..SUBJECTS.len())],
                VERBS[rng.random_range(0..VERBS.len())],
                OBJECTS[rng.random_range(0..OBJECTS.len())],
                ENDS[rng.random_range(0..ENDS.len())]
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scratch;

    #[test]
    fn a_scratch_folder_is_removed_when_dropped() {
        let scratch = Scratch::new("support-drop");
        let path = scratch.to_path_buf();
        pattern_corpus(&scratch, 2, 10);
        assert!(path.join("text/01.txt").is_file());
        drop(scratch);
        assert!(!path.exists());
    }

    #[test]
    fn corpora_are_deterministic() {
        let read = |dir: &Path| {
            let mut files: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files
                .iter()
                .map(|f| fs::read_to_string(f).unwrap())
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (
            Scratch::new("support-a"),
            Scratch::new("support-b"),
            Scratch::new("support-c"),
        );
        let first = read(&grammar_corpus(&a, 3, 7));
        assert_eq!(first, read(&grammar_corpus(&b, 3, 7)));
        assert_ne!(first, read(&grammar_corpus(&c, 3, 8)), "the seed matters");
        assert_ne!(first[0], first[1], "documents differ");
        let (a, b) = (Scratch::new("support-d"), Scratch::new("support-e"));
        let pattern = read(&pattern_corpus(&a, 2, 50));
        assert_eq!(pattern, read(&pattern_corpus(&b, 2, 50)));
        assert_ne!(pattern[0], pattern[1], "documents differ");
    }
}
