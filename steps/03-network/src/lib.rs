//! # Step 03 — a network of its own
//!
//! - `--network none`: a network namespace of its own, with only the loopback
//!   interface, brought up through netlink ([`netlink`]). The namespace is made and
//!   pinned under a name before the container starts, and the container joins it
//!   ([`netns`]), as CNI and netavark prepare podman's.
//! - `--network host`: the host's network stack, shared (no namespace).
//! - `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` made for each container and
//!   bind-mounted over the image's ([`files`]); `--add-host`, `--dns`.
//! - the counters `stats` will show ([`counters`]).
//!
//! - `--network bridge`: a veth pair per container, plugged into the bridge `carton0`,
//!   an address from a small IPAM ([`ipam`]), a default route via the bridge, and
//!   outbound NAT ([`nat`]), and published ports ([`ports`]).

pub mod counters;
pub mod files;
pub mod ipam;
pub mod nat;
pub mod netlink;
pub mod netns;
pub mod ports;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use step01::container::JoinedNamespace;
use step01::{Action, Chapter, ContainerExit, ContainerSpec, Error, Explain, Hooks, Result};

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
    /// Its own namespace, wired to the bridge `carton0` with an address of its own.
    Bridge,
}

/// The bridge every bridged container is plugged into, like Docker's `docker0`.
pub const BRIDGE: &str = "carton0";

/// The default subnet of the bridge network (podman's too); `CARTON_SUBNET` changes it.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(text: &str) -> Result<Mode> {
        match text {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            other => Err(Error::runtime(format!("unknown network {other:?}: choose bridge, none or host"))),
        }
    }
}

/// The `docker run` network options this step implements.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub mode: Mode,
    pub add_hosts: Vec<HostEntry>,
    pub dns: Vec<IpAddr>,
    /// The bridge network's subnet.
    pub subnet: ipam::Subnet,
    /// `-p`: ports to publish (bridge only).
    pub ports: Vec<ports::PortMapping>,
}

impl NetworkOptions {
    /// The bridge, as Docker's default network.
    pub fn new() -> NetworkOptions {
        let subnet = DEFAULT_SUBNET.parse().expect("the default subnet parses");
        NetworkOptions { mode: Mode::Bridge, add_hosts: Vec::new(), dns: Vec::new(), subnet, ports: Vec::new() }
    }
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions::new()
    }
}

/// The bridge subnet: `CARTON_SUBNET`, or [`DEFAULT_SUBNET`].
pub fn subnet_from_env() -> Result<ipam::Subnet> {
    std::env::var("CARTON_SUBNET").unwrap_or_else(|_| DEFAULT_SUBNET.to_string()).parse()
}

/// `--dns IP`.
pub fn parse_dns(text: &str) -> Result<IpAddr> {
    text.parse().map_err(|_| Error::runtime(format!("invalid --dns {text:?}: give a nameserver's IP address, e.g. 192.0.2.53")))
}

/// Step 03's additions to the start sequence, around step 02's. The network itself is
/// ready before the container starts; what is left is the files and the port relays.
pub struct Networking<H: Hooks> {
    inner: H,
    /// The container's state directory, holding its hostname, hosts and resolv.conf.
    files: PathBuf,
    /// Published ports, bound already; relayed to `address` once the container exists.
    published: Vec<ports::Published>,
    address: Option<Ipv4Addr>,
}

impl<H: Hooks> Hooks for Networking<H> {
    fn inner(&self) -> Option<&dyn Hooks> {
        Some(&self.inner)
    }

    fn inner_mut(&mut self) -> Option<&mut dyn Hooks> {
        Some(&mut self.inner)
    }

    fn parent_after_clone(&mut self, child: Pid, explain: &Explain) -> Result<()> {
        if let Some(address) = self.address {
            for published in &self.published {
                let mapping = published.mapping;
                explain.step(|| {
                    Action::new(CHAPTER, format!("publish {mapping}: carton listens there and relays each connection to {address}"), "accept() + connect() in a relay thread")
                        .shell(format!("socat TCP-LISTEN:{},fork TCP:{address}:{}", mapping.host_port, mapping.container_port))
                });
            }
            // Threads start only now: the container is cloned from a single thread.
            ports::relay(std::mem::take(&mut self.published), address);
        }
        self.inner.parent_after_clone(child, explain)
    }

    fn child_before_pivot(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        files::bind_into(rootfs, &self.files, explain)?;
        self.inner.child_before_pivot(spec, rootfs, explain)
    }



}

/// A bridged container's place on the network.
#[derive(Debug, Clone)]
struct Attachment {
    /// The host's end of the veth pair, `veth` + 8 digits of the id.
    host_end: String,
    address: Ipv4Addr,
    subnet: ipam::Subnet,
}

// ANCHOR: wire
/// Switch on the namespace's loopback and, on the bridge, plug it in: all from outside,
/// before the container's first process exists.
/// `cabled` says whether the veth pair was made, even when a later step fails.
fn wire(netns: &netns::NamedNetns, attachment: Option<&Attachment>, cabled: &mut bool, explain: &Explain) -> Result<()> {
    let pinned = netns.path.display();
    // A new network namespace starts with `lo` only, and down.
    explain.step(|| Action::new(CHAPTER, "switch on the namespace's loopback interface", "netlink RTM_SETLINK index 1, IFF_UP").shell(format!("nsenter --net={pinned} ip link set lo up")));
    netns.enter(|| netlink::set_link_up(netlink::LOOPBACK_INDEX))?;
    let Some(Attachment { host_end, address, subnet }) = attachment else { return Ok(()) };
    explain.step(|| {
        Action::new(CHAPTER, format!("a virtual cable: {host_end} here, its other end eth0 in the namespace"), format!("netlink RTM_NEWLINK veth {host_end} peer eth0 IFLA_NET_NS_FD"))
            .shell(format!("ip link add {host_end} type veth peer name eth0 netns {pinned}"))
    });
    netlink::create_veth(host_end, "eth0", netns.fd())?;
    *cabled = true;
    let (index, bridge) = (link_index(host_end)?, link_index(BRIDGE)?);
    explain.step(|| Action::new(CHAPTER, format!("plug {host_end} into the bridge {BRIDGE} and switch it on"), "netlink RTM_SETLINK master, IFF_UP").shell(format!("ip link set {host_end} master {BRIDGE} up")));
    netlink::set_controller(index, bridge)?;
    netlink::set_link_up(index)?;
    let (prefix, gateway) = (subnet.prefix, subnet.gateway());
    explain.step(|| {
        Action::new(CHAPTER, format!("give eth0 the address {address}/{prefix}, switch it on, send everything else to the gateway {gateway}"), "netlink RTM_NEWADDR, RTM_SETLINK IFF_UP, RTM_NEWROUTE default")
            .shell(format!("nsenter --net={pinned} sh -c 'ip addr add {address}/{prefix} dev eth0 && ip link set eth0 up && ip route add default via {gateway}'"))
    });
    netns.enter(|| {
        let eth0 = link_index("eth0")?;
        netlink::add_address(eth0, *address, prefix)?;
        netlink::set_link_up(eth0)?;
        netlink::add_default_route(gateway)
    })
}
// ANCHOR_END: wire

/// The directory under the state root where a container's network state lives while it runs.
fn container_dir(state_root: &Path, id: &str) -> PathBuf {
    state_root.join("containers").join(id)
}

/// Run a container with steps 01–02 and this step's network; wait for it. The
/// container's files and its pinned network namespace live in
/// `state_root/containers/ID/` while it runs.
pub fn run(spec: ContainerSpec, options: &step02::Options, network: &NetworkOptions, state_root: &Path, explain: &Explain) -> Result<ContainerExit> {
    run_with(spec, options, network, state_root, explain, |networking| networking)
}

// ANCHOR: run
/// [`run`], with this step's hooks wrapped by a later step's (`wrap` receives them).
pub fn run_with<H: Hooks>(
    mut spec: ContainerSpec,
    options: &step02::Options,
    network: &NetworkOptions,
    state_root: &Path,
    explain: &Explain,
    wrap: impl FnOnce(Networking<step02::Isolation>) -> H,
) -> Result<ContainerExit> {
    collect_stale(state_root);
    let dir = container_dir(state_root, options.id.as_str());
    claim(&dir)?;
    let ipam = ipam::Ipam::new(&state_root.join("networks").join(BRIDGE), network.subnet);
    let (mut lease, mut pinned, mut cabled) = (None, None, false);
    let host_end = format!("veth{}", &options.id.as_str()[..8]);
    let result = (|| {
        if !network.ports.is_empty() && network.mode != Mode::Bridge {
            return Err(Error::runtime("-p publishes a port of the container's own address: it needs --network bridge"));
        }
        // Everything that can be refused is refused before the host's network is touched.
        spec.validate()?;
        step02::validate_hostname(&options.effective_hostname())?;
        // Bound first: a port in use stops the run before anything is created.
        let published = ports::bind(&network.ports)?;
        for (asked, bound) in network.ports.iter().zip(&published) {
            if asked.host_port == 0 {
                eprintln!("carton: published {}", bound.mapping); // the port the kernel chose
            }
        }
        if network.mode == Mode::Bridge {
            // One lock for the bridge, its NAT rule and the lease, so that a `carton network
            // prune` cannot remove the bridge between the two.
            lease = Some(ipam.locked(|leases| {
                ensure_bridge(state_root, network.subnet, explain)?;
                nat::enable(network.subnet, &forwarding_record(state_root), explain)?;
                ipam.allocate_in(leases, ipam::Owner::current())
            })?);
        }
        let attachment = lease.map(|lease| Attachment { host_end: host_end.clone(), address: lease.address, subnet: network.subnet });
        if network.mode != Mode::Host {
            let netns = pinned.insert(netns::NamedNetns::create(&dir.join("netns"), explain)?);
            wire(netns, attachment.as_ref(), &mut cabled, explain)?;
            spec.join.push(JoinedNamespace { kind: CloneFlags::CLONE_NEWNET, path: netns.path.clone() });
        }
        let hostname = options.effective_hostname();
        let address = attachment.as_ref().map(|a| a.address);
        let names = files::Names { hostname: &hostname, mode: network.mode, address, add_hosts: &network.add_hosts, dns: &network.dns };
        files::write(&dir, &names)?;
        step02::run_with(spec, options, explain, |inner| wrap(Networking { inner, files: dir.clone(), published, address }))
    })();
    // Nothing outlives the container yet (kept containers come with chapter 7). The veth
    // pair would go with the network namespace, but the kernel dismantles a namespace in
    // the background; deleting our end now removes the pair at once. The address goes
    // back to the pool.
    if cabled {
        delete_link_named(&host_end);
    }
    if let Some(lease) = lease {
        let _ = ipam.release(lease);
    }
    if let Some(netns) = pinned {
        netns.remove();
    }
    let _ = fs::remove_dir_all(&dir);
    result
}
// ANCHOR_END: run

/// Create the container's state directory, marked with the carton process that owns it.
fn claim(dir: &Path) -> Result<()> {
    let created = fs::create_dir_all(dir.parent().expect("containers/ID has a parent")).and_then(|()| fs::create_dir(dir));
    created.and_then(|()| fs::write(dir.join("owner"), ipam::Owner::current().to_string()))
        .map_err(|e| Error::runtime(format!("cannot create the container's state directory {}: {e}", dir.display())))
}

/// Remove what containers whose carton was killed (`kill -9`, a crash) left behind: the
/// pinned namespace, the host's end of the cable, the state directory. Their processes
/// died with carton; their address leases are reused by [`ipam::forget_stale`]. Returns
/// their ids, for what later steps made for them.
pub fn collect_stale(state_root: &Path) -> Vec<String> {
    let mut collected = Vec::new();
    let Ok(entries) = fs::read_dir(state_root.join("containers")) else { return collected };
    // Only what carton makes there: a real directory (never a symbolic link) named by an id.
    let is_container = |entry: &fs::DirEntry| entry.file_type().is_ok_and(|t| t.is_dir()) && entry.file_name().to_str().is_some_and(step02::ContainerId::is_valid);
    for dir in entries.flatten().filter(is_container).map(|entry| entry.path()) {
        let owner = fs::read_to_string(dir.join("owner")).ok().and_then(|text| text.parse::<ipam::Owner>().ok());
        let abandoned = match owner {
            Some(owner) => !owner.is_alive(),
            // A directory without its owner yet is being made right now, unless it is old.
            None => dir.metadata().and_then(|m| m.modified()).is_ok_and(|made| made.elapsed().is_ok_and(|age| age.as_secs() > 60)),
        };
        if abandoned {
            let id = dir.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
            // Its cable, if still plugged into carton's bridge (the name alone could be
            // another tool's: podman's veths are named the same way).
            let cable = format!("veth{}", &id[..8]);
            if netlink::link_controller(&cable).ok().flatten().is_some_and(|master| netlink::link_index(BRIDGE).ok().flatten() == Some(master)) {
                delete_link_named(&cable);
            }
            netns::unpin(&dir.join("netns"));
            let _ = fs::remove_dir_all(&dir);
            collected.push(id);
        }
    }
    collected
}

/// Delete an interface if it exists.
fn delete_link_named(name: &str) {
    if let Ok(Some(index)) = netlink::link_index(name) {
        let _ = netlink::delete_link(index);
    }
}

// ANCHOR: ensure_bridge
/// The bridge `carton0` with the gateway address, created by the first bridged container.
fn ensure_bridge(state_root: &Path, subnet: ipam::Subnet, explain: &Explain) -> Result<()> {
    // The subnet the bridge was made with; another one needs a new bridge.
    let recorded = state_root.join("networks").join(BRIDGE).join("subnet");
    let wanted = format!("{}/{}", subnet.network, subnet.prefix);
    if let Some(index) = netlink::link_index(BRIDGE)? {
        match fs::read_to_string(&recorded) {
            Ok(existing) if existing.trim() != wanted => {
                return Err(Error::runtime(format!(
                    "{BRIDGE} serves {} but {wanted} was asked for (CARTON_SUBNET); run `carton network prune` first to change it",
                    existing.trim()
                )))
            }
            _ => return netlink::set_link_up(index),
        }
    }
    let gateway = subnet.gateway();
    explain.step(|| {
        Action::new(CHAPTER, format!("create the bridge {BRIDGE}, a virtual switch, with the gateway address {gateway}"), format!("netlink RTM_NEWLINK bridge {BRIDGE}, RTM_NEWADDR"))
            .shell(format!("ip link add {BRIDGE} type bridge && ip addr add {gateway}/{} dev {BRIDGE} && ip link set {BRIDGE} up", subnet.prefix))
    });
    netlink::create_bridge(BRIDGE)?;
    let index = link_index(BRIDGE)?;
    netlink::add_address(index, gateway, subnet.prefix)?;
    fs::write(&recorded, &wanted).map_err(|e| Error::runtime(format!("cannot record the bridge's subnet: {e}")))?;
    netlink::set_link_up(index)
}
// ANCHOR_END: ensure_bridge

/// `carton network prune`: remove the bridge and carton's nftables table, unless a
/// running container still uses them. Returns what was removed.
pub fn prune(state_root: &Path, subnet: ipam::Subnet) -> Result<Vec<String>> {
    collect_stale(state_root);
    let ipam = ipam::Ipam::new(&state_root.join("networks").join(BRIDGE), subnet);
    ipam.locked(|leases| {
        ipam::forget_stale(leases);
        if !leases.is_empty() {
            return Err(Error::runtime(format!("{} running containers still use {BRIDGE}; stop them first", leases.len())));
        }
        let mut removed = Vec::new();
        if let Some(index) = netlink::link_index(BRIDGE)? {
            netlink::delete_link(index)?;
            removed.push(format!("the bridge {BRIDGE}"));
        }
        let forwarding_restored = nat::remove(&forwarding_record(state_root))?;
        removed.push(format!("the nftables table ip {}", nat::TABLE));
        if forwarding_restored {
            removed.push("the IP forwarding carton switched on (it is off again, as before)".to_string());
        }
        let _ = fs::remove_file(state_root.join("networks").join(BRIDGE).join("subnet"));
        Ok(removed)
    })
}

/// Where carton notes that it switched IP forwarding on (see [`nat::enable`]).
fn forwarding_record(state_root: &Path) -> PathBuf {
    state_root.join("networks").join(BRIDGE).join("forwarding_was_off")
}

/// The index of an interface that must exist.
fn link_index(name: &str) -> Result<u32> {
    netlink::link_index(name)?.ok_or_else(|| Error::runtime(format!("the network interface {name} is missing")))
}
