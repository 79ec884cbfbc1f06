//! Outbound NAT: bridged containers reach beyond the host through the host's address.
//!
//! Two pieces: IP forwarding on (so the host routes packets between the bridge and its
//! other interfaces), and a masquerade rule (so packets from the bridge leave with the
//! host's address and their answers find their way back). The rule lives in carton's
//! own nftables table, `ip carton`, which `carton network prune` removes whole.
//!
//! Running `nft` is the one program carton runs, as Docker runs iptables and netavark
//! runs nft: nftables has a netlink interface too, but its rule encoding is a chapter
//! of its own. The rule is written out in full so the reader sees exactly what it is.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use step01::{Action, Error, Explain, Result};

use crate::ipam::Subnet;
use crate::{BRIDGE, CHAPTER};

/// carton's nftables table (family `ip`).
pub(crate) const TABLE: &str = "carton";

// ANCHOR: masquerade
/// The whole table, rewritten each time: creating it, deleting it and creating it again
/// in one `nft -f` transaction makes the change idempotent and atomic.
pub fn ruleset(subnet: Subnet) -> String {
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\t{}\n\
         \t}}\n\
         }}\n",
        masquerade_rule(subnet)
    )
}

/// The rule's own line, as `nft list` prints it.
fn masquerade_rule(subnet: Subnet) -> String {
    format!("ip saddr {}/{} oifname != \"{BRIDGE}\" masquerade", subnet.network, subnet.prefix)
}

/// The host's switch for routing between interfaces.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turn on forwarding and install the masquerade rule for `subnet`, unless it is there.
/// If forwarding was off, a file `forwarding_was_off` records it, so that [`remove`]
/// can switch it off again.
pub fn enable(subnet: Subnet, record: &Path, explain: &Explain) -> Result<()> {
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|value| value.trim() == "0") {
        std::fs::write(record, "").map_err(|e| Error::runtime(format!("cannot record that IP forwarding was off ({}): {e}", record.display())))?;
    }
    explain.step(|| Action::new(CHAPTER, "let the host route packets between the bridge and its other interfaces", format!("write(\"{IP_FORWARD}\", \"1\")")).shell("sysctl -w net.ipv4.ip_forward=1"));
    std::fs::write(IP_FORWARD, "1").map_err(|e| Error::runtime(format!("cannot turn on IP forwarding: {e}")))?;
    // Listing the table costs a few milliseconds; replacing it, several times more.
    if installed(subnet) {
        return Ok(());
    }
    let rules = ruleset(subnet);
    explain.step(|| {
        Action::new(CHAPTER, format!("masquerade what leaves {}/{}: it goes out with the host's address", subnet.network, subnet.prefix), "nftables ruleset (netlink via nft)")
            .shell(format!("nft -f - <<'EOF'\n{rules}EOF"))
    });
    nft(&rules)
}
// ANCHOR_END: masquerade

/// Whether carton's table already holds the masquerade rule for `subnet`.
fn installed(subnet: Subnet) -> bool {
    let listing = Command::new("nft").args(["list", "table", "ip", TABLE]).stderr(Stdio::null()).output();
    listing.is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&masquerade_rule(subnet)))
}

/// Remove carton's table, if there is one, and switch IP forwarding off again if carton
/// switched it on (`record` says so). Returns whether it did.
pub fn remove(record: &Path) -> Result<bool> {
    nft(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))?;
    if !record.exists() {
        return Ok(false);
    }
    std::fs::write(IP_FORWARD, "0").map_err(|e| Error::runtime(format!("cannot switch IP forwarding off again: {e}")))?;
    let _ = std::fs::remove_file(record);
    Ok(true)
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::runtime(format!("cannot run nft ({e}); the bridge network needs nftables: apt-get install nftables")))?;
    child.stdin.take().unwrap().write_all(script.as_bytes()).map_err(|e| Error::runtime(format!("cannot talk to nft: {e}")))?;
    let out = child.wait_with_output().map_err(|e| Error::runtime(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::runtime(format!("nft refused carton's rules: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_masquerades_only_what_leaves_the_bridge() {
        let rules = ruleset("10.88.0.0/16".parse().unwrap());
        assert!(rules.starts_with("table ip carton {}\ndelete table ip carton\n"), "{rules}");
        assert!(rules.contains("ip saddr 10.88.0.0/16 oifname != \"carton0\" masquerade"), "{rules}");
    }
}
