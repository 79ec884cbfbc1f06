//! `cp`: files and directories between the host and a container's root, running or not.
//!
//! The container's side is untrusted: its files may be symbolic links planted to lead out of
//! its root (`/www -> /etc` of the host). So its path is resolved inside the root, as the
//! container would see it (chapter 1's `open_in_root`, openat2's `RESOLVE_IN_ROOT`), and
//! everything below it is read or made relative to directory descriptors with `O_NOFOLLOW`:
//! a link is copied as a link, never followed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use step01::mounts::{open_in_root, Create};
use step01::{Error, Result};

/// Who owns what is copied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `-a`: as in the source.
    Keep,
    /// As the copier (root): Docker's default.
    Root,
}

// ANCHOR: into_container
/// Copy the host's `source` into the container whose root is `root`, at `target` (absolute,
/// inside it), with Docker's rules: into `target` when it is a directory, as `target`
/// otherwise; `source/.` copies a directory's contents.
pub fn into_container(source: &Path, root: &Path, target: &Path, owner: Owner) -> Result<()> {
    let meta = std::fs::symlink_metadata(source).map_err(|e| Error::runtime(format!("cannot copy {}: {e}", source.display())))?;
    let contents_only = source.as_os_str().as_bytes().ends_with(b"/.");
    // Is the target an existing directory in the container?
    let (dir, name) = match open_in_root(root, target, Create::Nothing) {
        Ok(found) if is_directory(&found) => {
            let dir = reopen_directory(&found)?;
            match (contents_only, source.file_name()) {
                (true, _) | (_, None) => (dir, None),
                (false, Some(name)) => (dir, Some(name.to_os_string())),
            }
        }
        _ => {
            if target.as_os_str().as_bytes().ends_with(b"/") {
                return Err(Error::runtime(format!("the directory {} does not exist in the container", target.display())));
            }
            let parent = target.parent().unwrap_or(Path::new("/"));
            let found = open_in_root(root, parent, Create::Nothing).map_err(|_| Error::runtime(format!("the directory {} does not exist in the container", parent.display())))?;
            if !is_directory(&found) {
                return Err(Error::runtime(format!("{} is not a directory in the container", parent.display())));
            }
            (reopen_directory(&found)?, target.file_name().map(OsStr::to_os_string))
        }
    };
    match name {
        Some(name) => copy_in(source, &meta, &dir, &name, owner),
        None if meta.is_dir() => copy_dir_contents_in(source, &dir, owner),
        None => Err(Error::runtime(format!("cannot copy the file {} onto a directory's contents", source.display()))),
    }
}
// ANCHOR_END: into_container

/// Make `name` in the directory `dir` (a descriptor) a copy of `source`.
fn copy_in(source: &Path, meta: &std::fs::Metadata, dir: &OwnedFd, name: &OsStr, owner: Owner) -> Result<()> {
    let c_name = c_string(name.as_bytes())?;
    let (uid, gid) = match owner {
        Owner::Keep => (meta.uid(), meta.gid()),
        Owner::Root => (0, 0),
    };
    let failed = |what: &str, errno: nix::errno::Errno| Error::syscall(format!("cannot {what} {} in the container", Path::new(name).display()), errno);
    // Safety (each libc call below): *at calls on a live directory descriptor and a
    // NUL-terminated name; descriptors returned are owned at once.
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(source).map_err(|e| Error::runtime(format!("cannot read the link {}: {e}", source.display())))?;
        unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) };
        let c_target = c_string(target.as_os_str().as_bytes())?;
        if unsafe { libc::symlinkat(c_target.as_ptr(), dir.as_raw_fd(), c_name.as_ptr()) } < 0 {
            return Err(failed("make the link", nix::errno::Errno::last()));
        }
        unsafe { libc::fchownat(dir.as_raw_fd(), c_name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
        return Ok(());
    }
    if meta.is_dir() {
        if unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o700) } < 0 && nix::errno::Errno::last() != nix::errno::Errno::EEXIST {
            return Err(failed("make the directory", nix::errno::Errno::last()));
        }
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            // ELOOP: the container has a link there; copying through it could lead anywhere.
            return Err(failed("enter the directory (is it a link?)", nix::errno::Errno::last()));
        }
        let child = unsafe { OwnedFd::from_raw_fd(fd) };
        copy_dir_contents_in(source, &child, owner)?;
        unsafe {
            libc::fchown(child.as_raw_fd(), uid, gid);
            libc::fchmod(child.as_raw_fd(), meta.permissions().mode() & 0o7777);
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Err(Error::runtime(format!("cannot copy {}: only files, directories and links are copied", source.display())));
    }
    // Whatever is there is replaced, not written through: a fifo planted there would hang
    // the copy, a device node would be written from the host.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) } < 0 && nix::errno::Errno::last() == nix::errno::Errno::EISDIR {
        return Err(Error::runtime(format!("cannot copy the file {} over the directory {} in the container", source.display(), Path::new(name).display())));
    }
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(failed("write", nix::errno::Errno::last()));
    }
    let mut to = unsafe { File::from_raw_fd(fd) };
    let mut from = File::open(source).map_err(|e| Error::runtime(format!("cannot read {}: {e}", source.display())))?;
    std::io::copy(&mut from, &mut to).map_err(|e| Error::runtime(format!("cannot copy {}: {e}", source.display())))?;
    unsafe {
        libc::fchown(to.as_raw_fd(), uid, gid);
        libc::fchmod(to.as_raw_fd(), meta.permissions().mode() & 0o7777);
    }
    Ok(())
}

fn copy_dir_contents_in(source: &Path, dir: &OwnedFd, owner: Owner) -> Result<()> {
    let entries = std::fs::read_dir(source).map_err(|e| Error::runtime(format!("cannot read {}: {e}", source.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::runtime(format!("cannot read {}: {e}", source.display())))?;
        let meta = entry.metadata().map_err(|e| Error::runtime(format!("cannot read {}: {e}", entry.path().display())))?;
        copy_in(&entry.path(), &meta, dir, &entry.file_name(), owner)?;
    }
    Ok(())
}

// ANCHOR: out_of_container
/// Copy `source` (absolute, inside the container whose root is `root`) to the host's
/// `target`: into it when it is a directory, as it otherwise. A link in the container is
/// copied as a link (its last component too), never followed out of the root.
pub fn out_of_container(root: &Path, source: &Path, target: &Path, owner: Owner) -> Result<()> {
    let missing = || Error::runtime(format!("{} does not exist in the container", source.display()));
    if source.as_os_str().as_bytes().ends_with(b"/.") {
        // A directory's contents, into `target`.
        let found = open_in_root(root, source, Create::Nothing).map_err(|_| missing())?;
        if !is_directory(&found) {
            return Err(Error::runtime(format!("{} is not a directory in the container", source.display())));
        }
        let dir = reopen_directory(&found)?;
        std::fs::create_dir_all(target).map_err(|e| Error::runtime(format!("cannot make {}: {e}", target.display())))?;
        for entry in list(&dir)? {
            let stat = stat_at(&dir, &entry).map_err(|errno| Error::syscall("cannot read a file of the container", errno))?;
            copy_out(&dir, &entry, &stat, &target.join(OsStr::from_bytes(&entry)), owner)?;
        }
        return Ok(());
    }
    let name = source.file_name().ok_or_else(|| Error::runtime("give a file or directory of the container (or DIR/. for a directory's contents)"))?;
    let found_parent = open_in_root(root, source.parent().unwrap_or(Path::new("/")), Create::Nothing).map_err(|_| missing())?;
    let parent_dir = reopen_directory(&found_parent)?;
    let stat = stat_at(&parent_dir, name.as_bytes()).map_err(|_| missing())?;
    let destination = if target.is_dir() { target.join(name) } else { target.to_path_buf() };
    copy_out(&parent_dir, name.as_bytes(), &stat, &destination, owner)
}
// ANCHOR_END: out_of_container

fn copy_out(dir: &OwnedFd, name: &[u8], stat: &libc::stat, destination: &Path, owner: Owner) -> Result<()> {
    let c_name = c_string(name)?;
    let shown = String::from_utf8_lossy(name).into_owned();
    let kind = stat.st_mode & libc::S_IFMT;
    let chown = |path: &Path| {
        if owner == Owner::Keep {
            let _ = std::os::unix::fs::lchown(path, Some(stat.st_uid), Some(stat.st_gid));
        }
    };
    // Safety (each libc call below): *at calls on a live directory descriptor and a
    // NUL-terminated name; descriptors returned are owned at once.
    match kind {
        libc::S_IFLNK => {
            let mut buffer = vec![0u8; 4096];
            let length = unsafe { libc::readlinkat(dir.as_raw_fd(), c_name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
            if length < 0 {
                return Err(Error::syscall(format!("cannot read the link {shown}"), nix::errno::Errno::last()));
            }
            buffer.truncate(length as usize);
            let _ = std::fs::remove_file(destination);
            std::os::unix::fs::symlink(OsString::from_vec(buffer), destination).map_err(|e| Error::runtime(format!("cannot make {}: {e}", destination.display())))?;
            chown(destination);
        }
        libc::S_IFDIR => {
            let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(Error::syscall(format!("cannot read the directory {shown}"), nix::errno::Errno::last()));
            }
            let child = unsafe { OwnedFd::from_raw_fd(fd) };
            std::fs::create_dir_all(destination).map_err(|e| Error::runtime(format!("cannot make {}: {e}", destination.display())))?;
            for entry in list(&child)? {
                let stat = stat_at(&child, &entry).map_err(|errno| Error::syscall("cannot read a file of the container", errno))?;
                copy_out(&child, &entry, &stat, &destination.join(OsStr::from_bytes(&entry)), owner)?;
            }
            std::fs::set_permissions(destination, std::fs::Permissions::from_mode(stat.st_mode & 0o7777)).map_err(|e| Error::runtime(format!("cannot set {}'s mode: {e}", destination.display())))?;
            chown(destination);
        }
        libc::S_IFREG => {
            let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(Error::syscall(format!("cannot read {shown}"), nix::errno::Errno::last()));
            }
            let mut from = unsafe { File::from_raw_fd(fd) };
            let mut to = File::create(destination).map_err(|e| Error::runtime(format!("cannot write {}: {e}", destination.display())))?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = from.read(&mut buffer).map_err(|e| Error::runtime(format!("cannot read {shown}: {e}")))?;
                if n == 0 {
                    break;
                }
                to.write_all(&buffer[..n]).map_err(|e| Error::runtime(format!("cannot write {}: {e}", destination.display())))?;
            }
            std::fs::set_permissions(destination, std::fs::Permissions::from_mode(stat.st_mode & 0o7777)).map_err(|e| Error::runtime(format!("cannot set {}'s mode: {e}", destination.display())))?;
            chown(destination);
        }
        _ => {} // devices, fifos and sockets are not copied
    }
    Ok(())
}

/// The names in a directory (a descriptor), without `.` and `..`.
fn list(dir: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let entries = std::fs::read_dir(&path).map_err(|e| Error::runtime(format!("cannot list a directory of the container: {e}")))?;
    Ok(entries.flatten().map(|entry| entry.file_name().into_vec()).collect())
}

fn stat_at(dir: &OwnedFd, name: &[u8]) -> std::result::Result<libc::stat, nix::errno::Errno> {
    let c_name = CString::new(name).map_err(|_| nix::errno::Errno::EINVAL)?;
    // Safety: fstatat fills `stat`; the name is NUL-terminated.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::fstatat(dir.as_raw_fd(), c_name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
    nix::errno::Errno::result(done).map(|_| stat)
}

/// Whether an `O_PATH` descriptor is a directory.
fn is_directory(fd: &OwnedFd) -> bool {
    // Safety: fstat fills `stat` for a live descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) }) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// An `O_PATH` directory descriptor opened for real (to list it, and to make files in it).
fn reopen_directory(fd: &OwnedFd) -> Result<OwnedFd> {
    let c_path = c_string(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    // Safety: open of a NUL-terminated path; the descriptor returned is owned at once.
    let reopened = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if reopened < 0 {
        return Err(Error::syscall("cannot open a directory of the container", nix::errno::Errno::last()));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(reopened) })
}

fn c_string(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::runtime("a path contains a NUL byte"))
}
