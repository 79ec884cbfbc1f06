//! # Step 03 — a network of its own
//!
//! Part one of the chapter: the network namespace itself, and the container's names.
//!
//! - `--network none`: a network namespace of its own, with only the loopback
//!   interface, brought up through netlink ([`netlink`]).
//! - `--network host`: the host's network stack, shared (no namespace).
//! - `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` made for each container and
//!   bind-mounted over the image's ([`files`]); `--add-host`, `--dns`.
//! - the counters `stats` will show ([`counters`]).
//!
//! The default bridge network (veth pairs, addresses, NAT, published ports) is the
//! chapter's second part, planned.

pub mod counters;
pub mod files;
pub mod netlink;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use step01::{Action, Chapter, ContainerExit, ContainerSpec, Error, Explain, Hooks, Result, StartReport};

pub use files::HostEntry;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 3, title: "a network of its own" };

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A network namespace of its own with only `lo`.
    None,
    /// The host's network namespace.
    Host,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(text: &str) -> Result<Mode> {
        match text {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Err(Error::runtime(
                "--network bridge (a virtual network with addresses, NAT and published ports) is planned, the second part of chapter 3; \
                 today choose --network none or --network host",
            )),
            other => Err(Error::runtime(format!("unknown network {other:?}: choose none or host (bridge is planned)"))),
        }
    }
}

/// The `docker run` network options this step implements.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub mode: Mode,
    pub add_hosts: Vec<HostEntry>,
    pub dns: Vec<IpAddr>,
}

impl NetworkOptions {
    /// Until the bridge arrives, the default is the host's network, as carton has always run.
    pub fn new() -> NetworkOptions {
        NetworkOptions { mode: Mode::Host, add_hosts: Vec::new(), dns: Vec::new() }
    }
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions::new()
    }
}

/// `--dns IP`.
pub fn parse_dns(text: &str) -> Result<IpAddr> {
    text.parse().map_err(|_| Error::runtime(format!("invalid --dns {text:?}: give a nameserver's IP address, e.g. 192.0.2.53")))
}

/// Step 03's additions to the start sequence, around step 02's.
pub struct Networking<H: Hooks> {
    inner: H,
    mode: Mode,
    /// The container's state directory, holding its hostname, hosts and resolv.conf.
    files: PathBuf,
}

impl<H: Hooks> Hooks for Networking<H> {
    fn parent_after_clone(&mut self, child: Pid, explain: &Explain) -> Result<()> {
        self.inner.parent_after_clone(child, explain)
    }

    fn child_before_pivot(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        files::bind_into(rootfs, &self.files, explain)?;
        self.inner.child_before_pivot(spec, rootfs, explain)
    }

    // ANCHOR: child_after_root
    fn child_after_root(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        if self.mode == Mode::None {
            // A new network namespace starts with `lo` only, and down.
            explain.step(|| {
                Action::new(CHAPTER, "bring up the loopback interface of the container's own network namespace", "netlink RTM_NEWLINK index 1, IFF_UP")
                    .shell("ip link set lo up")
            });
            netlink::set_link_up(netlink::LOOPBACK_INDEX)?;
        }
        self.inner.child_after_root(spec, explain)
    }
    // ANCHOR_END: child_after_root

    fn child_exec(&self, spec: &ContainerSpec, report: StartReport, explain: &Explain) -> ! {
        self.inner.child_exec(spec, report, explain)
    }
}

// ANCHOR: run
/// Run a container with steps 01–02 and this step's network; wait for it. The
/// container's files live in `state_root/containers/ID/` while it runs.
pub fn run(mut spec: ContainerSpec, options: &step02::Options, network: &NetworkOptions, state_root: &Path, explain: &Explain) -> Result<ContainerExit> {
    let dir = state_root.join("containers").join(options.id.as_str());
    fs::create_dir_all(&dir).map_err(|e| Error::runtime(format!("cannot create the container's state directory {}: {e}", dir.display())))?;
    let hostname = options.effective_hostname();
    let names = files::Names { hostname: &hostname, mode: network.mode, add_hosts: &network.add_hosts, dns: &network.dns };
    let result = files::write(&dir, &names).and_then(|()| {
        if network.mode == Mode::None {
            spec.namespaces |= CloneFlags::CLONE_NEWNET;
        }
        step02::run_with(spec, options, explain, |inner| Networking { inner, mode: network.mode, files: dir.clone() })
    });
    // Nothing outlives the container yet (kept containers come with chapter 7).
    let _ = fs::remove_dir_all(&dir);
    result
}
// ANCHOR_END: run
