//! `--init`: a tiny init for PID 1, like tini or catatonit.
//!
//! The first process of a PID namespace has two duties no ordinary program expects:
//! 1. Signals. The kernel delivers a signal to PID 1 only if PID 1 installed a handler
//!    for it (SIGKILL and SIGSTOP from outside excepted). `sh` installs none for SIGTERM,
//!    so as PID 1 it ignores `docker stop`, which waits 10 seconds and then kills.
//! 2. Orphans. A process whose parent exits is handed to PID 1, which must wait() for
//!    it when it ends, or it stays a zombie for as long as the container runs.
//!
//! This init does both: the command runs as its child, signals are passed on to it,
//! every child that ends is reaped, and the init exits with the command's status.

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpid, setpgid, tcsetpgrp, Pid};
use step01::process::reap;

/// The signals init passes on; the rest keep their default meaning.
const PASSED_ON: [Signal; 8] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM, Signal::SIGTERM, Signal::SIGWINCH];

// ANCHOR: init
/// Be PID 1 for `command` until it ends, then exit with its status.
pub fn run(command: Pid) -> ! {
    let mut waiting = SigSet::empty();
    PASSED_ON.iter().for_each(|s| waiting.add(*s));
    waiting.add(Signal::SIGCHLD);
    // Blocked signals are queued even for PID 1, so none is lost between the waits.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waiting), None);
    loop {
        // Reap every child that has ended: the command, and any orphan handed to us.
        while let Ok(Some((pid, exit))) = reap(Pid::from_raw(-1), libc::WNOHANG) {
            if pid == command {
                // Safety: leave at once; the namespace and all its processes end with us.
                unsafe { libc::_exit(exit.code()) }
            }
        }
        match waiting.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => continue,
            Ok(signal) => {
                let _ = kill(command, signal);
            }
        }
    }
}
// ANCHOR_END: init

/// In the command's process, before execve: its own process group, in the foreground
/// of the terminal if there is one, so that Ctrl-C reaches the command once, not both
/// it and the init (which would pass it on a second time).
pub(crate) fn become_foreground_job() {
    let me = getpid();
    let _ = setpgid(me, me);
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU); // a background group may not take the terminal otherwise
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
    let _ = tcsetpgrp(std::io::stdin(), me);
}
