//! Fuzzing what a chunk transfer decodes: LZ4 bodies against the size the manifest gives (the
//! output never exceeds it), the hash in `GET /chunk/<hex>`, and the chunk rule (`--chunk-size`,
//! and the rule inside a manifest), which must tile every file size.
//! Targets: `tests/common/fuzz_targets.rs`; long runs: `scripts/fuzz.sh`.

mod common;

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;

#[global_allocator]
static ALLOC: fuzz::CountingAlloc = fuzz::CountingAlloc;

#[test]
fn lz4_body_with_its_size_bound() {
    // The output may be as large as the size the input claims (from the manifest), no larger.
    fuzz::run(
        "lz4",
        cases(2000),
        seeds("lz4"),
        Box::new(|input: &[u8]| fuzz::targets::lz4_claimed_size(input) * 2 + input.len() * 64 + (4 << 20)),
    );
}

#[test]
fn chunk_route_hash() {
    fuzz::run("chunk_route", cases(4000), seeds("chunk_route"), fuzz::per_byte(32));
}

#[test]
fn chunk_batch_request_and_answer() {
    // Decoding allocates the entries it returns: at most the answer, or the sizes it expects
    // when an entry is LZ4 (u16 sizes here, 16 of them at most).
    fuzz::run("chunk_batch", cases(4000), seeds("chunk_batch"), Box::new(|input: &[u8]| input.len() * 8 + (2 << 20)));
}

#[test]
fn chunk_rule() {
    fuzz::run("chunk_rule", cases(4000), seeds("chunk_rule"), fuzz::per_byte(32));
}
