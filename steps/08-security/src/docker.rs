//! Docker's security defaults and flags, written into a container's spec.
//!
//! An engine decides the policy and writes it down; the runtime applies what the spec
//! says (the rest of this step). `carton run` is the engine here: by default a container
//! gets what `docker run` gives one ([`write`]); `--cap-add`/`--cap-drop`, `--privileged`,
//! `--security-opt`, `--device` and `--read-only` change it as they do with Docker.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Spec};
use step01::{Error, Result};

use crate::capabilities::{self, CapSet, DOCKER_DEFAULT};
use crate::seccomp::profile::{self, Profile};
use crate::{device_rules, seccomp};

/// The security flags of `docker run`, as given.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// `--privileged`: every capability, no seccomp filter, no masked paths, every device.
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt`: `seccomp=unconfined|FILE`, `no-new-privileges[=true|false]`, ...
    pub security_opt: Vec<String>,
    /// `--device HOST[:CONTAINER][:PERMISSIONS]`.
    pub devices: Vec<String>,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
}

/// Which seccomp profile, from `--security-opt seccomp=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SeccompChoice {
    Default,
    Unconfined,
    File(PathBuf),
}

/// What `--security-opt` said.
struct Opts {
    seccomp: SeccompChoice,
    no_new_privileges: bool,
}

fn parse_security_opts(opts: &[String]) -> Result<Opts> {
    let mut parsed = Opts { seccomp: SeccompChoice::Default, no_new_privileges: false };
    for opt in opts {
        // Docker accepts `key=value` and the older `key:value`.
        let (key, value) = opt.split_once('=').or_else(|| opt.split_once(':')).unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => parsed.seccomp = SeccompChoice::Unconfined,
            ("seccomp", "") => return Err(Error::runtime("--security-opt seccomp= needs a value: unconfined, or the path of a profile (JSON)")),
            ("seccomp", file) => parsed.seccomp = SeccompChoice::File(PathBuf::from(file)),
            ("no-new-privileges", "" | "true") => parsed.no_new_privileges = true,
            ("no-new-privileges", "false") => parsed.no_new_privileges = false,
            ("no-new-privileges", other) => return Err(Error::runtime(format!("--security-opt no-new-privileges={other}: give true or false"))),
            // carton applies no Linux security module: "unconfined" and "disable" are what it does.
            ("apparmor", "unconfined") | ("label", "disable") => {}
            ("apparmor" | "label", _) => {
                return Err(Error::runtime(format!("--security-opt {opt}: carton applies no AppArmor or SELinux profile (only apparmor=unconfined and label=disable, which change nothing)")))
            }
            _ => {
                return Err(Error::runtime(format!(
                    "unknown --security-opt {opt:?}: carton knows seccomp=unconfined, seccomp=FILE, no-new-privileges[=true|false], apparmor=unconfined, label=disable"
                )))
            }
        }
    }
    Ok(parsed)
}

// ANCHOR: capabilities
/// The container's capabilities: Docker's 14 (every one carton has, with `--privileged`),
/// minus `--cap-drop`, plus `--cap-add` (`ALL` means every one, `CAP_` may be left out).
pub fn capability_set(options: &SecurityOptions) -> Result<CapSet> {
    let everything = CapSet(capabilities::own_bounding_set());
    let named = |names: &[String]| -> Result<CapSet> {
        if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
            return Ok(everything);
        }
        CapSet::parse(names)
    };
    let base = if options.privileged { everything } else { DOCKER_DEFAULT };
    let kept = CapSet(base.0 & !named(&options.cap_drop)?.0);
    Ok(CapSet((kept.0 | named(&options.cap_add)?.0) & everything.0))
}
// ANCHOR_END: capabilities

// ANCHOR: write
/// Write Docker's security settings for `options` into `spec`: capabilities (none effective
/// for a user other than root), the seccomp profile resolved for them, the masked and
/// read-only paths, the device rules and `--device` nodes, no_new_privs, a read-only root.
pub fn write(options: &SecurityOptions, spec: &mut Spec) -> Result<()> {
    let opts = parse_security_opts(&options.security_opt)?;
    let caps = capability_set(options)?;
    let mut process = spec.process().clone().unwrap_or_default();
    let is_root = process.user().uid() == 0;
    // oci-spec spells them without the CAP_ prefix (and serializes them with it).
    let names = |set: CapSet| set.names().iter().filter_map(|name| name.trim_start_matches("CAP_").parse().ok()).collect::<oci_spec::runtime::Capabilities>();
    let in_use = if is_root { caps } else { CapSet(0) };
    let sets = LinuxCapabilitiesBuilder::default().bounding(names(caps)).effective(names(in_use)).permitted(names(in_use)).inheritable(names(CapSet(0))).ambient(names(CapSet(0))).build();
    process.set_capabilities(Some(sets.map_err(|e| Error::runtime(format!("cannot write the capabilities: {e}")))?));
    process.set_no_new_privileges(Some(opts.no_new_privileges));
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let profile = match (&opts.seccomp, options.privileged) {
        (SeccompChoice::Unconfined, _) | (SeccompChoice::Default, true) => None,
        (SeccompChoice::Default, false) => Some(profile::docker_default()),
        (SeccompChoice::File(path), _) => Some(read_profile(path)?),
    };
    linux.set_seccomp(profile.map(|p| p.resolve(caps, seccomp::bpf::native_arch()?)).transpose()?);
    if !options.privileged {
        linux.set_masked_paths(Some(MASKED.iter().map(|p| p.to_string()).collect()));
        linux.set_readonly_paths(Some(READ_ONLY.iter().map(|p| p.to_string()).collect()));
    }
    // --privileged: no rule at all, which is every device (a cgroup's devices start open).
    let mut rules = if options.privileged { Vec::new() } else { device_rules::docker_default() };
    let mut nodes = linux.devices().clone().unwrap_or_default();
    for device in &options.devices {
        let (node, rule) = device_option(device)?;
        nodes.push(node);
        rules.push(rule);
    }
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices((!rules.is_empty()).then_some(rules));
    linux.set_resources(Some(resources));
    linux.set_devices((!nodes.is_empty()).then_some(nodes));
    spec.set_linux(Some(linux));

    if options.read_only {
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_readonly(Some(true));
        spec.set_root(Some(root));
    }
    Ok(())
}
// ANCHOR_END: write

// ANCHOR: paths
/// Docker's masked paths: what tells too much about the host (its keys, timers, firmware,
/// kernel memory), hidden.
pub const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: the host's kernel settings and interrupts may be read, not
/// changed (`/proc/sys` is the host's, except for the namespaced parts a spec's sysctl sets).
pub const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
// ANCHOR_END: paths

fn read_profile(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::runtime(format!("cannot read the seccomp profile {}: {e}", path.display())))?;
    Profile::parse(&text, &path.display().to_string())
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`: the node made in the container with the host
/// node's numbers, and a rule that lets the container use it.
fn device_option(option: &str) -> Result<(LinuxDevice, LinuxDeviceCgroup)> {
    let parts: Vec<&str> = option.split(':').collect();
    let is_access = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
    let (host, container, access) = match parts[..] {
        [host] => (host, host, "rwm"),
        [host, access] if is_access(access) => (host, host, access),
        [host, container] => (host, container, "rwm"),
        [host, container, access] if is_access(access) => (host, container, access),
        _ => return Err(Error::runtime(format!("--device {option:?}: give HOST[:CONTAINER][:PERMISSIONS], permissions made of r, w and m"))),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(Error::runtime(format!("--device {option:?}: the paths must be absolute (/dev/...)")));
    }
    let meta = std::fs::metadata(host).map_err(|e| Error::runtime(format!("--device {host}: {e}")))?;
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(Error::runtime(format!("--device {host}: not a device node (a character or block device)")));
    };
    let (major, minor) = (libc::major(meta.rdev()) as i64, libc::minor(meta.rdev()) as i64);
    let mut node = LinuxDevice::default();
    node.set_path(PathBuf::from(container)).set_typ(typ).set_major(major).set_minor(minor).set_file_mode(Some(meta.mode() & 0o777)).set_uid(Some(meta.uid())).set_gid(Some(meta.gid()));
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true).set_typ(Some(typ)).set_major(Some(major)).set_minor(Some(minor)).set_access(Some(access.to_string()));
    Ok((node, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(f: impl FnOnce(&mut SecurityOptions)) -> SecurityOptions {
        let mut options = SecurityOptions::default();
        f(&mut options);
        options
    }

    #[test]
    fn capabilities_follow_dockers_rules() {
        assert_eq!(capability_set(&SecurityOptions::default()).unwrap(), DOCKER_DEFAULT);
        let none = capability_set(&options(|o| o.cap_drop = vec!["ALL".into()])).unwrap();
        assert_eq!(none, CapSet(0));
        let one = capability_set(&options(|o| (o.cap_drop, o.cap_add) = (vec!["all".into()], vec!["net_bind_service".into()]))).unwrap();
        assert_eq!(one.names(), ["CAP_NET_BIND_SERVICE"]);
        let more = capability_set(&options(|o| (o.cap_drop, o.cap_add) = (vec!["CAP_CHOWN".into()], vec!["SYS_PTRACE".into()]))).unwrap();
        assert!(more.contains(19) && !more.contains(0));
        assert!(capability_set(&options(|o| o.cap_add = vec!["FLY".into()])).unwrap_err().message.contains("unknown capability"));
    }

    #[test]
    fn security_opts_are_parsed_and_unknown_ones_named() {
        let opts = parse_security_opts(&["seccomp=unconfined".into(), "no-new-privileges".into()]).unwrap();
        assert_eq!(opts.seccomp, SeccompChoice::Unconfined);
        assert!(opts.no_new_privileges);
        assert_eq!(parse_security_opts(&["seccomp:/tmp/p.json".into()]).unwrap().seccomp, SeccompChoice::File("/tmp/p.json".into()));
        let error = parse_security_opts(&["sekcomp=unconfined".into()]).err().unwrap();
        assert!(error.message.contains("unknown --security-opt \"sekcomp=unconfined\""), "{}", error.message);
        assert!(parse_security_opts(&["apparmor=docker-default".into()]).err().unwrap().message.contains("no AppArmor"));
    }

    #[test]
    fn a_device_option_reads_the_host_node() {
        let (node, rule) = device_option("/dev/null:/dev/mynull:rw").unwrap();
        assert_eq!((node.path().as_path(), node.typ(), node.major(), node.minor()), (Path::new("/dev/mynull"), LinuxDeviceType::C, 1, 3));
        assert_eq!(device_rules::v1_line(&rule), "c 1:3 rw");
        assert!(device_option("/etc/passwd").unwrap_err().message.contains("not a device node"));
        assert!(device_option("dev/null").unwrap_err().message.contains("absolute"));
    }
}
