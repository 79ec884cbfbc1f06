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
pub(crate) mod nat;
pub(crate) mod netlink;
pub mod netns;
pub mod oci;
pub mod ports;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use step01::{Action, Chapter, ContainerExit, ContainerSpec, Error, Explain, Hooks, Result};
use step02::Context;

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

/// Step 03's addition to the start sequence, around step 02's: the network itself is
/// ready before the container starts ([`setup`]); what is left is relaying the published
/// ports, once the container exists.
pub struct Networking<H: Hooks> {
    pub inner: H,
    /// Published ports, bound already; relayed to `address` once the container exists.
    pub published: Vec<ports::Published>,
    pub address: Option<Ipv4Addr>,
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
            relay(std::mem::take(&mut self.published), address, explain);
        }
        self.inner.parent_after_clone(child, explain)
    }
}

/// Relay each published port to the container's `address`, on threads of this process.
/// (Threads start only once the container is cloned: it is cloned from a single thread.)
pub fn relay(published: Vec<ports::Published>, address: Ipv4Addr, explain: &Explain) {
    for published in &published {
        let mapping = published.mapping;
        explain.step(|| {
            Action::new(CHAPTER, format!("publish {mapping}: carton listens there and relays each connection to {address}"), "accept() + connect() in a relay thread")
                .shell(format!("socat TCP-LISTEN:{},fork TCP:{address}:{}", mapping.host_port, mapping.container_port))
        });
    }
    ports::relay(published, address);
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
fn wire(netns: &netns::NamedNetns, attachment: Option<&Attachment>, explain: &Explain) -> Result<()> {
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
    let (index, bridge) = (link_index(host_end)?, link_index(BRIDGE)?);
    explain.step(|| {
        Action::new(CHAPTER, format!("plug {host_end} into the bridge {BRIDGE} and switch it on"), "netlink RTM_SETLINK master, IFF_UP").shell(format!("ip link set {host_end} master {BRIDGE} up"))
    });
    netlink::set_controller(index, bridge)?;
    netlink::set_link_up(index)?;
    let (prefix, gateway, mac) = (subnet.prefix, subnet.gateway(), MacAddress::for_address(*address));
    explain.step(|| {
        Action::new(
            CHAPTER,
            format!("give eth0 the hardware address {mac} and the address {address}/{prefix}, switch it on, send everything else to the gateway {gateway}"),
            "netlink RTM_SETLINK IFLA_ADDRESS, RTM_NEWADDR, RTM_SETLINK IFF_UP, RTM_NEWROUTE default",
        )
        .shell(format!("nsenter --net={pinned} sh -c 'ip link set eth0 address {mac} && ip addr add {address}/{prefix} dev eth0 && ip link set eth0 up && ip route add default via {gateway}'"))
    });
    netns.enter(|| {
        let eth0 = link_index("eth0")?;
        netlink::set_link_address(eth0, mac.0)?;
        netlink::add_address(eth0, *address, prefix)?;
        netlink::set_link_up(eth0)?;
        netlink::add_default_route(gateway)
    })
}
// ANCHOR_END: wire

// ANCHOR: mac
/// The hardware (MAC) address of a container's eth0: `02:42` and the four bytes of its IP
/// address, as Docker made them. Derived, not random, because the host remembers which
/// hardware address answers for an IP (its neighbour table) for up to a minute: a new
/// container that gets a removed one's address must answer to the same hardware address,
/// or the host's packets for it go nowhere until that entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub fn for_address(address: Ipv4Addr) -> MacAddress {
        let [a, b, c, d] = address.octets();
        MacAddress([0x02, 0x42, a, b, c, d])
    }
}

impl std::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
// ANCHOR_END: mac

/// What [`setup`] made for one container: what its spec needs, and what carton keeps.
pub struct Connected {
    /// The pinned network namespace the container joins (`None`: the host's, `--network host`).
    pub netns: Option<PathBuf>,
    /// Its address on the bridge.
    pub address: Option<Ipv4Addr>,
    /// The ports to publish: bound by whoever relays them ([`publish`]).
    pub ports: Vec<ports::PortMapping>,
    /// The directory holding its `hostname`, `hosts` and `resolv.conf`.
    pub files: PathBuf,
}

impl Connected {
    /// This step's part of the spec: the network namespace to join (by path, as CNI and
    /// netavark hand one to runc), and the three files bind-mounted at `/etc`.
    pub fn write_oci(&self, spec: &mut oci_spec::runtime::Spec) {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        match &self.netns {
            Some(path) => step02::oci::add_namespace(&mut namespaces, oci_spec::runtime::LinuxNamespaceType::Network, Some(path.clone())),
            None => namespaces.retain(|ns| ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network),
        }
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let files = files::oci_mounts(&self.files);
        // Written again at each start of a kept container: the files once, not twice.
        mounts.retain(|mount| !files.iter().any(|file| file.destination() == mount.destination()));
        mounts.extend(files);
        spec.set_mounts(Some(mounts));
    }
}

// ANCHOR: setup
/// Prepare the network of container `id`, whose state directory `dir` exists, before the
/// container does: lease an address, make and wire its network namespace, write its
/// names. Undone by [`teardown`] (here too, if a step fails). Its published ports are
/// bound by the process that will relay them ([`publish`]), just before it starts it.
pub fn setup(dir: &Path, id: &str, hostname: &str, network: &NetworkOptions, explain: &Explain) -> Result<Connected> {
    if !network.ports.is_empty() && network.mode != Mode::Bridge {
        return Err(Error::runtime("-p publishes a port of the container's own address: it needs --network bridge"));
    }
    let connected = (|| {
        let mut address = None;
        if network.mode == Mode::Bridge {
            let state = network_state()?;
            fs::create_dir_all(&state).map_err(|e| Error::runtime(format!("cannot create {}: {e}", state.display())))?;
            let ipam = ipam::Ipam::new(&state, network.subnet);
            // One lock for the bridge, its NAT rule and the lease, so that a `carton network
            // prune` cannot remove the bridge between the two.
            address = Some(
                ipam.locked(|leases| {
                    if netlink::link_index(BRIDGE)?.is_none() {
                        // No bridge, so nothing is on it: what is recorded is stale (the records of
                        // an earlier namespace that had the same number, or of a removed bridge).
                        leases.clear();
                        for stale in ["subnet", "forwarding_was_off"] {
                            let _ = fs::remove_file(state.join(stale));
                        }
                    }
                    ensure_bridge(&state, network.subnet, explain)?;
                    nat::enable(network.subnet, &state.join("forwarding_was_off"), explain)?;
                    ipam.allocate_in(leases, dir)
                })?
                .address,
            );
        }
        let mut netns = None;
        if network.mode != Mode::Host {
            let pinned = netns::NamedNetns::create(&dir.join("netns"), explain)?;
            let attachment = address.map(|address| Attachment { host_end: veth_name(id), address, subnet: network.subnet });
            if let Some(attachment) = &attachment {
                // Noted first, so that a teardown after any failure (or a crash) looks for
                // it; with the address, for whoever starts the container later.
                fs::write(dir.join(CABLE), format!("{}\n{}\n", veth_name(id), attachment.address)).map_err(|e| Error::runtime(format!("cannot write {}: {e}", dir.join(CABLE).display())))?;
            }
            wire(&pinned, attachment.as_ref(), explain)?;
            netns = Some(pinned.path.clone());
        }
        let names = files::Names { hostname, mode: network.mode, address, add_hosts: &network.add_hosts, dns: &network.dns };
        files::write(dir, &names)?;
        Ok((netns, address))
    })();
    match connected {
        Ok((netns, address)) => Ok(Connected { netns, address, ports: network.ports.clone(), files: dir.to_path_buf() }),
        Err(error) => {
            teardown(dir, id);
            Err(error)
        }
    }
}

/// Bind the host side of each of `network`'s published ports, before the container starts:
/// a port in use stops it there. The process that binds them relays them ([`relay`]).
pub fn publish(mappings: &[ports::PortMapping]) -> Result<Vec<ports::Published>> {
    let published = ports::bind(mappings)?;
    for (asked, bound) in mappings.iter().zip(&published) {
        if asked.host_port == 0 {
            eprintln!("carton: published {}", bound.mapping); // the port the kernel chose
        }
    }
    Ok(published)
}

/// Undo [`setup`] for container `id`, whatever part of it was done (after a crash too):
/// the host's end of its cable, its address, its pinned namespace, its files.
pub fn teardown(dir: &Path, id: &str) {
    // The veth pair would go with the network namespace, but the kernel dismantles a
    // namespace in the background; deleting our end now removes the pair at once. Only
    // if plugged into carton's bridge: the name alone could be another tool's (podman's
    // veths are named the same way).
    if dir.join(CABLE).exists() {
        let cable = veth_name(id);
        if netlink::link_controller(&cable).ok().flatten().is_some_and(|master| netlink::link_index(BRIDGE).ok().flatten() == Some(master)) {
            delete_link_named(&cable);
        }
        if let Ok(state) = network_state() {
            let _ = ipam::Ipam::new(&state, DEFAULT_SUBNET.parse().expect("the default subnet parses")).release(dir);
        }
        let _ = fs::remove_file(dir.join(CABLE));
    }
    netns::unpin(&dir.join("netns"));
    for name in files::FILES {
        let _ = fs::remove_file(dir.join(name));
    }
}
// ANCHOR_END: setup

/// The file in a container's state directory that says it was cabled to the bridge (and
/// so has an address lease and a veth to remove): the veth's name and the address.
const CABLE: &str = "cable";

/// The address on the bridge [`setup`] gave the container in `dir`, while it has one.
pub fn recorded_address(dir: &Path) -> Option<Ipv4Addr> {
    fs::read_to_string(dir.join(CABLE)).ok()?.lines().nth(1)?.parse().ok()
}

/// The host's end of container `id`'s cable: `veth` and 8 digits of the id.
fn veth_name(id: &str) -> String {
    format!("veth{}", &id[..8.min(id.len())])
}

/// Where the state of the bridge network lives: its leases, its subnet, whether carton
/// switched IP forwarding on. The bridge is one per network namespace, whatever carton's
/// state root, so this is too: `/run/carton/networks/netns-DEV-INODE/carton0`, naming the
/// network namespace carton runs in (the host's, or a test's own). Under /run, it goes
/// when the bridge does, at reboot; `network prune` removes it.
pub fn network_state() -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let namespace = fs::metadata("/proc/thread-self/ns/net").map_err(|e| Error::runtime(format!("cannot identify this network namespace: {e}")))?;
    Ok(PathBuf::from("/run/carton/networks").join(format!("netns-{}-{}", namespace.dev(), namespace.ino())).join(BRIDGE))
}

/// Run the container `spec` describes with steps 01–02 and the network its annotations
/// ask for; wait for it. The container's files and its pinned network namespace live in
/// `STATE_ROOT/containers/ID/` while it runs.
pub fn run(spec: &Spec, context: &Context) -> Result<ContainerExit> {
    run_with(spec, context, |networking| networking)
}

// ANCHOR: run
/// [`run`], with this step's hooks wrapped by a later step's (`wrap` receives them).
pub fn run_with<H: Hooks>(spec: &Spec, context: &Context, wrap: impl FnOnce(Networking<step02::Isolation>) -> H) -> Result<ContainerExit> {
    // Everything that can be refused is refused before the host's network is touched.
    ContainerSpec::from_oci(spec, Path::new("."))?.validate()?;
    let network = NetworkOptions::from_oci(spec)?;
    let (id, explain) = (context.id.as_str(), &context.explain);
    let hostname = spec.hostname().clone().unwrap_or_else(|| context.id.short().to_string());
    let dir = claim(&context.state_root, id)?;
    let result = setup(&dir, id, &hostname, &network, explain).and_then(|connected| {
        let mut spec = spec.clone();
        connected.write_oci(&mut spec); // the namespace to join, the files to mount
        let (published, address) = (publish(&connected.ports)?, connected.address);
        step02::run_with(&spec, context, |inner| wrap(Networking { inner, published, address }))
    });
    // Nothing outlives the container here: step 07 keeps containers.
    teardown(&dir, id);
    let _ = fs::remove_dir_all(&dir);
    result
}
// ANCHOR_END: run

/// Create container `id`'s state directory, `state_root/containers/ID`, marked with the
/// carton process that is responsible for it: should that process die without removing
/// it, step 07's collector does. The directory appears with its mark already inside (made
/// as `.claim-ID`, then renamed), so no crash leaves one without. An id in use is refused.
pub fn claim(state_root: &Path, id: &str) -> Result<PathBuf> {
    let containers = state_root.join("containers");
    let (dir, staging) = (containers.join(id), containers.join(format!("{CLAIMING}{id}")));
    let failed = |path: &Path, e: std::io::Error| Error::runtime(format!("cannot create the container's state directory {}: {e}", path.display()));
    fs::create_dir_all(&containers).map_err(|e| failed(&containers, e))?;
    if dir.exists() {
        return Err(Error::runtime(format!("the container id {id} is in use already; choose another")));
    }
    fs::create_dir(&staging).map_err(|e| failed(&staging, e))?;
    let marked = fs::write(staging.join("owner"), step01::process::UniquePid::current().to_string()).map_err(|e| failed(&staging, e));
    let renamed = marked.and_then(|()| {
        nix::fcntl::renameat2(nix::fcntl::AT_FDCWD, &staging, nix::fcntl::AT_FDCWD, &dir, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(|errno| match errno {
            nix::errno::Errno::EEXIST => Error::runtime(format!("the container id {id} is in use already; choose another")),
            errno => Error::syscall(format!("cannot create the container's state directory {}", dir.display()), errno),
        })
    });
    if renamed.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    renamed.map(|()| dir)
}

/// The prefix of a container's state directory while [`claim`] makes it.
pub const CLAIMING: &str = ".claim-";

/// Delete an interface if it exists.
fn delete_link_named(name: &str) {
    if let Ok(Some(index)) = netlink::link_index(name) {
        let _ = netlink::delete_link(index);
    }
}

// ANCHOR: ensure_bridge
/// The bridge `carton0` with the gateway address, created by the first bridged container.
fn ensure_bridge(state: &Path, subnet: ipam::Subnet, explain: &Explain) -> Result<()> {
    // The subnet the bridge was made with; another one needs a new bridge.
    let recorded = state.join("subnet");
    let wanted = format!("{}/{}", subnet.network, subnet.prefix);
    if let Some(index) = netlink::link_index(BRIDGE)? {
        match fs::read_to_string(&recorded) {
            Ok(existing) if existing.trim() != wanted => {
                return Err(Error::runtime(format!("{BRIDGE} serves {} but {wanted} was asked for (CARTON_SUBNET); run `carton network prune` first to change it", existing.trim())))
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
/// container on the bridge still exists (whatever its state root). Returns what was removed.
pub fn prune(subnet: ipam::Subnet) -> Result<Vec<String>> {
    let state = network_state()?;
    let ipam = ipam::Ipam::new(&state, subnet);
    let removed = ipam.locked(|leases| {
        ipam::forget_stale(leases);
        if !leases.is_empty() {
            let holders: Vec<String> = leases.iter().map(|(_, holder)| holder.display().to_string()).collect();
            return Err(Error::runtime(format!("{} containers still use {BRIDGE} ({}); stop and remove them first", leases.len(), holders.join(", "))));
        }
        let mut removed = Vec::new();
        if let Some(index) = netlink::link_index(BRIDGE)? {
            netlink::delete_link(index)?;
            removed.push(format!("the bridge {BRIDGE}"));
        }
        // The record of the bridge's subnet goes with it (a missing one is fine).
        let _ = fs::remove_file(state.join("subnet"));
        let forwarding_restored = nat::remove(&state.join("forwarding_was_off"))?;
        removed.push(format!("the nftables table ip {}", nat::TABLE));
        if forwarding_restored {
            removed.push("the IP forwarding carton switched on (it is off again, as before)".to_string());
        }
        Ok(removed)
    })?;
    // The (empty) lease table and its lock stay: a `carton run` may be waiting for that
    // lock right now. Records left by a namespace that is gone are reset by the next setup
    // there (no bridge, no leases), and /run empties at reboot.
    Ok(removed)
}

/// The index of an interface that must exist.
fn link_index(name: &str) -> Result<u32> {
    netlink::link_index(name)?.ok_or_else(|| Error::runtime(format!("the network interface {name} is missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_hardware_address_is_dockers_02_42_and_its_ip() {
        assert_eq!(MacAddress::for_address(Ipv4Addr::new(10, 88, 0, 2)).to_string(), "02:42:0a:58:00:02");
        assert_eq!(MacAddress::for_address(Ipv4Addr::new(172, 17, 255, 254)).to_string(), "02:42:ac:11:ff:fe");
    }
}
