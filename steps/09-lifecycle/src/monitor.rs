//! The monitor: one small process per running container, conmon's job. It runs the
//! container (step 07's create and start, with step 08's security), holds its output and
//! writes it to the log, relays its published ports, waits for it, records how it ended,
//! takes it down, and starts it again when its restart policy says so.
//!
//! A detached container's monitor is a process of its own (`carton run -d` starts it and
//! returns): in a session of its own, not the CLI's child, so that it outlives the CLI
//! and no terminal's hangup reaches it. An attached `carton run` is its own container's
//! monitor, in-process, with the user's terminal as the container's. Either way the same
//! function, [`run_once`], runs the container.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use step01::{Error, Result};
use step07::{CreateOptions, Runtime};

use crate::health::{Health, Watch};
use crate::record::{Container, Status};
use crate::{attach, logs};

/// Where the container's standard streams go.
pub enum Stdio {
    /// Detached: into the log, through pipes (or one terminal, with `tty`) the monitor
    /// holds. With `interactive` (`-i`), stdin is a pipe the monitor keeps open (the
    /// container waits for input, as with `docker run -di`).
    Logged { tty: bool, interactive: bool },
    /// Attached: the user's own stdin/stdout/stderr, or a terminal relayed to the user's
    /// (`-t`): step 02's, as `carton run` always did.
    Inherited { tty: bool, interactive: bool },
}

/// How one run of a container ended.
pub struct Ended {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// How long it ran.
    pub ran_for: Duration,
}

// ANCHOR: run_once
/// Run container `id` once: bring it up (root mounted, network made), bind its ports
/// (unless the caller has: `published`), create and start it, record it running (`started`
/// is called then), wait for it, record how it ended, delete the runtime's part. The
/// container stays up: the caller decides whether it starts again or goes down.
pub fn run_once(runtime: &Runtime, id: &str, stdio: Stdio, published: Option<Vec<step03::ports::Published>>, started: impl FnOnce(&Container)) -> Result<Ended> {
    let (state_root, explain) = (runtime.state_root.as_path(), &runtime.explain);
    let dir = Container::dir(state_root, id);
    let connected = step07::engine::up(state_root, id, explain)?;
    let published = match published {
        Some(published) => published,
        None => step03::publish(&connected.ports)?,
    };
    let ports: Vec<String> = published.iter().map(|p| p.mapping.to_string()).collect();
    let record = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    let log_path = logs::path(&dir, id);
    let (stdin, streams) = match &stdio {
        // Attached without a terminal: the output comes through here, to the user and
        // into the log (`carton logs` works after an attached run too), unless the
        // container is removed at its end anyway (`--rm`: nothing would read the log).
        Stdio::Inherited { tty: false, interactive } if !record.host_config.auto_remove => (if *interactive { step02::Stdin::Inherit } else { step02::Stdin::Null }, Streams::pipes(false, true)?),
        Stdio::Inherited { tty, interactive } => {
            let (console, stdin) = step02::attach_stdio(*tty, *interactive)?;
            (stdin, Streams::Inherited { console, interactive: *interactive })
        }
        Stdio::Logged { tty: true, .. } => {
            let (console, stdin) = step02::attach_stdio(true, false)?;
            (stdin, Streams::Terminal { console })
        }
        Stdio::Logged { tty: false, interactive } => (if *interactive { step02::Stdin::Inherit } else { step02::Stdin::Null }, Streams::pipes(*interactive, false)?),
    };
    let log = match &streams {
        Streams::Inherited { .. } => None,
        _ => Some(Arc::new(Mutex::new(logs::Writer::open(&log_path, record.host_config.log_max_size, record.host_config.log_max_file)?))),
    };
    // The container inherits this process's 0, 1 and 2 while it is created: point them at
    // the pipes for that moment (as a caller hands its stdio to runc).
    let options = CreateOptions::new(true, stdin);
    // Step 08's security around the steps' hooks. What it cannot apply is said once the
    // container is made, on this process's own stderr (during the create, fd 2 is the
    // container's: the warning would land in its log).
    let mut warnings = Vec::new();
    let created = streams.as_stdio(|| {
        runtime.create_with(id, &dir, options, |spec, hooks| {
            let reading = step08::from_oci(spec, hooks)?;
            warnings = reading.warnings;
            Ok(reading.security)
        })
    });
    warnings.iter().for_each(|warning| eprintln!("carton: warning: {warning}"));
    let created = created?;
    let pid = created.running.pid;
    let cgroup = created.cgroup.clone();
    // Threads from here on: the container is cloned already.
    if let Some(address) = connected.address {
        step03::relay(published, address, explain);
    }
    // Whoever attaches (`carton attach`) gets the output too, and its keys go to the input.
    let hub = log.as_ref().map(|_| Arc::new(attach::Hub::default()));
    let outcome = (|| {
        let pumps = streams.start(&created.running, log.clone(), hub.clone(), &dir.join(attach::SOCKET))?;
        runtime.start(id)?;
        let running = created.running.confirm_exec()?;
        let started_at = Instant::now();
        let container = Container::update(state_root, id, |c| {
            let state = &mut c.state;
            state.status = Status::Running;
            state.pid = pid.as_raw();
            state.pid_start_time = created.record.init.start_time;
            state.started_at = step07::state::now_rfc3339();
            state.error.clear();
            state.monitor = Some(step01::process::UniquePid::current().to_string());
            c.ip_address = connected.address.map(|a| a.to_string());
            c.ports = ports;
            if c.healthcheck.as_ref().and_then(|check| check.command()).is_some() {
                state.health = Some(Health::starting(state.health.take()));
            }
        })?;
        // Its health checks, this process's thread while it runs (stopped when it ends).
        let _health = container.healthcheck.clone().and_then(|check| Watch::start("/proc/self/exe".into(), state_root, id, check));
        started(&container);
        step02::explain_running(pid, explain);
        let exit = running.wait()?;
        drop(pumps); // the last of its output, then the user's terminal as it was
        Ok((exit, started_at.elapsed()))
    })();
    if let Some(hub) = &hub {
        let _ = std::fs::remove_file(dir.join(attach::SOCKET));
        hub.close();
    }
    let oom_killed = cgroup.as_ref().and_then(|cgroup| cgroup.stats().ok()).is_some_and(|stats| stats.oom_kills > 0);
    if outcome.is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = runtime.delete(id, true);
    let (exit, ran_for) = outcome?;
    let exit_code = exit.code();
    Container::update(state_root, id, |c| {
        let state = &mut c.state;
        (state.status, state.pid, state.pid_start_time, state.exit_code, state.oom_killed) = (Status::Exited, 0, 0, exit_code, oom_killed);
        state.finished_at = step07::state::now_rfc3339();
        c.ports.clear();
    })?;
    Ok(Ended { exit_code, oom_killed, ran_for })
}
// ANCHOR_END: run_once

/// The container's streams, on the monitor's side.
enum Streams {
    /// The user's, as they are (or a terminal relayed to the user's).
    Inherited { console: Option<std::os::unix::net::UnixStream>, interactive: bool },
    /// A terminal the container makes, whose master end the monitor receives.
    Terminal { console: Option<std::os::unix::net::UnixStream> },
    /// Pipes: the container's ends (0 with `-i`, 1, 2) and the monitor's; with `echo`, its
    /// output goes to this process's own stdout and stderr too (an attached run).
    Pipes { container: [Option<OwnedFd>; 3], stdout: OwnedFd, stderr: OwnedFd, stdin_writer: Option<OwnedFd>, echo: bool },
}

impl Streams {
    fn pipes(interactive: bool, echo: bool) -> Result<Streams> {
        let (stdout, stdout_child) = step01::container::cloexec_pipe()?;
        let (stderr, stderr_child) = step01::container::cloexec_pipe()?;
        let (stdin_child, stdin_writer) = if interactive {
            let (reader, writer) = step01::container::cloexec_pipe()?;
            (Some(reader), Some(writer))
        } else {
            (None, None)
        };
        Ok(Streams::Pipes { container: [stdin_child, Some(stdout_child), Some(stderr_child)], stdout, stderr, stdin_writer, echo })
    }

    /// Run `work` (the create) with this process's 0, 1 and 2 pointing at the container's
    /// ends, then put them back.
    fn as_stdio<T>(&self, work: impl FnOnce() -> T) -> T {
        let Streams::Pipes { container, .. } = self else { return work() };
        with_stdio(container.each_ref().map(|end| end.as_ref().map(AsRawFd::as_raw_fd)), work)
    }

    /// Start passing the container's output on (to the log and whoever attaches, or to the
    /// user's terminal); attaching clients listened for at `socket`.
    fn start(self, running: &step01::Running, log: Option<Arc<Mutex<logs::Writer>>>, hub: Option<Arc<attach::Hub>>, socket: &Path) -> Result<Pumps> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::runtime(format!("dup the container's input: {e}")));
        match self {
            Streams::Inherited { console, interactive } => Ok(Pumps { relay: step02::attach_terminal(console, interactive, running)?, threads: Vec::new(), _stdin: None }),
            Streams::Terminal { console } => {
                let master = step02::tty::receive_master(&console.ok_or_else(|| Error::runtime("no console socket"))?)?;
                let (log, hub) = (log.expect("a logged stream has a log"), hub.expect("and a hub"));
                hub.listen(socket, Some(dup(&master)?))?;
                let reader = File::from(dup(&master)?);
                // The master stays open here (the container's stdin: it waits for input).
                Ok(Pumps { relay: None, threads: vec![pump(reader, attach::STDOUT, log, hub, false)], _stdin: Some(master) })
            }
            Streams::Pipes { container, stdout, stderr, stdin_writer, echo } => {
                drop(container); // only the container holds its ends now: EOF when it is done
                let (log, hub) = (log.expect("a logged stream has a log"), hub.expect("and a hub"));
                hub.listen(socket, stdin_writer.as_ref().map(dup).transpose()?)?;
                let threads = vec![pump(File::from(stdout), attach::STDOUT, log.clone(), hub.clone(), echo), pump(File::from(stderr), attach::STDERR, log, hub, echo)];
                Ok(Pumps { relay: None, threads, _stdin: stdin_writer })
            }
        }
    }
}

/// Run `work` with this process's 0, 1 and 2 pointing at `ends` (where one is given), which
/// a process it starts inherits (as a caller hands its stdio to runc); then put them back.
pub fn with_stdio<T>(ends: [Option<std::os::fd::RawFd>; 3], work: impl FnOnce() -> T) -> T {
    // Safety: dup and dup2 on this process's own descriptors; the saved ones are restored.
    unsafe {
        let saved = [libc::dup(0), libc::dup(1), libc::dup(2)];
        for (fd, end) in ends.iter().enumerate() {
            if let Some(end) = end {
                libc::dup2(*end, fd as i32);
            }
        }
        let result = work();
        for (fd, copy) in saved.into_iter().enumerate() {
            if copy >= 0 {
                libc::dup2(copy, fd as i32);
                libc::close(copy);
            }
        }
        result
    }
}

/// The threads passing the container's output on; dropped once it has ended, after the
/// last of it.
struct Pumps {
    relay: Option<step02::tty::Relay>,
    threads: Vec<JoinHandle<()>>,
    _stdin: Option<OwnedFd>,
}

impl Drop for Pumps {
    fn drop(&mut self) {
        drop(self.relay.take());
        self._stdin = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

// ANCHOR: pump
/// Copy one stream of the container into the log, a line an entry, and to whoever is
/// attached as it comes (with `echo`, to this process's own stream of that name too),
/// until it ends (a terminal ends with EIO once its last holder is gone).
fn pump(mut from: File, stream: u8, log: Arc<Mutex<logs::Writer>>, hub: Arc<attach::Hub>, echo: bool) -> JoinHandle<()> {
    let name = if stream == attach::STDERR { "stderr" } else { "stdout" };
    std::thread::spawn(move || {
        let mut splitter = logs::LineSplitter::new();
        let mut buffer = [0u8; 8192];
        let write = |line: &[u8]| log.lock().unwrap_or_else(|p| p.into_inner()).write(name, line);
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            if echo {
                let _ = if stream == attach::STDERR { std::io::stderr().write_all(&buffer[..n]) } else { std::io::stdout().write_all(&buffer[..n]).and_then(|()| std::io::stdout().flush()) };
            }
            hub.send(stream, &buffer[..n]);
            splitter.push(&buffer[..n], write);
        }
        splitter.finish(write);
    })
}
// ANCHOR_END: pump

/// Docker's restart back-off: 100 ms, doubled at each restart, at most a minute, and
/// back to 100 ms once the container ran for 10 seconds.
pub fn next_delay(previous: Duration, ran_for: Duration) -> Duration {
    if ran_for >= Duration::from_secs(10) || previous.is_zero() {
        Duration::from_millis(100)
    } else {
        (previous * 2).min(Duration::from_secs(60))
    }
}

/// The monitor's side of the handshake with the CLI that started it: one line, `ok` or
/// `error CODE MESSAGE`, on a pipe the CLI reads until it closes.
pub struct Report(Option<File>);

impl Report {
    /// From the descriptor the CLI handed down (none for a monitor that restarts).
    pub fn from_fd(fd: Option<i32>) -> Report {
        // Safety: the CLI passed this descriptor down for this purpose; it is ours alone.
        Report(fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
    }

    /// Whether a CLI started this monitor and waits for its word (a monitor that restarted
    /// itself has nobody waiting).
    pub fn from_cli(&self) -> bool {
        self.0.is_some()
    }

    pub fn ok(&mut self) {
        if let Some(mut file) = self.0.take() {
            let _ = file.write_all(b"ok\n");
        }
    }

    pub fn error(&mut self, error: &Error) {
        if let Some(mut file) = self.0.take() {
            let _ = writeln!(file, "error {} {}", error.exit_code(), error.to_string().replace('\n', " "));
        }
    }
}

/// The CLI's side: wait for the monitor's line.
pub fn read_report(mut from: File) -> Result<()> {
    let mut line = String::new();
    let _ = from.read_to_string(&mut line);
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ok" => Ok(()),
        Some(("error", rest)) => {
            let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
            let failure = step01::error::Failure::from_exit_code(code.parse().unwrap_or(125)).unwrap_or(step01::error::Failure::Runtime);
            Err(Error { failure, message: message.to_string() })
        }
        _ => Err(Error::runtime("the container's monitor ended before it could start the container (see containers/ID/monitor.log)")),
    }
}

/// Whether `path` (the monitor's own log) should keep this process's stderr: a detached
/// monitor has no terminal, and what it has to say goes there.
pub fn redirect_own_output(log: &Path) {
    let null = std::fs::OpenOptions::new().read(true).open("/dev/null");
    let own = std::fs::OpenOptions::new().create(true).append(true).open(log);
    // Safety: dup2 onto this process's own standard descriptors.
    unsafe {
        if let Ok(null) = &null {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
        if let Ok(own) = &own {
            libc::dup2(own.as_raw_fd(), 2);
        }
    }
}

/// Leave the CLI: a session of our own (no terminal, no hangup), and a fork whose parent
/// exits at once, so that the monitor is not the CLI's child (the CLI waits for that
/// parent, and the monitor goes to the host's init, or the nearest subreaper).
pub fn daemonize() -> Result<()> {
    nix::unistd::setsid().map_err(|errno| Error::syscall("setsid", errno))?;
    // Safety: single-threaded here; the parent only exits.
    match unsafe { nix::unistd::fork() }.map_err(|errno| Error::syscall("fork", errno))? {
        nix::unistd::ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        nix::unistd::ForkResult::Child => Ok(()),
    }
}

/// Restart the monitor for the container's next run: a fresh process image (the relay and
/// log threads of this one end; a container is cloned from a single-threaded process).
pub fn reexec(args: &[String]) -> Error {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new("/proc/self/exe").args(args).exec();
    Error::runtime(format!("cannot restart the monitor: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let short = Duration::from_millis(10);
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..12 {
            delay = next_delay(delay, short);
            seen.push(delay.as_millis());
        }
        assert_eq!(&seen[..4], [100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap(), 60_000);
        assert_eq!(next_delay(Duration::from_secs(60), Duration::from_secs(11)), Duration::from_millis(100));
    }
}
