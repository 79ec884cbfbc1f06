//! The life of a kept container, command by command: each is a process of its own (the
//! CLI), meeting the monitor through the container's record. Docker's rules: `start` of a
//! running container and `stop` of a stopped one do nothing and succeed; `rm` of a running
//! one is refused without `-f`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use step01::process::UniquePid;
use step01::{Error, Explain, Result};
use step07::Runtime;

use crate::monitor::{self, Report, Stdio};
use crate::names;
use crate::record::{Container, Status, NEVER};

/// The hidden `monitor` command of a program that is its own containers' monitor (`carton`,
/// the demo): the container, and what its starter hands down.
#[derive(clap::Args)]
pub struct MonitorArgs {
    pub id: String,
    /// The descriptor to report on (a CLI waits at its other end)
    #[arg(long)]
    pub report_fd: Option<i32>,
    /// The restart back-off so far, in milliseconds (a monitor restarting itself)
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

/// The arguments (after the program's name) that start container `id`'s monitor: the
/// program's global `--root`, then its hidden `monitor` command.
pub fn monitor_args(state_root: &Path, id: &str, delay_ms: u64) -> Vec<String> {
    vec!["--root".into(), state_root.display().to_string(), "monitor".into(), id.into(), "--delay-ms".into(), delay_ms.to_string()]
}

/// The `monitor` command: [`monitor_main`], restarting itself with [`monitor_args`].
pub fn run_monitor(state_root: &Path, args: &MonitorArgs) -> Result<()> {
    let report = Report::from_fd(args.report_fd);
    monitor_main(state_root, &args.id, report, Duration::from_millis(args.delay_ms), |next| monitor_args(state_root, &args.id, next.as_millis() as u64))
}

// ANCHOR: monitor_main
/// A detached container's monitor, from its first line: leave the CLI, own the container,
/// run it (again and again, as its restart policy says), then take it down or remove it.
/// `restart_args(delay)` are the arguments that start the monitor again for the next run.
pub fn monitor_main(state_root: &Path, id: &str, mut report: Report, delay: Duration, restart_args: impl Fn(Duration) -> Vec<String>) -> Result<()> {
    if report.from_cli() {
        monitor::daemonize()?; // a monitor that restarts itself has left the CLI already
    }
    let dir = Container::dir(state_root, id);
    monitor::redirect_own_output(&dir.join("monitor.log"));
    step07::engine::adopt_as_monitor(state_root, id)?;
    if !delay.is_zero() && Container::load(state_root, id)?.is_none_or(|c| c.state.stopped_by_user) {
        return finish(state_root, id); // stopped (or removed) while this monitor restarted
    }
    let runtime = Runtime::new(state_root, Explain::off());
    let ended = monitor::run_once(&runtime, id, stdio_of(state_root, id), None, |_| {
        report.ok();
        // What making the container took (the spec, the seccomp program, ...) is freed:
        // give those pages back, the monitor stays small for as long as the container runs.
        // Safety: malloc_trim only returns free memory to the kernel.
        unsafe { libc::malloc_trim(0) };
    });
    let next = match &ended {
        Ok(ended) => restart_delay(state_root, id, ended, delay)?,
        Err(error) => {
            report.error(error);
            record_failed_start(state_root, id, error);
            eprintln!("carton: {error}");
            None
        }
    };
    if let Some(delay) = next {
        return Err(monitor::reexec(&restart_args(delay)));
    }
    finish(state_root, id)
}
// ANCHOR_END: monitor_main

/// Whether a detached container has a terminal (`-t`) and keeps stdin open (`-i`).
fn stdio_of(state_root: &Path, id: &str) -> Stdio {
    let container = Container::load(state_root, id).ok().flatten();
    Stdio::Logged { tty: container.as_ref().is_some_and(|c| c.tty), interactive: container.is_some_and(|c| c.interactive) }
}

/// A start that failed: said in the record (`docker inspect`'s `State.Error`). A container
/// never started stays `Created`, as Docker leaves one whose start failed.
pub fn record_failed_start(state_root: &Path, id: &str, error: &Error) {
    let _ = Container::update(state_root, id, |c| {
        c.state.error = error.to_string();
        c.state.monitor = None;
        if c.state.started_at != NEVER {
            (c.state.status, c.state.exit_code) = (Status::Exited, error.exit_code().into());
            c.state.finished_at = step07::state::now_rfc3339();
        }
    });
}

// ANCHOR: restart
/// After a run: `Some(delay)` when the restart policy starts the container again, after
/// Docker's back-off; the record says `Restarting` meanwhile.
pub fn restart_delay(state_root: &Path, id: &str, ended: &monitor::Ended, previous: Duration) -> Result<Option<Duration>> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    if !container.host_config.restart_policy.should_restart(ended.exit_code, container.restart_count, container.state.stopped_by_user) {
        return Ok(None);
    }
    let delay = monitor::next_delay(previous, ended.ran_for);
    Container::update(state_root, id, |c| {
        c.state.status = Status::Restarting;
        c.state.monitor = Some(UniquePid::current().to_string());
        c.restart_count += 1;
    })?;
    // `stop` or `rm -f` during the wait ends it.
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
        if Container::load(state_root, id)?.is_none_or(|c| c.state.stopped_by_user) {
            // Not restarted after all: not counted.
            Container::update(state_root, id, |c| (c.state.status, c.restart_count) = (Status::Exited, c.restart_count.saturating_sub(1))).ok();
            return Ok(None);
        }
    }
    Ok(Some(delay))
}
// ANCHOR_END: restart

/// The end of a monitor's watch: the container down, and kept (`Exited`) or, with `--rm`,
/// removed.
pub fn finish(state_root: &Path, id: &str) -> Result<()> {
    let Some(container) = Container::load(state_root, id)? else { return Ok(()) };
    if container.host_config.auto_remove {
        return remove_everything(state_root, &container);
    }
    step07::engine::down(state_root, id);
    Container::update(state_root, id, |c| {
        if matches!(c.state.status, Status::Running | Status::Paused | Status::Restarting) {
            c.state.status = Status::Exited; // a restart given up (stopped meanwhile)
        }
        c.state.monitor = None;
    })?;
    step07::engine::disown(state_root, id)
}

/// Start a kept container in the background, under a monitor started with `monitor_args`
/// (a command line of this program); returns once it runs, or with why it could not.
pub fn start_detached(state_root: &Path, id: &str, monitor_args: &[String]) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    match container.observed_status() {
        Status::Running | Status::Paused | Status::Restarting => return Ok(()), // as Docker: nothing to do
        Status::Dead => return Err(Error::runtime(format!("container {} is dead (its monitor was killed): remove it with `carton rm -f {}`", container.name, container.name))),
        Status::Created | Status::Exited => {}
    }
    // An explicit start: the restart policy applies again (a `stop` had set it aside).
    Container::update(state_root, id, |c| c.state.stopped_by_user = false)?;
    let (reader, writer) = step01::container::cloexec_pipe()?;
    let writer_fd = writer.as_raw_fd();
    let mut command = std::process::Command::new("/proc/self/exe");
    command.args(monitor_args).args(["--report-fd", "3"]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // Safety: only dup2 between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // At 3 already: dup2 would leave it close-on-exec, so clear that instead.
            let done = if writer_fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(writer_fd, 3) };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| Error::runtime(format!("cannot start the container's monitor: {e}")))?;
    drop(writer);
    let _ = child.wait(); // the monitor's first process, which forks it and exits at once
    monitor::read_report(std::fs::File::from(reader))
}

// ANCHOR: stop
/// `stop`: the container's stop signal, then, after `timeout` (its own, Docker's 10 s by
/// default), SIGKILL; returns once its monitor has recorded the end. Marked stopped by the
/// user first, so that a monitor about to restart it (`--restart`) ends instead.
pub fn stop(state_root: &Path, id: &str, timeout: Option<u32>) -> Result<()> {
    let container = Container::update(state_root, id, |c| c.state.stopped_by_user = true)?;
    let timeout = Duration::from_secs(timeout.unwrap_or(container.stop_timeout).into());
    let runtime = Runtime::new(state_root, Explain::off());
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    let mut signalled = None;
    loop {
        let Some(container) = Container::load(state_root, id)? else { return Ok(()) }; // removed (--rm)
        if !container.monitor_alive() {
            return Ok(()); // stopped, and taken down: nothing (more) to do, as Docker
        }
        let status = container.observed_status();
        if matches!(status, Status::Running | Status::Paused) && signalled != Some(container.state.pid) {
            signalled = Some(container.state.pid);
            let signal = step07::parse_signal(&container.stop_signal).unwrap_or(Signal::SIGTERM);
            let _ = runtime.kill(id, signal, false);
            if status == Status::Paused {
                let _ = runtime.set_paused(id, false); // a frozen process cannot act on its signal
            }
            let process = UniquePid { pid: container.state.pid, start_time: container.state.pid_start_time };
            if !wait_until(timeout, || !process.is_alive()) {
                let _ = runtime.kill(id, Signal::SIGKILL, true);
            }
        }
        if Instant::now() > deadline {
            return Err(Error::runtime(format!("container {id}'s monitor does not finish; `carton rm -f` removes the container")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
// ANCHOR_END: stop

/// Wait (up to 10 s) until no monitor watches the container any more: it has recorded the
/// end and taken the container down.
fn wait_for_monitor(state_root: &Path, id: &str) -> Result<()> {
    let done = || Container::load(state_root, id).ok().flatten().is_none_or(|c| !c.monitor_alive());
    if wait_until(Duration::from_secs(10), done) {
        Ok(())
    } else {
        Err(Error::runtime(format!("container {id}'s monitor does not finish; `carton rm -f` removes the container")))
    }
}

/// Poll `done` every few milliseconds, up to `timeout`; whether it came true.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `kill`: a signal to the container's first process; the restart policy leaves a killed
/// container stopped, as Docker's.
pub fn kill(state_root: &Path, id: &str, signal: Signal) -> Result<()> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    if !container.is_running() {
        return Err(Error::runtime(format!("cannot kill container {}: it is not running", container.name)));
    }
    Container::update(state_root, id, |c| c.state.stopped_by_user = true)?;
    Runtime::new(state_root, Explain::off()).kill(id, signal, false)
}

// ANCHOR: remove
/// `rm`: a stopped container's writable layer, bundle, logs and name go; a running one
/// only with `force`, which kills it first.
pub fn remove(state_root: &Path, id: &str, force: bool) -> Result<()> {
    let Some(container) = Container::load(state_root, id)? else {
        return remove_plain(state_root, id, force);
    };
    match container.observed_status() {
        Status::Running | Status::Paused | Status::Restarting if !force => {
            return Err(Error::runtime(format!("you cannot remove a {} container {}: stop the container before removing it, or use rm -f", container.observed_status(), &id[..12.min(id.len())])))
        }
        Status::Running | Status::Paused | Status::Restarting => {
            Container::update(state_root, id, |c| c.state.stopped_by_user = true)?;
            let runtime = Runtime::new(state_root, Explain::off());
            let _ = runtime.kill(id, Signal::SIGKILL, true);
            if container.observed_status() == Status::Paused {
                let _ = runtime.set_paused(id, false);
            }
            wait_for_monitor(state_root, id)?;
        }
        _ => {}
    }
    match Container::load(state_root, id)? {
        Some(container) => remove_everything(state_root, &container),
        None => Ok(()), // its monitor removed it (--rm)
    }
}
// ANCHOR_END: remove

/// A container with no record of this step's (made by `carton-oci`, or by a carton
/// killed half-way): the runtime's delete and the engine's teardown.
fn remove_plain(state_root: &Path, id: &str, force: bool) -> Result<()> {
    let runtime = Runtime::new(state_root, Explain::off());
    let dir = runtime.container_dir(id);
    if step07::state::Creating::in_progress(&dir) {
        return Err(Error::runtime(format!("container {id} is being started right now; try again in a moment")));
    }
    if dir.join("state.json").exists() {
        runtime.delete(id, force)?;
    }
    step07::engine::teardown(state_root, id)
}

/// Everything of a container, gone: its process (if any is left), the runtime's state,
/// its root, network, writable layer, files and name.
fn remove_everything(state_root: &Path, container: &Container) -> Result<()> {
    let runtime = Runtime::new(state_root, Explain::off());
    if runtime.container_dir(&container.id).join("state.json").exists() {
        let _ = runtime.delete(&container.id, true);
    }
    step07::engine::teardown(state_root, &container.id)?;
    names::release(state_root, &container.name, &container.id);
    Ok(())
}

/// `wait`: block until the container is stopped; its exit code.
pub fn wait(state_root: &Path, id: &str) -> Result<i32> {
    loop {
        let Some(container) = Container::load(state_root, id)? else {
            return Err(Error::runtime(format!("no such container: {id} (removed while waiting)")));
        };
        match container.observed_status() {
            Status::Exited | Status::Dead => return Ok(container.state.exit_code),
            Status::Created if !container.state.error.is_empty() => return Ok(container.state.exit_code),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `pause` / `unpause`: step 04's freezer, through the runtime; the record says `Paused`.
pub fn set_paused(state_root: &Path, id: &str, paused: bool) -> Result<()> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    if !container.is_running() {
        return Err(Error::runtime(format!("container {} is not running", container.name)));
    }
    Runtime::new(state_root, Explain::off()).set_paused(id, paused)?;
    Container::update(state_root, id, |c| c.state.status = if paused { Status::Paused } else { Status::Running })?;
    Ok(())
}

/// `rename`: the new name claimed first, then the old one given up.
pub fn rename(state_root: &Path, id: &str, new_name: &str) -> Result<()> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
    if container.name == new_name {
        return Err(Error::runtime(format!("renaming a container with the same name as its current name: {new_name}")));
    }
    names::claim(state_root, new_name, id)?;
    Container::update(state_root, id, |c| c.name = new_name.to_string())?;
    names::release(state_root, &container.name, id);
    Ok(())
}

// ANCHOR: collect
/// The collector for kept containers: one whose monitor died (`kill -9`) was stopped with
/// it (it dies with its parent); here it is taken down and recorded `Dead`, and kept for
/// `rm` (removed, with `--rm`). Then step 07's collector for everything else.
pub fn collect(state_root: &Path) {
    let swept = step07::engine::collect_with(state_root, |id| {
        let Ok(Some(container)) = Container::load(state_root, id) else { return false };
        if container.host_config.auto_remove {
            let _ = remove_everything(state_root, &container);
            return true;
        }
        step07::engine::down(state_root, id);
        let _ = Container::update(state_root, id, |c| {
            if matches!(c.state.status, Status::Running | Status::Paused | Status::Restarting) {
                c.state.status = Status::Dead;
                c.state.error = "its monitor ended without recording the container's end (was it killed?); the container was stopped with it".into();
                c.state.pid = 0;
            }
            c.state.monitor = None;
        });
        let _ = step07::engine::disown(state_root, id);
        true
    });
    if swept {
        names::release_orphans(state_root);
    }
}
// ANCHOR_END: collect
