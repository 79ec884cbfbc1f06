//! The runtime's own binary, out of the container's reach (CVE-2019-5736).
//!
//! A process carton forks into a container runs carton's binary until its `execve`, and
//! `/proc/PID/exe` of such a process leads to that file on the host. In 2019 this was how
//! a container overwrote runc: its `/bin/sh` was a script starting `#!/proc/self/exe`, so
//! `docker exec sh` made the kernel run *runc's* binary inside the container; another
//! process there opened `/proc/PID/exe`, waited for runc to end, and wrote the file.
//!
//! The fix, as runc's: the process that enters a container runs the binary from a
//! read-only place. carton re-executes itself through a **detached, read-only bind mount**
//! of its own file (`open_tree` + `mount_setattr` + `execveat`): the mount exists in no
//! mount table, goes away with the last process using it, and every path to the file
//! through it, `/proc/PID/exe` included, refuses writing with EROFS. A kernel without
//! these calls (before 5.12) gets runc's older fix: a sealed copy in memory (`memfd`).
//!
//! It costs one more `execve` of carton (1.6 ms a `carton exec` on the lab machine, see the
//! chapter), so it is paid where a container's other processes can see the runtime's: `exec`
//! (the new process joins a PID namespace that has other processes in it) and a container
//! created in a PID namespace it joins. A new container's first process is alone in its new
//! PID namespace, and is refused the one way it could run carton's binary itself: a program
//! that leads to `/proc/self/exe` ([`refuse_own_binary`]); `--init`, which stays, is made not
//! dumpable.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use step01::{Error, Result};

/// Set in the environment of the re-executed carton, so that it never re-executes again.
const SEALED: &str = "_CARTON_EXE_SEALED";

/// Whether this process runs its binary from a read-only place already.
pub fn is_sealed() -> bool {
    std::env::var_os(SEALED).is_some()
}

// ANCHOR: seal
/// Re-execute this program (same arguments and environment) from a read-only, detached
/// bind mount of its own file, or from a sealed copy in memory. Returns only on failure,
/// or at once when this process is the re-executed one.
pub fn reexec_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let program = read_only_mount_of_self().or_else(|_| sealed_copy_of_self())?;
    let mut argv: Vec<CString> = std::env::args_os().map(c_string).collect::<Result<_>>()?;
    if argv.is_empty() {
        argv.push(CString::new("carton").expect("no NUL"));
    }
    let mut envp: Vec<CString> = std::env::vars_os().map(|(key, value)| c_string([key, "=".into(), value].into_iter().collect())).collect::<Result<_>>()?;
    envp.push(CString::new(format!("{SEALED}=1")).expect("no NUL"));
    let pointers = |strings: &[CString]| strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>();
    let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
    // Safety: execveat with a live descriptor and NULL-terminated arrays of C strings.
    unsafe { libc::syscall(libc::SYS_execveat, program.as_raw_fd(), c"".as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr(), libc::AT_EMPTY_PATH) };
    Err(Error::syscall("cannot re-execute carton from its read-only copy", Errno::last()))
}
// ANCHOR_END: seal

fn c_string(text: OsString) -> Result<CString> {
    CString::new(text.as_bytes()).map_err(|_| Error::runtime("an argument or environment variable holds a NUL byte"))
}

// ANCHOR: read_only_mount
/// A detached bind mount of this program's file, made read-only: a descriptor for it.
fn read_only_mount_of_self() -> Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // Safety: open_tree on a path, returning a new descriptor (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/proc/self/exe".as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) };
    let fd = Errno::result(fd).map_err(|errno| Error::syscall("cannot clone a mount of carton's binary (open_tree)", errno))?;
    // Safety: open_tree returned a new descriptor, owned here.
    let mount = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // Safety: mount_setattr reads one struct mount_attr of the size given.
    let done = unsafe { libc::syscall(libc::SYS_mount_setattr, mount.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, &attr as *const MountAttr, std::mem::size_of::<MountAttr>()) };
    Errno::result(done).map_err(|errno| Error::syscall("cannot make the mount of carton's binary read-only (mount_setattr)", errno))?;
    Ok(mount)
}
// ANCHOR_END: read_only_mount

/// A copy of this program's file in memory, sealed against any change.
fn sealed_copy_of_self() -> Result<OwnedFd> {
    let mut original = std::fs::File::open("/proc/self/exe").map_err(|e| Error::runtime(format!("cannot open carton's binary: {e}")))?;
    // Safety: memfd_create with a C string name and flags.
    let fd = Errno::result(unsafe { libc::memfd_create(c"carton".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })
        .map_err(|errno| Error::syscall("cannot make a sealed copy of carton (memfd_create)", errno))?;
    // Safety: a new descriptor, owned here.
    let copy = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(copy);
    std::io::copy(&mut original, &mut file).map_err(|e| Error::runtime(format!("cannot copy carton's binary into memory: {e}")))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // Safety: fcntl on a descriptor owned here.
    Errno::result(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map_err(|errno| Error::syscall("cannot seal carton's copy", errno))?;
    Ok(file.into())
}

// ANCHOR: refuse_own_binary
/// Refuse to execve `program` (a path inside the container) when it would run carton's own
/// binary: the program itself, or the interpreter its `#!` line names (scripts may name
/// scripts, four deep, as the kernel allows), is the file this process runs from. A
/// container whose entrypoint is `#!/proc/self/exe` would otherwise run the host's carton
/// inside the container, with the image's own libc loaded into it: the attacker's code in a
/// process whose `/proc/self/exe` is the runtime's file (CVE-2019-5736, its first form).
pub fn refuse_own_binary(program: &std::path::Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    // Unreadable only under a profile that refuses stat: execve would then fail anyway.
    let Ok(own) = std::fs::metadata("/proc/self/exe") else { return Ok(()) };
    let mut candidate = program.to_path_buf();
    for _ in 0..5 {
        let Ok(meta) = std::fs::metadata(&candidate) else { return Ok(()) }; // execve will say why
        if (meta.dev(), meta.ino()) == (own.dev(), own.ino()) {
            return Err(Error::cannot_invoke(format!(
                "{} leads to carton's own binary (through /proc/self/exe): refused, since it would let the container reach the runtime's file (CVE-2019-5736)",
                program.display()
            )));
        }
        let mut head = [0u8; 256];
        let read = std::fs::File::open(&candidate).and_then(|mut file| file.read(&mut head)).unwrap_or(0);
        let Some(line) = head[..read].strip_prefix(b"#!") else { return Ok(()) };
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let interpreter = line.split(|b| *b == b' ' || *b == b'\t').find(|word| !word.is_empty()).unwrap_or_default();
        if interpreter.is_empty() {
            return Ok(());
        }
        candidate = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(interpreter));
    }
    Ok(())
}
// ANCHOR_END: refuse_own_binary
