//! Why the first move into a cgroup is slow, and how carton hides it.
//!
//! Moving a process into a cgroup (a write to `cgroup.procs`) takes a lock that the kernel
//! also takes, for reading, whenever a process forks or its threads come and go:
//! `cgroup_threadgroup_rwsem`, a per-CPU reader-writer lock. Readers are nearly free; the price is paid by a writer, who
//! must wait for an RCU grace period, until every CPU has passed a quiescent state, before
//! it may go on. That is about 10 ms on a small VM, more than everything else a container's
//! start does. The lock stays in its "writer's" mode for a grace period after the last
//! writer is done, so a second move soon after the first does not wait at all.
//!
//! The wait is the same whoever takes it. So a command that will put a container into
//! its cgroup starts it at once, in a process that moves itself into the cgroup it is
//! already in (writing `0`, "the writer itself", to its `cgroup.procs`: the kernel takes
//! the lock, and moves nothing). While that process waits, carton reads the image, mounts
//! the overlay and clones the container's process; when it moves that process, the lock is
//! warm (or still held by the warming process: then the move waits only for the rest).
//! The warming process is carton's grandchild, orphaned at once: carton never has to
//! collect it, and no wait for "a child" can meet it.
//!
//! runc pays the wait in full, and crun on v1. On cgroup v2, `clone3(CLONE_INTO_CGROUP)`
//! avoids the move altogether: carton's containers, and the processes `exec` adds to them,
//! are born in their cgroups there, so there is nothing to warm. A warming process would even
//! hurt: it holds the cgroup mutex for its whole wait, and clone3 takes that mutex too. The
//! `favordynmods` mount option of cgroup2 makes the lock cheap for writers (and dearer for
//! every fork): a host's choice, not a runtime's.

use std::ffi::CString;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use crate::layout::{Layout, Mode};

// ANCHOR: warm_up
/// Take the cgroup lock's slow path now, in the background, where a process will be moved
/// into a cgroup (v1 and hybrid hosts; on v2 it is born there). Call it first thing in a
/// command that will start a process in a container, while the process has one thread.
pub fn warm_up() {
    let layout = Layout::detected();
    if layout.mode == Mode::Unified {
        return;
    }
    let Some(procs) = own_cgroup_procs(layout) else { return };
    // SAFETY: the children only call fork, open, write and _exit (async-signal-safe), on a
    // path prepared before the first fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            if libc::fork() != 0 {
                libc::_exit(0); // the go-between: gone at once, its child orphaned
            }
            // Not a reader or writer of carton's output: `$(carton run ...)` need not wait for it.
            for fd in 0..3 {
                libc::close(fd);
            }
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            libc::_exit(0)
        },
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None); // the go-between, which only forks
        }
        Err(_) => {} // only an optimisation: the move pays the wait itself
    }
}
// ANCHOR_END: warm_up

/// `cgroup.procs` of the cgroup this process is in, in the first v1 hierarchy (one is
/// enough: the lock is the same for all of them, and for cgroup2's tree).
fn own_cgroup_procs(layout: &Layout) -> Option<CString> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let hierarchy = layout.hierarchies.first()?;
    let path = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| hierarchy.controllers.contains(&c.to_string())).then_some(path)
    })?;
    let mount = &hierarchy.path;
    CString::new(mount.join(path.trim_start_matches('/')).join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warming_child_writes_to_this_process_own_cgroup() {
        let Some(procs) = own_cgroup_procs(Layout::detected()) else { return };
        let path = std::path::PathBuf::from(procs.into_string().unwrap());
        assert!(path.ends_with("cgroup.procs") && path.exists(), "{}", path.display());
        // This process is listed there: the write moves nothing.
        let listed = std::fs::read_to_string(&path).unwrap();
        assert!(listed.lines().any(|pid| pid == std::process::id().to_string()), "{} does not list this process", path.display());
    }
}
