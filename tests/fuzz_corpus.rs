//! The checked-in fuzz corpus (`fuzz/corpus/<target>/`): every file in it, regression inputs of
//! fixed bugs included, passes its target; the corpus holds each target's current seeds and
//! stays small. `cargo test --test fuzz_corpus -- --ignored write_corpus` regenerates the seeds.

mod common;

use std::path::PathBuf;

use common::fuzz::{self, targets};
use common::fuzz_seeds::seeds;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

#[test]
fn every_corpus_file_passes_its_target_and_the_corpus_is_small() {
    let mut total = 0;
    for (name, target) in targets::TARGETS {
        let corpus = fuzz::corpus(name);
        assert!(!corpus.is_empty(), "no corpus for target {name}: run write_corpus (see the module doc)");
        for seed in seeds(name) {
            assert!(corpus.contains(&seed), "corpus of {name} lacks a current seed: run write_corpus");
        }
        for input in &corpus {
            total += input.len();
            target(input);
        }
    }
    assert!(total < 1 << 20, "the corpus holds {total} bytes; keep it under 1 MiB");
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand after changing a seed"]
fn write_corpus() {
    for (name, _) in targets::TARGETS {
        let dir = corpus_dir().join(name);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (i, seed) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        }
    }
}
