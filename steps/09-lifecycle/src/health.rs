//! Health checks: a command run in the container every so often (the image's HEALTHCHECK,
//! or `--health-cmd`), whose exit code says whether the service inside answers, not only
//! whether its process runs. The monitor runs it, as Docker's daemon does: `ps` shows
//! "(healthy)", `inspect` the last five results.
//!
//! Docker's rules, kept here: the first check after one interval; exit 0 is healthy, any
//! other code (or a timeout) a failure; `retries` failures in a row make the container
//! unhealthy, one success healthy again; failures within the start period do not count
//! while it has never been healthy. A health check changes nothing else: an unhealthy
//! container keeps running (restarting it is the operator's choice).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use step01::{Error, Result};

use crate::record::{parse_rfc3339, Container, Status};

/// Docker's defaults: a check every 30 s, 30 s for it to answer, 3 failures in a row.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept, and the output kept of each (Docker's numbers).
const KEPT_RESULTS: usize = 5;
const KEPT_OUTPUT: usize = 4096;

// ANCHOR: config
/// A health check, as an image's config and `docker inspect`'s `Config.Healthcheck` write
/// it: durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `["CMD", program, args...]`, `["CMD-SHELL", "a shell command"]`, or `["NONE"]`
    /// (the image's check switched off). Empty: the image's, unchanged.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub retries: u32,
}
// ANCHOR_END: config

impl HealthConfig {
    /// The command to run in the container, if this check runs one (not NONE).
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.split_first()? {
            (kind, args) if kind == "CMD" && !args.is_empty() => Some(args.to_vec()),
            (kind, [shell]) if kind == "CMD-SHELL" => Some(vec!["/bin/sh".into(), "-c".into(), shell.clone()]),
            _ => None,
        }
    }

    /// The image's check (`image`, its config's `Healthcheck`) with what `run` gave
    /// (`self`) over it, field by field, as Docker merges them.
    pub fn over(self, image: Option<HealthConfig>) -> HealthConfig {
        let Some(image) = image else { return self };
        let pick = |ours: u64, theirs: u64| if ours == 0 { theirs } else { ours };
        HealthConfig {
            test: if self.test.is_empty() { image.test } else { self.test },
            interval: pick(self.interval, image.interval),
            timeout: pick(self.timeout, image.timeout),
            start_period: pick(self.start_period, image.start_period),
            retries: if self.retries == 0 { image.retries } else { self.retries },
        }
    }

    fn interval(&self) -> Duration {
        nanos_or(self.interval, DEFAULT_INTERVAL)
    }

    fn timeout(&self) -> Duration {
        nanos_or(self.timeout, DEFAULT_TIMEOUT)
    }

    fn retries(&self) -> u32 {
        if self.retries == 0 {
            DEFAULT_RETRIES
        } else {
            self.retries
        }
    }
}

fn nanos_or(nanos: u64, default: Duration) -> Duration {
    if nanos == 0 {
        default
    } else {
        Duration::from_nanos(nanos)
    }
}

/// `run`'s health flags, checked: `--no-healthcheck` or the `--health-*` ones (durations
/// as Go writes them: `30s`, `1m30s`, `500ms`). `None` when none was given.
pub fn from_flags(cmd: Option<&str>, interval: Option<&str>, timeout: Option<&str>, start_period: Option<&str>, retries: Option<u32>, none: bool) -> Result<Option<HealthConfig>> {
    let any_health_flag = cmd.is_some() || interval.is_some() || timeout.is_some() || start_period.is_some() || retries.is_some();
    if none {
        if any_health_flag {
            return Err(Error::runtime("--no-healthcheck conflicts with the --health-* options: give one or the other"));
        }
        return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..Default::default() }));
    }
    if !any_health_flag {
        return Ok(None);
    }
    let duration = |flag: &str, text: Option<&str>| -> Result<u64> {
        let Some(text) = text else { return Ok(0) };
        let duration = parse_go_duration(text).ok_or_else(|| Error::runtime(format!("invalid {flag} {text:?}: give a duration such as 30s, 1m30s or 500ms")))?;
        if duration < Duration::from_millis(1) && !duration.is_zero() {
            return Err(Error::runtime(format!("invalid {flag} {text:?}: it must be at least 1ms")));
        }
        Ok(duration.as_nanos() as u64)
    };
    Ok(Some(HealthConfig {
        test: cmd.map(|cmd| vec!["CMD-SHELL".into(), cmd.into()]).unwrap_or_default(),
        interval: duration("--health-interval", interval)?,
        timeout: duration("--health-timeout", timeout)?,
        start_period: duration("--health-start-period", start_period)?,
        retries: retries.unwrap_or(0),
    }))
}

/// A Go duration (`1h2m3.5s`, `250ms`, `0`): what Docker's duration flags take.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|&end| end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

// ANCHOR: health
/// How the checks went: `docker inspect`'s `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting` (no success yet), `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last five checks.
    pub log: Vec<Probe>,
}

/// One check: when it ran, its exit code (-1: it did not answer in time) and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}
// ANCHOR_END: health

impl Health {
    /// The state at a start (or restart): starting again, the earlier results kept.
    pub fn starting(previous: Option<Health>) -> Health {
        Health { status: "starting".into(), failing_streak: 0, log: previous.map(|h| h.log).unwrap_or_default() }
    }

    // ANCHOR: judge
    /// One more result, judged by Docker's rules. `started_at`: when the container
    /// started (failures in its start period do not count until it was healthy once).
    pub fn add(&mut self, probe: Probe, config: &HealthConfig, started_at: Option<SystemTime>) {
        let probe_start = parse_rfc3339(&probe.start);
        let healthy = probe.exit_code == 0;
        if self.log.len() >= KEPT_RESULTS {
            self.log.drain(..=self.log.len() - KEPT_RESULTS);
        }
        self.log.push(probe);
        if healthy {
            self.failing_streak = 0;
            self.status = "healthy".into();
            return;
        }
        let in_start_period = self.status == "starting"
            && match (started_at, probe_start) {
                (Some(started), Some(probe)) => probe.duration_since(started).unwrap_or_default() < Duration::from_nanos(config.start_period),
                _ => false,
            };
        if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= config.retries() {
                self.status = "unhealthy".into();
            }
        }
    }
    // ANCHOR_END: judge

    /// As `ps` shows it after "Up 2 minutes": `health: starting`, `healthy`, `unhealthy`.
    pub fn summary(&self) -> String {
        if self.status == "starting" {
            "health: starting".into()
        } else {
            self.status.clone()
        }
    }
}

// ANCHOR: watch
/// The checks of container `id`, run by a thread of its monitor while the container runs;
/// dropping this stops them (a check under way is ended).
pub struct Watch {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Start checking container `id` as `config` says, each check a `carton exec` into it
    /// (`program` is this program: its `--root R exec ID COMMAND` runs the check).
    pub fn start(program: PathBuf, state_root: &Path, id: &str, config: HealthConfig) -> Option<Watch> {
        let command = config.command()?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let (state_root, id) = (state_root.to_path_buf(), id.to_string());
        let thread = std::thread::spawn(move || {
            let exec = || {
                let mut exec = Command::new(&program);
                exec.arg("--root").arg(&state_root).args(["exec", "--", &id]).args(&command);
                exec
            };
            loop {
                match stopped.recv_timeout(config.interval()) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Ok(Some(container)) = Container::load(&state_root, &id) else { return };
                if container.state.status != Status::Running {
                    continue; // paused: no checks, as with Docker
                }
                let Some(probe) = probe(exec(), config.timeout(), &stopped) else { return };
                let started_at = parse_rfc3339(&container.state.started_at);
                let _ = Container::update(&state_root, &id, |c| c.state.health.get_or_insert_with(|| Health::starting(None)).add(probe, &config, started_at));
            }
        });
        Some(Watch { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Run one check: `exec` with its output (stdout and stderr together) kept, for at most
/// `timeout`. `None` when the watch was stopped meanwhile (the check is ended).
fn probe(mut exec: Command, timeout: Duration, stopped: &Receiver<()>) -> Option<Probe> {
    let start = step07::state::now_rfc3339();
    let finish = |exit_code: i32, output: String| Some(Probe { start: start.clone(), end: step07::state::now_rfc3339(), exit_code, output });
    // The command (and with it our copy of the pipe's write end) goes once it is spawned.
    let spawned = std::io::pipe().and_then(|(reader, writer)| {
        let child = exec.stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer).spawn()?;
        Ok((child, reader))
    });
    let (mut child, mut reader) = match spawned {
        Ok(spawned) => spawned,
        Err(error) => return finish(-1, format!("cannot run the health check: {error}")),
    };
    // Read as it comes, without blocking: a check that does not end must not hold us.
    // Safety: fcntl on our own pipe end.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut output = Vec::new();
    let deadline = Instant::now() + timeout;
    let exit_code = loop {
        drain(&mut reader, &mut output);
        match child.try_wait() {
            Ok(Some(status)) => break status.code().unwrap_or(-1),
            Err(_) => break -1,
            Ok(None) => {}
        }
        if Instant::now() >= deadline {
            end(&mut child);
            return finish(-1, format!("Health check exceeded timeout ({})", go_duration(timeout)));
        }
        match stopped.recv_timeout(Duration::from_millis(10)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => {
                end(&mut child);
                return None;
            }
        }
    };
    drain(&mut reader, &mut output);
    let truncated = output.len() > KEPT_OUTPUT;
    output.truncate(KEPT_OUTPUT);
    let mut text = String::from_utf8_lossy(&output).into_owned();
    if truncated {
        text.push_str("...");
    }
    finish(exit_code, text)
}

/// Everything `reader` holds now (it does not block).
fn drain(reader: &mut std::io::PipeReader, output: &mut Vec<u8>) {
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buffer) {
        output.extend_from_slice(&buffer[..n]);
    }
}

/// End a check that ran too long (our own child, by its pid).
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A duration as Go prints it in Docker's timeout message (`30s`, `500ms`).
fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}
// ANCHOR_END: watch

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(exit_code: i32, start: SystemTime) -> Probe {
        let start = step06::rfc3339(start, true);
        Probe { start: start.clone(), end: start, exit_code, output: String::new() }
    }

    #[test]
    fn go_durations_read_as_docker_reads_them() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "30", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn flags_make_a_shell_check_and_no_healthcheck_switches_the_images_off() {
        let check = from_flags(Some("wget -q localhost"), Some("2s"), None, None, Some(5), false).unwrap().unwrap();
        assert_eq!(check.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!((check.interval, check.timeout, check.retries), (2_000_000_000, 0, 5));
        assert_eq!(check.command().unwrap(), ["/bin/sh", "-c", "wget -q localhost"]);
        let none = from_flags(None, None, None, None, None, true).unwrap().unwrap();
        assert_eq!(none.command(), None);
        assert!(from_flags(Some("true"), None, None, None, None, true).is_err());
        assert!(from_flags(None, Some("10us"), None, None, None, false).is_err(), "under 1ms");
        assert!(from_flags(None, Some("often"), None, None, None, false).is_err());
        assert_eq!(from_flags(None, None, None, None, None, false).unwrap(), None);
    }

    #[test]
    fn flags_go_over_the_images_check_field_by_field() {
        let image = HealthConfig { test: vec!["CMD".into(), "check".into()], interval: 5, timeout: 6, start_period: 7, retries: 8 };
        let ours = HealthConfig { interval: 1, ..Default::default() };
        let merged = ours.over(Some(image.clone()));
        assert_eq!(merged, HealthConfig { interval: 1, ..image });
    }

    #[test]
    fn failures_in_a_row_make_it_unhealthy_and_one_success_healthy() {
        let config = HealthConfig { retries: 2, ..Default::default() };
        let now = SystemTime::now();
        let mut health = Health::starting(None);
        health.add(probe(1, now), &config, Some(now));
        assert_eq!((health.status.as_str(), health.failing_streak), ("starting", 1));
        health.add(probe(1, now), &config, Some(now));
        assert_eq!(health.summary(), "unhealthy");
        health.add(probe(0, now), &config, Some(now));
        assert_eq!((health.summary().as_str(), health.failing_streak), ("healthy", 0));
        for _ in 0..6 {
            health.add(probe(2, now), &config, Some(now));
        }
        assert_eq!(health.log.len(), KEPT_RESULTS, "only the last five are kept");
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_it_was_healthy() {
        let config = HealthConfig { retries: 1, start_period: Duration::from_secs(60).as_nanos() as u64, ..Default::default() };
        let started = SystemTime::now();
        let mut health = Health::starting(None);
        health.add(probe(1, started + Duration::from_secs(1)), &config, Some(started));
        assert_eq!((health.summary().as_str(), health.failing_streak), ("health: starting", 0));
        health.add(probe(1, started + Duration::from_secs(61)), &config, Some(started));
        assert_eq!(health.summary(), "unhealthy", "after the start period a failure counts");
    }
}
