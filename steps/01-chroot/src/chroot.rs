//! The 1979 way: fork, chroot, chdir, exec. It changes what `/` means for one process
//! and nothing else — the reason it is not enough is in `breakout/main.rs`.

use std::path::Path;

use nix::unistd::{chdir, chroot, fork, ForkResult};

use crate::error::{Error, Result};
use crate::explain::Explain;
use crate::process::{wait_for_exit, ContainerExit, Process};

// ANCHOR: plain_chroot
/// Run `process` with `rootfs` as its `/`, using nothing but chroot.
pub fn run_in_plain_chroot(rootfs: &Path, process: &Process) -> Result<ContainerExit> {
    process.validate()?;
    // Safety: the demo binary that calls this is single-threaded.
    match unsafe { fork() }.map_err(|errno| Error::syscall("fork", errno))? {
        ForkResult::Child => {
            let error = match chroot(rootfs).and_then(|()| chdir("/")) {
                Err(errno) => Error::syscall(format!("chroot to {}", rootfs.display()), errno),
                Ok(()) => process.exec(&Explain::off()), // returns only if execve failed
            };
            eprintln!("step01-chroot: {error}");
            // Safety: leave the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(error.exit_code().into()) }
        }
        ForkResult::Parent { child } => wait_for_exit(child),
    }
}
// ANCHOR_END: plain_chroot
