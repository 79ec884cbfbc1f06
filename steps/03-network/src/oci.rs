//! Step 03's part of the OCI runtime spec. The spec has a field for the network namespace
//! to join (`linux.namespaces`, by `path`: [`crate::Connected::write_oci`]), and none for
//! how the network is made: that is the engine's job, before the runtime runs (CNI's and
//! netavark's for podman). So `docker run`'s network options travel as annotations
//! (`org.carton.*`, as crun keeps its own extras as `run.oci.*`), read back by the code
//! that sets the network up.

use oci_spec::runtime::Spec;
use step01::{Error, Result};

use crate::ports::PortMapping;
use crate::{HostEntry, Mode, NetworkOptions};

/// `--network`: `none`, `host` or `bridge`.
pub const NETWORK: &str = "org.carton.network";
/// `-p`, each as `HOSTIP:HOSTPORT:CONTAINERPORT/PROTOCOL`, comma-separated.
pub const PORTS: &str = "org.carton.ports";
/// `--dns`, comma-separated addresses.
pub const DNS: &str = "org.carton.dns";
/// `--add-host`, each as `NAME:IP`, comma-separated.
pub const ADD_HOSTS: &str = "org.carton.add-hosts";

impl NetworkOptions {
    /// Write the options into `spec`'s annotations.
    pub fn write_oci(&self, spec: &mut Spec) {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        let mode = match self.mode {
            Mode::None => "none",
            Mode::Host => "host",
            Mode::Bridge => "bridge",
        };
        annotations.insert(NETWORK.to_string(), mode.to_string());
        let ports: Vec<String> = self.ports.iter().map(PortMapping::to_flag).collect();
        let dns: Vec<String> = self.dns.iter().map(|ip| ip.to_string()).collect();
        let hosts: Vec<String> = self.add_hosts.iter().map(|host| format!("{}:{}", host.name, host.address)).collect();
        for (key, values) in [(PORTS, ports), (DNS, dns), (ADD_HOSTS, hosts)] {
            match values.is_empty() {
                true => annotations.remove(key),
                false => annotations.insert(key.to_string(), values.join(",")),
            };
        }
        spec.set_annotations(Some(annotations));
    }

    /// The options `spec`'s annotations give; without them, `docker run`'s default (the
    /// bridge). The bridge's subnet is the host's (`CARTON_SUBNET`), not the container's.
    pub fn from_oci(spec: &Spec) -> Result<NetworkOptions> {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let list = |key: &str| annotations.get(key).map(|value| value.split(',').filter(|item| !item.is_empty()).map(str::to_string).collect::<Vec<_>>()).unwrap_or_default();
        let in_annotation = |key: &str, error: Error| Error::runtime(format!("config.json's annotation {key}: {}", error.message));
        Ok(NetworkOptions {
            mode: annotations.get(NETWORK).map_or(Ok(Mode::Bridge), |mode| mode.parse()).map_err(|e| in_annotation(NETWORK, e))?,
            ports: list(PORTS).iter().map(|p| PortMapping::parse(p)).collect::<Result<_>>().map_err(|e| in_annotation(PORTS, e))?,
            dns: list(DNS).iter().map(|d| crate::parse_dns(d)).collect::<Result<_>>().map_err(|e| in_annotation(DNS, e))?,
            add_hosts: list(ADD_HOSTS).iter().map(|h| HostEntry::parse(h)).collect::<Result<_>>().map_err(|e| in_annotation(ADD_HOSTS, e))?,
            subnet: crate::subnet_from_env()?,
        })
    }
}

/// The spec the demos of the later chapters start from: `process` on `rootfs`, with
/// chapter 2's namespaces and this chapter's `--network none` (a namespace with only `lo`).
pub fn isolated_spec(process: &step01::Process, rootfs: &std::path::Path, context: &step02::Context) -> Result<Spec> {
    let mut spec = step01::container::base_spec(process, rootfs)?;
    step02::oci::write(&step02::Options::new(context.id.clone()), &mut spec)?;
    NetworkOptions { mode: Mode::None, ..NetworkOptions::new() }.write_oci(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_written_then_read_are_the_same() {
        let options = NetworkOptions {
            mode: Mode::Bridge,
            ports: ["8088:80", "127.0.0.1::53/udp", "[::1]:8443:443"].iter().map(|p| PortMapping::parse(p).unwrap()).collect(),
            dns: vec!["192.0.2.53".parse().unwrap(), "2001:db8::53".parse().unwrap()],
            add_hosts: vec![HostEntry::parse("db:192.0.2.10").unwrap(), HostEntry::parse("v6:2001:db8::1").unwrap()],
            ..NetworkOptions::new()
        };
        let mut spec = Spec::default();
        options.write_oci(&mut spec);
        let read = NetworkOptions::from_oci(&spec).unwrap();
        assert_eq!(read.mode, Mode::Bridge);
        assert_eq!(read.ports, options.ports);
        assert_eq!(read.dns, options.dns);
        assert_eq!(read.add_hosts, options.add_hosts);
        let none = NetworkOptions { mode: Mode::None, ..NetworkOptions::new() };
        none.write_oci(&mut spec);
        let read = NetworkOptions::from_oci(&spec).unwrap();
        assert!(read.mode == Mode::None && read.ports.is_empty() && read.dns.is_empty(), "the earlier lists are gone");
    }

    #[test]
    fn a_bad_annotation_is_named() {
        let spec: Spec = serde_json::from_str(r#"{"ociVersion": "1.0.2", "annotations": {"org.carton.network": "wifi"}}"#).unwrap();
        let error = NetworkOptions::from_oci(&spec).unwrap_err();
        assert!(error.message.contains("org.carton.network") && error.message.contains("choose bridge"), "{}", error.message);
    }
}
