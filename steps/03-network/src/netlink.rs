//! A small synchronous rtnetlink client: the way `ip` talks to the kernel.
//!
//! A netlink socket speaks to the network stack of the namespace it was opened in, so
//! opened inside the container it configures the container's network. Each request
//! asks for an acknowledgement, which carries the kernel's error code.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use step01::{Error, Result};

/// The loopback interface is always number 1 in a network namespace.
pub(crate) const LOOPBACK_INDEX: u32 = 1;

// ANCHOR: link_up
/// `ip link set dev <index> up`: set the IFF_UP flag of one interface.
pub(crate) fn set_link_up(index: u32) -> Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    request(RouteNetlinkMessage::SetLink(link), 0)
}
// ANCHOR_END: link_up

/// `ip link set dev <index> address <mac>`: set the interface's hardware address.
pub(crate) fn set_link_address(index: u32, mac: [u8; 6]) -> Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.attributes.push(LinkAttribute::Address(mac.to_vec()));
    request(RouteNetlinkMessage::SetLink(link), 0)
}

/// The index of the interface called `name`, if there is one.
pub(crate) fn link_index(name: &str) -> Result<Option<u32>> {
    Ok(find_link(name)?.map(|found| found.header.index))
}

/// The index of the bridge (or other controller) the interface `name` is plugged into.
pub(crate) fn link_controller(name: &str) -> Result<Option<u32>> {
    let found = find_link(name)?;
    Ok(found.and_then(|link| {
        link.attributes.iter().find_map(|attribute| match attribute {
            LinkAttribute::Controller(index) => Some(*index),
            _ => None,
        })
    }))
}

fn find_link(name: &str) -> Result<Option<LinkMessage>> {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.to_string()));
    match exchange(RouteNetlinkMessage::GetLink(link), 0)? {
        Reply::Message(RouteNetlinkMessage::NewLink(found)) => Ok(Some(found)),
        Reply::Error(nix::errno::Errno::ENODEV) => Ok(None),
        Reply::Error(errno) => Err(Error::syscall(format!("netlink: look up {name}"), errno)),
        _ => Err(Error::runtime(format!("netlink: unexpected answer looking up {name}"))),
    }
}

// ANCHOR: bridge
/// `ip link add NAME type bridge`: a virtual switch.
pub(crate) fn create_bridge(name: &str) -> Result<()> {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.to_string()));
    link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
    request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL)
}

/// `ip link add HOST_END type veth peer name PEER_END netns FILE`: a virtual cable whose
/// far end is born straight inside the network namespace `netns`.
pub(crate) fn create_veth(host_end: &str, peer_end: &str, netns: BorrowedFd) -> Result<()> {
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(peer_end.to_string()));
    peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(host_end.to_string()));
    link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
    request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL)
}

/// `ip link set dev INDEX master BRIDGE`: plug a cable into the switch.
pub(crate) fn set_controller(index: u32, bridge: u32) -> Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.attributes.push(LinkAttribute::Controller(bridge));
    request(RouteNetlinkMessage::SetLink(link), 0)
}

/// `ip addr add ADDRESS/PREFIX dev INDEX`.
pub(crate) fn add_address(index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(address.into()));
    message.attributes.push(AddressAttribute::Address(address.into()));
    request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL)
}

/// `ip route add default via GATEWAY`.
pub(crate) fn add_default_route(gateway: Ipv4Addr) -> Result<()> {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = RouteHeader::RT_TABLE_MAIN;
    route.header.protocol = RouteProtocol::Boot;
    route.header.scope = RouteScope::Universe;
    route.header.kind = RouteType::Unicast;
    route.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    request(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL)
}
// ANCHOR_END: bridge

/// `ip link del dev INDEX`.
pub(crate) fn delete_link(index: u32) -> Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    request(RouteNetlinkMessage::DelLink(link), 0)
}

/// Send one request and wait for the kernel's acknowledgement.
fn request(message: RouteNetlinkMessage, flags: u16) -> Result<()> {
    match exchange(message, flags)? {
        Reply::Ack => Ok(()),
        Reply::Error(errno) => Err(Error::syscall("netlink request", errno)),
        Reply::Message(other) => Err(Error::runtime(format!("netlink: unexpected answer {other:?}"))),
    }
}

enum Reply {
    Ack,
    Error(nix::errno::Errno),
    Message(RouteNetlinkMessage),
}

/// Send one message (asking for an acknowledgement) and read the first answer.
fn exchange(message: RouteNetlinkMessage, flags: u16) -> Result<Reply> {
    let failed = |what: &str, e: std::io::Error| Error::runtime(format!("netlink {what}: {e}"));
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| failed("socket", e))?;
    socket.bind_auto().map_err(|e| failed("bind", e))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(|e| failed("connect", e))?;

    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    socket.send(&bytes, 0).map_err(|e| failed("send", e))?;

    let mut reply = vec![0; 8192];
    let size = socket.recv(&mut &mut reply[..], 0).map_err(|e| failed("receive", e))?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..size]).map_err(|e| Error::runtime(format!("netlink: an answer carton cannot read: {e}")))?;
    match answer.payload {
        // An "error" with code 0 is the acknowledgement.
        NetlinkPayload::Error(error) => Ok(match error.code {
            None => Reply::Ack,
            Some(code) => Reply::Error(nix::errno::Errno::from_raw(-code.get())),
        }),
        NetlinkPayload::InnerMessage(message) => Ok(Reply::Message(message)),
        other => Err(Error::runtime(format!("netlink: unexpected answer {other:?}"))),
    }
}
