//! The start sequence: one container start, with the seams later steps plug into.
//!
//! ```text
//!  parent (carton)                          child
//!  ───────────────                          ─────
//!  validate the spec
//!  two pipes: "go" and "error"
//!  clone(namespace flags) ───────────────▶  starts in new namespaces, waits for "go"
//!  Hooks::parent_after_clone (cgroups, network, ...)
//!  write "go" ───────────────────────────▶  enter_root: mounts, pivot_root
//!                                           Hooks::child_after_root (hostname, security, ...)
//!                                           working directory, execve
//!  read "error" until it closes  ◀────────  on failure: the error, then _exit(125/126/127)
//!   empty: execve succeeded                 on success: execve closes the pipe (O_CLOEXEC)
//!  wait for the exit status
//! ```
//!
//! The child is cloned from carton's single thread, so it may allocate and format
//! messages: no other thread can hold a lock the child would wait on forever.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};

use crate::error::{Error, Failure, Result};
use crate::explain::{Action, Explain};
pub use crate::process::ContainerExit;
use crate::process::{wait_for_exit, Process};
use crate::{rootfs, CHAPTER};

/// What to run and where: the part of an OCI runtime spec this step knows.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The directory that becomes the container's `/`. Absolute.
    pub rootfs: PathBuf,
    pub process: Process,
    /// The namespaces the child starts in. Step 01 needs only a mount namespace;
    /// later steps add theirs (`CLONE_NEWPID`, `CLONE_NEWUTS`, ...).
    pub namespaces: CloneFlags,
}

impl ContainerSpec {
    pub fn new(rootfs: PathBuf, process: Process) -> Self {
        ContainerSpec { rootfs, process, namespaces: CloneFlags::CLONE_NEWNS }
    }

    /// Check everything that can be checked before a process exists.
    pub fn validate(&self) -> Result<()> {
        let rootfs = &self.rootfs;
        if !rootfs.is_absolute() {
            return Err(Error::runtime(format!("the root filesystem path {rootfs:?} must be absolute")));
        }
        match std::fs::metadata(rootfs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::runtime(format!(
                    "the root filesystem {} does not exist; make one with `carton bootstrap busybox {}`",
                    rootfs.display(),
                    rootfs.display()
                )))
            }
            Err(e) => return Err(Error::runtime(format!("cannot read the root filesystem {}: {e}", rootfs.display()))),
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::runtime(format!(
                    "the root filesystem {} is not a directory; give the directory that should become / in the container",
                    rootfs.display()
                )))
            }
            Ok(_) => {}
        }
        if rootfs.parent().is_none() {
            return Err(Error::runtime("the host's own / cannot be a container's root filesystem; give a separate directory"));
        }
        self.process.validate()
    }
}

// ANCHOR: hooks
/// Where later steps plug into the start sequence. Every method has a default that
/// does nothing, so a step overrides only what it adds.
pub trait Hooks {
    /// In carton, after the child exists and before it may go on: the place to put it
    /// in a cgroup or wire its network namespace.
    fn parent_after_clone(&mut self, _child: Pid, _explain: &Explain) -> Result<()> {
        Ok(())
    }

    /// In the child, after the root filesystem is in place and before execve: the place
    /// for the hostname, capabilities, seccomp.
    fn child_after_root(&self, _spec: &ContainerSpec, _explain: &Explain) -> Result<()> {
        Ok(())
    }
}
// ANCHOR_END: hooks

/// No additions: step 01 on its own.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// A container whose command is running.
#[derive(Debug)]
pub struct Running {
    pub pid: Pid,
}

impl Running {
    /// Wait for the command to end.
    pub fn wait(self) -> Result<ContainerExit> {
        wait_for_exit(self.pid)
    }
}

// ANCHOR: start
/// Start the container: returns once its command runs (or with the reason it cannot).
pub fn start(spec: &ContainerSpec, hooks: &mut dyn Hooks, explain: &Explain) -> Result<Running> {
    spec.validate()?;
    let (go_reader, go_writer) = cloexec_pipe()?;
    let (error_reader, error_writer) = cloexec_pipe()?;

    explain.step(|| {
        Action::new(CHAPTER, "create the child process in new namespaces", format!("clone({}|SIGCHLD)", flag_names(spec.namespaces)))
            .shell(unshare_equivalent(spec.namespaces))
    });
    // Safety: carton is single-threaded here, so the child may run ordinary Rust code.
    match unsafe { fork_into_namespaces(spec.namespaces) } {
        Err(errno) => {
            let hint = if errno == Errno::EPERM { "; carton needs root for now: run it with sudo (`carton doctor` checks the machine)" } else { "" };
            let flags = flag_names(spec.namespaces);
            Err(Error::runtime(format!("cannot create the container process in new namespaces ({flags}): {}{hint}", errno.desc())))
        }
        Ok(None) => {
            drop((go_writer, error_reader));
            child(spec, &*hooks, explain, go_reader, error_writer)
        }
        Ok(Some(pid)) => {
            drop((go_reader, error_writer));
            parent(pid, hooks, explain, go_writer, error_reader)
        }
    }
}
// ANCHOR_END: start

fn parent(pid: Pid, hooks: &mut dyn Hooks, explain: &Explain, go: OwnedFd, errors: OwnedFd) -> Result<Running> {
    if let Err(error) = hooks.parent_after_clone(pid, explain) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = wait_for_exit(pid);
        return Err(error);
    }
    // If the child died already the write fails; its error (if any) is read below.
    let _ = std::fs::File::from(go).write_all(b"g");

    let mut report = Vec::new();
    std::fs::File::from(errors)
        .read_to_end(&mut report)
        .map_err(|e| Error::runtime(format!("cannot read the container's start report: {e}")))?;
    if report.is_empty() {
        return Ok(Running { pid });
    }
    let _ = wait_for_exit(pid);
    Err(decode_error(&report))
}

// ANCHOR: child
/// The child's side of the start sequence. Never returns.
fn child(spec: &ContainerSpec, hooks: &dyn Hooks, explain: &Explain, go: OwnedFd, errors: OwnedFd) -> ! {
    // A panic must not unwind into the parent's code: this is a separate process.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_go(go)?;
        rootfs::enter_root(&spec.rootfs, explain)?;
        hooks.child_after_root(spec, explain)?;
        spec.process.enter_workdir(explain)?;
        Err(spec.process.exec(explain)) // returns only if execve failed
    }));
    let error = match outcome {
        Ok(Err(error)) => error,
        Ok(Ok(())) => Error::runtime("the container process returned without running its command"),
        Err(_) => Error::runtime("the container process panicked during setup"),
    };
    let _ = std::fs::File::from(errors).write_all(&encode_error(&error));
    // Safety: _exit ends this process without running the parent's atexit handlers.
    unsafe { libc::_exit(error.exit_code().into()) }
}
// ANCHOR_END: child

fn wait_for_go(go: OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    match std::fs::File::from(go).read(&mut byte) {
        Ok(1) => Ok(()),
        _ => Err(Error::runtime("carton stopped before letting the container start")),
    }
}

/// The error travels as one byte (the exit code) and the message.
fn encode_error(error: &Error) -> Vec<u8> {
    let mut bytes = vec![error.exit_code()];
    bytes.extend_from_slice(error.message.as_bytes());
    bytes
}

fn decode_error(bytes: &[u8]) -> Error {
    let failure = Failure::from_exit_code(bytes[0]).unwrap_or(Failure::Runtime);
    Error { failure, message: String::from_utf8_lossy(&bytes[1..]).into_owned() }
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|errno| Error::syscall("cannot create a pipe", errno))
}

// ANCHOR: fork_into_namespaces
/// fork(2), except that the child starts in the new namespaces named by `flags`.
///
/// The raw clone system call with no new stack behaves like fork: the child goes on
/// from here on a copy of our stack, and the call returns `None` in the child and the
/// child's pid in the parent (crun starts its containers the same way).
///
/// # Safety
/// The caller must be single-threaded, as with fork.
unsafe fn fork_into_namespaces(flags: CloneFlags) -> Result<Option<Pid>, Errno> {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    let null = std::ptr::null_mut::<libc::c_void>();
    let pid = libc::syscall(libc::SYS_clone, flags, null, null, null, null);
    match Errno::result(pid)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}
// ANCHOR_END: fork_into_namespaces

/// The `unshare` command that creates the same namespaces, for `--explain`.
pub fn unshare_equivalent(flags: CloneFlags) -> String {
    let options = [
        (CloneFlags::CLONE_NEWNS, "--mount"),
        (CloneFlags::CLONE_NEWUTS, "--uts"),
        (CloneFlags::CLONE_NEWIPC, "--ipc"),
        (CloneFlags::CLONE_NEWNET, "--net"),
        (CloneFlags::CLONE_NEWPID, "--pid"),
        (CloneFlags::CLONE_NEWUSER, "--user"),
        (CloneFlags::CLONE_NEWCGROUP, "--cgroup"),
    ];
    let mut command = String::from("unshare");
    for (flag, option) in options {
        if flags.contains(flag) {
            command.push(' ');
            command.push_str(option);
        }
    }
    command + " --fork"
}

/// `CLONE_NEWNS|CLONE_NEWPID`, for messages and `--explain`.
pub fn flag_names(flags: CloneFlags) -> String {
    flags.iter_names().map(|(name, _)| name).collect::<Vec<_>>().join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshare_equivalent_names_each_namespace() {
        assert_eq!(unshare_equivalent(CloneFlags::CLONE_NEWNS), "unshare --mount --fork");
        assert_eq!(unshare_equivalent(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID), "unshare --mount --pid --fork");
    }

    #[test]
    fn errors_survive_the_pipe() {
        let error = Error::not_found("\"nope\": executable file not found");
        assert_eq!(decode_error(&encode_error(&error)), error);
    }

    #[test]
    fn validate_names_what_is_wrong_with_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let process = Process::new(vec!["sh".into()]);
        let missing = ContainerSpec::new(dir.path().join("missing"), process.clone());
        assert!(missing.validate().unwrap_err().message.contains("does not exist"));
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let not_dir = ContainerSpec::new(file, process.clone());
        assert!(not_dir.validate().unwrap_err().message.contains("is not a directory"));
        let relative = ContainerSpec::new(PathBuf::from("rootfs"), process.clone());
        assert!(relative.validate().unwrap_err().message.contains("must be absolute"));
        let host = ContainerSpec::new(PathBuf::from("/"), process);
        assert!(host.validate().unwrap_err().message.contains("host's own /"));
    }
}
