//! The container's names: `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
//!
//! carton writes them into the container's state directory and bind-mounts them over
//! the image's, as Docker does: the image is never changed, and each container gets its
//! own.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use step01::{Error, Result};

use crate::Mode;

/// `--add-host NAME:IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub address: IpAddr,
}

impl HostEntry {
    pub fn parse(text: &str) -> Result<HostEntry> {
        let bad = |why: &str| Error::runtime(format!("invalid --add-host {text:?}: {why}; write it as NAME:IP, e.g. db:192.0.2.10"));
        // Split at the first ':' only: the address may be IPv6 (`db:2001:db8::1`).
        let (name, address) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
        step02::validate_hostname(name).map_err(|_| bad("the name is not a valid host name"))?;
        let address = address.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad("not an IP address"))?;
        Ok(HostEntry { name: name.to_string(), address })
    }
}

/// The names a container should know, from the options and the host's own files.
pub struct Names<'a> {
    pub hostname: &'a str,
    pub mode: Mode,
    /// The container's own address, on the bridge network.
    pub address: Option<std::net::Ipv4Addr>,
    pub add_hosts: &'a [HostEntry],
    pub dns: &'a [IpAddr],
}

// ANCHOR: hosts
/// `/etc/hosts`: the host's own with `--network host` (it shares the host's addresses),
/// otherwise localhost and, on the bridge, the container's own name and address. Then
/// `--add-host` lines.
pub(crate) fn hosts_file(names: &Names, host_hosts: &str) -> String {
    let mut text = match names.mode {
        Mode::Host => host_hosts.to_string(),
        Mode::None | Mode::Bridge => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    // The container's own name must resolve: to its bridge address, or else to a
    // loopback address, as Debian does for a machine's own name.
    match names.address {
        Some(address) => text += &format!("{address}\t{}\n", names.hostname),
        None => text += &format!("127.0.1.1\t{}\n", names.hostname),
    }
    for entry in names.add_hosts {
        text += &format!("{}\t{}\n", entry.address, entry.name);
    }
    text
}
// ANCHOR_END: hosts

// ANCHOR: resolv
/// `/etc/resolv.conf`: the host's, minus nameservers on loopback (127.0.0.53 of
/// systemd-resolved, say), which mean the *host's* loopback and cannot be reached from
/// a container's own network. In their place come the servers systemd-resolved itself
/// asks (`upstream`, from /run/systemd/resolve/resolv.conf), as Docker does. `--dns`
/// replaces the nameservers. With `--network host` the loopback ones work, so they stay.
pub(crate) fn resolv_conf(names: &Names, host_resolv: &str, upstream: &str) -> String {
    let mut text = String::new();
    let mut dropped = Vec::new();
    for line in host_resolv.lines() {
        let nameserver = line.trim().strip_prefix("nameserver").map(str::trim);
        match nameserver.map(|n| n.parse::<IpAddr>()) {
            None => text += &format!("{line}\n"),
            Some(_) if !names.dns.is_empty() => {}
            Some(Ok(address)) if address.is_loopback() && names.mode != Mode::Host => dropped.push(address),
            Some(_) => text += &format!("{line}\n"),
        }
    }
    for address in names.dns {
        text += &format!("nameserver {address}\n");
    }
    if !dropped.is_empty() {
        let servers: Vec<&str> = upstream.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).map(str::trim).collect();
        let usable: Vec<&&str> = servers.iter().filter(|s| s.parse::<IpAddr>().is_ok_and(|a| !a.is_loopback())).collect();
        if !usable.is_empty() {
            text += "# the nameservers systemd-resolved asks, instead of its loopback stub:\n";
            for server in usable {
                text += &format!("nameserver {server}\n");
            }
        }
    }
    if !dropped.is_empty() {
        let list: Vec<String> = dropped.iter().map(IpAddr::to_string).collect();
        text += &format!("# carton left out the host's loopback nameservers ({}); use --dns to name one\n", list.join(", "));
    }
    text
}
// ANCHOR_END: resolv

/// Write the three files into `dir`.
pub fn write(dir: &Path, names: &Names) -> Result<()> {
    let host_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstream = fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default();
    let files = [("hostname", format!("{}\n", names.hostname)), ("hosts", hosts_file(names, &host_hosts)), ("resolv.conf", resolv_conf(names, &host_resolv, &upstream))];
    for (name, contents) in files {
        fs::write(dir.join(name), contents).map_err(|e| Error::runtime(format!("cannot write {}: {e}", dir.join(name).display())))?;
    }
    Ok(())
}

// ANCHOR: bind
/// The files each container gets at `/etc`.
pub(crate) const FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// The three files, as entries of the spec's `mounts`: bind mounts over the image's own,
/// which step 01 makes inside the container's root like any other mount.
pub(crate) fn oci_mounts(dir: &Path) -> Vec<oci_spec::runtime::Mount> {
    FILES
        .iter()
        .map(|name| {
            oci_spec::runtime::MountBuilder::default()
                .destination(format!("/etc/{name}"))
                .typ("bind")
                .source(dir.join(name))
                .options(vec!["rbind".to_string()])
                .build()
                .expect("a bind mount with a source and a destination is complete")
        })
        .collect()
}
// ANCHOR_END: bind

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_RESOLV: &str = "# from the host\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";

    fn names(mode: Mode, add_hosts: &[HostEntry], dns: &[IpAddr]) -> String {
        let n = Names { hostname: "h", mode, address: None, add_hosts, dns };
        resolv_conf(&n, HOST_RESOLV, "")
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers_unless_on_the_host_network() {
        assert_eq!(
            names(Mode::None, &[], &[]),
            "# from the host\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n# carton left out the host's loopback nameservers (127.0.0.53); use --dns to name one\n"
        );
        assert_eq!(names(Mode::Host, &[], &[]), HOST_RESOLV);
    }

    #[test]
    fn systemd_resolveds_upstream_servers_replace_its_stub() {
        let n = Names { hostname: "h", mode: Mode::Bridge, address: None, add_hosts: &[], dns: &[] };
        let stub = "nameserver 127.0.0.53\noptions edns0\n";
        let upstream = "# resolved\nnameserver 192.0.2.8\nnameserver 127.0.0.1\n";
        assert_eq!(
            resolv_conf(&n, stub, upstream),
            "options edns0\n# the nameservers systemd-resolved asks, instead of its loopback stub:\nnameserver 192.0.2.8\n# carton left out the host's loopback nameservers (127.0.0.53); use --dns to name one\n"
        );
    }

    #[test]
    fn dns_replaces_the_nameservers_and_keeps_the_rest() {
        let dns = ["192.0.2.53".parse().unwrap()];
        assert_eq!(names(Mode::None, &[], &dns), "# from the host\nsearch example.org\noptions edns0\nnameserver 192.0.2.53\n");
    }

    #[test]
    fn hosts_has_localhost_and_the_added_hosts() {
        let db = HostEntry::parse("db:192.0.2.10").unwrap();
        let v6 = HostEntry::parse("v6:2001:db8::1").unwrap();
        let n = Names { hostname: "h", mode: Mode::None, address: None, add_hosts: &[db, v6], dns: &[] };
        assert_eq!(hosts_file(&n, "ignored"), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\th\n192.0.2.10\tdb\n2001:db8::1\tv6\n");
        let host = Names { mode: Mode::Host, add_hosts: &[], ..n };
        assert_eq!(hosts_file(&host, "10.0.0.1 hostbox"), "10.0.0.1 hostbox\n127.0.1.1\th\n");
        let bridged = Names { mode: Mode::Bridge, address: Some("10.88.0.2".parse().unwrap()), add_hosts: &[], ..n };
        assert!(hosts_file(&bridged, "").ends_with("::1\tlocalhost ip6-localhost ip6-loopback\n10.88.0.2\th\n"));
    }

    #[test]
    fn add_host_needs_a_name_and_an_address() {
        for bad in ["db", "db:", ":192.0.2.1", "db:not-an-ip", "bad_name:192.0.2.1"] {
            let error = HostEntry::parse(bad).unwrap_err();
            assert!(error.message.contains("write it as NAME:IP"), "{bad}: {}", error.message);
        }
    }
}
