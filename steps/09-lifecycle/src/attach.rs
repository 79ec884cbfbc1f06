//! `attach`: a terminal joins a detached container that runs, and leaves it again.
//!
//! The monitor listens on a Unix socket in the container's directory. Whoever connects gets
//! the container's output as it comes, in frames that say which stream (Docker's attach
//! framing: a byte for the stream, three zero bytes, the length as four big-endian bytes),
//! and what it sends goes to the container's input (its terminal with `-t`, its stdin with
//! `-i`). Detaching is the client's: it watches the keys typed for Ctrl-P Ctrl-Q (or
//! `--detach-keys`) and hangs up; the container goes on.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use step01::{Error, Result};

use crate::record::Container;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// Stream numbers of the frames: Docker's.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

// ANCHOR: hub
/// The monitor's side: everyone attached now.
#[derive(Default)]
pub struct Hub {
    clients: Mutex<Vec<UnixStream>>,
}

impl Hub {
    /// Pass `bytes` of `stream` on to every client; one that hung up is forgotten.
    pub fn send(&self, stream: u8, bytes: &[u8]) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.is_empty() {
            return;
        }
        let length = (bytes.len() as u32).to_be_bytes();
        let header = [stream, 0, 0, 0, length[0], length[1], length[2], length[3]];
        clients.retain_mut(|client| client.write_all(&header).and_then(|()| client.write_all(bytes)).is_ok());
    }

    /// Hang up on everyone (the container has ended).
    pub fn close(&self) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for client in clients.drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listen at `path`; each client joins the hub, and what it sends goes to `input`
    /// (the container's terminal or stdin), if the container has one.
    pub fn listen(self: &Arc<Hub>, path: &Path, input: Option<OwnedFd>) -> Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = short_path(path, |short| UnixListener::bind(short)).map_err(|e| Error::runtime(format!("cannot listen at {}: {e}", path.display())))?;
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // A client that stops reading is dropped, rather than stopping the output
                // (and, its pipes full, the container) for everyone.
                let _ = client.set_write_timeout(Some(std::time::Duration::from_secs(2)));
                let Ok(sender) = client.try_clone() else { continue };
                hub.clients.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
                if let Some(input) = input.as_ref().and_then(|fd| fd.try_clone().ok()) {
                    std::thread::spawn(move || {
                        let (mut client, mut input) = (client, std::fs::File::from(input));
                        let _ = std::io::copy(&mut client, &mut input);
                    });
                }
            }
        });
        Ok(())
    }
}
// ANCHOR_END: hub

/// Do `work` with `path` as a short path to the same place: a socket's path must fit in
/// 108 bytes, and a state root's containers' can be longer. Through `/proc/self/fd/N/`, an
/// open descriptor of its directory, it always fits.
fn short_path<T>(path: &Path, work: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return work(path) };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string()).join(name);
    let done = work(&short);
    drop(dir); // after the bind or connect: the path is resolved by then
    done
}

/// How an attachment ended.
pub enum Detached {
    /// The container ended: its exit code.
    Ended(i32),
    /// The user typed the detach keys; the container goes on.
    ByKeys,
}

/// `--detach-keys`: `ctrl-p,ctrl-q` (Docker's default), letters, `ctrl-@` to `ctrl-_`.
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>> {
    let bad = || Error::runtime(format!("invalid --detach-keys {text:?}: give keys such as ctrl-p,ctrl-q (a letter, or ctrl- and a letter or one of @[\\]^_)"));
    text.split(',')
        .map(|key| match key.strip_prefix("ctrl-") {
            Some(rest) if rest.len() == 1 => {
                let c = rest.as_bytes()[0].to_ascii_uppercase();
                if (b'@'..=b'_').contains(&c) {
                    Ok(c - b'@')
                } else {
                    Err(bad())
                }
            }
            None if key.len() == 1 && key.as_bytes()[0].is_ascii_graphic() => Ok(key.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

// ANCHOR: attach
/// Attach this process's terminal to container `id` until it ends, or until the user types
/// `detach_keys`. With `sig_proxy`, the signals this process gets (Ctrl-C's SIGINT, a
/// `kill`) go to the container's process instead; with a terminal, Ctrl-C is a key like
/// any other and goes in as input.
pub fn attach(state_root: &Path, id: &str, detach_keys: &[u8], with_stdin: bool, sig_proxy: bool) -> Result<Detached> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    if !container.is_running() {
        return Err(Error::runtime(format!("you cannot attach to a stopped container ({}): start it first", container.name)));
    }
    if sig_proxy && !container.tty {
        proxy_signals(state_root, id)?;
    }
    let path = Container::dir(state_root, id).join(SOCKET);
    let socket = short_path(&path, |short| UnixStream::connect(short))
        .map_err(|e| Error::runtime(format!("cannot attach to {} ({e}): a container started attached (without -d) has no monitor to attach to", container.name)))?;
    let detached = Arc::new(AtomicBool::new(false));
    let _raw = with_stdin.then(|| RawTerminal::enter(container.tty));
    if with_stdin {
        let (mut to_container, detached, keys) = (socket.try_clone().map_err(|e| Error::runtime(format!("cannot attach: {e}")))?, Arc::clone(&detached), detach_keys.to_vec());
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let (mut buffer, mut matched) = ([0u8; 1024], 0);
            while let Ok(n @ 1..) = stdin.read(&mut buffer) {
                let mut out = Vec::with_capacity(n);
                for &byte in &buffer[..n] {
                    if !keys.is_empty() && byte == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            detached.store(true, Ordering::SeqCst);
                            let _ = to_container.write_all(&out);
                            let _ = to_container.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        continue;
                    }
                    // Not the sequence after all: what was held back goes on too, and this
                    // key may begin the sequence again.
                    out.extend_from_slice(&keys[..matched]);
                    matched = 0;
                    if byte == keys[0] {
                        matched = 1;
                        if keys.len() == 1 {
                            detached.store(true, Ordering::SeqCst);
                            let _ = to_container.write_all(&out);
                            let _ = to_container.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    } else {
                        out.push(byte);
                    }
                }
                if to_container.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
    let mut from_container = socket;
    let mut header = [0u8; 8];
    while from_container.read_exact(&mut header).is_ok() {
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; length];
        if from_container.read_exact(&mut payload).is_err() {
            break;
        }
        let _ = if header[0] == STDERR { std::io::stderr().write_all(&payload) } else { std::io::stdout().write_all(&payload).and_then(|()| std::io::stdout().flush()) };
    }
    if detached.load(Ordering::SeqCst) {
        return Ok(Detached::ByKeys);
    }
    // The container's process ended: its status, once the monitor has recorded it (a
    // restart policy may start it again; this run's status is still the one recorded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let current = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("container {id} was removed")))?;
        let same_run = current.observed_status() == crate::Status::Running && current.state.pid == container.state.pid;
        if !same_run || std::time::Instant::now() > deadline {
            return Ok(Detached::Ended(current.state.exit_code));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
// ANCHOR_END: attach

// ANCHOR: sig_proxy
/// The signals a user sends to a command in front of them, passed on to container `id`'s
/// first process (`docker attach --sig-proxy`, its default): blocked in this process
/// (before any thread starts: threads inherit the mask), waited for by a thread of its own.
fn proxy_signals(state_root: &Path, id: &str) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
        signals.add(signal);
    }
    signals.thread_block().map_err(|errno| Error::syscall("sigprocmask", errno))?;
    // A shell starts a background command with SIGINT ignored, and an ignored signal is
    // dropped before anyone can wait for it: back to the default (harmless while blocked).
    for signal in signals.iter() {
        // Safety: the default disposition, no handler of ours.
        let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    }
    let (state_root, id) = (state_root.to_path_buf(), id.to_string());
    std::thread::spawn(move || {
        let runtime = step07::Runtime::new(&state_root, step01::Explain::off());
        while let Ok(signal) = signals.wait() {
            let _ = runtime.kill(&id, signal, false);
        }
    });
    Ok(())
}
// ANCHOR_END: sig_proxy

/// The user's terminal in raw mode while attached to a container's terminal (keys go to
/// it as typed), put back as it was when dropped. Nothing to do when stdin is no terminal.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter(container_has_terminal: bool) -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawTerminal(None) };
        if !container_has_terminal {
            return RawTerminal(None); // lines as typed, Ctrl-C this command's
        }
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_read_as_dockers() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-x,x").unwrap(), [0x18, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@").unwrap(), [0]);
        for bad in ["ctrl-", "ctrl-pp", "alt-x", ""] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }
}
