//! `linux.maskedPaths` and `linux.readonlyPaths`: parts of `/proc` and `/sys` that tell or
//! change too much about the host.
//!
//! A masked path is hidden: a file gets `/dev/null` bind-mounted over it (reads say
//! nothing), a directory an empty read-only tmpfs. A read-only path is bind-mounted onto
//! itself and remounted read-only (`/proc/sys`: a container may read the host's settings,
//! not change them). Both are done inside the container, after pivot_root, on paths that
//! may not exist on this kernel (then there is nothing to hide).

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

// ANCHOR: readonly
/// Make `path` (inside the container) read-only: a bind mount of itself, remounted with
/// MS_RDONLY and the flags it had (nosuid, nodev, noexec: a remount must keep them).
pub fn make_read_only(path: &str, explain: &Explain) -> Result<()> {
    explain.step(|| {
        Action::new(CHAPTER, format!("make {path} read-only"), format!("mount({path}, {path}, MS_BIND|MS_REC); mount(MS_BIND|MS_REMOUNT|MS_RDONLY)")).shell(format!("mount --bind -o ro {path} {path}"))
    });
    match mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(Error::syscall(format!("cannot bind-mount {path} onto itself"), errno)),
        Ok(()) => {}
    }
    let kept = mount_flags(path)?;
    mount(Some(path), path, None::<&str>, kept | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
        .map_err(|errno| Error::syscall(format!("cannot make {path} read-only"), errno))
}
// ANCHOR_END: readonly

// ANCHOR: mask
/// Hide `path` (inside the container): `/dev/null` over a file, an empty read-only tmpfs
/// over a directory.
pub fn mask(path: &str, explain: &Explain) -> Result<()> {
    let is_dir = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::runtime(format!("cannot look at {path} to mask it: {e}"))),
        Ok(meta) => meta.is_dir(),
    };
    let masked = if is_dir {
        explain.step(|| Action::new(CHAPTER, format!("hide the directory {path}"), format!("mount(\"tmpfs\", {path}, MS_RDONLY)")).shell(format!("mount -t tmpfs -o ro tmpfs {path}")));
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        explain.step(|| Action::new(CHAPTER, format!("hide the file {path}"), format!("mount(\"/dev/null\", {path}, MS_BIND)")).shell(format!("mount --bind /dev/null {path}")));
        mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    match masked {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(Error::syscall(format!("cannot mask {path}"), errno)),
    }
}
// ANCHOR_END: mask

/// The flags of the mount at `path` that a bind remount must keep.
fn mount_flags(path: &str) -> Result<MsFlags> {
    let stat = nix::sys::statvfs::statvfs(Path::new(path)).map_err(|errno| Error::syscall(format!("cannot read the mount flags of {path}"), errno))?;
    use nix::sys::statvfs::FsFlags;
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(pairs.iter().filter(|(has, _)| stat.flags().contains(*has)).fold(MsFlags::empty(), |flags, (_, flag)| flags | *flag))
}
