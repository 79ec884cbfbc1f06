//! `linux.sysctl`: kernel settings for the container, written under `/proc/sys`.
//!
//! Only settings that belong to one of the container's own namespaces may be written: the
//! rest are the host's (`vm.overcommit_ratio`, `kernel.core_pattern`), and writing them
//! from a container would change the whole machine. The same rule as runc's.

use nix::sched::CloneFlags;
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

// ANCHOR: namespaced
/// The namespace that holds setting `key`, if any.
pub fn namespace_of(key: &str) -> Option<CloneFlags> {
    let dotted = key.replace('/', ".");
    let key = dotted.as_str();
    const IPC: [&str; 8] = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(CloneFlags::CLONE_NEWIPC)
    } else if key.starts_with("net.") {
        Some(CloneFlags::CLONE_NEWNET)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(CloneFlags::CLONE_NEWUTS)
    } else {
        None
    }
}

/// Refuse a setting that is not the container's own: `own` are the namespaces the
/// container does not share with the host (new, or joined by path).
pub fn check(key: &str, own: CloneFlags) -> Result<()> {
    match namespace_of(key) {
        Some(namespace) if own.contains(namespace) => Ok(()),
        Some(_) => Err(Error::runtime(format!("sysctl {key} belongs to a namespace this container shares with the host: writing it would change the host's; give the container its own"))),
        None => Err(Error::runtime(format!("sysctl {key} is not namespaced: writing it from a container would change the whole host; set it on the host instead"))),
    }
}
// ANCHOR_END: namespaced

// ANCHOR: write
/// Write one setting, inside the container (its `/proc` is mounted).
pub fn write(key: &str, value: &str, explain: &Explain) -> Result<()> {
    // `net.ipv4.ip_forward`, or already as a path (`net/ipv4/conf/eth0.1/forwarding`: an
    // interface name may hold a dot, which only this spelling keeps).
    let path = if key.contains('/') { format!("/proc/sys/{key}") } else { format!("/proc/sys/{}", key.replace('.', "/")) };
    explain.step(|| Action::new(CHAPTER, format!("set {key} = {value} in the container's namespaces"), format!("write(\"{path}\", \"{value}\")")).shell(format!("sysctl -w {key}={value}")));
    std::fs::write(&path, value).map_err(|e| Error::runtime(format!("cannot set sysctl {key} ({path}): {e}")))
}
// ANCHOR_END: write

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_of_the_containers_own_namespaces_pass() {
        let own = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC;
        assert!(check("net.ipv4.ip_forward", own).is_ok());
        assert!(check("kernel.shmmax", own).is_ok());
        assert!(check("fs.mqueue.queues_max", own).is_ok());
        assert!(check("kernel.domainname", own).unwrap_err().message.contains("shares with the host"));
        assert!(check("vm.overcommit_ratio", own).unwrap_err().message.contains("not namespaced"));
        assert!(check("kernel.core_pattern", own).unwrap_err().message.contains("not namespaced"));
    }
}
