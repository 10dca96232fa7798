//! The README promises two commands for a fresh machine, and CI must run exactly those (through
//! `scripts/fresh-user.sh`) plus the tray app's suite the README names: this test keeps README,
//! script, `.ci/run` and reality from drifting apart.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines of the first ```sh block after the first occurrence of `marker`, trimmed, without
/// empty ones.
fn block_after(readme: &str, marker: &str) -> Vec<String> {
    let after = readme.split(marker).nth(1).unwrap_or_else(|| panic!("README has no {marker:?}"));
    let block = after.split("```sh").nth(1).unwrap_or_else(|| panic!("a ```sh block follows {marker:?}"));
    let block = block.split("```").next().unwrap_or_default();
    block.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// The rule `scripts/fresh-user.sh` uses too: the first line of each block.
fn first_line(readme: &str, marker: &str) -> String {
    block_after(readme, marker).into_iter().next().unwrap_or_else(|| panic!("the block after {marker:?} is empty"))
}

/// `.ci/run`'s command lines (comments and blank lines left out).
fn ci_commands() -> Vec<String> {
    read(".ci/run").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

#[test]
fn readme_commands_build_run_the_demo_and_test_headless() {
    let readme = read("README.md");
    let build_run = first_line(&readme, "## Quick start");
    assert!(build_run.starts_with("cargo build --release && "), "{build_run}");
    assert!(build_run.ends_with("lanscatter demo"), "the build-and-run command shows the demo: {build_run}");
    let test = first_line(&readme, "Run the tests");
    assert!(test.starts_with("cargo test --locked"), "{test}");
    // A machine with only Rust cannot build the `gui` feature (GTK): the README's command must not ask for it.
    assert!(!test.contains("--all-features") && !test.contains("--features"), "{test}");
}

#[test]
fn ci_runs_the_readme_commands_through_the_fresh_user_script() {
    let ci = ci_commands();
    assert!(ci.iter().any(|l| l == "bash scripts/fresh-user.sh"), ".ci/run must run scripts/fresh-user.sh: {ci:?}");
    let script = read("scripts/fresh-user.sh");
    for run in ["bash -c \"$build_run\"", "\"${no_gtk[@]}\" bash -c \"$test_cmd\""] {
        let ran = script.lines().map(str::trim).any(|l| l.starts_with(run));
        assert!(ran, "scripts/fresh-user.sh must run {run}");
    }
}

#[cfg(unix)]
#[test]
fn fresh_user_script_extracts_the_same_commands() {
    let readme = read("README.md");
    let want = format!("{}\n{}\n", first_line(&readme, "## Quick start"), first_line(&readme, "Run the tests"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fresh-user.sh");
    let out = std::process::Command::new("bash").arg(script).arg("--print-commands").output().expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn ci_runs_the_gui_suite_the_readme_names() {
    let readme = read("README.md");
    let gui = block_after(&readme, "The tray app's own tests");
    assert!(gui.iter().all(|l| l.starts_with("cargo test --locked --all-features")), "{gui:?}");
    assert!(gui.iter().any(|l| l.contains("--test gui_tray")), "the tray end-to-end test: {gui:?}");
    assert!(gui.iter().any(|l| l.contains("--lib gui::")), "the gui unit tests: {gui:?}");
    let ci = ci_commands();
    for line in &gui {
        assert!(ci.contains(line), ".ci/run must run {line:?} (README's tray suite): {ci:?}");
    }
    // The suite sits in a function .ci/run starts as a lane beside the headless suite and waits for.
    assert!(ci.iter().any(|l| l == "lane tray tray_suite"), ".ci/run must start the tray suite's lane: {ci:?}");
    assert!(ci.iter().any(|l| l == "lane_end tray"), ".ci/run must wait for the tray suite's lane: {ci:?}");
}
