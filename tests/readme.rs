//! The README promises two commands for a fresh machine, and CI must run exactly the README's test
//! command: this test keeps the three (README, `.ci/run`, reality) from drifting apart.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first line of the first ```sh block after the "Run the tests" sentence.
fn readme_test_command(readme: &str) -> String {
    let after = readme.split("Run the tests").nth(1).expect("README has a 'Run the tests' part");
    let block = after.split("```sh").nth(1).expect("a ```sh block follows 'Run the tests'");
    block.lines().map(str::trim).find(|l| !l.is_empty()).expect("the block has a command").to_string()
}

#[test]
fn ci_runs_the_readme_test_command() {
    let cmd = readme_test_command(&read("README.md"));
    let ci = read(".ci/run");
    let last = ci.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.starts_with('#')).expect(".ci/run has commands");
    assert_eq!(last, cmd, ".ci/run must end by running the README's test command");
}

#[test]
fn readme_has_a_build_and_run_command() {
    let readme = read("README.md");
    let quick = readme.split("## Quick start").nth(1).expect("README has a Quick start section");
    let first = quick.split("```sh").nth(1).expect("Quick start has a ```sh block");
    assert!(first.contains("cargo"), "the build-and-run command builds with cargo");
}
