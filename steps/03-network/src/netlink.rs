//! A small synchronous rtnetlink client: the way `ip` talks to the kernel.
//!
//! A netlink socket speaks to the network stack of the namespace it was opened in, so
//! opened inside the container it configures the container's network. Each request
//! asks for an acknowledgement, which carries the kernel's error code.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use step01::{Error, Result};

/// The loopback interface is always number 1 in a network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

// ANCHOR: link_up
/// `ip link set dev <index> up`: set the IFF_UP flag of one interface.
pub fn set_link_up(index: u32) -> Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    request(RouteNetlinkMessage::SetLink(link))
}
// ANCHOR_END: link_up

/// Send one request and wait for the kernel's acknowledgement.
fn request(message: RouteNetlinkMessage) -> Result<()> {
    let failed = |what: &str, e: std::io::Error| Error::runtime(format!("netlink {what}: {e}"));
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| failed("socket", e))?;
    socket.bind_auto().map_err(|e| failed("bind", e))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(|e| failed("connect", e))?;

    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    socket.send(&bytes, 0).map_err(|e| failed("send", e))?;

    let mut reply = vec![0; 8192];
    let size = socket.recv(&mut &mut reply[..], 0).map_err(|e| failed("receive", e))?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..size])
        .map_err(|e| Error::runtime(format!("netlink: an answer carton cannot read: {e}")))?;
    match answer.payload {
        // An "error" with code 0 is the acknowledgement.
        NetlinkPayload::Error(error) => match error.code {
            None => Ok(()),
            Some(code) => Err(Error::syscall("netlink request", nix::errno::Errno::from_raw(-code.get()))),
        },
        other => Err(Error::runtime(format!("netlink: unexpected answer {other:?}"))),
    }
}
