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
//!
//! Running it costs a fork and an exec each time, so carton skips even the check that
//! the rule is there while nothing has changed: the kernel numbers each version of a
//! network namespace's ruleset (its generation, [`generation`]), one netlink question
//! reads that number, and a stamp beside the state records the generation at which
//! carton last saw its rule in place.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    let stamp = record.with_file_name(STAMP);
    let before = Checked::now(subnet); // read first: any change after this shows
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|value| value.trim() == "0") {
        std::fs::write(record, "").map_err(|e| Error::runtime(format!("cannot record that IP forwarding was off ({}): {e}", record.display())))?;
    }
    explain.step(|| Action::new(CHAPTER, "let the host route packets between the bridge and its other interfaces", format!("write(\"{IP_FORWARD}\", \"1\")")).shell("sysctl -w net.ipv4.ip_forward=1"));
    std::fs::write(IP_FORWARD, "1").map_err(|e| Error::runtime(format!("cannot turn on IP forwarding: {e}")))?;
    // Listing the table costs a few milliseconds (a fork and an exec of nft); replacing
    // it, several times more. If nftables' generation is the one at which carton last
    // saw its rule, nothing has changed since: no nft at all.
    if let Some(seen) = before.as_ref().filter(|seen| seen.is_in(&stamp)) {
        explain.step(|| Action::new(CHAPTER, format!("nftables' generation {} is the one carton checked: its rule is still there", seen.generation), "send(NETLINK_NETFILTER socket, NFT_MSG_GETGEN)"));
        return Ok(());
    }
    if installed(subnet) {
        if let Some(seen) = before {
            seen.write(&stamp);
        }
        return Ok(());
    }
    let rules = ruleset(subnet);
    explain.step(|| {
        Action::new(CHAPTER, format!("masquerade what leaves {}/{}: it goes out with the host's address", subnet.network, subnet.prefix), "nftables ruleset (netlink via nft)")
            .shell(format!("nft -f - <<'EOF'\n{rules}EOF"))
    });
    nft(&rules)?;
    // One generation more than before: nothing but carton's own transaction came between.
    if let (Some(before), Some(after)) = (before, Checked::now(subnet)) {
        if after.generation == before.generation.wrapping_add(1) {
            after.write(&stamp);
        }
    }
    Ok(())
}
// ANCHOR_END: masquerade

/// The stamp beside the state: the generation at which carton last saw its rule.
const STAMP: &str = "nat-checked";

/// What the stamp records: in which network namespace (of which boot: a cookie is unique
/// only until the next one, and the generation starts again then), at which generation of
/// its ruleset, carton saw the rule for which subnet.
#[derive(Debug, Clone)]
struct Checked {
    boot: String,
    netns: u64,
    generation: u32,
    subnet: Subnet,
}

impl Checked {
    /// This boot, network namespace and ruleset generation now; None if one is unknown.
    fn now(subnet: Subnet) -> Option<Checked> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string();
        Some(Checked { boot, netns: netns_cookie()?, generation: generation()?, subnet })
    }

    fn line(&self) -> String {
        format!("{} {} {} {}/{}\n", self.boot, self.netns, self.generation, self.subnet.network, self.subnet.prefix)
    }

    /// Whether `stamp` records this very namespace, generation and subnet.
    fn is_in(&self, stamp: &Path) -> bool {
        std::fs::read_to_string(stamp).is_ok_and(|recorded| recorded == self.line())
    }

    /// A stamp that cannot be written costs only a listing next time.
    fn write(&self, stamp: &Path) {
        let _ = std::fs::write(stamp, self.line());
    }
}

// ANCHOR: generation
/// nftables' generation in this network namespace: a number the kernel adds one to at
/// every change of the ruleset, any table's. One netlink question, no program; None if
/// it cannot be asked (and carton lists the table, as without it).
pub(crate) fn generation() -> Option<u32> {
    const NFNL_SUBSYS_NFTABLES: u16 = 10; // netfilter's netlink: nftables' messages
    const NFT_MSG_NEWGEN: u16 = 15; // the answer
    const NFT_MSG_GETGEN: u16 = 16; // the question
    const NFTA_GEN_ID: u16 = 1; // the answer's attribute with the number

    // SAFETY: socket() returns a new descriptor or -1; the OwnedFd closes it on return.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    let socket = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })?;
    // The question, 20 bytes: a netlink header (length, type, flags, sequence number,
    // sender's port, 0: the kernel fills it in), then nfgenmsg (family AF_UNSPEC: all
    // of them; version NFNETLINK_V0; resource id 0).
    let mut question = Vec::with_capacity(20);
    question.extend(20u32.to_ne_bytes());
    question.extend((NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN).to_ne_bytes());
    question.extend((libc::NLM_F_REQUEST as u16).to_ne_bytes());
    question.extend(1u32.to_ne_bytes());
    question.extend(0u32.to_ne_bytes());
    question.extend([libc::AF_UNSPEC as u8, 0, 0, 0]);
    // SAFETY: the buffers are valid for the lengths given. The kernel answers during
    // send(), so the answer is waiting: no need to block for it.
    let sent = unsafe { libc::send(socket.as_raw_fd(), question.as_ptr().cast(), question.len(), 0) };
    let mut answer = [0u8; 512];
    let got = unsafe { libc::recv(socket.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), libc::MSG_DONTWAIT) };
    if sent != 20 || got < 20 {
        return None;
    }
    let answer = &answer[..got as usize];
    let u16_at = |at: usize| u16::from_ne_bytes([answer[at], answer[at + 1]]);
    let length = (u32::from_ne_bytes(answer[..4].try_into().ok()?) as usize).min(answer.len());
    // An NLMSG_ERROR (say, EPERM without CAP_NET_ADMIN) or anything else: no number.
    if u16_at(4) != NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN {
        return None;
    }
    // After the header and nfgenmsg, attributes: length (u16, header included), type
    // (u16), value, padded to 4 bytes. NFTA_GEN_ID's value is a big-endian u32.
    let mut at = 20;
    while at + 4 <= length {
        let (size, kind) = (u16_at(at) as usize, u16_at(at + 2) & 0x3fff); // without the flag bits
        if size < 4 || at + size > length {
            return None;
        }
        if kind == NFTA_GEN_ID && size == 8 {
            return Some(u32::from_be_bytes(answer[at + 4..at + 8].try_into().ok()?));
        }
        at += (size + 3) & !3;
    }
    None
}
// ANCHOR_END: generation

/// This network namespace's cookie: a number the kernel gives each network namespace
/// and never to another until reboot. Its inode number is not enough: once a namespace
/// is gone, a new one can get the same inode number, and start counting generations
/// again from the same first one.
fn netns_cookie() -> Option<u64> {
    // asm-generic's number; sparc's is its own.
    const SO_NETNS_COOKIE: libc::c_int = if cfg!(any(target_arch = "sparc", target_arch = "sparc64")) { 0x50 } else { 71 };
    // SAFETY: a new descriptor or -1, owned; getsockopt writes at most `size` bytes to `cookie`.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let socket = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })?;
    let (mut cookie, mut size) = (0u64, std::mem::size_of::<u64>() as libc::socklen_t);
    let done = unsafe { libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut size) };
    (done == 0 && size == 8).then_some(cookie)
}

/// Whether carton's table already holds the masquerade rule for `subnet`.
fn installed(subnet: Subnet) -> bool {
    let listing = Command::new("nft").args(["list", "table", "ip", TABLE]).stderr(Stdio::null()).output();
    listing.is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&masquerade_rule(subnet)))
}

/// Remove carton's table, if there is one, and switch IP forwarding off again if carton
/// switched it on (`record` says so). Returns whether it did.
pub fn remove(record: &Path) -> Result<bool> {
    nft(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))?;
    let _ = std::fs::remove_file(record.with_file_name(STAMP));
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

    /// Run `test` on a thread of its own in a new, empty network namespace (only that
    /// thread moves, and the programs it runs), so the host's ruleset is never touched;
    /// the namespace goes with the thread. Skipped unless root, with nft.
    fn in_a_network_namespace_of_its_own(test: impl FnOnce() + Send + 'static) {
        if !nix::unistd::geteuid().is_root() || Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let forwarding = std::fs::read_to_string(IP_FORWARD).unwrap();
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            test();
        })
        .join()
        .unwrap();
        assert_eq!(std::fs::read_to_string(IP_FORWARD).unwrap(), forwarding, "the host's forwarding changed");
    }

    #[test]
    fn the_generation_counts_every_change_to_the_ruleset() {
        let host = netns_cookie();
        in_a_network_namespace_of_its_own(move || {
            let first = generation().expect("NFT_MSG_GETGEN answered");
            assert_eq!(generation(), Some(first), "no change, same generation");
            assert_ne!(netns_cookie(), host, "another namespace, another cookie");
            nft("table ip carton_gen_test {}\n").unwrap();
            assert_eq!(generation(), Some(first.wrapping_add(1)), "one transaction, one more");
            nft("delete table ip carton_gen_test\n").unwrap();
            assert_eq!(generation(), Some(first.wrapping_add(2)));
        });
    }

    #[test]
    fn enable_lists_the_table_only_after_a_change() {
        in_a_network_namespace_of_its_own(|| {
            let state = tempfile::tempdir().unwrap();
            let record = state.path().join("forwarding_was_off");
            let stamp = state.path().join(STAMP);
            let subnet: Subnet = "10.88.0.0/16".parse().unwrap();
            let run = |subnet: Subnet| {
                let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let sink = seen.clone();
                enable(subnet, &record, &Explain::to_sink(move |action: &Action| sink.borrow_mut().push(action.what.clone()))).unwrap();
                let seen = seen.borrow().clone();
                (seen.iter().any(|what| what.starts_with("masquerade")), seen.iter().any(|what| what.starts_with("nftables' generation")))
            };
            assert_eq!(run(subnet), (true, false), "first: installed");
            let after_install = std::fs::read_to_string(&stamp).expect("stamped after its own transaction");
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
            assert_eq!(after_install, format!("{} {} {} 10.88.0.0/16\n", boot.trim(), netns_cookie().unwrap(), generation().unwrap()));
            assert_eq!(run(subnet), (false, true), "unchanged: neither listed nor installed");
            // A change elsewhere (another table): listed again, found, stamped again.
            nft("table ip someone_else {}\n").unwrap();
            assert_eq!(run(subnet), (false, false));
            assert_eq!(run(subnet), (false, true));
            // Carton's table gone: installed again.
            nft("delete table ip carton\n").unwrap();
            assert_eq!(run(subnet), (true, false));
            assert_eq!(run(subnet), (false, true));
            // Another subnet: the stamp is not its.
            assert_eq!(run("10.89.0.0/16".parse().unwrap()), (true, false));
            assert!(remove(&record).is_ok());
            assert!(!stamp.exists(), "prune removes the stamp");
        });
    }
}
