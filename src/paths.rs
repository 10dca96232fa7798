//! Relative wire paths: validation, conversion to and from local paths, and portability checks.
//!
//! Every path that crosses the network (manifest entries, download orders) is a *wire path*: a
//! relative path whose components are separated by `/` on every OS. A peer must never write or
//! delete outside its sync dir, so **every** local path built from a wire path goes through
//! [`to_local`], which calls [`validate_wire_path`] first. The validator is deliberately strict
//! and purely syntactic (no filesystem access, so it cannot race): anything that could climb out
//! of the root (`..`), be re-rooted (`/x`, `C:x`, `\\server\share`), be ambiguous (`a//b`, `./a`,
//! `a\b`), or truncate a C string (NUL) is rejected.
//!
//! Names that are legal on the master's OS but impossible on Windows (`CON`, `a:b`, `x.`) or
//! that collide case-insensitively (`A.txt` vs `a.txt`) are *not* rejected here: they are valid
//! on Linux peers. The scanner flags them with [`windows_name_problem`] and [`case_fold_key`]
//! so later layers can refuse to sync them to peers whose filesystems cannot hold them. On
//! Windows itself [`to_local`] refuses them, because `a:b` would silently name an alternate data
//! stream and `CON` a device.
//!
//! Symlinks are not considered here: the scanner never records them and the peer never follows
//! them (that is the file I/O layer's job, which opens paths it gets from here).

use std::path::{Component, Path, PathBuf};

/// Longest accepted wire path in bytes. Generous (Linux PATH_MAX) but bounded, so a hostile
/// manifest cannot make us allocate or stat absurd paths.
pub const MAX_WIRE_PATH_LEN: usize = 4096;
/// Longest accepted single component in bytes (NAME_MAX on common filesystems).
pub const MAX_COMPONENT_LEN: usize = 255;

/// The one name lanscatter reserves in every folder it works on: a peer keeps its marker
/// ([`crate::peer::adopt`]) in `<folder>/.lanscatter/`. At a folder's root this name (in any
/// letter case, for case-insensitive disks) is never indexed, published, synced or deleted: the
/// walk leaves it out for masters and peers alike, and a peer refuses a manifest entry under it.
pub const STATE_DIR: &str = ".lanscatter";

/// True if `name`, as the first component of a wire path, is [`STATE_DIR`].
pub fn is_state_dir(name: &str) -> bool {
    name.eq_ignore_ascii_case(STATE_DIR)
}

/// True if wire path `wire` lies in [`STATE_DIR`] (or is it).
pub fn in_state_dir(wire: &str) -> bool {
    is_state_dir(wire.split('/').next().unwrap_or(wire))
}

/// Why a wire path was refused. Every message names the offending path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path: a wire path must name something inside the sync folder")]
    Empty,
    #[error("path {0:?} is longer than {MAX_WIRE_PATH_LEN} bytes")]
    TooLong(String),
    #[error("path {0:?} has a component longer than {MAX_COMPONENT_LEN} bytes")]
    ComponentTooLong(String),
    #[error("path {0:?} is absolute: wire paths must be relative to the sync folder")]
    Absolute(String),
    #[error("path {0:?} contains a backslash: wire paths use '/' as the only separator")]
    Backslash(String),
    #[error("path {0:?} starts with a drive letter: wire paths must be relative")]
    DriveLetter(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} has an empty component ('//' or a trailing '/')")]
    EmptyComponent(String),
    #[error("path {0:?} has a '.' component: wire paths must be normalized")]
    Dot(String),
    #[error("path {0:?} has a '..' component: it could escape the sync folder")]
    DotDot(String),
    #[error("path {path:?} cannot exist on Windows: {problem}")]
    NotPortable { path: String, problem: WindowsNameProblem },
    #[error("local path {0:?} is not valid UTF-8; rename it to sync it")]
    NotUtf8(PathBuf),
    #[error("local path {path:?} is not inside {root:?}")]
    OutsideRoot { path: PathBuf, root: PathBuf },
}

/// Check that `wire` is a safe, normalized relative path; returns it unchanged on success so it
/// can be used inline (`let p = validate_wire_path(s)?;`).
pub fn validate_wire_path(wire: &str) -> Result<&str, PathError> {
    let owned = || wire.chars().take(300).collect::<String>();
    if wire.is_empty() {
        return Err(PathError::Empty);
    }
    if wire.len() > MAX_WIRE_PATH_LEN {
        return Err(PathError::TooLong(owned()));
    }
    if wire.contains('\0') {
        return Err(PathError::Nul(owned()));
    }
    if wire.starts_with('/') {
        return Err(PathError::Absolute(owned()));
    }
    // Backslash before drive letters: `\\server\share` and `C:\x` are both reported as the more
    // fundamental problem (wrong separator), and the check is OS-independent on purpose: a path
    // that is harmless on the master may be a separator on a Windows peer.
    if wire.contains('\\') {
        return Err(PathError::Backslash(owned()));
    }
    if has_drive_prefix(wire) {
        return Err(PathError::DriveLetter(owned()));
    }
    for comp in wire.split('/') {
        match comp {
            "" => return Err(PathError::EmptyComponent(owned())),
            "." => return Err(PathError::Dot(owned())),
            ".." => return Err(PathError::DotDot(owned())),
            c if c.len() > MAX_COMPONENT_LEN => return Err(PathError::ComponentTooLong(owned())),
            _ => {}
        }
    }
    Ok(wire)
}

/// `C:`, `c:foo`: a drive-relative or drive-absolute prefix on Windows.
fn has_drive_prefix(wire: &str) -> bool {
    let b = wire.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Local path for a wire path under `root`, after validation. Built component by component so
/// the result is always `root` followed by plain names (asserted below, cheaply).
pub fn to_local(root: &Path, wire: &str) -> Result<PathBuf, PathError> {
    validate_wire_path(wire)?;
    let mut out = root.to_path_buf();
    for comp in wire.split('/') {
        if cfg!(windows) {
            if let Some(problem) = windows_name_problem(comp) {
                return Err(PathError::NotPortable { path: wire.to_string(), problem });
            }
        }
        out.push(comp);
    }
    // Defence in depth: validation above already guarantees this; a failure here would be a bug
    // in the validator, and must not turn into a write outside the root.
    let rel =
        out.strip_prefix(root).map_err(|_| PathError::OutsideRoot { path: out.clone(), root: root.to_path_buf() })?;
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(PathError::OutsideRoot { path: out, root: root.to_path_buf() });
    }
    Ok(out)
}

/// Wire path of `path`, which must lie under `root` (the scanner's direction). Fails for
/// non-UTF-8 names (the wire format is UTF-8 JSON/postcard) and anything that would not pass
/// [`validate_wire_path`].
pub fn wire_from_local(root: &Path, path: &Path) -> Result<String, PathError> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| PathError::OutsideRoot { path: path.to_path_buf(), root: root.to_path_buf() })?;
    let mut out = String::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(name) => {
                let name = name.to_str().ok_or_else(|| PathError::NotUtf8(path.to_path_buf()))?;
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
            }
            _ => return Err(PathError::OutsideRoot { path: path.to_path_buf(), root: root.to_path_buf() }),
        }
    }
    validate_wire_path(&out)?;
    Ok(out)
}

/// Why a single path component cannot be created on Windows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum WindowsNameProblem {
    #[error("{0:?} is a reserved device name (with any extension)")]
    ReservedName(String),
    #[error("contains the character {0:?}, which Windows forbids in names")]
    ForbiddenChar(char),
    #[error("contains control character U+{0:04X}")]
    ControlChar(u32),
    #[error("ends with a dot or space, which Windows strips")]
    TrailingDotOrSpace,
}

/// Reserved DOS device names; `CON.txt` and `con .txt` are just as reserved as `CON`.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// First reason one path component (not a whole path) cannot exist on Windows, if any.
pub fn windows_name_problem(name: &str) -> Option<WindowsNameProblem> {
    for c in name.chars() {
        if (c as u32) < 0x20 || c == '\x7f' {
            return Some(WindowsNameProblem::ControlChar(c as u32));
        }
        if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\\') {
            return Some(WindowsNameProblem::ForbiddenChar(c));
        }
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some(WindowsNameProblem::TrailingDotOrSpace);
    }
    // The device check applies to the part before the first dot, with trailing spaces ignored.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    // Windows also treats superscript digits as COM/LPT numbers.
    let stem_upper = stem.to_uppercase().replace(['¹', '²', '³'], "1");
    if RESERVED.contains(&stem_upper.as_str()) {
        return Some(WindowsNameProblem::ReservedName(stem.to_string()));
    }
    None
}

/// First Windows problem in any component of a wire path.
pub fn windows_path_problem(wire: &str) -> Option<WindowsNameProblem> {
    wire.split('/').find_map(windows_name_problem)
}

/// Key under which two wire paths collide on a case-insensitive filesystem (NTFS, APFS default).
/// Simple Unicode lowercasing: catches `A.txt`/`a.txt` and `Ä`/`ä`; Unicode normalization
/// differences (NFC vs NFD, which APFS also folds) are not detected.
pub fn case_fold_key(wire: &str) -> String {
    wire.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_wire_paths_are_rejected() {
        let long_comp = "a".repeat(MAX_COMPONENT_LEN + 1);
        let long_path = vec!["abc"; MAX_WIRE_PATH_LEN / 4 + 1].join("/");
        type Case<'a> = (&'a str, fn(&PathError) -> bool);
        #[rustfmt::skip]
        let table: Vec<Case<'_>> = vec![
            ("", |e| matches!(e, PathError::Empty)),
            ("..", |e| matches!(e, PathError::DotDot(_))),
            ("../etc/passwd", |e| matches!(e, PathError::DotDot(_))),
            ("a/../../b", |e| matches!(e, PathError::DotDot(_))),
            ("a/..", |e| matches!(e, PathError::DotDot(_))),
            (".", |e| matches!(e, PathError::Dot(_))),
            ("./a", |e| matches!(e, PathError::Dot(_))),
            ("a/./b", |e| matches!(e, PathError::Dot(_))),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("/", |e| matches!(e, PathError::Absolute(_))),
            ("//server/share/x", |e| matches!(e, PathError::Absolute(_))),
            ("\\\\server\\share\\x", |e| matches!(e, PathError::Backslash(_))),
            ("\\\\?\\C:\\x", |e| matches!(e, PathError::Backslash(_))),
            ("a\\..\\..\\b", |e| matches!(e, PathError::Backslash(_))),
            ("C:\\Windows", |e| matches!(e, PathError::Backslash(_))),
            ("C:", |e| matches!(e, PathError::DriveLetter(_))),
            ("c:foo", |e| matches!(e, PathError::DriveLetter(_))),
            ("C:/Windows/x", |e| matches!(e, PathError::DriveLetter(_))),
            ("a\0b", |e| matches!(e, PathError::Nul(_))),
            ("a//b", |e| matches!(e, PathError::EmptyComponent(_))),
            ("a/", |e| matches!(e, PathError::EmptyComponent(_))),
            (&long_comp, |e| matches!(e, PathError::ComponentTooLong(_))),
            (&long_path, |e| matches!(e, PathError::TooLong(_))),
        ];
        for (path, is_expected) in &table {
            let err = validate_wire_path(path).expect_err(path);
            assert!(is_expected(&err), "{path:?} gave {err:?}");
            assert!(to_local(Path::new("/root"), path).is_err(), "{path:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for path in [
            "a",
            "a/b/c.txt",
            "...",
            "..a",
            "a..",
            ".hidden/x",
            "ünïcödé/日本語.txt",
            "a b/c d",
            "CON",
            "ab:c",
            "x/a:b",
        ] {
            assert_eq!(validate_wire_path(path), Ok(path));
        }
    }

    #[test]
    fn to_local_stays_under_root() {
        let root = Path::new("/sync/root");
        let p = to_local(root, "a/b/c.txt").unwrap();
        assert_eq!(p, root.join("a").join("b").join("c.txt"));
        assert!(p.starts_with(root));
    }

    #[test]
    fn wire_from_local_round_trip() {
        let root = Path::new("/sync/root");
        let local = root.join("dir").join("file.bin");
        let wire = wire_from_local(root, &local).unwrap();
        assert_eq!(wire, "dir/file.bin");
        assert_eq!(to_local(root, &wire).unwrap(), local);
        assert!(wire_from_local(root, Path::new("/elsewhere/x")).is_err());
        assert!(matches!(wire_from_local(root, root), Err(PathError::Empty)));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_local_name_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let root = Path::new("/r");
        let p = root.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
        assert!(matches!(wire_from_local(root, &p), Err(PathError::NotUtf8(_))));
    }

    #[test]
    fn windows_impossible_names_are_flagged() {
        for (name, flagged) in [
            ("CON", true),
            ("con", true),
            ("Con.txt", true),
            ("NUL.tar.gz", true),
            ("aux ", true),
            ("COM1", true),
            ("lpt9.log", true),
            ("COM¹", true),
            ("COM0", false),
            ("CONSOLE", false),
            ("a:b", true),
            ("a<b", true),
            ("a>b", true),
            ("a\"b", true),
            ("a|b", true),
            ("a?b", true),
            ("a*b", true),
            ("tab\there", true),
            ("trailing.", true),
            ("trailing ", true),
            ("normal.txt", false),
            (".hidden", false),
            ("日本語", false),
            ("a.b.c", false),
        ] {
            assert_eq!(windows_name_problem(name).is_some(), flagged, "{name:?}");
        }
        assert!(windows_path_problem("ok/dir/CON/x").is_some());
        assert!(windows_path_problem("ok/dir/x").is_none());
    }

    #[cfg(windows)]
    #[test]
    fn to_local_refuses_windows_impossible_names_on_windows() {
        assert!(matches!(to_local(Path::new("C:\\r"), "a:b"), Err(PathError::NotPortable { .. })));
    }

    #[test]
    fn case_fold_collisions() {
        assert_eq!(case_fold_key("Dir/A.TXT"), case_fold_key("dir/a.txt"));
        assert_eq!(case_fold_key("Ärger"), case_fold_key("ärger"));
        assert_ne!(case_fold_key("a"), case_fold_key("b"));
    }
}
