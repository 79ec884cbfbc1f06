//! What the engine remembers of a container across its whole life, beyond the runtime's
//! `state.json` (which lives only while the container's process does):
//! `containers/ID/container.json`, shaped like `docker inspect`'s fields. Written whole
//! (temp file + rename) under `containers/ID/container.lock`, held only for the change
//! itself: the monitor never holds it while the container runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use step01::process::UniquePid;
use step01::{Error, Result};

/// The record's file in the container's directory.
pub const RECORD: &str = "container.json";

// ANCHOR: status
/// Docker's states of a container (`docker inspect`'s `State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made (its root, network and bundle), never started.
    Created,
    /// Its process runs, watched by its monitor.
    Running,
    /// Frozen by `pause` (the cgroup freezer).
    Paused,
    /// Ended; its monitor waits to start it again (`--restart`).
    Restarting,
    /// Ended, and kept: its files, logs and config stay until `rm`.
    Exited,
    /// Its monitor was killed: the container was stopped with it, and how it ended is not
    /// known. Only `rm` is left.
    Dead,
}
// ANCHOR_END: status

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&text)
    }
}

/// A restart policy (`--restart`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always`, `unless-stopped` (Docker's names).
    pub name: String,
    /// For `on-failure:N`: at most N restarts (0: no limit).
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// `--restart`'s value, checked.
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let (name, count) = text.split_once(':').map_or((text, None), |(name, count)| (name, Some(count)));
        let bad = || Error::runtime(format!("invalid --restart {text:?}: give no, on-failure[:MAX-RETRIES], always or unless-stopped"));
        let maximum_retry_count = match (name, count) {
            ("on-failure", Some(count)) => count.parse().map_err(|_| bad())?,
            ("no" | "always" | "unless-stopped" | "on-failure", None) => 0,
            ("always" | "unless-stopped" | "no", Some(_)) => {
                return Err(Error::runtime(format!("invalid --restart {text:?}: only on-failure takes a number of retries")));
            }
            _ => return Err(bad()),
        };
        Ok(RestartPolicy { name: if name.is_empty() { "no".into() } else { name.into() }, maximum_retry_count })
    }

    // ANCHOR: should_restart
    /// Whether a container that ended with `exit_code`, after `restarts` restarts, starts
    /// again. A `stop` (or `kill`) by the user is never undone by the policy.
    pub fn should_restart(&self, exit_code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => exit_code != 0 && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count),
            _ => false,
        }
    }
    // ANCHOR_END: should_restart
}

/// Settings of the host side, as `docker inspect`'s `HostConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `--rm`: removed by its monitor once it ends.
    pub auto_remove: bool,
    pub restart_policy: RestartPolicy,
    /// `bridge`, `none` or `host`.
    pub network_mode: String,
    /// `-p` as given (`8080:80`, `127.0.0.1:53:53/udp`).
    pub port_bindings: Vec<String>,
    /// `--log-opt max-size=` in bytes (0: no rotation) and `max-file=`.
    pub log_max_size: u64,
    pub log_max_file: u32,
}

/// How the container's process is and was: `docker inspect`'s `State`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    /// The container's first process on the host (0 when not running).
    pub pid: i32,
    /// Its start time, with `pid`: a reused pid is not mistaken for it.
    #[serde(default)]
    pub pid_start_time: u64,
    pub exit_code: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Why it could not start, or how it was lost.
    pub error: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` for never, as Docker writes it.
    pub started_at: String,
    pub finished_at: String,
    /// The monitor watching it (while running, paused or restarting).
    #[serde(default)]
    pub monitor: Option<String>,
    /// Set by `stop` and `kill` before they signal: the restart policy leaves it stopped.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// How its health checks went, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// Docker's "never" for a time.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

// ANCHOR: container
/// Container `id`'s record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    /// Unique under the state root; `docker ps` shows it in NAMES.
    pub name: String,
    pub created: String,
    /// The image as the user named it (`busybox`), or the `--rootfs` directory.
    pub image: String,
    /// The image's config digest (`sha256:...`), empty for `--rootfs`.
    pub image_id: String,
    /// The command: its program and arguments.
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: u32,
    pub host_config: HostConfig,
    /// The signal `stop` sends first (the image's STOPSIGNAL, `--stop-signal`).
    pub stop_signal: String,
    /// Seconds `stop` waits for it before SIGKILL (`--stop-timeout`; Docker's 10).
    pub stop_timeout: u32,
    /// `-t`: a terminal, whose output is one stream.
    pub tty: bool,
    /// `-i`: stdin kept open.
    #[serde(default)]
    pub interactive: bool,
    /// Its address on the bridge, while it has one.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// The published ports as bound (`0.0.0.0:8080 -> 80/tcp`), while it runs.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Its health check (the image's, with `--health-*` over it), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}
// ANCHOR_END: container

impl Container {
    /// A new record, created (never started).
    pub fn new(id: &str, name: &str, image: &str, image_id: &str, command: &[String], host_config: HostConfig) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            created: step07::state::now_rfc3339(),
            image: image.into(),
            image_id: image_id.into(),
            path: command.first().cloned().unwrap_or_default(),
            args: command.iter().skip(1).cloned().collect(),
            state: State {
                status: Status::Created,
                pid: 0,
                pid_start_time: 0,
                exit_code: 0,
                oom_killed: false,
                error: String::new(),
                started_at: NEVER.into(),
                finished_at: NEVER.into(),
                monitor: None,
                stopped_by_user: false,
                health: None,
            },
            restart_count: 0,
            host_config,
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            tty: false,
            interactive: false,
            ip_address: None,
            ports: Vec::new(),
            healthcheck: None,
        }
    }

    /// `containers/ID` under `state_root`.
    pub fn dir(state_root: &Path, id: &str) -> PathBuf {
        state_root.join("containers").join(id)
    }

    /// Container `id`'s record, if it has one (a container `carton-oci` made has none).
    pub fn load(state_root: &Path, id: &str) -> Result<Option<Container>> {
        let path = Container::dir(state_root, id).join(RECORD);
        let text = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::runtime(format!("cannot read {}: {e}", path.display()))),
            Ok(text) => text,
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| Error::runtime(format!("{} is damaged ({e}); `carton rm -f {id}` removes the container", path.display())))
    }

    /// Write the record (whole, atomically).
    pub fn save(&self, state_root: &Path) -> Result<()> {
        let path = Container::dir(state_root, &self.id).join(RECORD);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))?;
        step06::store::write_atomically(&path, &json, step06::store::Durable::No)
    }

    /// Change container `id`'s record under its lock: read, `change`, write. Returns the
    /// record as written.
    pub fn update(state_root: &Path, id: &str, change: impl FnOnce(&mut Container)) -> Result<Container> {
        let _locked = step07::state::lock_file(&Container::dir(state_root, id).join("container.lock"))?;
        let mut container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
        change(&mut container);
        container.save(state_root)?;
        Ok(container)
    }

    // ANCHOR: observed
    /// The status as it is now, not only as recorded: a container whose monitor is gone
    /// without recording its end is `Dead` (the monitor takes the container down with it).
    pub fn observed_status(&self) -> Status {
        match self.state.status {
            Status::Running | Status::Paused | Status::Restarting if !self.monitor_alive() => Status::Dead,
            status => status,
        }
    }
    // ANCHOR_END: observed

    /// Whether the monitor recorded as watching the container still runs.
    pub fn monitor_alive(&self) -> bool {
        self.state.monitor.as_deref().and_then(|text| text.parse::<UniquePid>().ok()).is_some_and(|monitor| monitor.is_alive())
    }

    /// Whether the container's process runs now (running or paused, monitored).
    pub fn is_running(&self) -> bool {
        matches!(self.observed_status(), Status::Running | Status::Paused)
    }

    /// The command as `docker ps` shows it: program and arguments, quoted as one string.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.path).chain(&self.args).map(String::as_str).collect::<Vec<_>>().join(" ")
    }
}

/// The time an RFC 3339 string (`2026-12-07T16:20:00.123Z`, UTC) names; `None` for
/// Docker's "never" and anything else that does not parse.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date_parts.next()??, date_parts.next()??, date_parts.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (clock_parts.next()??, clock_parts.next()??, clock_parts.next()??);
    if year < 1970 {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm, as step 06 writes it).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let nanos = format!("{fraction:0<9}").get(..9)?.parse::<u32>().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds.try_into().ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_back_what_step06_writes() {
        let now = SystemTime::now();
        let text = step06::rfc3339(now, true);
        assert_eq!(parse_rfc3339(&text), Some(now));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z").map(|t| step06::rfc3339(t, false)), Some("2024-02-29T23:59:59Z".into()));
        assert_eq!(parse_rfc3339(NEVER), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn restart_policies_read_and_decide_as_dockers() {
        let on_failure = RestartPolicy::parse("on-failure:2").unwrap();
        assert!(on_failure.should_restart(1, 0, false) && on_failure.should_restart(1, 1, false));
        assert!(!on_failure.should_restart(1, 2, false), "two retries at most");
        assert!(!on_failure.should_restart(0, 0, false), "a success is not a failure");
        let always = RestartPolicy::parse("always").unwrap();
        assert!(always.should_restart(0, 100, false));
        assert!(!always.should_restart(137, 0, true), "stopped by the user stays stopped");
        assert!(!RestartPolicy::parse("no").unwrap().should_restart(1, 0, false));
        for bad in ["sometimes", "always:3", "on-failure:x"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
