//! The OCI spec's `mounts`: what goes where inside the container's root, and one safe way
//! to find a path inside that root.
//!
//! The default file systems every container gets (`/proc`, `/dev` and its children, `/sys`,
//! `/sys/fs/cgroup`) are furnished by the steps that own them ([`crate::rootfs`], step 02's
//! mqueue, step 04's cgroups); the spec lists them, as `runc spec` does, so that any runtime
//! given the bundle mounts them too. Every other entry (a bind mount of a host file, a tmpfs)
//! is mounted here, in the order given, before pivot_root.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::{Error, Result};
use crate::explain::{Action, Explain};
use crate::CHAPTER;

/// The destinations furnished by the steps themselves, whatever options the spec gives.
pub(crate) const FURNISHED: [&str; 7] = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"];

/// One entry of the spec's `mounts`, with its options read into mount(2)'s terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute, inside the container.
    pub destination: PathBuf,
    /// `bind`, `tmpfs`, ...: the file system type (`None` for a bind mount).
    pub fstype: Option<String>,
    pub source: Option<PathBuf>,
    pub flags: MsFlags,
    /// `private`, `rslave`, ...: applied after the mount, as a second call.
    pub propagation: MsFlags,
    /// The options mount(2) passes on to the file system (`size=64k,mode=755`).
    pub data: String,
}

// ANCHOR: options
/// Each mount option the kernel takes as a flag: (name, flags set, flags cleared).
const FLAG_OPTIONS: [(&str, MsFlags, MsFlags); 16] = [
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("bind", MsFlags::MS_BIND, MsFlags::empty()),
    ("rbind", MsFlags::MS_BIND.union(MsFlags::MS_REC), MsFlags::empty()),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
    ("defaults", MsFlags::empty(), MsFlags::empty()),
];

/// Propagation options: how later mounts travel between this mount and its copies.
const PROPAGATION_OPTIONS: [(&str, MsFlags); 8] = [
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// This process's `/proc/self/mountinfo` as it was when first asked: for questions about
/// mounts carton does not change while it runs (where the cgroup hierarchies are, whether
/// the mount that holds the state root is shared), asked by several steps at start.
pub fn mountinfo_at_start() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| crate::process::read_kernel_file("/proc/self/mountinfo").unwrap_or_default())
}

/// A propagation option by name (`rslave`), as `linux.rootfsPropagation` gives it.
pub fn propagation(name: &str) -> Result<MsFlags> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(option, _)| *option == name)
        .map(|(_, flags)| *flags)
        .ok_or_else(|| Error::runtime(format!("unknown rootfsPropagation {name:?}: give private, rprivate, slave, rslave, shared, rshared, unbindable or runbindable")))
}

impl Mount {
    /// Read a spec entry: options the kernel knows as flags become flags, the rest is data.
    pub fn from_oci(entry: &oci_spec::runtime::Mount) -> Result<Mount> {
        let destination = entry.destination().clone();
        if !destination.is_absolute() {
            return Err(Error::runtime(format!("the mount destination {destination:?} must be an absolute path inside the container")));
        }
        let (mut flags, mut propagation, mut data) = (MsFlags::empty(), MsFlags::empty(), Vec::new());
        for option in entry.options().iter().flatten() {
            if let Some((_, set, clear)) = FLAG_OPTIONS.iter().find(|(name, _, _)| name == option) {
                flags = (flags | *set) - *clear;
            } else if let Some((_, kind)) = PROPAGATION_OPTIONS.iter().find(|(name, _)| name == option) {
                propagation = *kind;
            } else {
                data.push(option.as_str());
            }
        }
        let fstype = entry.typ().clone().filter(|t| t != "bind" && t != "none");
        if fstype.is_none() && !flags.contains(MsFlags::MS_BIND) {
            if entry.typ().as_deref() == Some("bind") {
                flags |= MsFlags::MS_BIND;
            } else {
                return Err(Error::runtime(format!("the mount at {} has no type: give \"type\": \"tmpfs\" (or another file system), or the option \"bind\"", destination.display())));
            }
        }
        Ok(Mount { destination, fstype, source: entry.source().clone(), flags, propagation, data: data.join(",") })
    }

    /// Whether a step furnishes this destination itself (see [`FURNISHED`]).
    pub(crate) fn is_furnished(&self) -> bool {
        FURNISHED.iter().any(|dir| self.destination == Path::new(dir))
    }
}
// ANCHOR_END: options

// ANCHOR: mount_in_root
/// Mount `entry` at its destination inside `root` (the new root, still seen from the
/// host), never following a link out of it. A missing destination is made: a directory,
/// or an empty file when a file is bound.
pub fn mount_in_root(root: &Path, entry: &Mount, explain: &Explain) -> Result<()> {
    // A bound file, socket or device needs a file to cover; only a directory needs a directory.
    let source_is_file = entry.flags.contains(MsFlags::MS_BIND) && entry.source.as_deref().is_some_and(|s| s.exists() && !s.is_dir());
    let target = open_in_root(root, &entry.destination, if source_is_file { Create::File } else { Create::Directory })?;
    let through = format!("/proc/self/fd/{}", target.as_raw_fd());
    let shown = entry.destination.display();
    let (source, fstype, data) = (entry.source.as_deref(), entry.fstype.as_deref(), Some(entry.data.as_str()).filter(|d| !d.is_empty()));
    explain.step(|| {
        let on_host = root.join(entry.destination.strip_prefix("/").unwrap_or(&entry.destination));
        let c_string = |text: Option<String>| text.map_or("NULL".to_string(), |t| format!("{t:?}"));
        let flag_names: Vec<&str> = entry.flags.iter_names().map(|(name, _)| name).collect();
        let call = format!(
            "mount({}, {}, {}, {}, {})",
            c_string(source.map(|s| s.display().to_string())),
            c_string(Some(on_host.display().to_string())),
            c_string(fstype.map(str::to_string)),
            flag_names.join("|"),
            c_string(data.map(str::to_string))
        );
        let shell = match (fstype, source) {
            (None, Some(source)) => format!("mount --rbind {} {}", source.display(), on_host.display()),
            _ => format!(
                "mount -t {} {}{} {}",
                fstype.unwrap_or("none"),
                data.map_or(String::new(), |d| format!("-o {d} ")),
                source.map_or("none".to_string(), |s| s.display().to_string()),
                on_host.display()
            ),
        };
        Action::new(CHAPTER, format!("mount {} at {shown}", source.map_or("a new file system".to_string(), |s| s.display().to_string())), call).shell(shell)
    });
    // A bind mount ignores MS_RDONLY and friends on the first call: they need a remount.
    let first = if entry.flags.contains(MsFlags::MS_BIND) { entry.flags & (MsFlags::MS_BIND | MsFlags::MS_REC) } else { entry.flags };
    mount(source, through.as_str(), fstype, first, data).map_err(|errno| Error::syscall(format!("cannot mount {} at {shown}", source.map_or("it".into(), |s| s.display().to_string())), errno))?;
    let restricting = entry.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    let remount = entry.flags.contains(MsFlags::MS_BIND) && !restricting.is_empty();
    if !remount && entry.propagation.is_empty() {
        return Ok(());
    }
    // The descriptor names what was covered; the new mount on top is found by its path.
    let mounted = open_in_root(root, &entry.destination, Create::Nothing)?;
    let through = format!("/proc/self/fd/{}", mounted.as_raw_fd());
    if remount {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | restricting;
        mount(None::<&str>, through.as_str(), None::<&str>, remount, None::<&str>)
            .map_err(|errno| Error::syscall(format!("cannot make the mount at {shown} read-only (or nosuid, nodev, noexec as asked)"), errno))?;
    }
    if !entry.propagation.is_empty() {
        mount(None::<&str>, through.as_str(), None::<&str>, entry.propagation, None::<&str>).map_err(|errno| Error::syscall(format!("cannot set the propagation of {shown}"), errno))?;
    }
    Ok(())
}
// ANCHOR_END: mount_in_root

/// An absolute path with `.` and `..` resolved by name, as Go's `filepath.Clean` does
/// (`..` stops at `/`): one spelling of a path inside a container, before it is compared.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            _ => {}
        }
    }
    out
}

/// What to make when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Directory,
    File,
}

// ANCHOR: open_in_root
/// Open `path` as if `root` were `/`: `..` stops at `root`, and a symbolic link,
/// even an absolute one, is followed inside `root`, never out of it. The kernel does
/// exactly this with openat2's `RESOLVE_IN_ROOT` (Linux 5.6); older kernels get the
/// same rules from [`secure_join`], as runc's securejoin does. Returns an `O_PATH`
/// descriptor: the mount goes onto what was checked, not onto what the path names later.
pub fn open_in_root(root: &Path, path: &Path, create: Create) -> Result<OwnedFd> {
    let root_dir = fs::File::open(root).map_err(|e| Error::runtime(format!("cannot open the root filesystem {}: {e}", root.display())))?;
    match openat2_in_root(&root_dir, path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create != Create::Nothing => {
            let host_path = secure_join(root, path)?;
            make(&host_path, create)?;
            if let Ok(fd) = openat2_in_root(&root_dir, path) {
                return Ok(fd);
            }
        }
        Err(Errno::ENOSYS) | Err(Errno::EPERM) => {} // no openat2 (or a seccomp filter hides it)
        Err(errno) => return Err(Error::syscall(format!("cannot find {} in the container's root filesystem", path.display()), errno)),
    }
    let host_path = secure_join(root, path)?;
    if create != Create::Nothing && fs::symlink_metadata(&host_path).is_err() {
        make(&host_path, create)?;
    }
    let c_path = CString::new(host_path.as_os_str().as_bytes()).map_err(|_| Error::runtime("a path contains a NUL byte"))?;
    // Safety: a plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::syscall(format!("cannot open {} in the container's root filesystem", path.display()), Errno::last()));
    }
    // Safety: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn openat2_in_root(root: &fs::File, path: &Path) -> std::result::Result<OwnedFd, Errno> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let c_path = CString::new(relative.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // EAGAIN: a rename or mount somewhere on the host raced a `..`; the kernel asks to retry.
    for _ in 0..32 {
        match openat2_once(root, &c_path) {
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
    Err(Errno::EAGAIN)
}

fn openat2_once(root: &fs::File, c_path: &CString) -> std::result::Result<OwnedFd, Errno> {
    // Safety: open_how is plain integers; all zeros is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // Safety: openat2 reads `how` (of the size given) and the NUL-terminated path.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), c_path.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>()) };
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
// ANCHOR_END: open_in_root

/// `root` joined with `path`, resolving each symbolic link on the way as if `root` were
/// `/` (runc's securejoin): the result is a path under `root` with no link left in it,
/// except possibly the last component when it does not exist yet.
pub fn secure_join(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new(); // relative to root, never with `..`
    let mut pending: Vec<PathBuf> = path.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut links_followed = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links_followed += 1;
                if links_followed > 40 {
                    return Err(Error::runtime(format!("too many symbolic links resolving {} in the container's root filesystem", path.display())));
                }
                let target = fs::read_link(root.join(&candidate)).map_err(|e| Error::runtime(format!("cannot read the link {}: {e}", candidate.display())))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Make a missing mount point: its parent directories, then a directory or an empty file.
fn make(host_path: &Path, create: Create) -> Result<()> {
    let failed = |e: std::io::Error| Error::runtime(format!("cannot create the mount point {}: {e}", host_path.display()));
    if let Some(parent) = host_path.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    match create {
        Create::Directory => fs::create_dir_all(host_path).map_err(failed),
        Create::File => fs::OpenOptions::new().write(true).create(true).truncate(false).open(host_path).map(drop).map_err(failed),
        Create::Nothing => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci_mount(json: &str) -> oci_spec::runtime::Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn options_become_flags_propagation_and_data() {
        let bind = Mount::from_oci(&oci_mount(r#"{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro", "nosuid", "rprivate"]}"#)).unwrap();
        assert_eq!(bind.flags, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(bind.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(bind.fstype, None);
        let tmpfs = Mount::from_oci(&oci_mount(r#"{"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=64k", "mode=755"]}"#)).unwrap();
        assert_eq!((tmpfs.fstype.as_deref(), tmpfs.data.as_str()), (Some("tmpfs"), "size=64k,mode=755"));
        assert!(Mount::from_oci(&oci_mount(r#"{"destination": "run", "type": "tmpfs"}"#)).unwrap_err().message.contains("absolute"));
        assert!(Mount::from_oci(&oci_mount(r#"{"destination": "/x", "source": "/y"}"#)).unwrap_err().message.contains("no type"));
        assert!(Mount::from_oci(&oci_mount(r#"{"destination": "/proc", "type": "proc"}"#)).unwrap().is_furnished());
    }

    #[test]
    fn paths_resolve_inside_the_root_even_through_hostile_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap(); // absolute: means the root's /etc
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("real", root.join("rel")).unwrap();
        assert_eq!(secure_join(root, Path::new("/etc-link/passwd")).unwrap(), root.join("etc/passwd"));
        assert_eq!(secure_join(root, Path::new("/up/etc")).unwrap(), root.join("etc"));
        assert_eq!(secure_join(root, Path::new("/../../rel/etc")).unwrap(), root.join("real/etc"));
        // Made inside the root, never at the host's /etc.
        let fd = open_in_root(root, Path::new("/etc-link/made-by-test"), Create::Directory).unwrap();
        let opened = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(opened, root.canonicalize().unwrap().join("etc/made-by-test"));
        assert!(!Path::new("/etc/made-by-test").exists());
        let fd = open_in_root(root, Path::new("/up/real/etc"), Create::Nothing).unwrap();
        assert_eq!(fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(), root.canonicalize().unwrap().join("real/etc"));
    }
}
