//! Volumes: directories carton manages, under `volumes/NAME/` in the state root (Docker's
//! `local` driver keeps them the same way, under `/var/lib/docker/volumes/NAME/_data`):
//!
//! ```text
//! volumes/NAME/volume.json   its name, labels and creation time (`volume inspect`)
//! volumes/NAME/_data/        the files: what a container sees at the mount's target
//! ```
//!
//! A volume is made whole or not at all (made under a temporary name, then renamed), and
//! `volume rm` is refused while any container, running or not, uses it. Who uses what is
//! read from each container's `mounts.json` (see [`crate::mounts`]); the volumes' lock
//! keeps a container being made and a volume being removed from crossing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use step01::{Error, Result};
use step06::store::{flock, Lock};

use crate::spec::check_volume_name;

/// The label Docker (23 and later) puts on an anonymous volume: `volume prune` removes
/// only those unless `-a`.
pub const ANONYMOUS: &str = "com.docker.volume.anonymous";

// ANCHOR: volume
/// A volume, as `docker volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub created_at: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// The directory the container sees: `volumes/NAME/_data`.
    pub mountpoint: PathBuf,
    pub name: String,
    pub options: BTreeMap<String, String>,
    pub scope: String,
}
// ANCHOR_END: volume

impl Volume {
    /// Whether it was made for one container (`-v /path`, an image's VOLUME).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS)
    }
}

/// The volumes under one state root.
pub struct VolumeStore {
    root: PathBuf,
}

impl VolumeStore {
    pub fn new(state_root: &Path) -> VolumeStore {
        VolumeStore { root: state_root.join("volumes") }
    }

    /// Held while volumes are made and a container's volumes are chosen and recorded
    /// (`Shared`: containers are made side by side), and while volumes are removed
    /// (`Exclusive`).
    pub fn lock(&self, kind: Lock) -> Result<fs::File> {
        self.make_root()?;
        flock(&self.root.join(".lock"), kind)
    }

    // ANCHOR: private_root
    /// `volumes/`, open to root only. A volume's files are a container's: a setuid program a
    /// container leaves there must not be reachable by the host's users (Docker closes its
    /// own directories the same way since CVE-2021-41091; step 05 does it for layers).
    fn make_root(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if !self.root.is_dir() {
            fs::create_dir_all(&self.root).map_err(|e| Error::runtime(format!("cannot make {}: {e}", self.root.display())))?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(|e| Error::runtime(format!("cannot close {} to other users: {e}", self.root.display())))
    }
    // ANCHOR_END: private_root

    // ANCHOR: create
    /// Volume `name` (a random one when `None`: an anonymous volume), made if it does not
    /// exist, with `labels` when made. Returns it, and whether it was made now. The caller
    /// holds the lock (shared): a prune meanwhile would take a half-made volume for debris.
    pub fn create(&self, name: Option<&str>, labels: BTreeMap<String, String>) -> Result<(Volume, bool)> {
        let name = match name {
            Some(name) => {
                check_volume_name(name)?;
                name.to_string()
            }
            None => step02::ContainerId::random()?.as_str().to_string(), // 64 hex digits, as Docker's
        };
        if let Some(volume) = self.get(&name)? {
            return Ok((volume, false));
        }
        self.make_root()?;
        // Made whole under a temporary name, then renamed: a killed CLI leaves no half volume.
        let staging = tempfile::Builder::new().prefix(".new-").tempdir_in(&self.root).map_err(|e| Error::runtime(format!("cannot make a volume in {}: {e}", self.root.display())))?;
        let volume = Volume {
            created_at: step06::rfc3339(std::time::SystemTime::now(), false),
            driver: "local".into(),
            labels,
            mountpoint: self.root.join(&name).join("_data"),
            name: name.clone(),
            options: BTreeMap::new(),
            scope: "local".into(),
        };
        let data = staging.path().join("_data");
        fs::create_dir(&data).map_err(|e| Error::runtime(format!("cannot make {}: {e}", data.display())))?;
        // Like Docker's: the volume's root is open to the container's users (0755, root's).
        let json = serde_json::to_vec_pretty(&volume).map_err(|e| Error::runtime(format!("cannot write volume {name}: {e}")))?;
        step06::store::write_atomically(&staging.path().join("volume.json"), &json, step06::store::Durable::No)?;
        match fs::rename(staging.path(), self.root.join(&name)) {
            Ok(()) => {
                let _ = staging.keep();
                Ok((volume, true))
            }
            // Another CLI made it meanwhile: theirs is the one.
            Err(_) if self.root.join(&name).join("volume.json").exists() => Ok((self.get(&name)?.ok_or_else(|| Error::runtime(format!("volume {name} vanished")))?, false)),
            Err(e) => Err(Error::runtime(format!("cannot make volume {name}: {e}"))),
        }
    }
    // ANCHOR_END: create

    /// Volume `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<Volume>> {
        if check_volume_name(name).is_err() {
            return Ok(None);
        }
        let path = self.root.join(name).join("volume.json");
        match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::runtime(format!("cannot read {}: {e}", path.display()))),
            Ok(text) => serde_json::from_slice(&text).map(Some).map_err(|e| Error::runtime(format!("{} is damaged ({e}); `carton volume rm -f {name}` removes it", path.display()))),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let Ok(entries) = fs::read_dir(&self.root) else { return Ok(Vec::new()) };
        let mut volumes = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match self.get(&name) {
                Ok(Some(volume)) => volumes.push(volume),
                Ok(None) => {}
                Err(error) => eprintln!("carton: {error}"), // one damaged record hides no other volume
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Whether volume `name` exists, its record readable or not.
    pub fn exists(&self, name: &str) -> bool {
        check_volume_name(name).is_ok() && self.root.join(name).is_dir()
    }

    /// Delete volume `name` and its files, its record readable or not (the caller checked
    /// that nothing uses it).
    pub fn delete(&self, name: &str) -> Result<()> {
        let dir = self.root.join(name);
        // Renamed away first: the volume is gone at once, even if deleting its files is slow
        // or is interrupted (a prune finishes it).
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let doomed = self.root.join(format!(".removing-{name}-{}-{nanos}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(|e| Error::runtime(format!("cannot remove volume {name}: {e}")))?;
        fs::remove_dir_all(&doomed).map_err(|e| Error::runtime(format!("cannot delete {}: {e}", doomed.display())))
    }

    /// What killed CLIs left (the caller holds the lock, exclusive): volumes half made,
    /// half removed, copy-ups cut short.
    pub fn sweep(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else { return };
        let is_debris = |name: &str| name.starts_with(".removing-") || name.starts_with(".new-") || name.starts_with(".copy-");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_debris(&name) {
                let _ = fs::remove_dir_all(entry.path());
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                for inside in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                    if is_debris(&inside.file_name().to_string_lossy()) {
                        let _ = fs::remove_dir_all(inside.path());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_made_once_and_listed_and_deleted() {
        let state = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(state.path());
        let (made, new) = store.create(Some("pgdata"), BTreeMap::from([("team".into(), "db".into())])).unwrap();
        assert!(new && made.mountpoint.is_dir() && made.mountpoint.ends_with("volumes/pgdata/_data"));
        let (again, new) = store.create(Some("pgdata"), BTreeMap::new()).unwrap();
        assert!(!new && again == made, "the second create finds the first");
        let (anonymous, _) = store.create(None, BTreeMap::from([(ANONYMOUS.into(), String::new())])).unwrap();
        assert_eq!(anonymous.name.len(), 64);
        assert!(anonymous.is_anonymous() && !made.is_anonymous());
        assert_eq!(store.list().unwrap().len(), 2);
        store.delete("pgdata").unwrap();
        assert_eq!(store.get("pgdata").unwrap(), None);
        assert!(store.create(Some("no/slash"), BTreeMap::new()).is_err());
        assert_eq!(std::fs::read_dir(state.path().join("volumes")).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().starts_with(".lock")).count(), 1, "only the anonymous one");
    }
}
