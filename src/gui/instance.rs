//! One tray app per user: an exclusive lock file, plus a note telling a second launch how to
//! reach the first.
//!
//! Two tray icons fighting over the same settings and folder would be confusing at best and two
//! peers writing one folder at worst. The first instance holds an OS file lock (`flock` /
//! `LockFileEx`, via `fs4`) on `gui.lock` beside the settings file for its whole life; the OS drops
//! it when the process dies, so a crash never leaves a stale lock (unlike a PID file). After its
//! settings page is up it writes `gui-instance.json` (pid, port, token). A second launch that
//! fails to take the lock reads that note and POSTs `/api/attention` to the first, which opens its
//! settings page, then exits saying so. The note is only readable by the user (0600 on Unix), as
//! the token in it guards the settings page.
//!
//! Rejected: a fixed localhost port as the lock (not per user on shared machines, collides with
//! anything else), a named pipe / Unix socket (two code paths for little gain).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot create or lock {}: {source}", .path.display())]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// What a running instance publishes for later launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub pid: u32,
    /// Settings page address (127.0.0.1:port).
    pub addr: SocketAddr,
    pub token: String,
}

/// Held for the life of the first instance; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    info_path: PathBuf,
}

pub enum Acquired {
    First(InstanceLock),
    /// Another instance holds the lock; its note, if it has written one yet.
    AlreadyRunning(Option<InstanceInfo>),
}

/// Try to become the one instance for settings in `dir`.
pub fn acquire(dir: &Path) -> Result<Acquired, InstanceError> {
    let lock_path = dir.join("gui.lock");
    let lerr = |source| InstanceError::Lock { path: lock_path.clone(), source };
    std::fs::create_dir_all(dir).map_err(lerr)?;
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(lerr)?;
    let info_path = dir.join("gui-instance.json");
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(Acquired::First(InstanceLock { _file: file, info_path })),
        Err(fs4::TryLockError::WouldBlock) => Ok(Acquired::AlreadyRunning(read_info(&info_path))),
        Err(fs4::TryLockError::Error(e)) => Err(lerr(e)),
    }
}

impl InstanceLock {
    /// Publish how to reach this instance.
    pub fn publish(&self, info: &InstanceInfo) -> Result<(), InstanceError> {
        let werr = |source| InstanceError::Write { path: self.info_path.clone(), source };
        let json = serde_json::to_vec(info).map_err(|e| werr(std::io::Error::other(e)))?;
        let mut opts = OpenOptions::new();
        opts.create(true).truncate(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&self.info_path).map_err(werr)?;
        f.write_all(&json).map_err(werr)
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info_path);
    }
}

fn read_info(path: &Path) -> Option<InstanceInfo> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Ask the running instance to show itself. Returns whether it answered 2xx.
/// Plain HTTP/1.1 over a std socket: one tiny request does not justify an HTTP client dependency.
pub fn ping(info: &InstanceInfo) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&info.addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "POST /api/attention HTTP/1.1\r\nHost: {}\r\nX-Lanscatter-Token: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            info.addr, info.token
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 2") || head.starts_with(b"HTTP/1.0 2"))
    };
    attempt().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_sees_first_and_its_note() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::First(lock) = acquire(dir.path()).unwrap() else { panic!("first acquire failed") };
        assert!(matches!(acquire(dir.path()).unwrap(), Acquired::AlreadyRunning(None)));
        let info = InstanceInfo { pid: 42, addr: "127.0.0.1:9".parse().unwrap(), token: "t".into() };
        lock.publish(&info).unwrap();
        match acquire(dir.path()).unwrap() {
            Acquired::AlreadyRunning(Some(got)) => assert_eq!(got, info),
            _ => panic!("expected the published note"),
        }
        drop(lock);
        assert!(matches!(acquire(dir.path()).unwrap(), Acquired::First(_)), "lock released on drop");
    }
}
