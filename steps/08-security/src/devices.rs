//! `linux.devices`: device nodes the spec asks for beyond the default ones (`/dev/null`,
//! `/dev/zero`, ... which chapter 1 makes), made in the container's `/dev` with the spec's
//! type, numbers, mode and owner. (Which devices the container may *use* is the device
//! cgroup's business, `linux.resources.devices`: the next part of this step.)

use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

// ANCHOR: make
/// Make `device` inside `rootfs` (before pivot_root: `rootfs` is the new root's path).
pub fn make(rootfs: &Path, device: &LinuxDevice, explain: &Explain) -> Result<()> {
    let shown = device.path().display();
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(Error::runtime(format!("linux.devices: {shown} has type \"a\", which names every device in a cgroup rule, not a node to make"))),
    };
    let (major, minor) = (device.major() as u64, device.minor() as u64);
    let target = step01::mounts::secure_join(rootfs, device.path())?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::runtime(format!("cannot create the directory of {shown}: {e}")))?;
    }
    let mode = Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666));
    explain.step(|| {
        Action::new(CHAPTER, format!("make the device node {shown}"), format!("mknod({shown}, {} {major}:{minor})", device.typ().as_str()))
            .shell(format!("mknod {shown} {} {major} {minor}", device.typ().as_str()))
    });
    let _ = std::fs::remove_file(&target);
    mknod(&target, kind, mode, makedev(major, minor)).map_err(|errno| Error::syscall(format!("cannot make the device node {shown}"), errno))?;
    // mknod's mode went through the umask: set it as asked.
    nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, &target, mode, nix::sys::stat::FchmodatFlags::FollowSymlink).map_err(|errno| Error::syscall(format!("cannot set the mode of {shown}"), errno))?;
    let owner = (device.uid().map(nix::unistd::Uid::from_raw), device.gid().map(nix::unistd::Gid::from_raw));
    nix::unistd::chown(&target, owner.0, owner.1).map_err(|errno| Error::syscall(format!("cannot give {shown} its owner"), errno))
}
// ANCHOR_END: make
