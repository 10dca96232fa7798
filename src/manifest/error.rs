//! Why a scan failed: shared by the walk and the scan around it.
//!
//! Its own module so that [`super::walk`] can report errors without importing the scanner that
//! calls it (the two would otherwise import each other).

use std::io;
use std::path::{Path, PathBuf};

use super::chunking::ChunkSizeError;

/// Why a scan failed. No partial manifest is ever returned in these cases.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("folder {0} does not exist; check the path")]
    NotFound(PathBuf),
    #[error("{0} is not a folder; give the folder to index, not a file inside it")]
    NotADir(PathBuf),
    #[error("cannot read {0}: permission denied; give this user read access (or skip unreadable entries, which marks the index incomplete)")]
    PermissionDenied(PathBuf),
    #[error(
        "{path} kept changing while it was hashed ({attempts} attempts); stop whatever is writing it and index again"
    )]
    KeepsChanging { path: PathBuf, attempts: usize },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    BadChunkSize(#[from] ChunkSizeError),
    #[error("cannot start {threads} hashing threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
}

impl ScanError {
    pub(crate) fn from_io(path: &Path, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => ScanError::NotFound(path.to_path_buf()),
            io::ErrorKind::PermissionDenied => ScanError::PermissionDenied(path.to_path_buf()),
            _ => ScanError::Io { path: path.to_path_buf(), source: e },
        }
    }
}
