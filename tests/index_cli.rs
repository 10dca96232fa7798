//! `lanscatter index` through the real binary: summary, JSON, chunk-size flag, errors.

mod common;

use common::*;
use lanscatter::manifest::{ChunkRule, Manifest};

fn index(args: &[&str]) -> std::process::Output {
    cli(["index"]).args(args).output().expect("run lanscatter index")
}

#[test]
fn summary_lists_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    random_tree(dir.path(), 21, &TreeSpec { files: 12, ..TreeSpec::default() });
    let out = index(&[dir.path().to_str().unwrap(), "--cache-dir", cache.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for field in ["files:", "dirs:", "chunks:", "unique chunks:", "GB/s", "Indexed"] {
        assert!(stdout.contains(field), "missing {field:?} in:\n{stdout}");
    }
    assert!(stdout.contains("files:         12 "), "{stdout}");
}

#[test]
fn json_is_the_full_manifest() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a/b.txt", &Rng::new(1).bytes(10_000));
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = index(&[dir.path().to_str().unwrap(), "--json", "--no-cache", "--chunk-size", "4KiB"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = Manifest::from_json(&String::from_utf8_lossy(&out.stdout)).expect("valid manifest JSON");
    assert_eq!(m.chunk_rule, ChunkRule::Fixed(4096));
    let f = m.file("a/b.txt").unwrap();
    assert_eq!((f.size, f.chunks.len()), (10_000, 3));
    assert!(m.has_dir("empty") && m.has_dir("a"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v["files"][0]["chunks"][1];
    assert_eq!(c["offset"], 4096);
    assert_eq!(c["size"], 4096);
    assert_eq!(c["hash"].as_str().unwrap().len(), 32, "hex BLAKE2b-128");
    assert!(v["files"][0]["mtime"]["nanos"].is_u64());
}

#[test]
fn chunk_size_spellings() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", &[0u8; 100]);
    for (arg, want) in [("4M", 4 << 20), ("1MiB", 1 << 20), ("512k", 512 << 10), ("65536", 65536)] {
        let out = index(&[dir.path().to_str().unwrap(), "--json", "--no-cache", "--chunk-size", arg]);
        assert!(out.status.success(), "{arg}");
        let m = Manifest::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(m.chunk_rule, ChunkRule::Fixed(want), "{arg}");
    }
    let out = index(&[dir.path().to_str().unwrap(), "--chunk-size", "12 parsecs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot parse chunk size"));
    let out = index(&[dir.path().to_str().unwrap(), "--chunk-size", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
}

#[test]
fn errors_are_clear_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let out = index(&[dir.path().join("missing").to_str().unwrap(), "--no-cache"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let f = write_file(dir.path(), "file", b"x");
    let out = index(&[f.to_str().unwrap(), "--no-cache"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder"));
}

#[cfg(unix)]
#[test]
fn warnings_go_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "CON", b"x");
    std::os::unix::fs::symlink("/", dir.path().join("root_link")).unwrap();
    let out = index(&[dir.path().to_str().unwrap(), "--json", "--no-cache"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("root_link") && stderr.contains("not followed"), "{stderr}");
    assert!(stderr.contains("CON") && stderr.contains("Windows"), "{stderr}");
    Manifest::from_json(&String::from_utf8_lossy(&out.stdout)).expect("stdout is pure JSON");
}
