//! The fix for chroot: make the root filesystem the root of a mount namespace.
//!
//! Runs in the child, which is already in its own mount namespace (see
//! [`crate::container`]). Everything here changes that namespace only.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, pivot_root};

use crate::error::{Error, Result};
use crate::explain::{Action, Explain};
use crate::process::shell_quote;
use crate::CHAPTER;

// ANCHOR: enter_root
/// Make `rootfs` this mount namespace's `/`, with fresh `/proc`, `/dev` and `/sys`.
pub fn enter_root(rootfs: &Path, explain: &Explain) -> Result<()> {
    make_mounts_private(explain)?;
    prepare_root(rootfs, explain, || Ok(()))?;
    pivot_into(rootfs, explain)
}

/// Everything before the switch, once mounts are private: the new root, fully furnished,
/// still under the host's `/`. `under_dev` mounts what later steps keep under `/dev`.
pub(crate) fn prepare_root(rootfs: &Path, explain: &Explain, under_dev: impl FnOnce() -> Result<()>) -> Result<()> {
    bind_onto_itself(rootfs, explain)?;
    mount_proc(rootfs, explain)?;
    mount_dev(rootfs, explain)?;
    under_dev()?;
    mount_sys(rootfs, explain)
}
// ANCHOR_END: enter_root

// ANCHOR: private
/// Mounts are shared with the host by default on systemd machines: a mount made here
/// would appear there too. Mark every mount in our namespace private first.
pub fn make_mounts_private(explain: &Explain) -> Result<()> {
    mount_explained(
        explain,
        "stop mount events propagating between this namespace and the host",
        MountCall { source: None, target: Path::new("/"), fstype: None, flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE, data: None },
        "mount --make-rprivate /".into(),
    )
}
// ANCHOR_END: private

// ANCHOR: bind
/// pivot_root wants the new root to be a mount point; a bind mount of the directory
/// onto itself makes any directory one.
fn bind_onto_itself(rootfs: &Path, explain: &Explain) -> Result<()> {
    mount_explained(
        explain,
        "bind-mount the root filesystem onto itself so it becomes a mount point",
        MountCall { source: Some(rootfs), target: rootfs, fstype: None, flags: MsFlags::MS_BIND | MsFlags::MS_REC, data: None },
        format!("mount --rbind {0} {0}", quoted(rootfs)),
    )
}
// ANCHOR_END: bind

// ANCHOR: proc
/// A fresh proc filesystem: `ps`, `/proc/self` and friends work inside.
fn mount_proc(rootfs: &Path, explain: &Explain) -> Result<()> {
    let target = mount_point(rootfs, "proc")?;
    mount_explained(
        explain,
        "mount a fresh /proc: it lists the processes of the PID namespace the container is in",
        MountCall { source: Some(Path::new("proc")), target: &target, fstype: Some("proc"), flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, data: None },
        format!("mount -t proc proc {}", quoted(&target)),
    )
}
// ANCHOR_END: proc

// ANCHOR: dev
/// The devices a program may expect: name, major, minor. Nothing else of the host's
/// `/dev` (disks, the console, the kernel's memory) is there.
pub const DEVICES: [(&str, u64, u64); 6] = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// The links every Linux system has in `/dev`. (Not `core -> /proc/kcore`: that is the
/// kernel's memory, which Docker hides and carton does not offer.)
const DEV_LINKS: [(&str, &str); 5] = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")];

/// A small `/dev` on a tmpfs: the safe devices, pseudo-terminals, shared memory.
fn mount_dev(rootfs: &Path, explain: &Explain) -> Result<()> {
    let dev = mount_point(rootfs, "dev")?;
    mount_explained(
        explain,
        "mount an empty tmpfs on /dev (not the host's /dev)",
        MountCall { source: Some(Path::new("tmpfs")), target: &dev, fstype: Some("tmpfs"), flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, data: Some("mode=755,size=65536k") },
        format!("mount -t tmpfs -o mode=755,size=65536k tmpfs {}", quoted(&dev)),
    )?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        explain.step(|| {
            Action::new(CHAPTER, format!("create the device /dev/{name}"), format!("mknod({node:?}, S_IFCHR|0666, makedev({major}, {minor}))"))
                .shell(format!("mknod -m 666 {} c {major} {minor}", quoted(&node)))
        });
        mknod(&node, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)).map_err(|errno| Error::syscall(format!("cannot create the device {}", node.display()), errno))?;
        // mknod's mode is filtered through the umask; set it exactly.
        fs::set_permissions(&node, fs::Permissions::from_mode(0o666)).map_err(|e| Error::runtime(format!("cannot chmod {}: {e}", node.display())))?;
    }
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        explain.step(|| Action::new(CHAPTER, format!("link /dev/{name} to {target}"), format!("symlink({target:?}, {link:?})")).shell(format!("ln -s {target} {}", quoted(&link))));
        symlink(target, &link).map_err(|e| Error::runtime(format!("cannot create the link {}: {e}", link.display())))?;
    }
    let pts = mount_point(&dev, "pts")?;
    mount_explained(
        explain,
        "mount a private devpts instance for pseudo-terminals",
        MountCall { source: Some(Path::new("devpts")), target: &pts, fstype: Some("devpts"), flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5") },
        format!("mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts {}", quoted(&pts)),
    )?;
    let shm = mount_point(&dev, "shm")?;
    mount_explained(
        explain,
        "mount a tmpfs on /dev/shm for POSIX shared memory (64 MiB, as Docker)",
        MountCall { source: Some(Path::new("shm")), target: &shm, fstype: Some("tmpfs"), flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, data: Some("mode=1777,size=65536k") },
        format!("mount -t tmpfs -o mode=1777,size=65536k shm {}", quoted(&shm)),
    )
}
// ANCHOR_END: dev

// ANCHOR: sys
/// `/sys` describes the host's hardware; let the container read it, never write it.
fn mount_sys(rootfs: &Path, explain: &Explain) -> Result<()> {
    let target = mount_point(rootfs, "sys")?;
    mount_explained(
        explain,
        "mount /sys read-only",
        MountCall { source: Some(Path::new("sysfs")), target: &target, fstype: Some("sysfs"), flags: MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, data: None },
        format!("mount -t sysfs -o ro sysfs {}", quoted(&target)),
    )
}
// ANCHOR_END: sys

/// `root.readonly`: the root filesystem's own mount becomes read-only (the mounts on
/// it, /proc, /dev and the others, keep their own flags).
pub(crate) fn make_read_only(rootfs: &Path, explain: &Explain) -> Result<()> {
    mount_explained(
        explain,
        "make the root filesystem read-only",
        MountCall { source: None, target: rootfs, fstype: None, flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, data: None },
        format!("mount -o remount,bind,ro {}", quoted(rootfs)),
    )
}

/// `linux.rootfsPropagation`: how mounts travel between the container's `/` and its copies.
pub(crate) fn set_root_propagation(propagation: MsFlags, explain: &Explain) -> Result<()> {
    let kind = [(MsFlags::MS_SHARED, "shared"), (MsFlags::MS_SLAVE, "slave"), (MsFlags::MS_UNBINDABLE, "unbindable")]
        .into_iter()
        .find(|(flag, _)| propagation.contains(*flag))
        .map_or("private", |(_, name)| name);
    let recursive = if propagation.contains(MsFlags::MS_REC) { "r" } else { "" };
    mount_explained(
        explain,
        "set the propagation of the container's /",
        MountCall { source: None, target: Path::new("/"), fstype: None, flags: propagation, data: None },
        format!("mount --make-{recursive}{kind} /"),
    )
}

// ANCHOR: pivot
/// Swap the root of the mount namespace, then cut the old root off entirely.
/// Unlike chroot, no path leads back: the host's filesystem is no longer mounted here.
pub(crate) fn pivot_into(rootfs: &Path, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "go into the new root", format!("chdir({rootfs:?})")).shell(format!("cd {}", quoted(rootfs))));
    chdir(rootfs).map_err(|errno| Error::syscall(format!("cannot enter {}", rootfs.display()), errno))?;

    // pivot_root(".", ".") puts the old root on top of the new one, at the same place;
    // no directory for the old root is needed inside the image.
    explain.step(|| Action::new(CHAPTER, "make the current directory the root; the old root is stacked on top of it", "pivot_root(\".\", \".\")").shell("pivot_root . ."));
    pivot_root(".", ".")
        .map_err(|errno| Error::syscall(format!("pivot_root into {} failed (run `carton doctor`: the host's / may be an initramfs, where pivot_root cannot work)", rootfs.display()), errno))?;

    explain.step(|| Action::new(CHAPTER, "detach the old root: the host's root filesystem is no longer mounted in this namespace", "umount2(\".\", MNT_DETACH)").shell("umount -l ."));
    umount2(".", MntFlags::MNT_DETACH).map_err(|errno| Error::syscall("cannot detach the old root", errno))?;

    explain.step(|| Action::new(CHAPTER, "stand at the new /", "chdir(\"/\")").shell("cd /"));
    chdir("/").map_err(|errno| Error::syscall("cannot enter the new /", errno))
}
// ANCHOR_END: pivot

/// Without pivot_root (`--no-pivot`): move the new root's mount over `/` and chroot into
/// it, as runc does for hosts that boot from an initramfs.
pub(crate) fn move_into(rootfs: &Path, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "move the new root over / and chroot into it (no pivot_root)", "mount(rootfs, \"/\", MS_MOVE); chroot(\".\")").shell("mount --move . / && chroot ."));
    chdir(rootfs).map_err(|errno| Error::syscall(format!("cannot enter {}", rootfs.display()), errno))?;
    nix::mount::mount(Some("."), "/", None::<&str>, nix::mount::MsFlags::MS_MOVE, None::<&str>).map_err(|errno| Error::syscall(format!("cannot move {} over /", rootfs.display()), errno))?;
    nix::unistd::chroot(".").map_err(|errno| Error::syscall("cannot chroot into the new root", errno))?;
    chdir("/").map_err(|errno| Error::syscall("cannot enter the new /", errno))
}

/// In the caller's own mount namespace (a spec without one): chroot, as runc does then.
/// pivot_root there would move the root of every process of that namespace.
pub(crate) fn chroot_into(rootfs: &Path, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "no mount namespace of its own: chroot into the new root (pivot_root would move everyone's)", "chroot(rootfs)").shell(format!("chroot {}", quoted(rootfs))));
    chdir(rootfs).map_err(|errno| Error::syscall(format!("cannot enter {}", rootfs.display()), errno))?;
    nix::unistd::chroot(".").map_err(|errno| Error::syscall("cannot chroot into the new root", errno))?;
    chdir("/").map_err(|errno| Error::syscall("cannot enter the new /", errno))
}

/// `dir/name`, created when the root filesystem lacks it (as runc does). A symbolic
/// link there is refused: the mount would follow it, possibly out of the root filesystem.
pub fn mount_point(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::runtime(format!("/{name} in the root filesystem is a symbolic link ({}); refusing to mount through it, make it a directory", path.display())))
        }
        Ok(meta) if !meta.is_dir() => return Err(Error::runtime(format!("/{name} in the root filesystem ({}) is not a directory", path.display()))),
        _ => {}
    }
    if !path.is_dir() {
        fs::create_dir_all(&path).map_err(|e| Error::runtime(format!("cannot create the mount point {}: {e}", path.display())))?;
    }
    Ok(path)
}

/// The arguments of mount(2).
struct MountCall<'a> {
    source: Option<&'a Path>,
    target: &'a Path,
    fstype: Option<&'a str>,
    flags: MsFlags,
    data: Option<&'a str>,
}

impl MountCall<'_> {
    /// As C would write it: `mount("proc", "/x/proc", "proc", MS_NOSUID|MS_NODEV, NULL)`.
    fn to_c(&self) -> String {
        let quoted = |s: Option<String>| s.map_or("NULL".to_string(), |s| format!("{s:?}"));
        let flags: Vec<&str> = self.flags.iter_names().map(|(name, _)| name).collect();
        format!(
            "mount({}, {:?}, {}, {}, {})",
            quoted(self.source.map(|s| s.display().to_string())),
            self.target,
            quoted(self.fstype.map(str::to_string)),
            flags.join("|"),
            quoted(self.data.map(str::to_string)),
        )
    }
}

fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

fn mount_explained(explain: &Explain, what: &str, call: MountCall, shell: String) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, what, call.to_c()).shell(shell));
    mount(call.source, call.target, call.fstype, call.flags, call.data).map_err(|errno| Error::syscall(format!("{what} failed: {}", call.to_c()), errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_calls_read_like_c() {
        let call = MountCall { source: Some(Path::new("proc")), target: Path::new("/r/proc"), fstype: Some("proc"), flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data: None };
        assert_eq!(call.to_c(), r#"mount("proc", "/r/proc", "proc", MS_NOSUID|MS_NODEV, NULL)"#);
    }
}
