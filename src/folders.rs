//! Refusing folders that would be a disaster to sync: the one check the CLI, the tray app and
//! the peer engine share (`crate::peer` runs it on every start, so no front end can skip it).
//!
//! A peer makes its folder byte-identical to the master's, deleting everything else in it; one
//! typo on a command line or one wrong click in a folder dialog must not wipe a disk, a home
//! directory or the operating system. A master never writes, but serving `/` or a whole home
//! directory to the LAN leaks far more than intended. So both modes refuse:
//! - relative paths (the GUI has no meaningful working directory; the engine resolves a CLI
//!   path against the working directory before checking);
//! - a file-system root: `/`, a drive root `C:\`, a UNC share root (anything without a parent);
//! - the user's home directory itself and any folder containing it (`/home`, `C:\Users`);
//! - system folders ([`system_folders`]): the operating system's own trees (`/etc`, `/usr`,
//!   `/boot`, `/System`, `C:\Windows`, …) and anything inside them, and folders that merely
//!   hold other people's things (`/var`, `/opt`, `/Volumes`, `C:\Program Files`, …) themselves,
//!   though a dedicated folder inside those is fine;
//!
//! and a peer additionally refuses the folder configured as this user's master folder (the tray
//! app knows it), anything inside it, and anything containing it: a peer writing there would
//! corrupt what the master serves. (Across hosts the peer's handshake makes the same check
//! against the folder the master reports.)
//!
//! Paths are compared after resolving symlinks and `..` (`canonicalize` on the deepest existing
//! ancestor, since a peer's target may not exist yet), so `~/x/..` is caught as the home dir;
//! on Windows and macOS, whose disks ignore letter case, system folders match in any case.
//! The checks take the home dir as a parameter so tests don't depend on the machine's.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FolderError {
    #[error("{} is not an absolute path; choose the folder with \"Choose folder…\"", .0.display())]
    Relative(PathBuf),
    #[error("{} is the root of a drive or file system; syncing it could overwrite or expose the whole disk. Choose or create a dedicated folder inside it", .0.display())]
    Root(PathBuf),
    #[error("{} is your home folder; a peer would delete everything in it that the master does not have. Choose or create a dedicated folder inside it", .0.display())]
    Home(PathBuf),
    #[error("{} contains your home folder ({}); choose a dedicated folder instead", .0.display(), .1.display())]
    ContainsHome(PathBuf, PathBuf),
    #[error("{} is the system folder {}, or inside it; syncing there could break this computer. Choose or create a dedicated folder elsewhere, e.g. in your home folder", .0.display(), .1.display())]
    System(PathBuf, PathBuf),
    #[error("{} is (or overlaps) this computer's master folder {}; a peer writing there would corrupt what the master serves. Choose a different folder for the peer", .0.display(), .1.display())]
    MasterFolder(PathBuf, PathBuf),
}

/// Check a master's source folder.
pub fn check_master_folder(folder: &Path) -> Result<(), FolderError> {
    check_master_folder_with(folder, home_dir().as_deref())
}

/// Check a peer's target folder against the user's master folder (if any).
pub fn check_peer_folder(folder: &Path, master_folder: Option<&Path>) -> Result<(), FolderError> {
    check_peer_folder_with(folder, master_folder, home_dir().as_deref())
}

pub fn check_master_folder_with(folder: &Path, home: Option<&Path>) -> Result<(), FolderError> {
    check_common(folder, home).map(|_| ())
}

pub fn check_peer_folder_with(
    folder: &Path,
    master_folder: Option<&Path>,
    home: Option<&Path>,
) -> Result<(), FolderError> {
    let resolved = check_common(folder, home)?;
    if let Some(master) = master_folder.filter(|m| m.is_absolute()) {
        let master_res = resolve(master);
        if resolved.starts_with(&master_res) || master_res.starts_with(&resolved) {
            return Err(FolderError::MasterFolder(folder.to_path_buf(), master.to_path_buf()));
        }
    }
    Ok(())
}

fn check_common(folder: &Path, home: Option<&Path>) -> Result<PathBuf, FolderError> {
    if !folder.is_absolute() {
        return Err(FolderError::Relative(folder.to_path_buf()));
    }
    let resolved = resolve(folder);
    if resolved.parent().is_none() {
        return Err(FolderError::Root(folder.to_path_buf()));
    }
    if let Some(home) = home {
        let home_res = resolve(home);
        if resolved == home_res {
            return Err(FolderError::Home(folder.to_path_buf()));
        }
        if home_res.starts_with(&resolved) {
            return Err(FolderError::ContainsHome(folder.to_path_buf(), home.to_path_buf()));
        }
    }
    if let Some(sys) = system_folder_of(&resolved) {
        return Err(FolderError::System(folder.to_path_buf(), sys));
    }
    Ok(resolved)
}

/// How much of a system folder is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The folder and everything inside it: the operating system's own files.
    Tree,
    /// Only the folder itself (and, as for every folder, its ancestors): it holds other
    /// programs' or users' things, but a dedicated folder inside it is fine.
    Exact,
}

/// The system folders of this OS (see the module doc).
pub fn system_folders() -> Vec<(PathBuf, Scope)> {
    use Scope::{Exact, Tree};
    let mut out: Vec<(PathBuf, Scope)> = Vec::new();
    #[cfg(unix)]
    {
        for p in
            ["/bin", "/sbin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sys", "/usr"]
        {
            out.push((PathBuf::from(p), Tree));
        }
        for p in ["/var", "/opt", "/srv", "/tmp", "/home", "/root", "/mnt", "/media", "/run", "/snap"] {
            out.push((PathBuf::from(p), Exact));
        }
    }
    #[cfg(target_os = "macos")]
    {
        for p in ["/System", "/Library", "/private/etc"] {
            out.push((PathBuf::from(p), Tree));
        }
        for p in ["/Applications", "/Users", "/Volumes", "/private", "/private/var", "/private/tmp", "/cores"] {
            out.push((PathBuf::from(p), Exact));
        }
    }
    #[cfg(windows)]
    {
        let env = |k: &str, default: &str| std::env::var_os(k).map(PathBuf::from).unwrap_or_else(|| default.into());
        out.push((env("SystemRoot", r"C:\Windows"), Tree));
        out.push((env("ProgramFiles", r"C:\Program Files"), Exact));
        out.push((env("ProgramFiles(x86)", r"C:\Program Files (x86)"), Exact));
        out.push((env("ProgramData", r"C:\ProgramData"), Exact));
        out.push((PathBuf::from(r"C:\Users"), Exact));
    }
    out
}

/// The system folder `resolved` (a resolved path) is, or lies in, if it is refused.
fn system_folder_of(resolved: &Path) -> Option<PathBuf> {
    let key = |p: &Path| {
        let s = p.to_string_lossy().into_owned();
        if cfg!(any(windows, target_os = "macos")) {
            s.to_lowercase()
        } else {
            s
        }
    };
    let me = PathBuf::from(key(resolved));
    // /dev/shm is a plain tmpfs for anyone's files (bench/lan puts its peers there): a folder
    // inside it is fine, /dev/shm itself is refused like /tmp.
    #[cfg(unix)]
    if me.starts_with("/dev/shm") && me != Path::new("/dev/shm") {
        return None;
    }
    system_folders().into_iter().find_map(|(sys, scope)| {
        let s = PathBuf::from(key(&resolve(&sys)));
        let hit = match scope {
            Scope::Tree => me.starts_with(&s),
            Scope::Exact => me == s,
        };
        hit.then_some(sys)
    })
}

fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

/// Canonical form of `p` even if its tail does not exist: canonicalize the deepest existing
/// ancestor, then append the remaining components with `.`/`..` applied lexically.
fn resolve(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    let base = loop {
        if let Ok(c) = dunce_canonicalize(&existing) {
            break c;
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            // A trailing `..` has no file name: apply it lexically, then resolve what remains.
            _ => {
                let lex = lexical(p);
                if lex != p && lex.components().count() < p.components().count() {
                    return resolve(&lex);
                }
                break lex;
            }
        }
    };
    let mut out = base;
    for name in tail.into_iter().rev() {
        out.push(name);
    }
    lexical(&out)
}

/// On Windows `canonicalize` returns `\\?\C:\…`, whose `parent()` semantics differ from `C:\…`;
/// strip the verbatim prefix for plain drive paths so root detection works on both forms.
fn dunce_canonicalize(p: &Path) -> std::io::Result<PathBuf> {
    let c = std::fs::canonicalize(p)?;
    #[cfg(windows)]
    {
        let s = c.to_string_lossy();
        if let Some(rest) = s.strip_prefix(r"\\?\") {
            if rest.as_bytes().get(1) == Some(&b':') {
                return Ok(PathBuf::from(rest));
            }
        }
    }
    Ok(c)
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_refused() {
        let root = if cfg!(windows) { PathBuf::from(r"C:\") } else { PathBuf::from("/") };
        assert_eq!(check_master_folder_with(&root, None), Err(FolderError::Root(root.clone())));
        assert!(matches!(check_peer_folder_with(&root, None, None), Err(FolderError::Root(_))));
        // `..` cannot sneak back to the root.
        let sneaky = root.join("tmp").join("..");
        assert!(matches!(check_peer_folder_with(&sneaky, None, None), Err(FolderError::Root(_))));
    }

    #[test]
    fn relative_refused() {
        assert!(matches!(check_peer_folder_with(Path::new("data"), None, None), Err(FolderError::Relative(_))));
    }

    #[test]
    fn home_and_its_ancestors_refused_but_inside_is_fine() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("users").join("alice");
        std::fs::create_dir_all(&home).unwrap();
        let h = Some(home.as_path());
        assert!(matches!(check_peer_folder_with(&home, None, h), Err(FolderError::Home(_))));
        assert!(matches!(check_master_folder_with(&home, h), Err(FolderError::Home(_))));
        let via_dotdot = home.join("sub").join("..");
        assert!(matches!(check_peer_folder_with(&via_dotdot, None, h), Err(FolderError::Home(_))));
        let parent = t.path().join("users");
        assert!(matches!(check_peer_folder_with(&parent, None, h), Err(FolderError::ContainsHome(..))));
        // A dedicated folder inside home, existing or not yet created, is what we want.
        assert_eq!(check_peer_folder_with(&home.join("sync"), None, h), Ok(()));
        assert_eq!(check_master_folder_with(&home.join("share").join("new"), h), Ok(()));
        let msg = check_peer_folder_with(&home, None, h).unwrap_err().to_string();
        assert!(msg.contains("home folder") && msg.contains("dedicated folder"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn home_via_symlink_refused() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("alice");
        std::fs::create_dir_all(&home).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        assert!(matches!(check_peer_folder_with(&link, None, Some(&home)), Err(FolderError::Home(_))));
    }

    #[test]
    fn master_folder_as_peer_target_refused() {
        let t = tempfile::tempdir().unwrap();
        let master = t.path().join("share");
        std::fs::create_dir_all(master.join("inner")).unwrap();
        let m = Some(master.as_path());
        for target in [master.clone(), master.join("inner"), master.join("new"), t.path().to_path_buf()] {
            let r = check_peer_folder_with(&target, m, None);
            assert!(matches!(r, Err(FolderError::MasterFolder(..))), "{target:?}: {r:?}");
        }
        assert_eq!(check_peer_folder_with(&t.path().join("mirror"), m, None), Ok(()));
        // The master itself may of course serve its own folder.
        assert_eq!(check_master_folder_with(&master, None), Ok(()));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn unix_system_folders_refused_but_dedicated_folders_inside_some_are_fine() {
        for p in [
            "/etc",
            "/usr",
            "/usr/share/doc",
            "/bin",
            "/boot",
            "/var",
            "/opt",
            "/home",
            "/tmp",
            "/etc/../usr",
            "/dev/shm",
            "/dev/null",
        ] {
            let r = check_peer_folder_with(Path::new(p), None, None);
            assert!(matches!(r, Err(FolderError::System(..))), "{p}: {r:?}");
        }
        for p in ["/var/tmp/mirror", "/opt/game", "/srv/data/x", "/tmp/lanscatter-test-mirror", "/dev/shm/bench/p0"] {
            assert_eq!(check_peer_folder_with(Path::new(p), None, None), Ok(()), "{p}");
        }
        let msg = check_peer_folder_with(Path::new("/etc/x"), None, None).unwrap_err().to_string();
        assert!(
            msg.contains("/etc/x") && msg.contains("system folder /etc") && msg.contains("dedicated folder"),
            "{msg}"
        );
    }

    #[cfg(target_os = "macos")]
    #[test]
    fn macos_system_folders_refused_in_any_case() {
        for p in [
            "/System",
            "/Library/Preferences",
            "/etc",
            "/usr/local",
            "/Applications",
            "/Users",
            "/Volumes",
            "/private/var",
            "/system/library",
        ] {
            let r = check_peer_folder_with(Path::new(p), None, None);
            assert!(matches!(r, Err(FolderError::System(..))), "{p}: {r:?}");
        }
        let tmp = tempfile::tempdir().unwrap(); // under /var/folders: inside /private/var is fine
        assert_eq!(check_peer_folder_with(&tmp.path().join("mirror"), None, None), Ok(()));
    }

    #[cfg(windows)]
    #[test]
    fn windows_system_folders_refused_in_any_case() {
        for p in [r"C:\Windows", r"c:\windows\System32", r"C:\Program Files", r"C:\ProgramData", r"C:\Users"] {
            let r = check_peer_folder_with(Path::new(p), None, None);
            assert!(matches!(r, Err(FolderError::System(..))), "{p}: {r:?}");
        }
        assert_eq!(check_peer_folder_with(Path::new(r"C:\Program Files\MyGame"), None, None), Ok(()));
        assert_eq!(check_peer_folder_with(Path::new(r"C:\Data\mirror"), None, None), Ok(()));
    }
}
