//! Fuzzing the control channel's decoders, both directions: a peer's binary frames as the master
//! reads them, the master's as a peer reads them (a manifest inside included), and the JSON
//! first frames (hello, welcome or refusal). Every decode is bounded in what it may allocate.
//! Targets: `tests/common/fuzz_targets.rs`; long runs: `scripts/fuzz.sh`.

mod common;

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;

#[global_allocator]
static ALLOC: fuzz::CountingAlloc = fuzz::CountingAlloc;

#[test]
fn peer_messages_at_the_master() {
    fuzz::run("peer_msg", cases(4000), seeds("peer_msg"), fuzz::per_byte(32));
}

#[test]
fn master_messages_at_a_peer() {
    fuzz::run("master_msg", cases(3000), seeds("master_msg"), fuzz::per_byte(64));
}

#[test]
fn peer_hello_at_the_master() {
    fuzz::run("hello", cases(4000), seeds("hello"), fuzz::per_byte(32));
}

#[test]
fn master_greeting_at_a_peer() {
    fuzz::run("greeting", cases(4000), seeds("greeting"), fuzz::per_byte(32));
}
