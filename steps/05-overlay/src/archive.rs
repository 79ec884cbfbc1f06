//! Layer tarballs in and out, as the OCI image spec's layer rules say.
//!
//! A layer is a tar archive of the files it adds or changes. A deleted file is a
//! *whiteout*: an empty file `.wh.NAME` beside where NAME was; a directory whose old
//! contents are all hidden carries an *opaque* marker `.wh..wh..opq`. overlayfs keeps the
//! same facts in its own way: a whiteout is a character device 0:0, an opaque directory has
//! the extended attribute `trusted.overlay.opaque=y`. [`apply`] turns the tar form into
//! overlay's (or, for a plain copy, really deletes), [`export`] turns overlay's back.
//!
//! A layer comes from somewhere else and may be hostile: `../` in a name, an absolute
//! path, a symbolic link that points out of the tree and then a file "inside" it, a hard
//! link to a host file, a device node. [`apply`] never writes outside the target: every
//! entry is reached from a descriptor of the target directory, one name at a time,
//! never through a symbolic link (`O_NOFOLLOW`), and device nodes are refused.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmodat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use step01::{Error, Result};

/// The prefix of a whiteout's name, and the opaque marker's whole name.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The extended attribute overlayfs reads for an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How deletions are kept in the directory a layer is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A lower layer of overlayfs: whiteouts stay, in overlay's form.
    OverlayLower,
    /// A plain directory holding the merged result (the vfs driver): deleted is deleted.
    Merged,
}

// ANCHOR: apply
/// Unpack the layer tar `archive` into `target` (an existing directory).
pub fn apply(archive: impl Read, target: &Path, how: Target) -> Result<()> {
    let root = open_dir(target)?;
    let mut this_layer: HashSet<PathBuf> = HashSet::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|e| bad_layer(format!("cannot read the tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_layer(format!("cannot read the tar: {e}")))?;
        let raw = entry.path().map_err(|e| bad_layer(format!("a name that is not a path: {e}")))?.into_owned();
        let Some(path) = inside(&raw)? else { continue }; // "." or "/": the root itself
        let (parent, name) = split(&path);
        let parent_fd = walk(&root, parent, true)?;
        if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
            opaque(&parent_fd, parent, how, &this_layer)?;
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            whiteout(&parent_fd, OsStr::from_bytes(hidden), how)?;
            continue;
        }
        write_entry(&root, &parent_fd, name, &path, &mut entry)?;
        this_layer.insert(path);
    }
    Ok(())
}
// ANCHOR_END: apply

/// The entry's path made relative and checked: `None` for the root itself.
fn inside(raw: &Path) -> Result<Option<PathBuf>> {
    let mut clean = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(bad_layer(format!("{} climbs out of the layer with ..", raw.display()))),
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn split(path: &Path) -> (&Path, &OsStr) {
    (path.parent().unwrap_or(Path::new("")), path.file_name().unwrap_or_default())
}

/// Open `relative` below `root` one name at a time, never through a symbolic link,
/// creating missing directories when `create` (tar archives may omit parents).
fn walk(root: &OwnedFd, relative: &Path, create: bool) -> Result<OwnedFd> {
    let mut dir = root.try_clone().map_err(|e| Error::runtime(format!("dup: {e}")))?;
    for name in relative.components().map(|c| c.as_os_str()) {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        dir = match openat(&dir, name, flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::ENOENT) if create => {
                mkdirat(&dir, name, Mode::from_bits_truncate(0o755)).map_err(|errno| Error::syscall(format!("mkdir {}", relative.display()), errno))?;
                openat(&dir, name, flags, Mode::empty()).map_err(|errno| Error::syscall(format!("open {}", relative.display()), errno))?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(bad_layer(format!("{} goes through a symbolic link or a file; refusing to follow it", relative.display()))),
            Err(errno) => return Err(Error::syscall(format!("open {}", relative.display()), errno)),
        };
    }
    Ok(dir)
}

fn write_entry(root: &OwnedFd, parent: &OwnedFd, name: &OsStr, path: &Path, entry: &mut tar::Entry<impl Read>) -> Result<()> {
    let header = entry.header().clone();
    let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
    let kind = header.entry_type();
    let failed = |what: &str, errno: Errno| Error::syscall(format!("{what} {}", path.display()), errno);
    // What is there now goes, unless both are directories (a layer may re-list a directory).
    let existing_is_dir = openat(parent, name, OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).is_ok();
    if !(kind.is_dir() && existing_is_dir) {
        remove_at(parent, name)?;
    }
    match kind {
        tar::EntryType::Directory => {
            if !existing_is_dir {
                mkdirat(parent, name, mode).map_err(|errno| failed("mkdir", errno))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let fd = openat(parent, name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, mode).map_err(|errno| failed("create", errno))?;
            let mut file = File::from(fd);
            std::io::copy(entry, &mut file).map_err(|e| Error::runtime(format!("write {}: {e}", path.display())))?;
            file.flush().map_err(|e| Error::runtime(format!("write {}: {e}", path.display())))?;
        }
        tar::EntryType::Symlink => {
            // The link's text is stored, never followed: an absolute target is harmless here.
            let target = entry.link_name().ok().flatten().ok_or_else(|| bad_layer(format!("{} is a link without a target", path.display())))?;
            symlinkat(target.as_ref(), parent, name).map_err(|errno| failed("symlink", errno))?;
        }
        tar::EntryType::Link => {
            let target = entry.link_name().ok().flatten().ok_or_else(|| bad_layer(format!("{} is a hard link without a target", path.display())))?;
            let outside = || bad_layer(format!("{} is a hard link to {}, outside the layer: a layer may link only to its own files", path.display(), target.display()));
            let target = inside(&target).map_err(|_| outside())?.ok_or_else(|| bad_layer(format!("{} is a hard link to the layer's root", path.display())))?;
            let (target_parent, target_name) = split(&target);
            let from = walk(root, target_parent, false)?;
            // Without AT_SYMLINK_FOLLOW: a link to a symbolic link links the link itself.
            linkat(&from, target_name, parent, name, AtFlags::empty()).map_err(|errno| failed("hard link", errno))?;
            return Ok(()); // a hard link shares its target's owner, mode and times
        }
        tar::EntryType::Fifo => mknodat(parent, name, SFlag::S_IFIFO, mode, 0).map_err(|errno| failed("mkfifo", errno))?,
        tar::EntryType::Char | tar::EntryType::Block => {
            return Err(bad_layer(format!("{} is a device node; carton does not create devices from layers (a container gets its own /dev)", path.display())))
        }
        other => return Err(bad_layer(format!("{} has a tar entry type carton does not know ({other:?})", path.display()))),
    }
    let (uid, gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
    fchownat(parent, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|errno| failed("chown", errno))?;
    if !kind.is_symlink() {
        // After chown, which clears the set-uid and set-gid bits.
        fchmodat(parent, name, mode, FchmodatFlags::NoFollowSymlink).or_else(|errno| if errno == Errno::EOPNOTSUPP { Ok(()) } else { Err(errno) }).map_err(|errno| failed("chmod", errno))?;
        // overlayfs's own attributes (opaque, redirect, origin...) are never taken from a
        // layer: only whiteout entries may say what is hidden.
        for (key, value) in xattrs(entry).into_iter().filter(|(key, _)| !key.starts_with("trusted.overlay.")) {
            set_xattr(parent, name, &key, &value).map_err(|errno| failed(&format!("set {key} on"), errno))?;
        }
    }
    let mtime = TimeSpec::new(header.mtime().unwrap_or(0) as i64, 0);
    utimensat(parent, name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(|errno| failed("set the time of", errno))
}

/// The extended attributes a tar entry carries (PAX records `SCHILY.xattr.NAME`).
fn xattrs(entry: &mut tar::Entry<impl Read>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return Vec::new() };
    extensions.flatten().filter_map(|ext| Some((ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string(), ext.value_bytes().to_vec()))).collect()
}

/// Set an extended attribute on `parent/name`, opened without following a link.
fn set_xattr(parent: &OwnedFd, name: &OsStr, key: &str, value: &[u8]) -> std::result::Result<(), Errno> {
    let fd = openat(parent, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, Mode::empty())?;
    let key = std::ffi::CString::new(key).map_err(|_| Errno::EINVAL)?;
    // Safety: valid descriptor, NUL-terminated name, and a buffer of the given length.
    Errno::result(unsafe { libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// `.wh.NAME`: NAME is deleted by this layer.
fn whiteout(parent: &OwnedFd, hidden: &OsStr, how: Target) -> Result<()> {
    if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.as_bytes().contains(&b'/') {
        return Err(bad_layer(format!("a whiteout for {:?}, which is not a name in its directory", Path::new(hidden))));
    }
    remove_at(parent, hidden)?;
    if how == Target::OverlayLower {
        // overlayfs's whiteout: a character device with device number 0:0.
        mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|errno| Error::syscall("make a whiteout", errno))?;
    }
    Ok(())
}

/// `.wh..wh..opq`: what lower layers had in this directory is hidden; what this layer
/// itself put there stays.
fn opaque(dir: &OwnedFd, relative: &Path, how: Target, this_layer: &HashSet<PathBuf>) -> Result<()> {
    match how {
        Target::OverlayLower => set_xattr_on_dir(dir, OPAQUE_XATTR, b"y").map_err(|errno| Error::syscall(format!("mark {} opaque", relative.display()), errno)),
        Target::Merged => {
            for name in names_in(dir)? {
                if !this_layer.contains(&relative.join(&name)) {
                    remove_at(dir, &name)?;
                }
            }
            Ok(())
        }
    }
}

fn set_xattr_on_dir(dir: &OwnedFd, key: &str, value: &[u8]) -> std::result::Result<(), Errno> {
    let key = std::ffi::CString::new(key).map_err(|_| Errno::EINVAL)?;
    // Safety: as in set_xattr.
    Errno::result(unsafe { libc::fsetxattr(dir.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// The names in an open directory.
pub(crate) fn names_in(dir: &OwnedFd) -> Result<Vec<std::ffi::OsString>> {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let entries = std::fs::read_dir(&path).map_err(|e| Error::runtime(format!("read a layer directory: {e}")))?;
    Ok(entries.flatten().map(|e| e.file_name()).collect())
}

/// Remove `parent/name` whatever it is (a whole tree for a directory), if it is there.
fn remove_at(parent: &OwnedFd, name: &OsStr) -> Result<()> {
    // Never the directory itself or its parent (remove_dir_all would empty them).
    if name.is_empty() || name == "." || name == ".." {
        return Err(bad_layer(format!("{:?} is not a name inside a directory", Path::new(name))));
    }
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => {
            // Through the parent's descriptor; remove_dir_all never follows a link inside.
            let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&path).map_err(|e| Error::runtime(format!("remove {}: {e}", Path::new(name).display())))
        }
        Err(errno) => Err(Error::syscall(format!("remove {}", Path::new(name).display()), errno)),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| Error::syscall(format!("open {}", path.display()), errno))
}

fn bad_layer(why: impl std::fmt::Display) -> Error {
    Error::runtime(format!("refusing the layer: {why}"))
}

/// What a path in an overlay upper directory is, as far as layers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpperKind {
    /// overlay's whiteout, a character device 0:0: the file was deleted.
    Whiteout,
    /// A directory marked opaque: what the lowers had in it is hidden.
    OpaqueDir,
    Dir,
    /// Anything else: a file, a link, a fifo.
    Other,
}

/// Read what `path` (in an upper directory) is, without following a link.
pub(crate) fn upper_kind(path: &Path) -> std::io::Result<UpperKind> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path)?;
    Ok(if meta.file_type().is_char_device() && meta.rdev() == 0 {
        UpperKind::Whiteout
    } else if meta.is_dir() && get_xattr(path, OPAQUE_XATTR).as_deref() == Some(b"y".as_slice()) {
        UpperKind::OpaqueDir
    } else if meta.is_dir() {
        UpperKind::Dir
    } else {
        UpperKind::Other
    })
}

/// The value of an extended attribute of `path` (not following a link), if it has it.
pub fn get_xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let key = std::ffi::CString::new(key).ok()?;
    // Safety: a NULL buffer of size 0 asks for the value's size.
    let needed = unsafe { libc::lgetxattr(path.as_ptr(), key.as_ptr(), std::ptr::null_mut(), 0) };
    if needed < 0 {
        return None;
    }
    let mut value = vec![0u8; needed as usize];
    // Safety: NUL-terminated strings and a buffer of the given length.
    let size = unsafe { libc::lgetxattr(path.as_ptr(), key.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    (size >= 0).then(|| {
        value.truncate(size as usize);
        value
    })
}

/// Every path below `dir`, relative to it, sorted: parents before their children.
pub fn walk_tree(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(&relative))?.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let path = relative.join(name);
            if std::fs::symlink_metadata(dir.join(&path))?.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

// ANCHOR: export
/// Write the overlay upper directory `upper` as an OCI layer tar: whiteouts become
/// `.wh.NAME`, opaque directories get a `.wh..wh..opq`, hard links stay links.
pub fn export(upper: &Path, out: impl Write) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let failed = |path: &Path, e: std::io::Error| Error::runtime(format!("cannot put {} in the layer: {e}", path.display()));
    let mut tar = tar::Builder::new(out);
    let mut first_path_of_inode = std::collections::HashMap::new();
    let mut entries = Vec::new();
    for relative in walk_tree(upper).map_err(|e| failed(upper, e))? {
        let kind = upper_kind(&upper.join(&relative)).map_err(|e| failed(&relative, e))?;
        entries.push((relative, kind));
    }
    // Parents before children, and in each directory its whiteouts first (the OCI spec
    // asks for that, so that a reader never sees a name it must then forget).
    let order = |(path, kind): &(PathBuf, UpperKind)| {
        let names: Vec<&OsStr> = path.iter().collect();
        let last = names.len() - 1;
        names.into_iter().enumerate().map(|(i, name)| (i < last || *kind != UpperKind::Whiteout, name.to_owned())).collect::<Vec<_>>()
    };
    entries.sort_by_cached_key(order);
    for (relative, kind) in entries {
        let full = upper.join(&relative);
        let meta = std::fs::symlink_metadata(&full).map_err(|e| failed(&relative, e))?;
        if kind == UpperKind::Whiteout {
            let name = [WHITEOUT_PREFIX.as_bytes(), relative.file_name().unwrap_or_default().as_bytes()].concat();
            append_empty(&mut tar, &relative.with_file_name(OsStr::from_bytes(&name)), &meta).map_err(|e| failed(&relative, e))?;
            continue;
        }
        if meta.is_file() && meta.nlink() > 1 {
            if let Some(first) = first_path_of_inode.get(&(meta.dev(), meta.ino())) {
                let mut header = header_for(&meta, tar::EntryType::Link);
                tar.append_link(&mut header, &relative, first).map_err(|e| failed(&relative, e))?;
                continue;
            }
            first_path_of_inode.insert((meta.dev(), meta.ino()), relative.clone());
        }
        append_xattrs(&mut tar, &full).map_err(|e| failed(&relative, e))?;
        let entry_type = if meta.is_dir() {
            tar::EntryType::Directory
        } else if meta.file_type().is_symlink() {
            tar::EntryType::Symlink
        } else if meta.is_file() {
            tar::EntryType::Regular
        } else if meta.file_type().is_fifo() {
            tar::EntryType::Fifo
        } else if meta.file_type().is_socket() {
            continue; // a socket belongs to the process that listens on it, not to an image
        } else {
            return Err(Error::runtime(format!("{} is a device node: a layer cannot hold it", relative.display())));
        };
        let mut header = header_for(&meta, entry_type);
        match entry_type {
            tar::EntryType::Symlink => {
                let target = std::fs::read_link(&full).map_err(|e| failed(&relative, e))?;
                tar.append_link(&mut header, &relative, target).map_err(|e| failed(&relative, e))?;
            }
            tar::EntryType::Regular => {
                header.set_size(meta.len());
                let file = File::open(&full).map_err(|e| failed(&relative, e))?;
                tar.append_data(&mut header, &relative, file).map_err(|e| failed(&relative, e))?;
            }
            _ => tar.append_data(&mut header, &relative, std::io::empty()).map_err(|e| failed(&relative, e))?,
        }
        if kind == UpperKind::OpaqueDir {
            append_empty(&mut tar, &relative.join(OPAQUE_MARKER), &meta).map_err(|e| failed(&relative, e))?;
        }
    }
    tar.into_inner().map_err(|e| Error::runtime(format!("cannot finish the layer: {e}")))?;
    Ok(())
}
// ANCHOR_END: export

fn header_for(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    use std::os::unix::fs::MetadataExt;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    header
}

/// An empty regular file: a whiteout or the opaque marker.
fn append_empty(tar: &mut tar::Builder<impl Write>, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let mut header = header_for(meta, tar::EntryType::Regular);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, std::io::empty())
}

/// The file's extended attributes (but overlay's own) as a PAX header before its entry.
fn append_xattrs(tar: &mut tar::Builder<impl Write>, full: &Path) -> std::io::Result<()> {
    let attributes: Vec<(String, Vec<u8>)> =
        list_xattrs(full).into_iter().filter(|key| !key.starts_with("trusted.overlay.")).filter_map(|key| get_xattr(full, &key).map(|value| (format!("SCHILY.xattr.{key}"), value))).collect();
    if attributes.is_empty() {
        return Ok(());
    }
    tar.append_pax_extensions(attributes.iter().map(|(key, value)| (key.as_str(), value.as_slice())))
}

fn list_xattrs(path: &Path) -> Vec<String> {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return Vec::new() };
    // Safety: a NULL buffer of size 0 asks for the size the list needs.
    let needed = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    if needed <= 0 {
        return Vec::new();
    }
    let mut names = vec![0u8; needed as usize];
    // Safety: NUL-terminated path and a buffer of the given length.
    let size = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size <= 0 {
        return Vec::new();
    }
    names[..size as usize].split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| String::from_utf8_lossy(n).into_owned()).collect()
}
