//! Fuzzing the manifest a peer receives (binary and JSON, random bytes and structurally plausible
//! manifests with hostile paths, sizes and rules) and the hash cache file a scan reads from disk.
//! Accepted manifests must keep every path under the sync folder and re-encode to themselves.
//! Targets: `tests/common/fuzz_targets.rs`; long runs: `scripts/fuzz.sh`.

mod common;

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;

#[global_allocator]
static ALLOC: fuzz::CountingAlloc = fuzz::CountingAlloc;

#[test]
fn manifest_bytes_from_the_master() {
    fuzz::run("manifest", cases(3000), seeds("manifest"), fuzz::per_byte(64));
}

#[test]
fn generated_hostile_manifests() {
    fuzz::run("manifest_gen", cases(2000), seeds("manifest_gen"), fuzz::per_byte(4096));
}

#[test]
fn manifest_delta_from_the_master() {
    fuzz::run("manifest_delta", cases(2000), seeds("manifest_delta"), fuzz::per_byte(64));
}

#[test]
fn manifest_json() {
    fuzz::run("manifest_json", cases(2000), seeds("manifest_json"), fuzz::per_byte(64));
}

#[test]
fn hash_cache_file_on_disk() {
    fuzz::run("hash_cache", cases(600), seeds("hash_cache"), fuzz::per_byte(64));
}
