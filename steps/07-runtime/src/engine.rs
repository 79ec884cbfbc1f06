//! What an engine does around the runtime, as containerd and podman do around runc: the
//! image's layers mounted as the container's root (a snapshotter's job), the network
//! prepared by name (CNI's, netavark's), the bundle written; and, after the runtime's
//! `delete`, all of it undone. Plus the one collector of what a killed carton left.
//!
//! ```text
//! STATE_ROOT/containers/ID/        a private mount of the state root's containers/
//!   config.json                   the OCI runtime spec
//!   rootfs/                       the overlay of the image's layers (mounted here)
//!   hostname hosts resolv.conf    step 03's files, bind-mounted at /etc
//!   netns                         the pinned network namespace
//!   layers                        the image's layers, to mount the root again at a restart
//!   up                            there while the root is mounted and the network made
//!   owner                         the carton process responsible for removing it all
//!   state.json exec.fifo lock     the runtime's
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use step01::process::UniquePid;
use step01::{Error, Explain, Result};

use crate::{check_id, state, Runtime};

/// Where a new container's root filesystem comes from.
pub enum Root {
    /// An image, its layers unpacked: mounted as an overlay at `containers/ID/rootfs`.
    Image(Box<step06::Prepared>),
    /// A directory used as it is (`--rootfs`).
    Directory(PathBuf),
}

// ANCHOR: prepare
/// Make container `id`'s bundle in `containers/ID/`: its root, its network, and
/// `config.json` from `spec` (which lacks only what is made here). Returns what the
/// network setup made (the ports to relay). On failure, nothing is left.
pub fn prepare(state_root: &Path, id: &str, root: Root, mut spec: Spec, explain: &Explain) -> Result<step03::Connected> {
    check_id(id)?;
    let dir = {
        let _private = private_containers_dir(state_root)?;
        step03::claim(state_root, id)?
    };
    let prepared = (|| {
        let root_path = match root {
            Root::Directory(path) => path,
            Root::Image(image) => {
                let rootfs = dir.join("rootfs");
                // Marked in use while the container exists, so that `rmi` keeps its layers.
                step06::ImageStore::open(state_root)?.mark_in_use(id, &image.image.manifest_digest, &dir)?;
                let layers: String = image.lowers.iter().map(|layer| format!("{}\n", layer.digest)).collect();
                fs::write(dir.join(LAYERS), layers).map_err(|e| Error::runtime(format!("cannot write {}: {e}", dir.join(LAYERS).display())))?;
                step05::mount_container_root(&step05::LayerStore::new(state_root), &image.lowers, id, &rootfs, explain)?;
                drop(image); // marked: rmi may go ahead now, and will keep what this container uses
                PathBuf::from("rootfs")
            }
        };
        step01::container::set_root_path(&mut spec, root_path);
        connect(&dir, id, spec, explain)
    })();
    if prepared.is_err() {
        let _ = teardown(state_root, id);
    }
    prepared
}
// ANCHOR_END: prepare

/// The network of the container in `dir`, made as its spec says, and written into its
/// `config.json` (the namespace to join, the files to mount); the container is then up.
fn connect(dir: &Path, id: &str, mut spec: Spec, explain: &Explain) -> Result<step03::Connected> {
    let hostname = spec.hostname().clone().unwrap_or_default();
    let connected = step03::setup(dir, id, &hostname, &step03::NetworkOptions::from_oci(&spec)?, explain)?;
    connected.write_oci(&mut spec);
    crate::Bundle::write(dir, &spec)?;
    fs::write(dir.join(UP), "").map_err(|e| Error::runtime(format!("cannot write {}: {e}", dir.join(UP).display())))?;
    Ok(connected)
}

/// The image's layers of a container, the bottom one first, one diff ID a line.
const LAYERS: &str = "layers";
/// Present while a container's root is mounted and its network made.
const UP: &str = "up";

// ANCHOR: up_down
/// Bring a kept container back up for another start (`docker start`): its root mounted
/// again on the same writable layer (its files are as it left them), its network made
/// again. Nothing to do when it is up already (created, never started).
pub fn up(state_root: &Path, id: &str, explain: &Explain) -> Result<step03::Connected> {
    let dir = state_root.join("containers").join(id);
    let bundle = crate::Bundle::load(&dir)?;
    if dir.join(UP).exists() {
        let network = step03::NetworkOptions::from_oci(&bundle.spec)?;
        let netns = (network.mode != step03::Mode::Host).then(|| dir.join("netns"));
        let address = step03::recorded_address(&dir);
        return Ok(step03::Connected { netns, address, ports: network.ports, files: dir.clone() });
    }
    let brought_up = mount_root(state_root, id, explain).and_then(|_| connect(&dir, id, bundle.spec, explain));
    if brought_up.is_err() {
        down(state_root, id);
    }
    brought_up
}

/// The image's layers under container `id`, the bottom one first; `None` for a root given
/// as a directory (`--rootfs`).
pub fn lowers(state_root: &Path, id: &str) -> Result<Option<Vec<step05::Layer>>> {
    let Ok(layers) = fs::read_to_string(state_root.join("containers").join(id).join(LAYERS)) else { return Ok(None) };
    let store = step05::LayerStore::new(state_root);
    let lowers =
        layers.lines().map(|digest| store.layer(digest).ok_or_else(|| Error::runtime(format!("layer {digest} of container {id} is missing from the layer store")))).collect::<Result<Vec<_>>>()?;
    Ok(Some(lowers))
}

/// Mount container `id`'s root (its image's layers under its writable layer) unless it is
/// mounted, or is a directory of its own; whether it was mounted now.
pub fn mount_root(state_root: &Path, id: &str, explain: &Explain) -> Result<bool> {
    let rootfs = state_root.join("containers").join(id).join("rootfs");
    match lowers(state_root, id)? {
        Some(lowers) if !is_mount_root(&rootfs) => {
            step05::mount_container_root(&step05::LayerStore::new(state_root), &lowers, id, &rootfs, explain)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Where container `id`'s root is on the host (mounted or not): `containers/ID/rootfs`, or
/// the directory `--rootfs` gave.
pub fn root_path(state_root: &Path, id: &str) -> Result<PathBuf> {
    let bundle = crate::Bundle::load(&state_root.join("containers").join(id))?;
    let root = bundle.spec.root().as_ref().map(|root| root.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    Ok(bundle.dir.join(root))
}

/// Take a stopped container down, keeping it (`Exited`): its network and its root's
/// mount go; its writable layer, bundle and logs stay, for another start or `rm`.
pub fn down(state_root: &Path, id: &str) {
    let dir = state_root.join("containers").join(id);
    let _ = fs::remove_file(dir.join(UP));
    step03::teardown(&dir, id);
    step05::unmount_container_root(&dir.join("rootfs"));
}
// ANCHOR_END: up_down

// ANCHOR: teardown
/// Undo [`prepare`], after the runtime's `delete`: the network, the root's mount, the
/// writable layer, the image's in-use mark, the directory.
pub fn teardown(state_root: &Path, id: &str) -> Result<()> {
    let dir = state_root.join("containers").join(id);
    down(state_root, id);
    let rootfs = dir.join("rootfs");
    step05::LayerStore::new(state_root).remove_container(id)?;
    step06::store::unmark_in_use(state_root, id);
    // The root must be an empty directory by now: never remove files through a mount.
    match fs::remove_dir(&rootfs) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::runtime(format!("cannot remove {}: {e}; is something still mounted there?", rootfs.display()))),
        _ => {}
    }
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::runtime(format!("cannot remove {}: {e}", dir.display()))),
        _ => {}
    }
    let _private = private_containers_dir(state_root)?; // and released, when no container is left
    Ok(())
}
// ANCHOR_END: teardown

/// Take the responsibility for a prepared container off this process: it lives on
/// after it (`carton create`), and only `rm` removes it.
pub fn disown(state_root: &Path, id: &str) -> Result<()> {
    write_owner(state_root, id, DETACHED)
}

/// Make this process the one responsible for a container (the `carton` that runs it
/// attached): should it die, the next collector finds the container abandoned.
pub fn adopt(state_root: &Path, id: &str) -> Result<()> {
    write_owner(state_root, id, &UniquePid::current().to_string())
}

/// [`adopt`], for a detached container's monitor, which lives as long as its container.
/// Should it die, `ps` and `inspect` say so at once (they check the monitor they list);
/// the collector takes the container down at its next sweep (or `rm` does), so that a
/// start does not look at every running container's monitor.
pub fn adopt_as_monitor(state_root: &Path, id: &str) -> Result<()> {
    write_owner(state_root, id, &format!("{}{MONITOR}", UniquePid::current()))
}

/// A container's `owner`: who is responsible for it, read by [`collect`].
fn write_owner(state_root: &Path, id: &str, owner: &str) -> Result<()> {
    step06::store::write_atomically(&state_root.join("containers").join(id).join("owner"), owner.as_bytes(), step06::store::Durable::No)
}

/// What follows a monitor's process record in `owner`.
const MONITOR: &str = " monitor";

/// What `owner` says of a container no carton process is responsible for (`create`'s).
const DETACHED: &str = "detached\n";

// ANCHOR: private
/// The state root's `containers/` as a private mount of itself when it sits on a shared
/// mount (systemd makes `/` one), held while locked (the lock is the returned guard): a
/// root filesystem mounted below it never propagates into the host's other mount
/// namespaces, as Docker does with its overlay2 directory. When the guard goes and no
/// container is left, the mount goes too: nothing stays mounted.
pub fn private_containers_dir(state_root: &Path) -> Result<PrivateMount> {
    let containers = state_root.join("containers");
    fs::create_dir_all(&containers).map_err(|e| Error::runtime(format!("cannot create {}: {e}", containers.display())))?;
    let lock = state::lock_file(&state_root.join("containers.lock"))?;
    let containers = containers.canonicalize().map_err(|e| Error::runtime(format!("cannot resolve {}: {e}", containers.display())))?;
    if !is_mount_root(&containers) && holding_mount_is_shared(&containers) {
        use nix::mount::{mount, MsFlags};
        mount(Some(&containers), &containers, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|errno| Error::syscall(format!("cannot bind-mount {} onto itself", containers.display()), errno))?;
        mount(None::<&str>, &containers, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).map_err(|errno| Error::syscall(format!("cannot make {} private", containers.display()), errno))?;
    }
    Ok(PrivateMount { containers, _lock: lock })
}

pub struct PrivateMount {
    containers: PathBuf,
    _lock: fs::File,
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        let empty = fs::read_dir(&self.containers).map(|mut entries| entries.next().is_none()).unwrap_or(false);
        if empty && is_mount_root(&self.containers) {
            let _ = nix::mount::umount2(&self.containers, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW);
        }
    }
}
// ANCHOR_END: private

/// Whether something is mounted at `path` itself (one statx call; before Linux 5.8, which
/// statx cannot say it, the mount table).
fn is_mount_root(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // Safety: statx writes into `stat`, which is large enough; the path is NUL-terminated.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, 0, &mut stat) };
    if done == 0 && stat.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0 {
        return stat.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    }
    // Before 5.8: the mount table says.
    let now = step01::process::read_kernel_file("/proc/self/mountinfo").unwrap_or_default();
    mount_table(&now).iter().any(|(point, _)| point == path)
}

/// Whether the mount that holds `path` (canonical) passes new mounts on to other mount
/// namespaces (`shared:N` in /proc/self/mountinfo, as systemd makes `/`). A private one (or
/// `path` itself, made private earlier) needs nothing more.
fn holding_mount_is_shared(path: &Path) -> bool {
    // The last mount listed at the longest mount point above `path` is the one it is on.
    mount_table(step01::mounts::mountinfo_at_start()).into_iter().filter(|(point, _)| path.starts_with(point)).max_by_key(|(point, _)| point.as_os_str().len()).is_some_and(|(_, shared)| shared)
}

/// The mount points of a /proc/self/mountinfo text, in its order.
pub(crate) fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mount_table(mountinfo).into_iter().map(|(point, _)| point).collect()
}

/// The mounts of a /proc/self/mountinfo text, in its order: each mount point (unescaped)
/// and whether it is shared (`shared:N`).
fn mount_table(mountinfo: &str) -> Vec<(PathBuf, bool)> {
    let unescape = |field: &str| field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\");
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = PathBuf::from(unescape(fields.get(4)?));
            let shared = fields.iter().skip(6).take_while(|f| **f != "-").any(|f| f.starts_with("shared:"));
            Some((point, shared))
        })
        .collect()
}

// ANCHOR: collect
/// The one collector: every container whose responsible carton died (`kill -9`, a crash,
/// a reboot) is deleted and torn down — its processes, cgroup, mounts, veth, address
/// lease, writable layer, files — and so are layers a killed pull or unpack left half
/// made, and empty cgroups nobody owns. Run before carton makes anything new.
pub fn collect(state_root: &Path) {
    collect_with(state_root, |_| false);
}

/// [`collect`], where a later step gets each abandoned container by id once the runtime's
/// part is gone (its processes, cgroup, state): `keep` returns true when it has dealt with
/// the rest itself (a kept container is taken down, not removed). Returns whether the
/// sweeps for what was abandoned a minute ago ran this time (see [`SWEEP_EVERY`]).
pub fn collect_with(state_root: &Path, keep: impl Fn(&str) -> bool) -> bool {
    let runtime = Runtime::new(state_root, Explain::off());
    let sweep = sweep_due(state_root);
    for entry in fs::read_dir(state_root.join("containers")).into_iter().flatten().flatten() {
        let (dir, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || !is_abandoned(&dir, sweep) {
            continue;
        }
        if name.starts_with(step03::CLAIMING) {
            // A carton killed inside `claim` leaves a `.claim-ID` with its owner in it.
            let _ = fs::remove_dir_all(&dir);
        } else if check_id(&name).is_ok() {
            if dir.join("state.json").exists() {
                let _ = runtime.delete(&name, true);
            } else if let Some(version) = step04::Layout::detected().version() {
                // Killed before the runtime recorded it: its cgroup is at the usual place.
                let cgroup = step04::Cgroup::at(step04::Layout::detected(), version, &name);
                cgroup.kill_all(&Explain::off());
                let _ = cgroup.remove();
            }
            if !keep(&name) {
                let _ = teardown(state_root, &name);
            }
        }
    }
    step05::LayerStore::new(state_root).sweep_abandoned();
    if sweep {
        step04::sweep_abandoned(step04::Layout::detected());
    }
    sweep
}

/// How often the sweeps run: for what has been abandoned for a minute (stray cgroups, stray
/// names) and for containers whose monitor died. Every start looking at every cgroup and
/// every monitor would make a start slower with each container kept (200 running: several
/// milliseconds). What was abandoned a minute ago can wait ten seconds more.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the sweeps are due: the stamp `.swept` in the state root is older than
/// [`SWEEP_EVERY`] (or missing, or unreadable: then every command sweeps, as before there
/// was a stamp). A due sweep renews it, so that the next commands need not.
fn sweep_due(state_root: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let stamp = state_root.join(".swept");
    let recent = fs::symlink_metadata(&stamp).and_then(|m| m.modified()).is_ok_and(|at| at.elapsed().is_ok_and(|age| age < SWEEP_EVERY));
    if !recent {
        // Never through a link planted there; a stamp that cannot be written only costs speed.
        let renewed = fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(&stamp);
        let _ = renewed.and_then(|file| file.set_modified(std::time::SystemTime::now()));
    }
    !recent
}

/// A container directory is abandoned when the carton responsible for it is gone, or
/// when it has had neither an owner nor a runtime state for a minute (a carton killed
/// while making it; making one takes milliseconds). Monitors are looked at only when
/// `sweep` says (see [`adopt_as_monitor`]).
fn is_abandoned(dir: &Path, sweep: bool) -> bool {
    // One per container kept: read in as few calls as it takes (no size asked first).
    let owner = step01::process::read_kernel_file(dir.join("owner")).unwrap_or_default();
    if owner == DETACHED {
        return false; // only `rm` removes it
    }
    let owner = match owner.strip_suffix(MONITOR) {
        Some(_) if !sweep => return false,
        Some(monitor) => monitor,
        None => owner.as_str(),
    };
    match owner.parse::<UniquePid>() {
        Ok(owner) => !owner.is_alive(),
        Err(_) => !dir.join("state.json").exists() && dir.metadata().and_then(|m| m.modified()).is_ok_and(|made| made.elapsed().is_ok_and(|age| age.as_secs() > 60)),
    }
}
// ANCHOR_END: collect
