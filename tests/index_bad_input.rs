//! Bad input: missing folder, file instead of folder, unreadable entries, files that change
//! while hashed, special files, symlinks, non-UTF-8 and Windows-hostile names. Each gives a
//! clear outcome; none panics; none yields a partial index claiming to be whole.

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use lanscatter::manifest::{scan, ChunkHash, ChunkRule, ScanError, ScanOptions, ScanWarning};

#[test]
fn missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let err = scan(&dir.path().join("nope"), &no_cache_opts()).unwrap_err();
    assert!(matches!(err, ScanError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"));
}

#[test]
fn file_instead_of_folder() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(dir.path(), "file.txt", b"x");
    let err = scan(&f, &no_cache_opts()).unwrap_err();
    assert!(matches!(err, ScanError::NotADir(_)), "{err:?}");
    assert!(err.to_string().contains("not a folder"));
}

#[cfg(unix)]
#[test]
fn unreadable_file_fails_or_is_skipped_explicitly() {
    if permission_bits_do_not_apply() {
        return;
    }
    let dir = shared_tempdir();
    write_file(dir.path(), "ok.txt", b"fine");
    let secret = write_file(dir.path(), "secret.txt", b"hidden");
    chmod(&secret, 0o000);
    let out = index_as_unprivileged(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied") && stderr.contains("secret.txt"), "{stderr}");
    assert!(out.stdout.is_empty(), "no summary for a failed index");

    let out = index_as_unprivileged(dir.path(), &["--skip-unreadable", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "incomplete index exits 3: {stderr}");
    assert!(stderr.contains("INCOMPLETE"), "{stderr}");
    let m = lanscatter::manifest::Manifest::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(!m.is_complete());
    assert!(m.file("ok.txt").is_some() && m.file("secret.txt").is_none());
    chmod(&secret, 0o644);
}

#[cfg(unix)]
#[test]
fn unreadable_dir_fails_or_is_skipped_explicitly() {
    if permission_bits_do_not_apply() {
        return;
    }
    let dir = shared_tempdir();
    write_file(dir.path(), "locked/inner.txt", b"x");
    write_file(dir.path(), "open/inner.txt", b"y");
    chmod(&dir.path().join("open"), 0o755);
    let locked = dir.path().join("locked");
    chmod(&locked, 0o000);
    let out = index_as_unprivileged(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied") && stderr.contains("locked"), "{stderr}");
    let out = index_as_unprivileged(dir.path(), &["--skip-unreadable", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let m = lanscatter::manifest::Manifest::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(m.file("open/inner.txt").is_some());
    assert!(!m.has_dir("locked") && m.file("locked/inner.txt").is_none());
    assert!(m.warnings.iter().any(|w| matches!(w, ScanWarning::Unreadable { path, .. } if path == "locked")));
    chmod(&locked, 0o755);
}

#[test]
fn growing_file_is_never_recorded_with_a_wrong_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "log", &Rng::new(9).bytes(4 << 20));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            let mut rng = Rng::new(10);
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&rng.bytes(64 * 1024)).unwrap();
            }
        })
    };
    let opts = ScanOptions { chunk_rule: ChunkRule::Fixed(1 << 20), ..no_cache_opts() };
    let res = scan(dir.path(), &opts);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    match res {
        Err(e) => {
            assert!(matches!(e, ScanError::KeepsChanging { .. }), "{e:?}");
            assert!(e.to_string().contains("kept changing"));
        }
        Ok(m) => {
            // Appends never change earlier bytes: whatever size was recorded, its chunks must
            // match the file's first `size` bytes.
            let f = m.file("log").unwrap();
            let data = fs::read(&path).unwrap();
            for c in &f.chunks {
                let end = (c.offset + u64::from(c.size)) as usize;
                assert_eq!(c.hash, ChunkHash::of(&data[c.offset as usize..end]));
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn symlinks_and_special_files_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "real/file.txt", b"data");
    std::os::unix::fs::symlink("/etc", dir.path().join("link_to_etc")).unwrap();
    std::os::unix::fs::symlink("real/file.txt", dir.path().join("link_to_file")).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("real/loop")).unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let mut want_special = vec![("fifo", "fifo"), ("sock", "socket")];
    if is_root() {
        let dev = dir.path().join("nulldev");
        let c = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid path; (1,3) is /dev/null's device number.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) } == 0 {
            want_special.push(("nulldev", "character device"));
        }
    }
    // A fifo would block forever if opened: the scan must not open it.
    let m = scan(dir.path(), &no_cache_opts()).unwrap();
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["real/file.txt"]);
    assert_eq!(m.dirs.len(), 1);
    for (name, target) in
        [("link_to_etc", "/etc"), ("link_to_file", "real/file.txt"), ("dangling", "nowhere"), ("real/loop", ".")]
    {
        assert!(
            m.warnings.contains(&ScanWarning::Symlink { path: name.into(), target: target.into() }),
            "{name}: {:?}",
            m.warnings
        );
    }
    for (name, kind) in want_special {
        assert!(
            m.warnings.contains(&ScanWarning::SpecialFile { path: name.into(), file_type: kind.into() }),
            "{name}: {:?}",
            m.warnings
        );
    }
    assert!(m.is_complete(), "skipping symlinks by design does not make the index incomplete");
}

#[cfg(target_os = "linux")]
#[test]
fn non_utf8_and_unrepresentable_names_are_reported_and_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(dir.path().join(bad), b"x").unwrap();
    fs::create_dir(dir.path().join(std::ffi::OsStr::from_bytes(b"dir\xfe"))).unwrap();
    fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"dir\xfe/child")), b"y").unwrap();
    write_file(dir.path(), "back\\slash", b"z");
    write_file(dir.path(), "good", b"g");
    let m = scan(dir.path(), &no_cache_opts()).unwrap();
    assert_eq!(m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["good"]);
    assert!(m.dirs.is_empty());
    let not_utf8 = m.warnings.iter().filter(|w| matches!(w, ScanWarning::NotUtf8 { .. })).count();
    assert_eq!(not_utf8, 2, "{:?}", m.warnings);
    assert!(m.warnings.iter().any(|w| matches!(w, ScanWarning::UnsupportedName { path, .. } if path == "back\\slash")));
    m.validate().unwrap();
}

#[cfg(unix)]
#[test]
fn windows_impossible_and_case_colliding_names_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["CON", "aux.txt", "ab:c", "trailing.", "q?", "Readme.md", "README.md", "Dir/x", "dir/y", "a:b"] {
        write_file(dir.path(), name, b"1");
    }
    let m = scan(dir.path(), &no_cache_opts()).unwrap();
    assert_eq!(m.files.len(), 9, "flagged names are still indexed");
    // "a:b" would be drive-relative on Windows: not representable as a wire path at all.
    assert!(
        m.warnings.iter().any(|w| matches!(w, ScanWarning::UnsupportedName { path, .. } if path == "a:b")),
        "{:?}",
        m.warnings
    );
    let win: Vec<&str> = m
        .warnings
        .iter()
        .filter_map(|w| match w {
            ScanWarning::WindowsName { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    for name in ["CON", "aux.txt", "ab:c", "trailing.", "q?"] {
        assert!(win.contains(&name), "{name} not flagged: {win:?}");
    }
    assert_eq!(win.len(), 5);
    let coll: Vec<&Vec<String>> = m
        .warnings
        .iter()
        .filter_map(|w| match w {
            ScanWarning::CaseCollision { paths } => Some(paths),
            _ => None,
        })
        .collect();
    assert!(coll.contains(&&vec!["README.md".to_string(), "Readme.md".to_string()]), "{coll:?}");
    assert!(coll.contains(&&vec!["Dir".to_string(), "dir".to_string()]), "{coll:?}");
}
