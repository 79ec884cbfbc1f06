//! From what was asked to what the container gets: each [`Request`] becomes a
//! [`MountPoint`] (a host directory chosen: the bind's source, a volume's `_data`), recorded
//! in the container's `mounts.json` and written into its spec's `mounts`, which step 01
//! mounts inside the new root before pivot_root, each target resolved inside that root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use step01::{Error, Result};

use crate::copy::copy_tree;
use crate::spec::{Request, Source};
use crate::store::{VolumeStore, ANONYMOUS};

/// The record of a container's mounts, in its directory.
pub const RECORD: &str = "mounts.json";

// ANCHOR: mount_point
/// One mount of a container, as `docker inspect`'s `Mounts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Where the files are on the host (empty for a tmpfs).
    pub source: PathBuf,
    pub destination: PathBuf,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The options as given (`ro`, `z`), Docker's `Mode`.
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    /// A bind mount's propagation (`rprivate` unless asked).
    pub propagation: String,
    /// A tmpfs's options for the kernel (carton's; Docker keeps them elsewhere).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmpfs_options: String,
}
// ANCHOR_END: mount_point

/// A container's mounts, chosen: what to record, and what to do once its root exists.
#[derive(Debug)]
pub struct Planned {
    pub mounts: Vec<MountPoint>,
    /// Volumes to fill with the image's files at their target (new or empty, no `nocopy`).
    copy_up: Vec<(PathBuf, PathBuf)>,
    /// Anonymous volumes made for this container: removed again if it is not made.
    made: Vec<String>,
}

// ANCHOR: plan
/// Choose every mount of a new container: `requests` (`-v`, `--mount`, `--tmpfs`) first,
/// then `inherited` (`--volumes-from`), then the image's `VOLUME`s (`image_volumes`), each
/// target once: what the user gives covers what the image says. Volumes are made as
/// needed; a missing bind source is made for `-v`. The caller holds the volumes' lock.
pub fn plan(state_root: &Path, requests: Vec<Request>, inherited: Vec<MountPoint>, image_volumes: &[PathBuf]) -> Result<Planned> {
    let store = VolumeStore::new(state_root);
    let mut planned = Planned { mounts: Vec::new(), copy_up: Vec::new(), made: Vec::new() };
    let mut targets = BTreeSet::new();
    for request in &requests {
        if !targets.insert(request.target.clone()) {
            return Err(Error::runtime(format!("duplicate mount point: {} is the target of two mounts", request.target.display())));
        }
    }
    let made = (|| {
        for request in requests {
            planned.add(&store, request)?;
        }
        for mount in inherited {
            if mount.kind == "volume" && !store.exists(&mount.name) {
                return Err(Error::runtime(format!("the volume {} at {} (of --volumes-from) is gone", mount.name, mount.destination.display())));
            }
            if targets.insert(mount.destination.clone()) {
                planned.mounts.push(mount);
            }
        }
        for target in image_volumes {
            // An image is data, maybe a stranger's: its VOLUME paths are checked like -v's.
            let target = crate::spec::check_target(&target.to_string_lossy()).map_err(|why| Error::runtime(format!("the image's VOLUME {}: {why}", target.display())))?;
            if targets.insert(target.clone()) {
                let request = Request { source: Source::Volume(None), target: target.clone(), read_only: false, propagation: None, nocopy: false, make_missing_source: false };
                planned.add(&store, request)?;
            }
        }
        Ok(())
    })();
    if let Err(error) = made {
        planned.undo(state_root);
        return Err(error);
    }
    Ok(planned)
}
// ANCHOR_END: plan

impl Planned {
    fn add(&mut self, store: &VolumeStore, request: Request) -> Result<()> {
        let mode = if request.read_only { "ro".to_string() } else { String::new() };
        let mut mount = MountPoint {
            kind: String::new(),
            name: String::new(),
            source: PathBuf::new(),
            destination: request.target.clone(),
            driver: String::new(),
            mode,
            rw: !request.read_only,
            propagation: String::new(),
            tmpfs_options: String::new(),
        };
        match request.source {
            Source::Bind(source) => {
                if !source.exists() && request.make_missing_source {
                    // `-v` makes a missing host directory, as Docker does.
                    fs::create_dir_all(&source).map_err(|e| Error::runtime(format!("cannot make the host directory {} for -v: {e}", source.display())))?;
                }
                mount.kind = "bind".into();
                mount.source = source;
                mount.propagation = request.propagation.unwrap_or_else(|| "rprivate".into());
            }
            Source::Volume(name) => {
                let labels = if name.is_none() { BTreeMap::from([(ANONYMOUS.to_string(), String::new())]) } else { BTreeMap::new() };
                let (volume, new) = store.create(name.as_deref(), labels)?;
                if new && volume.is_anonymous() {
                    self.made.push(volume.name.clone());
                }
                if !request.nocopy {
                    self.copy_up.push((request.target.clone(), volume.mountpoint.clone()));
                }
                (mount.kind, mount.name, mount.source, mount.driver) = ("volume".into(), volume.name, volume.mountpoint, volume.driver);
            }
            Source::Tmpfs(options) => {
                mount.kind = "tmpfs".into();
                mount.tmpfs_options = options;
            }
        }
        self.mounts.push(mount);
        Ok(())
    }

    // ANCHOR: copy_up
    /// Docker's copy-up: a volume that is empty gets the files the image has at its target
    /// (with their owners and modes, and the directory's own), so that a database image's
    /// `/var/lib/postgresql` in a new volume starts as the image made it. `root` is the
    /// container's root, not yet running; each target is found inside it, never outside.
    pub fn copy_up(&self, root: &Path) -> Result<()> {
        for (target, data) in &self.copy_up {
            if !is_empty(data) {
                continue; // a volume with files keeps them: they are its data, not the image's
            }
            let Ok(source) = step01::mounts::open_in_root(root, target, step01::mounts::Create::Nothing) else { continue };
            let source = PathBuf::from(format!("/proc/self/fd/{}", source.as_raw_fd()));
            if !source.is_dir() {
                continue;
            }
            let failed = |e: std::io::Error| Error::runtime(format!("cannot copy the image's {} into its volume: {e}", target.display()));
            // Copied beside `_data`, where no container reaches (a running container that
            // has the volume could plant links in `_data` while we write), then moved in.
            let volume_dir = data.parent().unwrap_or(data);
            let staging = tempfile::Builder::new().prefix(".copy-").tempdir_in(volume_dir).map_err(failed)?;
            copy_tree(&source, staging.path()).map_err(failed)?;
            move_in(staging.path(), data).map_err(failed)?;
        }
        Ok(())
    }
    // ANCHOR_END: copy_up

    /// The anonymous volumes made for a container that was not made after all.
    pub fn undo(&self, state_root: &Path) {
        let store = VolumeStore::new(state_root);
        for name in &self.made {
            let _ = store.delete(name);
        }
    }
}

// ANCHOR: oci_mounts
/// Whether directory `dir` has nothing in it.
fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).map(|mut entries| entries.next().is_none()).unwrap_or(false)
}

/// Move what `staging` holds into `data`, each entry by one rename that never replaces
/// anything: if a name is taken, someone filled the volume meanwhile (a container, another
/// `run`), and what they put there stays. `data` gets `staging`'s owner and mode.
fn move_in(staging: &Path, data: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    for entry in fs::read_dir(staging)? {
        let name = entry?.file_name();
        match renameat2(AT_FDCWD, &staging.join(&name), AT_FDCWD, &data.join(&name), RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => return Ok(()),
            Err(errno) => return Err(errno.into()),
        }
    }
    let meta = fs::metadata(staging)?;
    std::os::unix::fs::lchown(data, Some(std::os::unix::fs::MetadataExt::uid(&meta)), Some(std::os::unix::fs::MetadataExt::gid(&meta)))?;
    fs::set_permissions(data, meta.permissions())
}

/// The spec's `mounts` for these mount points: parents before children (`/data` before
/// `/data/logs`), each bind recursive and private unless asked, read-only when asked; a
/// tmpfs without setuid programs, devices or programs to run (Docker's defaults).
pub fn oci_mounts(mounts: &[MountPoint]) -> Result<Vec<oci_spec::runtime::Mount>> {
    let mut sorted: Vec<&MountPoint> = mounts.iter().collect();
    sorted.sort_by_key(|m| m.destination.components().count());
    sorted
        .into_iter()
        .map(|mount| {
            let (typ, source, mut options) = match mount.kind.as_str() {
                "tmpfs" => {
                    let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                    options.extend(mount.tmpfs_options.split(',').filter(|o| !o.is_empty()).map(str::to_string));
                    ("tmpfs", PathBuf::from("tmpfs"), options)
                }
                _ => ("bind", mount.source.clone(), vec!["rbind".to_string(), if mount.propagation.is_empty() { "rprivate".to_string() } else { mount.propagation.clone() }]),
            };
            if !mount.rw {
                options.push("ro".into());
            }
            oci_spec::runtime::MountBuilder::default()
                .destination(&mount.destination)
                .typ(typ)
                .source(source)
                .options(options)
                .build()
                .map_err(|e| Error::runtime(format!("the mount at {}: {e}", mount.destination.display())))
        })
        .collect()
}
// ANCHOR_END: oci_mounts

// ANCHOR: add_to_spec
/// Add these mount points to `spec`'s mounts, the whole list then in depth order (a stable
/// sort): a volume at `/etc` goes before the `/etc/hosts` that step 03 binds, which stays
/// visible on top of it; at one target, a user's mount goes after (over) a step's.
pub fn add_to_spec(spec: &mut oci_spec::runtime::Spec, mounts: &[MountPoint]) -> Result<()> {
    let mut all = spec.mounts().clone().unwrap_or_default();
    all.extend(oci_mounts(mounts)?);
    all.sort_by_key(|m| m.destination().components().count());
    spec.set_mounts(Some(all));
    // A bind that follows the host's mounts (slave) or shares its own (shared) needs the
    // container's `/` connected the same way, or its copy of the host is private and
    // hears of nothing (Docker sets the root's propagation so).
    let wants = |kind: &str| mounts.iter().any(|m| m.propagation.trim_start_matches('r') == kind);
    let root = if wants("shared") {
        Some("rshared")
    } else if wants("slave") {
        Some("rslave")
    } else {
        None
    };
    if let Some(root) = root {
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_rootfs_propagation(Some(root.to_string()));
        spec.set_linux(Some(linux));
    }
    Ok(())
}
// ANCHOR_END: add_to_spec

/// Write container `id`'s mounts (its directory exists); a container without any has no
/// record of them (one file less to write on every start).
pub fn record(state_root: &Path, id: &str, mounts: &[MountPoint]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let path = step09::Container::dir(state_root, id).join(RECORD);
    let json = serde_json::to_vec_pretty(mounts).map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))?;
    step06::store::write_atomically(&path, &json, step06::store::Durable::No)
}

/// Container `id`'s mounts (none when it has no record of them).
pub fn of_container(state_root: &Path, id: &str) -> Vec<MountPoint> {
    fs::read(step09::Container::dir(state_root, id).join(RECORD)).ok().and_then(|text| serde_json::from_slice(&text).ok()).unwrap_or_default()
}

/// `--volumes-from CONTAINER[:ro|:rw]`: its volumes and bind mounts (not its tmpfs), read
/// only or read-write as asked, else as it has them.
pub fn volumes_from(state_root: &Path, id: &str, mode: Option<&str>) -> Result<Vec<MountPoint>> {
    let rw = match mode {
        None => None,
        Some("ro") => Some(false),
        Some("rw") => Some(true),
        Some(other) => return Err(Error::runtime(format!("invalid --volumes-from mode {other:?}: give ro or rw"))),
    };
    Ok(of_container(state_root, id)
        .into_iter()
        .filter(|m| m.kind != "tmpfs")
        .map(|mut m| {
            if let Some(rw) = rw {
                m.rw = rw;
                m.mode = if rw { String::new() } else { "ro".into() };
            }
            m
        })
        .collect())
}

/// Container `id`'s mounts as `docker inspect`'s `Mounts` shows them.
pub fn inspect_json(state_root: &Path, id: &str) -> serde_json::Value {
    let mut mounts = serde_json::to_value(of_container(state_root, id)).unwrap_or_default();
    for mount in mounts.as_array_mut().into_iter().flatten() {
        if let Some(fields) = mount.as_object_mut() {
            fields.remove("TmpfsOptions");
        }
    }
    mounts
}

/// Which containers use each volume: volume name → container ids.
pub fn users(state_root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir(state_root.join("containers")).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        for mount in of_container(state_root, &id).into_iter().filter(|m| m.kind == "volume") {
            users.entry(mount.name).or_default().push(id.clone());
        }
    }
    users
}

// ANCHOR: remove_anonymous
/// After a container is removed with `rm -v` (or `--rm`): its anonymous volumes go too,
/// unless another container uses one (`--volumes-from`). Named volumes stay: they are
/// for keeping. Returns the names removed.
pub fn remove_anonymous(state_root: &Path, mounts: &[MountPoint]) -> Result<Vec<String>> {
    let store = VolumeStore::new(state_root);
    let _lock = store.lock(step06::store::Lock::Exclusive)?;
    let users = users(state_root);
    let mut removed = Vec::new();
    for mount in mounts.iter().filter(|m| m.kind == "volume" && !users.contains_key(&m.name)) {
        if store.get(&mount.name)?.is_some_and(|volume| volume.is_anonymous()) {
            store.delete(&mount.name)?;
            removed.push(mount.name.clone());
        }
    }
    Ok(removed)
}
// ANCHOR_END: remove_anonymous

// ANCHOR: remove
/// `volume rm NAME`: refused while a container uses it, running or not (its files are that
/// container's data: remove the container first).
pub fn remove_volume(state_root: &Path, name: &str) -> Result<()> {
    let store = VolumeStore::new(state_root);
    let _lock = store.lock(step06::store::Lock::Exclusive)?;
    if !store.exists(name) {
        return Err(Error::runtime(format!("no such volume: {name}")));
    }
    if let Some(users) = users(state_root).get(name) {
        let names: Vec<String> = users.iter().map(|id| step09::Container::load(state_root, id).ok().flatten().map_or_else(|| id[..12.min(id.len())].to_string(), |c| c.name)).collect();
        return Err(Error::runtime(format!("volume {name} is in use by container {}: remove the container first (`carton rm {}`)", names.join(", "), names[0])));
    }
    store.delete(name)
}
// ANCHOR_END: remove

/// `volume prune`: every volume no container uses (only anonymous ones unless `all`), with
/// the bytes each held.
pub fn prune(state_root: &Path, all: bool) -> Result<Vec<(String, u64)>> {
    let store = VolumeStore::new(state_root);
    let _lock = store.lock(step06::store::Lock::Exclusive)?;
    store.sweep();
    let users = users(state_root);
    let mut removed = Vec::new();
    for volume in store.list()?.into_iter().filter(|v| !users.contains_key(&v.name) && (all || v.is_anonymous())) {
        let size = step05::store::disk_usage(&volume.mountpoint);
        store.delete(&volume.name)?;
        removed.push((volume.name, size));
    }
    Ok(removed)
}

/// Whether `path` (inside the container) is a mount's target or lies under one: what lives
/// there is not in the container's writable layer (`diff`, `commit` and `cp` leave it).
pub fn covering<'a>(mounts: &'a [MountPoint], path: &Path) -> Option<&'a MountPoint> {
    mounts.iter().filter(|m| path.starts_with(&m.destination)).max_by_key(|m| m.destination.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_volume;

    #[test]
    fn requests_cover_the_images_volumes_and_a_target_is_used_once() {
        let state = tempfile::tempdir().unwrap();
        let site = state.path().join("site");
        let requests = vec![parse_volume(&format!("{}:/www:ro", site.display()), Path::new("/")).unwrap(), parse_volume("data:/var/lib/db", Path::new("/")).unwrap()];
        let planned = plan(state.path(), requests, Vec::new(), &[PathBuf::from("/var/lib/db"), PathBuf::from("/cache")]).unwrap();
        let kinds: Vec<(&str, &Path, bool)> = planned.mounts.iter().map(|m| (m.kind.as_str(), m.destination.as_path(), m.rw)).collect();
        assert_eq!(kinds, [("bind", Path::new("/www"), false), ("volume", Path::new("/var/lib/db"), true), ("volume", Path::new("/cache"), true)]);
        assert!(site.is_dir(), "-v made the missing host directory");
        assert_eq!(planned.mounts[1].name, "data");
        assert_eq!(planned.made.len(), 1, "one anonymous volume, for the image's /cache");
        let duplicate = plan(state.path(), vec![parse_volume("/a", Path::new("/")).unwrap(), parse_volume("b1:/a", Path::new("/")).unwrap()], Vec::new(), &[]);
        assert!(duplicate.unwrap_err().to_string().contains("duplicate mount point: /a"));
    }

    #[test]
    fn spec_mounts_put_parents_first_and_keep_binds_private() {
        let bind = |destination: &str, rw: bool| MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source: "/srv".into(),
            destination: destination.into(),
            driver: String::new(),
            mode: String::new(),
            rw,
            propagation: "rprivate".into(),
            tmpfs_options: String::new(),
        };
        let tmpfs = MountPoint { kind: "tmpfs".into(), tmpfs_options: "size=1m".into(), source: PathBuf::new(), ..bind("/run", true) };
        let mounts = oci_mounts(&[bind("/data/logs", false), bind("/data", true), tmpfs]).unwrap();
        let shown: Vec<(String, Vec<String>)> = mounts.iter().map(|m| (m.destination().display().to_string(), m.options().clone().unwrap())).collect();
        assert_eq!(shown[0].0, "/data");
        assert_eq!(shown[2], ("/data/logs".to_string(), vec!["rbind".to_string(), "rprivate".into(), "ro".into()]));
        assert_eq!(shown[1].1, ["nosuid", "nodev", "noexec", "size=1m"]);
        assert_eq!(covering(&[bind("/data", true)], Path::new("/data/x/y")).map(|m| m.destination.as_path()), Some(Path::new("/data")));
        assert!(covering(&[bind("/data", true)], Path::new("/database")).is_none());
    }
}
