//! AFL++ entry point: `lanscatter-fuzz <target>` runs the target of
//! `tests/common/fuzz_targets.rs` in AFL's persistent mode (see `scripts/fuzz.sh`); `--list`
//! prints the target names.

#[path = "../../tests/common/fuzz_targets.rs"]
mod targets;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    if name == "--list" {
        for (n, _) in targets::TARGETS {
            println!("{n}");
        }
        return;
    }
    let Some(target) = targets::target(&name) else {
        eprintln!("unknown fuzz target {name:?}; `lanscatter-fuzz --list` names them");
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
