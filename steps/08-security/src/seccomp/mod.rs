//! seccomp: a filter on the system calls themselves.
//!
//! Capabilities decide what root may do; some system calls are dangerous even so (they
//! reach kernel code few programs need, where bugs lived: `keyctl`, `bpf`, `userfaultfd`,
//! new user namespaces), and some the capabilities do not cover. A seccomp filter is a
//! small program the kernel runs on each system call, before the call: allow it, or
//! answer an error without running it. The spec's `linux.seccomp` is the policy
//! ([`profile`] makes it from Docker's format); [`bpf`] compiles it; [`load`] installs it.

pub mod bpf;
pub mod profile;
mod syscalls;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag as Flag};
use step01::{Action, Error, Explain, Result};

pub use bpf::Instruction;

use crate::CHAPTER;

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    pub program: Vec<Instruction>,
    /// `SECCOMP_FILTER_FLAG_*`: log what is not allowed, keep speculative-store bypass, ...
    pub flags: u32,
}

impl Filter {
    /// The filter of the spec's `linux.seccomp`, for this machine's architecture.
    pub fn from_oci(seccomp: &LinuxSeccomp) -> Result<Filter> {
        let program = bpf::compile(seccomp, bpf::native_arch()?)?;
        let flags = seccomp.flags().as_deref().unwrap_or_default().iter().fold(0, |flags, flag| {
            flags
                | match flag {
                    Flag::SeccompFilterFlagTsync => 1,
                    Flag::SeccompFilterFlagLog => 2,
                    Flag::SeccompFilterFlagSpecAllow => 4,
                    Flag::SeccompFilterFlagWaitKillableRecv => 32,
                }
        });
        Ok(Filter { program, flags })
    }
}

// ANCHOR: load
/// Install `filter` on this process (and everything it will execve or fork). The kernel
/// takes a filter only from a process with no_new_privs set or CAP_SYS_ADMIN: otherwise a
/// filter could fool a set-uid program into running with a call it relies on failing.
pub fn load(filter: &Filter, explain: &Explain) -> Result<()> {
    explain.step(|| {
        Action::new(CHAPTER, format!("load a seccomp filter of {} instructions", filter.program.len()), "seccomp(SECCOMP_SET_MODE_FILTER, flags, &program)").shell("grep Seccomp /proc/self/status")
    });
    let program = libc::sock_fprog { len: filter.program.len() as u16, filter: filter.program.as_ptr() as *mut libc::sock_filter };
    // Safety: the program outlives the call, which copies it into the kernel.
    let done = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, filter.flags, &program as *const libc::sock_fprog) };
    if done != 0 {
        let errno = nix::errno::Errno::last();
        let hint = match errno {
            nix::errno::Errno::EACCES => ": the process has neither no_new_privs nor CAP_SYS_ADMIN",
            nix::errno::Errno::EINVAL => ": the kernel refused the program or a flag",
            _ => "",
        };
        return Err(Error::runtime(format!("cannot load the seccomp filter: {errno}{hint}")));
    }
    Ok(())
}
// ANCHOR_END: load
