//! Capabilities: root's power, cut into 41 pieces.
//!
//! A process has five sets of them. **Bounding**: the most it can ever get back (dropped
//! once, for good). **Permitted**: what it may switch on. **Effective**: what the kernel
//! checks now. **Inheritable** and **ambient**: what survives an execve (ambient even into a
//! program without file capabilities). The OCI spec's `process.capabilities` gives all five.
//!
//! The order matters (it is runc's): the bounding set is cut while the process is still
//! root with every capability (cutting it needs CAP_SETPCAP); PR_SET_KEEPCAPS keeps the
//! permitted set across the user switch (which would otherwise empty it); after the switch
//! one capset(2) sets effective, permitted and inheritable together, and the ambient set is
//! raised one capability at a time.

use nix::errno::Errno;
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

/// The capabilities by number, as `<linux/capability.h>` names them.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set: the 14 capabilities a container's root keeps (CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
/// MKNOD, AUDIT_WRITE, SETFCAP): enough to install packages and run servers, nothing that
/// reaches past the container (no SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_PTRACE, ...).
pub const DOCKER_DEFAULT: CapSet = CapSet(0xa804_25fb);

/// A set of capabilities, one bit each (bit N is capability N), as the kernel keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The set named by `names` (`CAP_CHOWN`, or `chown`: any case, with or without `CAP_`).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<CapSet> {
        names.iter().try_fold(CapSet(0), |set, name| Ok(CapSet(set.0 | 1 << number(name.as_ref())?)))
    }

    pub fn contains(self, cap: usize) -> bool {
        self.0 & (1 << cap) != 0
    }

    /// The names in the set, in number order.
    pub fn names(self) -> Vec<&'static str> {
        (0..NAMES.len()).filter(|cap| self.contains(*cap)).map(|cap| NAMES[cap]).collect()
    }
}

/// A capability's number, from its name.
pub fn number(name: &str) -> Result<usize> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES.iter().position(|known| *known == full).ok_or_else(|| Error::runtime(format!("unknown capability {name:?}: capabilities are named like CAP_NET_ADMIN (see capabilities(7))")))
}

/// The five sets of a process, as the spec's `process.capabilities` gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

impl Capabilities {
    /// The spec's sets; a set it leaves out is empty (as runc reads it).
    pub fn from_oci(caps: &oci_spec::runtime::LinuxCapabilities) -> Result<Capabilities> {
        let set = |names: &Option<oci_spec::runtime::Capabilities>| -> Result<CapSet> {
            let names: Vec<String> = names.iter().flatten().map(|cap| cap.to_string()).collect();
            CapSet::parse(&names)
        };
        Ok(Capabilities { bounding: set(caps.bounding())?, effective: set(caps.effective())?, permitted: set(caps.permitted())?, inheritable: set(caps.inheritable())?, ambient: set(caps.ambient())? })
    }

    // ANCHOR: within_reach
    /// The same sets without what cannot be given, and a warning for each part left out
    /// (as runc does): capabilities newer than this kernel or missing from the bounding set
    /// carton itself runs with (asking for them would fail the whole start), and ambient
    /// ones that are not both permitted and inheritable (the kernel refuses to raise those).
    pub fn within_reach(self) -> (Capabilities, Vec<String>) {
        let reach = CapSet(own_bounding_set());
        let keep = |set: CapSet| CapSet(set.0 & reach.0);
        let all = CapSet(self.bounding.0 | self.effective.0 | self.permitted.0 | self.inheritable.0 | self.ambient.0);
        let mut warnings = Vec::new();
        let left_out = CapSet(all.0 & !reach.0);
        if left_out.0 != 0 {
            warnings.push(format!("process.capabilities: {} not in this host's bounding set, so the container cannot have them either", left_out.names().join(", ")));
        }
        let mut reachable =
            Capabilities { bounding: keep(self.bounding), effective: keep(self.effective), permitted: keep(self.permitted), inheritable: keep(self.inheritable), ambient: keep(self.ambient) };
        let raisable = CapSet(reachable.permitted.0 & reachable.inheritable.0);
        let unraisable = CapSet(reachable.ambient.0 & !raisable.0);
        if unraisable.0 != 0 {
            warnings.push(format!("process.capabilities.ambient: {} not both permitted and inheritable, so not ambient", unraisable.names().join(", ")));
            reachable.ambient = CapSet(reachable.ambient.0 & raisable.0);
        }
        (reachable, warnings)
    }
    // ANCHOR_END: within_reach
}

/// The bounding set this process has (what it can hand on at most), asked once.
pub fn own_bounding_set() -> u64 {
    static OWN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *OWN.get_or_init(read_own_bounding_set)
}

fn read_own_bounding_set() -> u64 {
    // Safety: PR_CAPBSET_READ takes a capability number and returns 1, 0 or -1.
    (0..NAMES.len()).filter(|cap| unsafe { libc::prctl(libc::PR_CAPBSET_READ, *cap as libc::c_ulong, 0, 0, 0) } == 1).fold(0, |set, cap| set | 1 << cap)
}

// ANCHOR: bounding
/// Before the user switch, as root: cut the bounding set down to `keep`, and ask the
/// kernel to keep the permitted set across the switch to another user.
pub fn drop_bounding(keep: CapSet, explain: &Explain) -> Result<()> {
    explain.step(|| {
        Action::new(CHAPTER, format!("cut the bounding set to {} capabilities, for good", keep.names().len()), "prctl(PR_CAPBSET_DROP, cap) for each other one; prctl(PR_SET_KEEPCAPS, 1)")
            .shell(format!("capsh --drop=... (keeping {})", keep.names().join(",").to_lowercase()))
    });
    for cap in (0..NAMES.len()).filter(|cap| !keep.contains(*cap)) {
        // Safety: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 && Errno::last() != Errno::EINVAL {
            return Err(Error::syscall(format!("cannot drop {} from the bounding set", NAMES[cap]), Errno::last()));
        }
    }
    // Safety: as above.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(Error::syscall("cannot keep the capabilities across the user switch", Errno::last()));
    }
    Ok(())
}
// ANCHOR_END: bounding

// ANCHOR: capset
/// After the user switch: effective, permitted and inheritable in one capset(2), then the
/// ambient set, one capability at a time.
pub fn apply(caps: &Capabilities, explain: &Explain) -> Result<()> {
    explain.step(|| {
        Action::new(CHAPTER, format!("keep {} capabilities: {}", caps.effective.names().len(), caps.effective.names().join(" ")), "capset(effective, permitted, inheritable)")
            .shell("grep Cap /proc/self/status")
    });
    // Safety: prctl with integer arguments; keepcaps has done its work.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // The kernel's _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
    let header = libc_cap_header { version: 0x2008_0522, pid: 0 };
    let word = |set: CapSet, half: u32| (set.0 >> (32 * half)) as u32;
    let data: [libc_cap_data; 2] = [0, 1].map(|half| libc_cap_data { effective: word(caps.effective, half), permitted: word(caps.permitted, half), inheritable: word(caps.inheritable, half) });
    // Safety: capset reads one header and two data structs, as laid out by the kernel.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(Error::syscall("cannot set the capabilities (capset)", Errno::last()));
    }
    // Safety: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    for cap in (0..NAMES.len()).filter(|cap| caps.ambient.contains(*cap)) {
        // Safety: as above. Raising needs the capability permitted and inheritable.
        if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) } != 0 {
            return Err(Error::syscall(format!("cannot raise {} in the ambient set (it must be permitted and inheritable too)", NAMES[cap]), Errno::last()));
        }
    }
    Ok(())
}
// ANCHOR_END: capset

#[repr(C)]
#[allow(non_camel_case_types)]
struct libc_cap_header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[allow(non_camel_case_types)]
struct libc_cap_data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The five sets of process `pid` as `/proc/PID/status` shows them (CapBnd, CapEff, ...).
pub fn of_process(pid: &str) -> Result<Capabilities> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| Error::runtime(format!("cannot read /proc/{pid}/status: {e}")))?;
    let field = |name: &str| -> Result<CapSet> {
        let value = status.lines().find_map(|line| line.strip_prefix(name)).ok_or_else(|| Error::runtime(format!("no {name} in /proc/{pid}/status")))?;
        u64::from_str_radix(value.trim(), 16).map(CapSet).map_err(|_| Error::runtime(format!("{name} in /proc/{pid}/status is not hexadecimal")))
    };
    Ok(Capabilities { bounding: field("CapBnd:")?, effective: field("CapEff:")?, permitted: field("CapPrm:")?, inheritable: field("CapInh:")?, ambient: field("CapAmb:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree_with_the_kernel_header() {
        assert_eq!(number("CAP_CHOWN").unwrap(), 0);
        assert_eq!(number("net_admin").unwrap(), 12);
        assert_eq!(number("SYS_ADMIN").unwrap(), 21);
        assert_eq!(number("CAP_CHECKPOINT_RESTORE").unwrap(), 40);
        assert!(number("CAP_FLY").unwrap_err().message.contains("unknown capability"));
        // Docker's default set, as its documentation gives the mask.
        let docker = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"];
        assert_eq!(CapSet::parse(&docker).unwrap(), CapSet(0xa80425fb));
        assert_eq!(CapSet(0b101).names(), ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]);
    }
}
