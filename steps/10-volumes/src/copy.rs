//! Copying a directory tree as it is: files, directories, links, fifos and device nodes,
//! with their owners, modes and modification times (what Docker's copy-up keeps).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

/// Copy what is in directory `from` into directory `to` (which exists), and give `to` the
/// owner and mode of `from`. Links are copied as links, never followed.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&target)?;
            copy_tree(&source, &target)?;
            continue; // its owner, mode and time were set by the call
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
        } else {
            // A fifo or a device node: made again, as it is.
            let file_type = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            nix::sys::stat::mknod(&target, file_type, Mode::from_bits_truncate(meta.mode() & 0o7777), meta.rdev()).map_err(io::Error::from)?;
        }
        keep_attributes(&meta, &target)?;
    }
    keep_attributes(&fs::metadata(from)?, to)
}

/// `target` gets the owner, mode and modification time of `meta` (a link's own).
fn keep_attributes(meta: &fs::Metadata, target: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(target, Some(meta.uid()), Some(meta.gid()))?;
    if meta.file_type().is_symlink() {
        return Ok(()); // a link has no mode of its own, and its time is not worth a syscall
    }
    // After chown, which clears setuid and setgid bits.
    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let modified = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, target, &modified, &modified, nix::sys::stat::UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_with_links_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("sub/file"), "data").unwrap();
        fs::set_permissions(from.join("sub/file"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).unwrap();
        fs::set_permissions(&from, fs::Permissions::from_mode(0o710)).unwrap();
        fs::create_dir(&to).unwrap();
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(to.join("sub/file")).unwrap(), "data");
        assert_eq!(fs::metadata(to.join("sub/file")).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_link(to.join("link")).unwrap(), Path::new("/etc/passwd"), "a link stays a link");
        assert_eq!(fs::metadata(&to).unwrap().mode() & 0o7777, 0o710, "the directory's own mode");
        assert_eq!(fs::metadata(to.join("sub/file")).unwrap().mtime(), fs::metadata(from.join("sub/file")).unwrap().mtime());
    }
}
