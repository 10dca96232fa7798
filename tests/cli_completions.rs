//! `lanscatter completions <shell>` and `lanscatter manpage`: generated from the clap definitions,
//! so every subcommand the binary has shows up in them.

mod common;

use common::cli;

/// The subcommands `lanscatter --help` lists (its "Commands:" section), `help` left out.
fn subcommands() -> Vec<String> {
    let out = cli(["--help"]).output().expect("lanscatter runs");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let section = help.split("Commands:").nth(1).expect("the help lists commands");
    let names: Vec<String> = section
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    for must in ["master", "peer", "status", "completions", "manpage"] {
        assert!(names.iter().any(|n| n == must), "{must} missing from --help: {names:?}");
    }
    names
}

#[test]
fn bash_completion_knows_every_subcommand_and_every_shell_gets_one() {
    let out = cli(["completions", "bash"]).output().expect("lanscatter runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bash = String::from_utf8(out.stdout).expect("utf-8");
    assert!(bash.contains("complete -F") && bash.contains("lanscatter"), "not a bash completion script");
    for sub in subcommands() {
        assert!(bash.contains(&format!("lanscatter,{sub})")), "bash completion lacks {sub}");
    }
    assert!(bash.contains("--exit-when-all-done") && bash.contains("--expect"), "flags are completed too");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = cli(["completions", shell]).output().expect("lanscatter runs");
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("status") && script.contains("manpage"), "{shell} completion lacks subcommands");
    }
    let out = cli(["completions", "tcsh"]).output().expect("lanscatter runs");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_render_one_per_command() {
    let out = cli(["manpage"]).output().expect("lanscatter runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = String::from_utf8(out.stdout).expect("utf-8 roff");
    assert!(
        page.starts_with(".ie") || page.contains(".TH lanscatter"),
        "not a man page: {}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains(".SH NAME") && page.contains(".SH SUBCOMMANDS"), "sections missing");
    let subs = subcommands();
    for sub in &subs {
        assert!(page.contains(&format!("lanscatter\\-{sub}(1)")), "top page does not point to {sub}");
    }

    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man");
    let out = cli(["manpage", "--out"]).arg(&dir).output().expect("lanscatter runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let top = std::fs::read_to_string(dir.join("lanscatter.1")).expect("lanscatter.1 written");
    assert_eq!(top, page, "--out writes the same top page");
    for sub in &subs {
        let path = dir.join(format!("lanscatter-{sub}.1"));
        let roff = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(roff.contains(&format!(".TH lanscatter-{sub}")), "{} has no title", path.display());
        assert!(roff.contains(".SH SYNOPSIS"), "{} has no synopsis", path.display());
    }
    let master = std::fs::read_to_string(dir.join("lanscatter-master.1")).unwrap();
    assert!(master.contains("exit\\-when\\-all\\-done"), "flags are documented: {master}");
}
