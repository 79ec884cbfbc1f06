//! What the runtime remembers about a container between its commands, each of which is a
//! process of its own: `containers/ID/state.json`, written whole (temp file + rename) under
//! the container's lock, and the exec fifo whose presence says "created, not started".

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::runtime::ContainerState;
use serde_json::json;
use step01::process::UniquePid;
use step01::{Error, Result};

/// The container's record, as `state.json` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// The bundle it was created from (absolute).
    pub bundle: PathBuf,
    /// Its first process, with the start time that makes a reused PID harmless.
    pub init: UniquePid,
    /// Its cgroup, below each hierarchy's root (`/carton/ID`); `None` without cgroups.
    pub cgroups_path: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// Its root, when it has no mount namespace of its own: its mounts are then in the
    /// runtime's, below that root, and `delete` takes them down.
    pub shared_mount_root: Option<PathBuf>,
}

// ANCHOR: status
impl Record {
    /// The status the runtime spec defines, read from the kernel rather than remembered:
    /// a process that is gone is `stopped`, whoever ended it and however.
    pub fn status(&self, dir: &Path) -> ContainerState {
        if !self.init.is_alive() {
            ContainerState::Stopped
        } else if dir.join(EXEC_FIFO).exists() {
            ContainerState::Created
        } else {
            ContainerState::Running
        }
    }
}
// ANCHOR_END: status

/// The fifo a created container waits at, until `start` opens it.
pub const EXEC_FIFO: &str = "exec.fifo";

impl Record {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = json!({
            "id": self.id,
            "bundle": self.bundle,
            "pid": self.init.pid,
            "pidStartTime": self.init.start_time,
            "cgroupsPath": self.cgroups_path,
            "created": self.created,
            "annotations": self.annotations,
            "sharedMountRoot": self.shared_mount_root,
        });
        // Not synced: a crash ends the container too, and the collector takes its record.
        step06::store::write_atomically(&dir.join("state.json"), json.to_string().as_bytes(), step06::store::Durable::No)
    }

    /// The record in `dir`, or `None` when there is none (no such container).
    pub fn load(dir: &Path) -> Result<Option<Record>> {
        let path = dir.join("state.json");
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::runtime(format!("cannot read {}: {e}", path.display()))),
            Ok(text) => text,
        };
        let damaged = |what: &str| Error::runtime(format!("{} is damaged ({what}); `delete --force` removes the container", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| damaged("not JSON"))?;
        let text_of = |key: &str| json[key].as_str().map(str::to_string).ok_or_else(|| damaged(key));
        Ok(Some(Record {
            id: text_of("id")?,
            bundle: PathBuf::from(text_of("bundle")?),
            init: UniquePid { pid: json["pid"].as_i64().ok_or_else(|| damaged("pid"))? as i32, start_time: json["pidStartTime"].as_u64().ok_or_else(|| damaged("pidStartTime"))? },
            cgroups_path: json["cgroupsPath"].as_str().map(str::to_string),
            created: text_of("created")?,
            annotations: serde_json::from_value(json["annotations"].clone()).unwrap_or_default(),
            shared_mount_root: json["sharedMountRoot"].as_str().map(PathBuf::from),
        }))
    }

    /// Whether the running container is frozen (`pause`): runc's extra status, `paused`,
    /// which the spec's four do not have.
    pub fn is_paused(&self) -> bool {
        crate::cgroup_of(self).is_some_and(|cgroup| cgroup.is_frozen())
    }

    /// The state as the runtime spec shows it (`runc state`'s JSON): no pid once stopped.
    pub fn to_oci(&self, dir: &Path) -> serde_json::Value {
        let status = self.status(dir);
        let shown = if status == ContainerState::Running && self.is_paused() { "paused".to_string() } else { status.to_string() };
        let mut state = json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "id": self.id,
            "status": shown,
            "bundle": self.bundle,
            "annotations": self.annotations,
            "created": self.created,
        });
        if status != ContainerState::Stopped {
            state["pid"] = json!(self.init.pid);
        }
        state
    }
}

/// A container being created: the container's lock file names the creating process,
/// written under the lock, which is then let go (the container's process would otherwise
/// inherit it and hold it until its execve).
pub struct Creating {
    dir: PathBuf,
}

impl Creating {
    /// Mark `dir`, container `id`'s, as being created by this process. Refused when the
    /// id is in use: a state exists, or another live process is creating it. (A mark left
    /// by a killed `create` is taken over.)
    pub fn mark(dir: &Path, id: &str) -> Result<Creating> {
        let mut locked = lock_file(&dir.join("lock"))?;
        if dir.join("state.json").exists() || Creating::in_progress(dir) {
            return Err(Error::runtime(format!("the container id {id} is in use already; delete that container first, or choose another id")));
        }
        let marked = locked.set_len(0).and_then(|()| std::io::Write::write_all(&mut locked, UniquePid::current().to_string().as_bytes()));
        marked.map_err(|e| Error::runtime(format!("cannot mark {} as being created: {e}", dir.display())))?;
        Ok(Creating { dir: dir.to_path_buf() })
    }

    /// Whether a live process is creating the container in `dir`.
    pub fn in_progress(dir: &Path) -> bool {
        fs::read_to_string(dir.join("lock")).ok().and_then(|text| text.parse::<UniquePid>().ok()).is_some_and(|creator| creator.is_alive())
    }

    /// Created: the record replaces the mark.
    pub fn finish(self, record: &Record) -> Result<()> {
        let _locked = lock(&self.dir)?;
        record.save(&self.dir)
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        let _ = fs::OpenOptions::new().write(true).truncate(true).open(self.dir.join("lock"));
    }
}

/// An exclusive lock on one container, held until dropped: two runtime commands on the
/// same container take turns (a `start` never meets half a `create` or `delete`).
pub struct Locked(#[allow(dead_code)] File);

pub fn lock(dir: &Path) -> Result<Locked> {
    lock_file(&dir.join("lock")).map(Locked)
}

/// An exclusive flock on the file at `path` (made if missing), held while the file is open.
pub fn lock_file(path: &Path) -> Result<File> {
    step06::store::flock(path, step06::store::Lock::Exclusive)
}

/// The time now, RFC 3339 in UTC with nanoseconds, as runc's `created`.
pub fn now_rfc3339() -> String {
    step06::rfc3339(std::time::SystemTime::now(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_disk_and_a_dead_process_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record {
            id: "c1".into(),
            bundle: "/b".into(),
            init: UniquePid::current(),
            cgroups_path: Some("/carton/c1".into()),
            created: now_rfc3339(),
            annotations: HashMap::from([("a".to_string(), "b".to_string())]),
            shared_mount_root: Some("/b/rootfs".into()),
        };
        record.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap().unwrap(), record);
        assert_eq!(record.status(dir.path()), ContainerState::Running);
        fs::write(dir.path().join(EXEC_FIFO), "").unwrap();
        assert_eq!(record.status(dir.path()), ContainerState::Created);
        let reused = Record { init: UniquePid { start_time: record.init.start_time + 1, ..record.init }, ..record.clone() };
        assert_eq!(reused.status(dir.path()), ContainerState::Stopped, "same PID, another start time: not our process");
        assert!(reused.to_oci(dir.path()).get("pid").is_none());
        assert_eq!(record.to_oci(dir.path())["status"], "created");
        assert!(Record::load(&dir.path().join("none")).unwrap().is_none());
    }
}
