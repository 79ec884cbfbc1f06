//! `-t`: give the container a terminal of its own.
//!
//! The pseudo-terminal is made *inside* the container, from its own devpts instance,
//! so that `tty` there prints `/dev/pts/0`. Its slave end becomes the command's stdin,
//! stdout and stderr; the master end travels back to carton over a unix socket (a file
//! descriptor can be sent as a message, SCM_RIGHTS), and carton relays bytes between it
//! and the user's terminal. runc's "console socket" works the same way.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

// ANCHOR: child_pty
/// In the container, after its `/dev/pts` is mounted: open a new terminal pair, make
/// the slave this process's controlling terminal and stdio, send the master to carton.
/// The container's first process also makes it `/dev/console` (`as_console`); an exec'd
/// one must not, the container has its console already.
pub fn open_as_stdio(console: &UnixStream, size: Option<libc::winsize>, owner: Option<(u32, u32)>, as_console: bool, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "open a new pseudo-terminal from the container's own /dev/pts", "open(\"/dev/ptmx\", O_RDWR|O_NOCTTY)"));
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).map_err(|e| Error::syscall("open /dev/ptmx", e))?;
    grantpt(&master).and_then(|()| unlockpt(&master)).map_err(|e| Error::syscall("unlock the pseudo-terminal", e))?;
    if let Some(size) = size {
        // Before the command starts, so its first look at the window size is right.
        // Safety: TIOCSWINSZ reads one winsize struct.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
    let slave_path = ptsname_r(&master).map_err(|e| Error::syscall("ptsname", e))?;
    let slave = open(slave_path.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty()).map_err(|e| Error::syscall(format!("open {slave_path}"), e))?;

    if let Some((uid, gid)) = owner {
        // The terminal belongs to whoever runs in it (-u), as runc does.
        nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| Error::syscall(format!("give {slave_path} to user {uid}"), e))?;
    }
    explain.step(|| Action::new(CHAPTER, format!("start a new session with {slave_path} as its controlling terminal"), "setsid(); ioctl(slave, TIOCSCTTY, 0)").shell("setsid --ctty"));
    setsid().map_err(|e| Error::syscall("setsid", e))?;
    // Safety: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::syscall("make the terminal the controlling terminal", nix::errno::Errno::last()));
    }
    explain.step(|| Action::new(CHAPTER, format!("make {slave_path} stdin, stdout and stderr"), "dup2(slave, 0); dup2(slave, 1); dup2(slave, 2)").shell(format!("exec <>{slave_path} >&0 2>&0")));
    dup2_stdin(&slave).and_then(|()| dup2_stdout(&slave)).and_then(|()| dup2_stderr(&slave)).map_err(|e| Error::syscall("dup2", e))?;
    // /dev/console is the terminal, as in Docker: some programs write there.
    let console_path = "/dev/console";
    if as_console && File::create(console_path).is_ok() {
        let _ = mount(Some(slave_path.as_str()), console_path, None::<&str>, MsFlags::MS_BIND, None::<&str>);
    }

    explain.step(|| Action::new(CHAPTER, "send the terminal's master end to carton over the console socket", "sendmsg(console, SCM_RIGHTS [master])"));
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(console.as_raw_fd(), &[IoSlice::new(b"m")], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).map_err(|e| Error::syscall("send the terminal to carton", e))?;
    Ok(())
}
// ANCHOR_END: child_pty

/// In carton: receive the master end the container sent.
pub fn receive_master(console: &UnixStream) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let message = recvmsg::<()>(console.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(|e| Error::syscall("receive the container's terminal", e))?;
    for cmsg in message.cmsgs().map_err(|e| Error::syscall("read the console message", e))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // Safety: the kernel just gave us this descriptor; nobody else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::runtime("the container did not send its terminal"))
}

/// SIGWINCH (the window changed size) must be blocked before the container starts, so
/// the thread that follows resizes can wait for it.
pub fn block_window_changes() {
    let _ = window_change().thread_block();
}

fn window_change() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    set
}

/// Ctrl-D: what a terminal in its usual (canonical) mode reads as the end of input.
const END_OF_FILE: u8 = 0x04;

// ANCHOR: relay
/// carton's side while the container runs: the user's terminal in raw mode (keys go
/// to the container as typed, Ctrl-C included), bytes relayed both ways, window size
/// passed on. Dropping the relay puts the user's terminal back as it was.
pub struct Relay {
    output: Option<JoinHandle<()>>,
    saved_terminal: Option<Termios>,
}

impl Relay {
    /// `container` is the container's first process, stopped if nobody can read it any more.
    pub fn start(master: OwnedFd, interactive: bool, container: nix::unistd::Pid) -> Result<Relay> {
        let stdin = std::io::stdin();
        let user_terminal = tcgetattr(&stdin).ok();
        // Raw mode only with -i: without it no key is passed on, and Ctrl-C must stay carton's.
        let saved_terminal = user_terminal.clone().filter(|_| interactive);
        if let Some(saved) = &saved_terminal {
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        if user_terminal.is_some() {
            // The child set the starting size; a resize since then is queued (SIGWINCH is blocked).
            let resize_master = master.try_clone().map_err(|e| Error::runtime(format!("dup the terminal: {e}")))?;
            std::thread::spawn(move || loop {
                if window_change().wait().is_ok() {
                    copy_window_size(&resize_master);
                }
            });
        }
        if interactive {
            let mut to_container = File::from(master.try_clone().map_err(|e| Error::runtime(format!("dup the terminal: {e}")))?);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_container);
                // Our input ended (a pipe or file ran out): type the terminal's
                // end-of-file key, Ctrl-D, so the command reads its end of input too.
                let _ = to_container.write_all(&[END_OF_FILE]);
            });
        }
        let mut from_container = File::from(master);
        let output = std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            let mut stdout = std::io::stdout();
            // Ends with EIO once every process holding the slave end has exited. If our
            // stdout goes away (`| head -1`), nobody will ever see the container's output:
            // stop it, as SIGPIPE stops a pipeline, and drain until it is gone (a terminal
            // nobody reads fills up, and the container would block on it).
            let mut reader_gone = false;
            while let Ok(n @ 1..) = from_container.read(&mut buffer) {
                if !reader_gone && stdout.write_all(&buffer[..n]).and_then(|()| stdout.flush()).is_err() {
                    reader_gone = true;
                    let _ = nix::sys::signal::kill(container, nix::sys::signal::Signal::SIGKILL);
                }
            }
        });
        Ok(Relay { output: Some(output), saved_terminal })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(output) = self.output.take() {
            let _ = output.join(); // the rest of the container's output first
        }
        if let Some(saved) = &self.saved_terminal {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
// ANCHOR_END: relay

/// The size of the user's terminal window (carton's stdin), if it is a terminal.
pub fn window_size() -> Option<libc::winsize> {
    // Safety: winsize is plain data; TIOCGWINSZ writes one.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) } == 0).then_some(size)
}

/// The user's window size, given to the container's terminal after a resize.
fn copy_window_size(master: &OwnedFd) {
    if let Some(size) = window_size() {
        // Safety: TIOCSWINSZ reads one winsize struct.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}
