//! The progress view on a terminal: while a RUN's container runs, its output is shown as it
//! comes, under a status line that says what runs and for how long, redrawn in place.
//!
//! The container writes into a pipe (this process's 1 and 2 point at it while the container
//! is made, as a caller hands its stdio to runc); a thread, started only once the container is
//! cloned (a container is cloned from a single-threaded process), reads it and draws.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use step01::{Error, Result};

// ANCHOR: while_running
/// Run `run` (a container's whole run), its output drawn on this terminal with a status line
/// under it. `run` calls `started` once the container is cloned.
pub fn while_running<T>(what: &str, run: impl FnOnce(&mut dyn FnMut()) -> T) -> Result<T> {
    let (reader, writer) = std::io::pipe().map_err(|e| Error::runtime(format!("cannot make a pipe: {e}")))?;
    // The terminal itself, kept apart: 1 and 2 go to the pipe meanwhile.
    // Safety: dup of our own stdout; the File owns the copy.
    let terminal = unsafe { std::fs::File::from_raw_fd(libc::dup(1)) };
    let status = format!("RUN {what}");
    let mut drawing = None;
    let mut reader = Some(reader);
    let result = step09::monitor::with_stdio([None, Some(writer.as_raw_fd()), Some(writer.as_raw_fd())], || {
        run(&mut || {
            let (reader, terminal, status) = (reader.take(), terminal.try_clone().ok(), status.clone());
            if let (Some(reader), Some(terminal)) = (reader, terminal) {
                drawing = Some(std::thread::spawn(move || draw(reader, terminal, &status)));
            }
        })
    });
    // 1 and 2 are ours again, and the last write end goes: the drawing reaches the end.
    drop(writer);
    if let Some(drawing) = drawing {
        let _ = drawing.join();
    }
    Ok(result)
}
// ANCHOR_END: while_running

/// Copy what comes from `reader` to `terminal`, a status line under it redrawn each tenth of
/// a second with the time so far; the status line goes at the end.
fn draw(mut reader: std::io::PipeReader, mut terminal: std::fs::File, status: &str) {
    // Safety: fcntl on our own pipe end: reads do not wait, the clock goes on.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let started = Instant::now();
    let mut buffer = [0u8; 8192];
    let mut pending = Vec::new();
    let shown: String = status.chars().take(60).collect();
    loop {
        let (ended, got) = match reader.read(&mut buffer) {
            Ok(0) => (true, 0),
            Ok(n) => (false, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (false, 0),
            Err(_) => (true, 0),
        };
        pending.extend_from_slice(&buffer[..got]);
        // Whole lines go above the status line; a partial one waits for its end.
        let complete = pending.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
        let _ = terminal.write_all(b"\r\x1b[2K");
        let _ = terminal.write_all(&pending[..complete]);
        pending.drain(..complete);
        if ended {
            let _ = terminal.write_all(&pending);
            let _ = terminal.flush();
            return;
        }
        let _ = write!(terminal, "[+] {shown} ({:.1}s)", started.elapsed().as_secs_f64());
        let _ = terminal.flush();
        if got == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
