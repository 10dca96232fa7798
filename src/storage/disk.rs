//! [`Disk`], the real file system behind the [`Storage`] seam: positional reads and writes,
//! mtimes, and removal that never follows symlinks. (Folders are walked once, by the scan in
//! `crate::manifest`, which reports what it left out so a peer can remove it.)
//!
//! Peers write verified chunks straight into their final files at the chunk's offset (files
//! are pre-sized to their final length), so a sync needs no second copy of the data and a
//! `kill -9` leaves only files whose verified chunks are re-found by hashing on restart.
//! Everything here is blocking std I/O; the engines call it from `spawn_blocking`.
//! Positional I/O (`pread`/`pwrite`, `seek_read`/`seek_write` on Windows) lets many chunk
//! writes to one file proceed without sharing a cursor.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::{Disk, Storage};
use crate::manifest::Mtime;

/// Positioned read of exactly `buf.len()` bytes; `UnexpectedEof` if the file is shorter.
#[cfg(unix)]
pub fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
}

#[cfg(windows)]
pub fn read_exact_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than expected")),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn pwrite_all(f: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(buf, offset)
}

#[cfg(windows)]
fn pwrite_all(f: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

impl Storage for Disk {
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        read_from(open_leaf(path, Access::Read)?, offset, len)
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        pwrite_all(&open_leaf(path, Access::Write)?, data, offset)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = open_leaf(path, Access::Create)?;
        if f.metadata()?.len() != len {
            f.set_len(len)?;
        }
        Ok(())
    }

    fn set_mtime(&self, path: &Path, mtime: Mtime) -> io::Result<()> {
        let (dir, leaf) = parent_of(path)?;
        set_mtime_in(&dir, leaf, mtime, path)
    }

    fn mtime(&self, path: &Path) -> io::Result<Mtime> {
        let (dir, leaf) = parent_of(path)?;
        Ok(Mtime::from(dir.symlink_metadata(leaf)?.modified()?.into_std()))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        let found = parent_of(path).and_then(|(dir, leaf)| dir.symlink_metadata(leaf));
        match found {
            Ok(m) => Ok(Some(EntryKind::of_cap(m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let (start, names) = split(path)?;
        let mut dir = Dir::open_ambient_dir(start, ambient_authority())?;
        for name in names {
            dir = match dir.open_dir_nofollow(name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => match dir.create_dir(name) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => step(&dir, name, path)?,
                },
                Err(_) => step(&dir, name, path)?,
                Ok(d) => d,
            };
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_leaf) = parent_of(from)?;
        let (to_dir, to_leaf) = parent_of(to)?;
        // renameat replaces a link at `to` with the file: the link's target is never involved.
        from_dir.rename(from_leaf, &to_dir, to_leaf)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, leaf) = match parent_of(path) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match dir.symlink_metadata(leaf) {
            // cap-std's remove_dir_all unlinks links inside the tree, never what they point to.
            Ok(m) if m.is_dir() => dir.remove_dir_all(leaf),
            Ok(_) => dir.remove_file_or_symlink(leaf),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        open_leaf(path, Access::Write)?.sync_data()
    }

    fn sync_many(&self, files: &[&Path], dirs: &[&Path]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if files.len() + dirs.len() > 1 {
            return syncfs_many(files, dirs);
        }
        super::sync_each(self, files, dirs)
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        fs4::available_space(long_path(path))
    }

    fn create_sized_many(&self, files: &[(&Path, u64)]) -> Vec<io::Result<bool>> {
        Parents::each(files, |f| f.0, |dir, leaf, &(path, len)| create_sized_in(dir, leaf, len, path))
    }

    fn write_many(&self, writes: &[(&Path, u64, &[u8])]) -> Vec<io::Result<()>> {
        Parents::each(
            writes,
            |w| w.0,
            |dir, leaf, &(path, offset, data)| pwrite_all(&open_in(dir, leaf, Access::Write, path)?, data, offset),
        )
    }

    fn mtime_many(&self, paths: &[&Path]) -> Vec<io::Result<Mtime>> {
        Parents::each(paths, |p| p, |dir, leaf, _| Ok(Mtime::from(dir.symlink_metadata(leaf)?.modified()?.into_std())))
    }

    fn set_mtime_many(&self, files: &[(&Path, Mtime)]) -> Vec<io::Result<()>> {
        Parents::each(files, |f| f.0, |dir, leaf, &(path, mtime)| set_mtime_in(dir, leaf, mtime, path))
    }
}

/// Read exactly `len` bytes at `offset` of an open file.
fn read_from(mut f: File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let size = usize::try_from(len).map_err(|_| io::Error::other("chunk too large"))?;
    f.seek(SeekFrom::Start(offset))?;
    // read_to_end into reserved capacity skips zero-filling the buffer first (that memset
    // was ~6 % of a serving peer's CPU in the LAN bench).
    let mut buf = Vec::with_capacity(size);
    f.take(len).read_to_end(&mut buf)?;
    if buf.len() != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("file ends before byte {}", offset + len)));
    }
    Ok(buf)
}

/// Path-based reads that follow links above and inside the folder: the master's view of its
/// own source folder ([`super::ReadOnlyDisk`]), which it never writes and which may well sit
/// behind a symlink (`/tmp` on macOS). The scan already left out links inside it.
pub(super) mod following {
    use super::*;

    pub fn read_at(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        read_from(File::open(path)?, offset, len)
    }

    pub fn mtime(path: &Path) -> io::Result<Mtime> {
        Ok(Mtime::from(std::fs::symlink_metadata(path)?.modified()?))
    }

    pub fn kind(path: &Path) -> io::Result<Option<EntryKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(EntryKind::of(m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A symbolic link (or Windows reparse point) where the folder needs a plain file or dir:
/// foreign content, never written through. The peer's next layout removes the link itself.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is a symbolic link: lanscatter never writes through links; it removes the link and syncs what the master has"
)]
pub struct LinkInPath(pub PathBuf);

/// True if `e` is a [`LinkInPath`] refusal.
pub fn is_link_in_path(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LinkInPath>())
}

fn link_error(path: &Path) -> io::Error {
    io::Error::other(LinkInPath(path.to_path_buf()))
}

fn is_link(dir: &Dir, name: &OsStr) -> bool {
    dir.symlink_metadata(name).is_ok_and(|m| m.file_type().is_symlink())
}

/// Open directory `name` inside `dir` without following a link; a link is a [`LinkInPath`].
fn step(dir: &Dir, name: &OsStr, whole: &Path) -> io::Result<Dir> {
    dir.open_dir_nofollow(name).map_err(|e| if is_link(dir, name) { link_error(whole) } else { e })
}

/// Split an absolute path into where the walk starts (the file-system root or drive) and the
/// names below it. Anything but plain names (`.`, `..`) is refused: storage paths come from
/// `crate::paths::to_local` and never hold them.
fn split(path: &Path) -> io::Result<(PathBuf, Vec<&OsStr>)> {
    let invalid =
        || io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a plain absolute path", path.display()));
    if !path.is_absolute() {
        return Err(invalid());
    }
    let mut start = PathBuf::new();
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir if names.is_empty() => start.push(c.as_os_str()),
            Component::Normal(name) => names.push(name),
            _ => return Err(invalid()),
        }
    }
    Ok((long_path(&start), names))
}

/// The directory holding `path`'s last name, reached from the file-system root one name at
/// a time without following a link at any of them, and that last name.
///
/// Why from the root and not from the sync dir: the seam takes absolute paths, and the peer
/// canonicalizes its folder at start (`crate::peer::check_dst`), so no legitimate path it
/// hands here has a link anywhere; a link that shows up later, above or inside the folder,
/// was planted and is refused.
fn parent_of(path: &Path) -> io::Result<(Dir, &OsStr)> {
    let (start, names) = split(path)?;
    let Some((leaf, dirs)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no entry", path.display())));
    };
    #[cfg(target_os = "linux")]
    if let Some(dir) = path.parent().and_then(open_dir_no_links) {
        return Ok((dir?, leaf));
    }
    let mut dir = Dir::open_ambient_dir(start, ambient_authority())?;
    for name in dirs {
        dir = step(&dir, name, path)?;
    }
    Ok((dir, leaf))
}

/// [`parent_of`]'s walk in one system call on Linux 5.6+: `openat2` with `RESOLVE_NO_SYMLINKS`
/// refuses a link at any component of the absolute path, which is what the walk does one name
/// at a time (6 opens and 6 closes for `/dev/shm/p0/d000/e000`, per directory and batch call,
/// was most of a small-file peer's system time). `None` sends the caller to the walk: an old
/// kernel or a sandbox without `openat2`, and a refused link, whose error the walk words
/// ([`LinkInPath`], naming the file).
#[cfg(target_os = "linux")]
fn open_dir_no_links(dir: &Path) -> Option<io::Result<Dir>> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: open_how is plain integers (non-exhaustive, so it cannot be built field by field
    // outside libc); all-zero is its documented "no flags" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `name` is a NUL-terminated path and `how` a valid open_how of the size passed; the
    // kernel only reads both.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL | libc::ELOOP | libc::EXDEV) => None,
            _ => Some(Err(e)),
        };
    }
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Some(Ok(Dir::from_std_file(unsafe { File::from_raw_fd(fd) })))
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
    /// Write, creating the file if missing (never truncating).
    Create,
    /// Write, creating the file; fails with `AlreadyExists` if anything is at the name.
    CreateNew,
}

/// Open the file at `path` without following a link at any component: `O_NOFOLLOW` on the
/// last one (Unix), and on every OS a check of the opened handle (a reparse point on Windows).
fn open_leaf(path: &Path, access: Access) -> io::Result<File> {
    let (dir, leaf) = parent_of(path)?;
    open_in(&dir, leaf, access, path)
}

/// Open `leaf` inside `dir` as [`open_leaf`] does (`whole` names it in a link error).
fn open_in(dir: &Dir, leaf: &OsStr, access: Access, whole: &Path) -> io::Result<File> {
    let mut opts = cap_std::fs::OpenOptions::new();
    match access {
        Access::Read => opts.read(true),
        Access::Write => opts.write(true),
        Access::Create => opts.write(true).create(true).truncate(false),
        Access::CreateNew => opts.write(true).create_new(true),
    };
    opts.follow(FollowSymlinks::No);
    match dir.open_with(leaf, &opts) {
        // O_NOFOLLOW already refused a link at the leaf on Unix; elsewhere the handle is asked.
        #[cfg(not(unix))]
        Ok(f) if f.metadata()?.file_type().is_symlink() => Err(link_error(whole)),
        Ok(f) => Ok(f.into_std()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if is_link(dir, leaf) => Err(link_error(whole)),
        Err(e) => Err(e),
    }
}

/// The parent directories of one batch of files, each opened once (the no-link walk from the
/// root, [`parent_of`]) and reused for the next file in the same directory: a batch's files
/// share a few directories, and the walk per operation was most of what a small file cost
/// (4-5 walks of every component per file). Lives for one call only, so a directory swapped
/// for a link between batches is met by the next batch's walk; within a batch the handle
/// keeps pointing at the directory that was inside the folder when the batch began.
#[derive(Default)]
struct Parents {
    /// The last parent's path bytes (compared as bytes, see [`Parents::of`]) and handle.
    last: Option<(std::ffi::OsString, Dir)>,
}

impl Parents {
    /// `op` on each item's (parent directory, last name), per item its result (one failure does
    /// not stop the others). Items are visited grouped by parent, so each directory is walked
    /// once per call whatever order the batch came in (the planner's order mixes directories:
    /// visited as given, a batch of 1,000 small files walked ~3 paths per file).
    fn each<T, R>(
        items: &[T],
        path: impl Fn(&T) -> &Path,
        mut op: impl FnMut(&Dir, &OsStr, &T) -> io::Result<R>,
    ) -> Vec<io::Result<R>> {
        // Each parent found once (`Path::parent` parses components), compared as bytes.
        let parents: Vec<Option<&OsStr>> = items.iter().map(|i| path(i).parent().map(Path::as_os_str)).collect();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| parents[i]);
        let mut parents = Parents::default();
        let mut results: Vec<Option<io::Result<R>>> = std::iter::repeat_with(|| None).take(items.len()).collect();
        for i in order {
            let item = &items[i];
            results[i] = Some(parents.of(path(item)).and_then(|(dir, leaf)| op(dir, leaf, item)));
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(io::Error::other("a batch item was skipped")))).collect()
    }

    /// The directory holding `path`'s last name, and that name.
    fn of<'p>(&mut self, path: &'p Path) -> io::Result<(&Dir, &'p OsStr)> {
        let (Some(leaf), Some(parent)) = (path.file_name(), path.parent().map(Path::as_os_str)) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no entry", path.display())));
        };
        // Compared as bytes, not as `Path`s (component by component was ~10 % of a small-file
        // peer's CPU): the same parent is the same bytes, and a parent is only ever reached
        // by `parent_of`, which refuses anything but plain names.
        let hit = matches!(&self.last, Some((p, _)) if p.as_os_str() == parent);
        if !hit {
            self.last = Some((parent.to_os_string(), parent_of(path)?.0));
        }
        match &self.last {
            Some((_, dir)) => Ok((dir, leaf)),
            None => Err(io::Error::other("parent directory cache is empty")),
        }
    }
}

/// Create `leaf` in `dir` if missing and give it `len` bytes (bytes inside `len` are kept);
/// true if it was created. One open either way, no walk: `O_EXCL` first, which a new file
/// (the common case of a first sync) passes and an existing one or a link fails.
fn create_sized_in(dir: &Dir, leaf: &OsStr, len: u64, whole: &Path) -> io::Result<bool> {
    match open_in(dir, leaf, Access::CreateNew, whole) {
        Ok(f) => {
            if len > 0 {
                f.set_len(len)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = open_in(dir, leaf, Access::Create, whole)?;
            if f.metadata()?.len() != len {
                f.set_len(len)?;
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Set the mtime of `leaf` in `dir` by name, without opening it: `fstatat` to refuse a link
/// ([`LinkInPath`]), then `utimensat` with `AT_SYMLINK_NOFOLLOW` (two calls instead of open,
/// set, close; a link planted between the two gets its own time, its target is never touched).
/// The access time is left alone. `whole` names the file in a link error.
fn set_mtime_in(dir: &Dir, leaf: &OsStr, mtime: Mtime, whole: &Path) -> io::Result<()> {
    if dir.symlink_metadata(leaf)?.file_type().is_symlink() {
        return Err(link_error(whole));
    }
    let modified = cap_std::time::SystemTime::from_std(mtime.to_system_time());
    dir.set_symlink_times(leaf, None, Some(cap_fs_ext::SystemTimeSpec::from(modified)))
}

/// `C:\x` → `\\?\C:\x` and `\\srv\share\x` → `\\?\UNC\srv\share\x`: the verbatim form Windows
/// accepts past 260 characters. Paths already verbatim, relative, or not Windows-shaped are
/// returned unchanged. Pure string work, so every OS tests it.
pub fn verbatim(path: &str) -> String {
    let b = path.as_bytes();
    if path.starts_with(r"\\?\") || path.starts_with(r"\\.\") {
        path.to_string()
    } else if let Some(unc) = path.strip_prefix(r"\\") {
        format!(r"\\?\UNC\{unc}")
    } else if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        format!(r"\\?\{path}")
    } else {
        path.to_string()
    }
}

/// The path as the OS should get it: verbatim on Windows (long paths), unchanged elsewhere.
fn long_path(path: &Path) -> PathBuf {
    #[cfg(windows)]
    if let Some(s) = path.to_str() {
        return PathBuf::from(verbatim(s));
    }
    path.to_path_buf()
}

/// Flush the entries of directory `path` (the [`Storage::sync_dir`] of the real disk).
pub fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(path)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// [`Storage::sync_many`] on Linux: one `syncfs` per file system the entries are on, which
/// writes back every dirty file and directory there in one journal commit. A file's file
/// system is asked of its entry (`fstatat`, no link followed, through the batch's parent
/// handles: no walk per file), and a file is only opened for the first of its file system.
#[cfg(target_os = "linux")]
fn syncfs_many(files: &[&Path], dirs: &[&Path]) -> io::Result<()> {
    use cap_std::fs::MetadataExt;
    use std::os::fd::AsRawFd;
    let mut devices: Vec<(u64, File)> = Vec::new();
    let found = Parents::each(
        files,
        |p| p,
        |dir, leaf, path| {
            let meta = dir.symlink_metadata(leaf)?;
            if meta.file_type().is_symlink() {
                return Err(link_error(path));
            }
            if !devices.iter().any(|(d, _)| *d == meta.dev()) {
                devices.push((meta.dev(), open_in(dir, leaf, Access::Read, path)?));
            }
            Ok(())
        },
    );
    found.into_iter().collect::<io::Result<Vec<()>>>()?;
    for dir in dirs {
        let file = File::open(dir)?;
        let dev = std::os::unix::fs::MetadataExt::dev(&file.metadata()?);
        if !devices.iter().any(|(d, _)| *d == dev) {
            devices.push((dev, file));
        }
    }
    for (_, file) in &devices {
        // SAFETY: syncfs only reads the descriptor, which `file` keeps open for the call.
        if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Kind of a directory entry, from `symlink_metadata` (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Symlink, fifo, socket, device: never part of a synced tree.
    Other,
}

impl EntryKind {
    /// From the two questions both `std` and `cap-std` file types answer.
    fn from_type(is_dir: bool, is_file: bool) -> Self {
        match (is_dir, is_file) {
            (true, _) => EntryKind::Dir,
            (_, true) => EntryKind::File,
            _ => EntryKind::Other,
        }
    }

    fn of_cap(ft: cap_std::fs::FileType) -> Self {
        Self::from_type(ft.is_dir(), ft.is_file())
    }

    fn of(ft: std::fs::FileType) -> Self {
        Self::from_type(ft.is_dir(), ft.is_file())
    }
}

/// True for "no space left on device" / "disk quota exceeded" style errors.
pub fn is_disk_full(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::StorageFull {
        return true;
    }
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        return true;
    }
    #[cfg(windows)]
    if matches!(e.raw_os_error(), Some(112) | Some(39)) {
        return true;
    }
    false
}

/// True when the file system refused the *name* (FAT or SMB given a name Windows cannot hold,
/// such as `a:b`): the peer skips that file with a message instead of failing the sync.
pub fn is_name_rejected(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINVAL) {
        return true;
    }
    // ERROR_INVALID_NAME, ERROR_BAD_PATHNAME
    #[cfg(windows)]
    if matches!(e.raw_os_error(), Some(123) | Some(161)) {
        return true;
    }
    let _ = e;
    false
}

/// True when another program holds the file: a Windows sharing or lock violation (raw OS
/// errors 32 and 33), or "resource busy" elsewhere. Not a failure of the sync: the peer skips
/// the file and retries it later.
pub fn is_locked(e: &io::Error) -> bool {
    #[cfg(windows)]
    if matches!(e.raw_os_error(), Some(32) | Some(33)) {
        return true;
    }
    e.kind() == io::ErrorKind::ResourceBusy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ChunkHash;

    #[test]
    fn positional_write_read_hash_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let p = std::fs::canonicalize(d.path()).unwrap().join("f");
        Disk.set_len(&p, 10).unwrap();
        Disk.write_at(&p, 4, b"abc").unwrap();
        assert_eq!(Disk.read_at(&p, 3, 5).unwrap(), b"\0abc\0");
        let h = ChunkHash::of(b"abc");
        assert!(super::super::read_verified(&Disk, &p, 4, 3, &h).unwrap().is_some());
        assert!(super::super::read_verified(&Disk, &p, 3, 3, &h).unwrap().is_none());
        let f = File::open(&p).unwrap();
        let mut buf = [0u8; 3];
        read_exact_at(&f, &mut buf, 4).unwrap();
        assert_eq!(&buf, b"abc");
        assert_eq!(read_exact_at(&f, &mut buf, 8).unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "past EOF");
        Disk.set_len(&p, 7).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 7);
        let m = Mtime { secs: 1_500_000_000, nanos: 123_000_000 };
        Disk.set_mtime(&p, m).unwrap();
        assert_eq!(Disk.mtime(&p).unwrap(), m);
        assert_eq!(Disk.kind(&p).unwrap(), Some(EntryKind::File));
        assert_eq!(Disk.kind(&d.path().join("none")).unwrap(), None);
        Disk.sync(&p).unwrap();
        assert!(Disk.free_space(d.path()).unwrap() > 0);
    }

    #[cfg(unix)]
    #[test]
    fn removing_a_link_keeps_its_target() {
        let t = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/ü.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("link")).unwrap();
        assert_eq!(Disk.kind(&d.join("link")).unwrap(), Some(EntryKind::Other));
        Disk.remove(&d.join("link")).unwrap();
        assert!(d.join("a/b/ü.txt").exists());
        Disk.remove(&d.join("a")).unwrap();
        assert_eq!(Disk.kind(&d.join("a")).unwrap(), None, "a whole tree goes");
        Disk.remove(&d.join("a")).unwrap();
    }

    /// A link planted at a middle component (a dir link) and at the leaf (a file link): every
    /// write through either is refused as [`LinkInPath`], reads too, and the targets outside
    /// stay byte-identical; removing goes for the link only.
    #[cfg(unix)]
    #[test]
    fn no_operation_follows_a_link_at_any_component() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), b"outside").unwrap();
        let dst = root.join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        std::os::unix::fs::symlink(&outside, dst.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), dst.join("filelink")).unwrap();
        let through_dir = dst.join("dirlink/f");
        let new_in_dir = dst.join("dirlink/new/x");
        let leaf = dst.join("filelink");
        for p in [&through_dir, &leaf] {
            assert!(is_link_in_path(&Disk.write_at(p, 0, b"XX").unwrap_err()), "{p:?}");
            assert!(is_link_in_path(&Disk.set_len(p, 1).unwrap_err()), "{p:?}");
            assert!(is_link_in_path(&Disk.set_mtime(p, Mtime::default()).unwrap_err()), "{p:?}");
            assert!(is_link_in_path(&Disk.sync(p).unwrap_err()), "{p:?}");
            assert!(is_link_in_path(&Disk.read_at(p, 0, 2).unwrap_err()), "{p:?}");
        }
        let msg = Disk.set_len(&through_dir, 1).unwrap_err().to_string();
        assert!(msg.contains("symbolic link") && msg.contains("dirlink"), "{msg}");
        assert!(is_link_in_path(&Disk.create_dir_all(&new_in_dir).unwrap_err()));
        assert!(is_link_in_path(&Disk.rename(&dst.join("filelink"), &dst.join("dirlink/g")).unwrap_err()));
        assert!(Disk.remove(&through_dir).is_err(), "nothing is removed through a link");
        assert_eq!(Disk.kind(&leaf).unwrap(), Some(EntryKind::Other), "the leaf link itself is seen");
        // A plain file renamed over a link replaces the link, not its target.
        std::fs::write(dst.join("plain"), b"mine").unwrap();
        Disk.rename(&dst.join("plain"), &leaf).unwrap();
        assert_eq!(std::fs::read(&leaf).unwrap(), b"mine");
        Disk.remove(&dst.join("dirlink")).unwrap();
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside", "the target outside is untouched");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing was created outside");
        Disk.create_dir_all(&dst.join("dirlink/new")).unwrap();
        assert!(std::fs::symlink_metadata(dst.join("dirlink")).unwrap().is_dir(), "a real dir now");
    }

    /// The batch methods do what their one-file versions do, across directories, and report
    /// per file: created or not, a link at the leaf or in the middle refused for that file
    /// alone.
    #[test]
    fn batch_methods_match_the_single_ones_and_refuse_links_per_file() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/old"), b"keep me").unwrap();
        let (new_a, old_a, new_b) = (root.join("a/new"), root.join("a/old"), root.join("b/new"));
        let sized = Disk.create_sized_many(&[(&new_a, 3), (&old_a, 4), (&new_b, 0)]);
        assert_eq!(sized.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(std::fs::read(&old_a).unwrap(), b"keep", "cut to its length, bytes inside kept");
        assert_eq!(std::fs::read(&new_a).unwrap(), b"\0\0\0");
        let written = Disk.write_many(&[(&new_a, 1, b"xy"), (&old_a, 0, b"K"), (&new_a, 0, b"w")]);
        assert!(written.iter().all(Result::is_ok));
        assert_eq!(std::fs::read(&new_a).unwrap(), b"wxy");
        assert_eq!(std::fs::read(&old_a).unwrap(), b"Keep");
        let m = Mtime { secs: 1_600_000_000, nanos: 5_000 };
        assert!(Disk.set_mtime_many(&[(&new_a, m), (&new_b, m)]).iter().all(Result::is_ok));
        let got = Disk.mtime_many(&[&new_a, &old_a, &new_b]);
        assert_eq!(got[0].as_ref().unwrap(), &m);
        assert_ne!(got[1].as_ref().unwrap(), &m);
        assert_eq!(got[2].as_ref().unwrap(), &m);
        #[cfg(unix)]
        {
            let outside = root.join("outside");
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::write(outside.join("f"), b"outside").unwrap();
            std::os::unix::fs::symlink(&outside, root.join("a/dirlink")).unwrap();
            std::os::unix::fs::symlink(outside.join("f"), root.join("a/filelink")).unwrap();
            let (through, leaf) = (root.join("a/dirlink/f"), root.join("a/filelink"));
            let sized = Disk.create_sized_many(&[(&through, 1), (&leaf, 1), (&new_a, 3)]);
            assert!(is_link_in_path(sized[0].as_ref().unwrap_err()));
            assert!(is_link_in_path(sized[1].as_ref().unwrap_err()));
            assert!(!sized[2].as_ref().unwrap(), "the file after them is still done");
            let written = Disk.write_many(&[(&through, 0, b"XX"), (&leaf, 0, b"XX")]);
            assert!(written.iter().all(|r| is_link_in_path(r.as_ref().unwrap_err())));
            assert!(Disk.set_mtime_many(&[(&through, m), (&leaf, m)]).iter().all(|r| r.is_err()));
            assert!(Disk.sync_many(&[&through, &new_a], &[]).is_err(), "no flush through a link");
            assert!(Disk.sync_many(&[&new_a, &new_b], &[&root.join("a")]).is_ok());
            assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside", "the target outside is untouched");
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing was created outside");
        }
    }

    /// A batch mixing directories (as the planner orders chunks) is done grouped by directory,
    /// and every result still lands at its own item.
    #[test]
    fn batch_results_stay_with_their_items_across_interleaved_directories() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        for dir in ["a", "b"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let names = ["a/1", "b/2", "gone/3", "a/4", "b/5", "a/6"];
        let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        let list: Vec<(&Path, u64)> = paths.iter().enumerate().map(|(i, p)| (p.as_path(), i as u64 + 1)).collect();
        let sized = Disk.create_sized_many(&list);
        for (i, r) in sized.iter().enumerate() {
            match i {
                2 => assert_eq!(r.as_ref().unwrap_err().kind(), io::ErrorKind::NotFound),
                _ => assert_eq!(std::fs::metadata(&paths[i]).unwrap().len(), i as u64 + 1, "{}", names[i]),
            }
        }
        let writes: Vec<(&Path, u64, &[u8])> =
            paths.iter().map(|p| (p.as_path(), 0, p.as_os_str().as_encoded_bytes())).collect();
        let written = Disk.write_many(&writes);
        assert!(written[2].is_err() && written.iter().filter(|r| r.is_ok()).count() == 5);
        for i in [0, 1, 3, 4, 5] {
            assert_eq!(std::fs::read(&paths[i]).unwrap(), paths[i].as_os_str().as_encoded_bytes(), "{}", names[i]);
        }
    }

    #[test]
    fn only_plain_absolute_paths_are_taken() {
        for p in ["relative/x", "/a/../b"] {
            assert_eq!(Disk.set_len(Path::new(p), 0).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{p}");
        }
    }

    #[test]
    fn windows_paths_become_verbatim_for_long_names() {
        assert_eq!(verbatim(r"C:\Users\a\sync"), r"\\?\C:\Users\a\sync");
        assert_eq!(verbatim(r"\\srv\share\x"), r"\\?\UNC\srv\share\x");
        assert_eq!(verbatim(r"\\?\C:\already"), r"\\?\C:\already");
        assert_eq!(verbatim("/unix/path"), "/unix/path");
        assert_eq!(verbatim(r"C:relative"), r"C:relative");
        let long = format!(r"D:\{}", "x\\".repeat(200));
        assert!(verbatim(&long).starts_with(r"\\?\D:\x\x"));
    }

    #[test]
    fn a_busy_file_is_locked_and_a_full_disk_is_not() {
        assert!(is_locked(&io::Error::from(io::ErrorKind::ResourceBusy)));
        assert!(!is_locked(&io::Error::from(io::ErrorKind::StorageFull)));
        #[cfg(windows)]
        assert!(is_locked(&io::Error::from_raw_os_error(32)) && is_locked(&io::Error::from_raw_os_error(33)));
    }
}
