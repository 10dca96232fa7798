//! Fuzzing the text parsers: wire paths to local paths (an accepted path always lands under the
//! root, as plain names, and maps back to itself), sizes and rates (read back from their own
//! formatting), and the TOML config file layered onto the command line.
//! Targets: `tests/common/fuzz_targets.rs`; long runs: `scripts/fuzz.sh`.

mod common;

use common::fuzz::{self, cases};
use common::fuzz_seeds::seeds;

#[global_allocator]
static ALLOC: fuzz::CountingAlloc = fuzz::CountingAlloc;

#[test]
fn wire_path_to_local_path() {
    fuzz::run("wire_path", cases(4000), seeds("wire_path"), fuzz::per_byte(64));
}

#[test]
fn sizes_and_rates() {
    fuzz::run("units", cases(4000), seeds("units"), fuzz::per_byte(64));
}

#[test]
fn config_file() {
    // Building clap's command for every case costs a fixed few MiB, whatever the input.
    fuzz::run("config", cases(2000), seeds("config"), fuzz::per_byte(4096));
}
