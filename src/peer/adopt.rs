//! Adopted on purpose: a peer syncs only into a folder it owns.
//!
//! A peer deletes whatever the master lacks, so pointing it at the wrong non-empty folder
//! destroys data. A folder becomes the peer's in one of two ways: it was empty or missing when
//! the peer first started there, or the user said so (`--adopt` on the command line, a
//! confirmation in the tray app); its existing content is then reused like any leftover.
//! The peer writes its marker, `.lanscatter/peer.txt`, and from then on starts there without
//! asking. The marker lives under the one name every scan leaves out
//! ([`crate::paths::STATE_DIR`]), so it is never listed, synced or deleted, and a master serving
//! a folder that is itself a peer's copy never publishes it.
//!
//! Clutter the OS creates by itself (`.DS_Store`, `Thumbs.db`, `desktop.ini`) does not make a
//! folder non-empty: a folder just made in Finder or Explorer is still empty.
//!
//! [`needs_adoption`] only reads (the engine asks it before anything is written); [`mark`]
//! writes through the storage seam and makes the marker durable.

use std::io;
use std::path::{Path, PathBuf};

use crate::paths::{is_state_dir, STATE_DIR};
use crate::storage::{EntryKind, Storage};

/// The marker's file name inside [`STATE_DIR`].
pub const MARKER: &str = "peer.txt";

/// Entries the OS puts into folders by itself; they do not count as content.
const OS_CLUTTER: [&str; 3] = [".DS_Store", "Thumbs.db", "desktop.ini"];

const MARKER_TEXT: &[u8] = b"This folder is a mirror kept by lanscatter (peer): files the master lacks are deleted.\n\
Delete this .lanscatter folder to make lanscatter ask again (--adopt) before syncing into it.\n";

/// Where the marker of the peer folder `root` is.
pub fn marker_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join(MARKER)
}

/// True if `root` holds content and no marker: syncing into it needs the user's word. A
/// missing or empty folder does not.
pub fn needs_adoption(root: &Path) -> io::Result<bool> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if std::fs::symlink_metadata(marker_path(root)).is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !is_state_dir(&name) && !OS_CLUTTER.iter().any(|c| c.eq_ignore_ascii_case(&name)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Make `root` (an existing folder) the peer's: write the marker unless it is there, and make
/// it durable. Whatever else stands at the marker's place (a symlink, a file where the folder
/// goes) is removed without being followed.
pub fn mark(root: &Path, storage: &dyn Storage) -> io::Result<()> {
    let dir = root.join(STATE_DIR);
    let path = dir.join(MARKER);
    match storage.kind(&dir)? {
        Some(EntryKind::Dir) => match storage.kind(&path)? {
            Some(EntryKind::File) => return Ok(()),
            Some(_) => storage.remove(&path)?,
            None => {}
        },
        Some(_) => storage.remove(&dir)?,
        None => {}
    }
    storage.create_dir_all(&dir)?;
    storage.set_len(&path, MARKER_TEXT.len() as u64)?;
    storage.write_at(&path, 0, MARKER_TEXT)?;
    storage.sync(&path)?;
    storage.sync_dir(&dir)?;
    storage.sync_dir(root)?;
    tracing::info!("marked {} as a lanscatter peer folder ({})", root.display(), path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Disk;

    #[test]
    fn missing_empty_and_cluttered_folders_need_no_adoption_but_content_does() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("mirror");
        assert!(!needs_adoption(&d).unwrap(), "missing");
        std::fs::create_dir(&d).unwrap();
        assert!(!needs_adoption(&d).unwrap(), "empty");
        std::fs::write(d.join(".DS_Store"), b"x").unwrap();
        std::fs::create_dir(d.join(".lanscatter")).unwrap();
        assert!(!needs_adoption(&d).unwrap(), "only clutter and an empty state dir");
        std::fs::write(d.join("thesis.doc"), b"years of work").unwrap();
        assert!(needs_adoption(&d).unwrap(), "content without a marker");
        mark(&d, &Disk).unwrap();
        assert!(!needs_adoption(&d).unwrap(), "marked");
        assert_eq!(std::fs::read(marker_path(&d)).unwrap(), MARKER_TEXT);
        mark(&d, &Disk).unwrap();
        assert_eq!(std::fs::read(d.join("thesis.doc")).unwrap(), b"years of work", "marking touches nothing else");
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_state_dir_link_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (d, outside) = (t.path().join("mirror"), t.path().join("outside"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, d.join(".lanscatter")).unwrap();
        mark(&d, &Disk).unwrap();
        assert!(std::fs::symlink_metadata(d.join(".lanscatter")).unwrap().is_dir());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the link");
    }
}
