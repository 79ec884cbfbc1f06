//! A network namespace with a name: made the way `ip netns add` makes one, and wired
//! before the container exists, the way CNI plugins and netavark do it for podman.
//!
//! A namespace lives as long as something refers to it: a process inside, an open
//! descriptor, or a bind mount of its `/proc/.../ns/net` file. carton creates the
//! namespace, pins it with a bind mount onto `containers/ID/netns` under the state root,
//! plugs in the cable and sets the addresses from outside, and the container's process
//! joins it by that path (step 01's `ContainerSpec::join`). Anyone can join it too:
//! `nsenter --net=/var/lib/carton/containers/ID/netns ip addr`.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

/// The calling thread's own network namespace. (`self` would name the main thread's.)
const OWN_NAMESPACE: &str = "/proc/thread-self/ns/net";

/// A network namespace pinned at a path; its descriptor keeps it alive while carton holds it.
pub(crate) struct NamedNetns {
    pub path: PathBuf,
    file: File,
}

impl NamedNetns {
    // ANCHOR: create
    /// A new, empty network namespace pinned at `path` (a new file).
    pub fn create(path: &Path, explain: &Explain) -> Result<NamedNetns> {
        let shown = path.display();
        explain.step(|| {
            Action::new(
                CHAPTER,
                format!("create an empty network namespace and pin it at {shown}"),
                format!("unshare(CLONE_NEWNET); mount(\"{OWN_NAMESPACE}\", \"{shown}\", NULL, MS_BIND, NULL); setns(carton's own, CLONE_NEWNET)"),
            )
            .shell(format!("touch {shown} && unshare --net mount --bind /proc/self/ns/net {shown}"))
        });
        File::create_new(path).map_err(|e| Error::runtime(format!("cannot create {shown}, the file that pins the network namespace: {e}")))?;
        let own = open(Path::new(OWN_NAMESPACE))?;
        // For a moment carton's thread lives in the new namespace: long enough to pin it.
        unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| Error::syscall("cannot create a network namespace", errno))?;
        let pinned = mount(Some(OWN_NAMESPACE), path, None::<&str>, MsFlags::MS_BIND, None::<&str>);
        return_to(own.as_fd());
        pinned.map_err(|errno| Error::syscall(format!("cannot pin the network namespace at {shown}"), errno))?;
        Ok(NamedNetns { path: path.to_path_buf(), file: open(path)? })
    }
    // ANCHOR_END: create

    // ANCHOR: enter
    /// Run `work` inside the namespace, then come back. Netlink sockets are bound to
    /// the namespace they are opened in, so `work` configures the namespace's network.
    pub fn enter<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let own = open(Path::new(OWN_NAMESPACE))?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| Error::syscall(format!("cannot enter the network namespace {}", self.path.display()), errno))?;
        let result = work();
        return_to(own.as_fd());
        result
    }
    // ANCHOR_END: enter

    /// The namespace's descriptor, for netlink's `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Remove the pin at `path` (the namespace of a container whose carton was killed, too).
pub(crate) fn unpin(path: &Path) {
    // Detached: a `nsenter` still inside keeps the namespace, not the mount. Never through
    // a symbolic link planted in the state directory.
    let _ = umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
    let _ = std::fs::remove_file(path);
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::runtime(format!("cannot open the network namespace {}: {e}", path.display())))
}

/// Back to carton's own namespace: everything carton does next (the port relays, the
/// next netlink call, the cleanup) must happen on the host's side. If that fails, carton
/// stops at once rather than go on in the wrong namespace.
fn return_to(own: BorrowedFd) {
    if let Err(errno) = setns(own, CloneFlags::CLONE_NEWNET) {
        eprintln!("carton: cannot return to its own network namespace ({}); stopping", errno.desc());
        std::process::abort();
    }
}
