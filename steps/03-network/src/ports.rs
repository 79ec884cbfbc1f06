//! Published ports: `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`.
//!
//! A container on the bridge is not reachable from outside the host: its address is
//! private to the host. Publishing a port makes carton listen on the host's port and
//! relay every connection to the container's port (a *userland proxy*, as Docker's
//! docker-proxy). The listening socket is bound before the container is created, so a
//! port already in use is an error before anything is set up; the relays live in the
//! carton process, so they end with the container and leave no rule behind. It works
//! for other hosts and for the host's own 127.0.0.1 alike. The price: the container
//! sees connections coming from its gateway rather than from the real client (Docker's
//! DNAT rules keep the client's address for outside traffic; its proxy, too, hides it
//! for loopback).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use step01::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    /// 0: any free port, chosen when it is bound (`-p 80`).
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    pub fn parse(text: &str) -> Result<PortMapping> {
        let bad = |why: &str| Error::runtime(format!("invalid -p {text:?}: {why}; write it as [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp], e.g. 8088:80"));
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (text, Protocol::Tcp),
        };
        let port = |p: &str, what: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("{what} {p:?} is not a port from 1 to 65535"))),
            Ok(port) => Ok(port),
        };
        let (rest, container) = match ports.rsplit_once(':') {
            Some((rest, container)) => (Some(rest), port(container, "the container port")?),
            None => (None, port(ports, "the container port")?),
        };
        let (host_ip, host_port) = match rest.map(|r| r.rsplit_once(':').map_or((None, r), |(ip, p)| (Some(ip), p))) {
            None => (None, 0),
            Some((ip, "")) => (ip, 0), // `127.0.0.1::80`: any free port on that address
            Some((ip, host_port)) => (ip, port(host_port, "the host port")?),
        };
        let host_ip = match host_ip {
            None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip) => ip.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad("the host address is not an IP address"))?,
        };
        Ok(PortMapping { host_ip, host_port, container_port: container, protocol })
    }
}

impl PortMapping {
    /// The mapping as `-p` takes it, in full (`0.0.0.0:8088:80/tcp`; no host port: any).
    pub fn to_flag(&self) -> String {
        let host_port = if self.host_port == 0 { String::new() } else { self.host_port.to_string() };
        let host_ip = match self.host_ip {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!("{host_ip}:{host_port}:{}/{}", self.container_port, self.protocol_name())
    }

    fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}/{}", SocketAddr::new(self.host_ip, self.host_port), self.container_port, self.protocol_name())
    }
}

/// A published port whose host side is bound.
pub struct Published {
    /// With the actual host port, when it was chosen by the kernel.
    pub mapping: PortMapping,
    socket: Socket,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

// ANCHOR: bind
/// Bind every host side now, before the container exists: a port in use is an error
/// that leaves nothing to clean up.
pub fn bind(mappings: &[PortMapping]) -> Result<Vec<Published>> {
    mappings
        .iter()
        .map(|mapping| {
            let address = SocketAddr::new(mapping.host_ip, mapping.host_port);
            let in_use = |e: io::Error| Error::runtime(format!("cannot publish {mapping}: {address} is not free ({e}); choose another host port, or stop what uses it"));
            let socket = match mapping.protocol {
                Protocol::Tcp => Socket::Tcp(TcpListener::bind(address).map_err(in_use)?),
                Protocol::Udp => Socket::Udp(UdpSocket::bind(address).map_err(in_use)?),
            };
            let bound = match &socket {
                Socket::Tcp(listener) => listener.local_addr(),
                Socket::Udp(udp) => udp.local_addr(),
            };
            let host_port = bound.map(|a| a.port()).unwrap_or(mapping.host_port);
            Ok(Published { mapping: PortMapping { host_port, ..*mapping }, socket })
        })
        .collect()
}
// ANCHOR_END: bind

// ANCHOR: relay
/// Relay each published port to `container`, in threads that end with carton.
pub fn relay(published: Vec<Published>, container: Ipv4Addr) {
    for Published { mapping, socket } in published {
        let target = SocketAddr::new(IpAddr::V4(container), mapping.container_port);
        match socket {
            Socket::Tcp(listener) => {
                thread::spawn(move || loop {
                    match listener.accept() {
                        Ok((client, _)) => {
                            thread::spawn(move || relay_tcp(client, target));
                        }
                        // Out of descriptors, say: wait instead of spinning on the error.
                        Err(_) => thread::sleep(Duration::from_millis(100)),
                    }
                });
            }
            Socket::Udp(socket) => {
                thread::spawn(move || relay_udp(socket, target));
            }
        }
    }
}

/// Copy both ways until each side has finished sending.
fn relay_tcp(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(target) else { return };
    let (Ok(mut client_reader), Ok(mut upstream_writer)) = (client.try_clone(), upstream.try_clone()) else { return };
    let to_container = thread::spawn(move || {
        let _ = io::copy(&mut client_reader, &mut upstream_writer);
        let _ = upstream_writer.shutdown(Shutdown::Write);
    });
    let (mut upstream_reader, mut client_writer) = (upstream, client);
    let _ = io::copy(&mut upstream_reader, &mut client_writer);
    let _ = client_writer.shutdown(Shutdown::Write);
    let _ = to_container.join();
}
// ANCHOR_END: relay

/// How long a UDP client may stay silent before its relay socket is closed (as Docker's).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// UDP has no connections: each client address gets a socket of its own towards the
/// container, and a thread that sends the container's answers back to that client until
/// it has been quiet for [`UDP_IDLE`].
fn relay_udp(socket: UdpSocket, target: SocketAddr) {
    let socket = Arc::new(socket);
    let upstreams: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut buffer = [0u8; 65536];
    while let Ok((size, client)) = socket.recv_from(&mut buffer) {
        let upstream = upstreams.lock().unwrap().get(&client).cloned();
        let upstream = match upstream {
            Some(upstream) => upstream,
            None => {
                let Ok(upstream) = UdpSocket::bind("0.0.0.0:0").and_then(|u| {
                    u.connect(target)?;
                    u.set_read_timeout(Some(UDP_IDLE))?;
                    Ok(Arc::new(u))
                }) else {
                    continue;
                };
                let (answers, back, table) = (upstream.clone(), socket.clone(), upstreams.clone());
                thread::spawn(move || {
                    let mut buffer = [0u8; 65536];
                    while let Ok(size) = answers.recv(&mut buffer) {
                        let _ = back.send_to(&buffer[..size], client);
                    }
                    table.lock().unwrap().remove(&client); // quiet for too long: forget it
                });
                upstreams.lock().unwrap().insert(client, upstream.clone());
                upstream
            }
        };
        let _ = upstream.send(&buffer[..size]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, u16, u16, Protocol) {
        let m = PortMapping::parse(text).unwrap();
        (m.host_ip.to_string(), m.host_port, m.container_port, m.protocol)
    }

    #[test]
    fn dockers_spellings_parse() {
        assert_eq!(parsed("8088:80"), ("0.0.0.0".into(), 8088, 80, Protocol::Tcp));
        assert_eq!(parsed("127.0.0.1:8088:80/udp"), ("127.0.0.1".into(), 8088, 80, Protocol::Udp));
        assert_eq!(parsed("80"), ("0.0.0.0".into(), 0, 80, Protocol::Tcp));
        assert_eq!(parsed("[::1]:8088:80"), ("::1".into(), 8088, 80, Protocol::Tcp));
    }

    #[test]
    fn malformed_mappings_say_how_to_write_them() {
        for bad in ["", "abc", "8088:", "70000:80", "8088:0", "8088:80/sctp", "nope:8088:80"] {
            let error = PortMapping::parse(bad).unwrap_err();
            assert!(error.message.contains("[HOSTIP:]HOSTPORT:CONTAINERPORT"), "{bad:?}: {}", error.message);
        }
    }

    #[test]
    fn a_port_in_use_is_refused_when_binding() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mapping = PortMapping::parse(&format!("127.0.0.1:{port}:80")).unwrap();
        let error = bind(&[mapping]).err().unwrap();
        assert!(error.message.contains("is not free"), "{}", error.message);
        let free = bind(&[PortMapping::parse("127.0.0.1::80").unwrap()]).unwrap();
        assert_ne!(free[0].mapping.host_port, 0, "the kernel chose a port");
    }
}
