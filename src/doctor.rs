//! `carton doctor`: a preflight a teacher runs on each lab machine.
//!
//! Each check tries the real thing where it can (a namespace is created, an overlay
//! and a pivot_root are done in a throwaway child process), so "pass" means it works
//! here, not that a file exists. Nothing is left behind: every trial runs in a child
//! with its own mount namespace, which disappears when the child exits.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, pipe, ForkResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

pub struct Check {
    pub status: Status,
    pub name: String,
    pub detail: String,
    /// One line that says how to fix it (for warn and fail).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { status: Status::Pass, name: name.into(), detail: detail.into(), fix: None }
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { status: Status::Warn, name: name.into(), detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { status: Status::Fail, name: name.into(), detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        write!(f, "  {status}  {:<18} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n        {:<18} fix: {fix}", "")?;
        }
        Ok(())
    }
}

/// Run every check, print the report; exit status 1 when a required check failed.
pub fn run() -> anyhow::Result<u8> {
    let checks = all_checks();
    let mut report = String::from("carton doctor: can this machine run containers?\n\n");
    for check in &checks {
        report += &format!("{check}\n");
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (passed, warned, failed) = (count(Status::Pass), count(Status::Warn), count(Status::Fail));
    if failed == 0 {
        report += &format!("\nready: {} pass, {warned} with a warning\n", checks_word(passed));
    } else {
        report += &format!("\nnot ready: {} failed (and {warned} with a warning); apply the fixes above and run `carton doctor` again\n", checks_word(failed));
    }
    crate::print_stdout(&report);
    Ok(if failed == 0 { 0 } else { 1 })
}

/// "1 check", "15 checks".
fn checks_word(count: usize) -> String {
    format!("{count} check{}", if count == 1 { "" } else { "s" })
}

fn all_checks() -> Vec<Check> {
    let mut checks = vec![privileges(), user_namespaces(), kernel()];
    if nix::unistd::geteuid().is_root() {
        checks.extend(namespaces());
        checks.extend([overlayfs(), root_setup()]);
    } else {
        // Without root every trial fails with EPERM, and its "fix" would mislead.
        checks.push(Check::warn("trials", "not tried: creating namespaces, an overlay and a container root needs root", "run `sudo carton doctor`"));
    }
    checks.extend([cgroups(), firewall(), busybox()]);
    checks
}

fn privileges() -> Check {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        Check::pass("privileges", "running as root")
    } else {
        Check::fail("privileges", format!("running as uid {uid}; carton needs root for now (rootless mode is planned with the security chapter)"), "run it as root: sudo carton ...")
    }
}

/// Rootless containers need user namespaces; some distributions switch them off.
fn user_namespaces() -> Check {
    let read = |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Check::warn("user namespaces", "off (user.max_user_namespaces = 0); root is unaffected, rootless containers cannot work", "sysctl -w user.max_user_namespaces=15000");
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Check::warn("user namespaces", "off for ordinary users (kernel.unprivileged_userns_clone = 0); root is unaffected", "sysctl -w kernel.unprivileged_userns_clone=1");
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Check::warn(
            "user namespaces",
            "restricted by AppArmor for ordinary users (Ubuntu 24.04's default); root is unaffected",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or run carton as root)",
        );
    }
    Check::pass("user namespaces", "allowed for ordinary users too")
}

fn kernel() -> Check {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version >= (5, 4) {
        Check::pass("kernel", format!("Linux {release} (5.4 or newer)"))
    } else if version >= (4, 18) {
        Check::warn("kernel", format!("Linux {release} is old: 5.4 is the first long-term kernel with the cgroup v2 freezer (5.2) and pidfds (5.3)"), "upgrade the kernel to 5.4 or newer")
    } else {
        Check::fail("kernel", format!("Linux {release} is too old for carton"), "upgrade the kernel to 5.4 or newer")
    }
}

/// Every namespace type, created for real in a child process.
fn namespaces() -> Vec<Check> {
    let kinds = [
        ("mnt", CloneFlags::CLONE_NEWNS, true),
        ("uts", CloneFlags::CLONE_NEWUTS, true),
        ("ipc", CloneFlags::CLONE_NEWIPC, true),
        ("pid", CloneFlags::CLONE_NEWPID, true),
        ("net", CloneFlags::CLONE_NEWNET, true),
        ("user", CloneFlags::CLONE_NEWUSER, false),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP, true),
    ];
    kinds
        .into_iter()
        .map(|(name, flag, required)| {
            let label = format!("{name} namespace");
            match in_child(|| unshare(flag).map_err(|e| e.desc().to_string())) {
                Ok(()) => Check::pass(label, format!("unshare({}) works", step01::container::flag_names(flag))),
                Err(why) if required => Check::fail(label, format!("cannot create one: {why}"), "use a kernel built with CONFIG_NAMESPACES and all namespace types"),
                Err(why) => Check::warn(label, format!("cannot create one: {why} (only rootless mode needs it)"), "see the user namespaces line above"),
            }
        })
        .collect()
}

/// Mount a real overlay in a scratch directory.
fn overlayfs() -> Check {
    let trial = || -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        let dir = |name| {
            let path = scratch.path().join(name);
            fs::create_dir(&path).map(|()| path).map_err(|e| e.to_string())
        };
        let (lower, upper, work, merged) = (dir("lower")?, dir("upper")?, dir("work")?, dir("merged")?);
        let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let result = in_child(|| {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("new mount namespace: {}", e.desc()))?;
            step01::rootfs::make_mounts_private(&step01::Explain::off()).map_err(|e| e.to_string())?;
            mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(options.as_str())).map_err(|e| e.desc().to_string())?;
            fs::write(merged.join("probe"), "x").map_err(|e| format!("cannot write through the overlay: {e}"))
        });
        result.and_then(|()| if upper.join("probe").exists() { Ok(()) } else { Err("a write did not reach the upper directory".into()) })
    };
    match trial() {
        Ok(()) => Check::pass("overlayfs", format!("an overlay mount works in {}", std::env::temp_dir().display())),
        Err(why) => Check::fail("overlayfs", format!("cannot mount an overlay: {why}"), "modprobe overlay (and keep the state root off another overlay)"),
    }
}

/// Chapter 1's whole root setup (mounts, devices, pivot_root) on a scratch directory.
/// pivot_root fails when / is the initramfs, as on some netboot and live systems.
fn root_setup() -> Check {
    let trial = || -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        in_child(|| {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("new mount namespace: {}", e.desc()))?;
            step01::rootfs::enter_root(scratch.path(), &step01::Explain::off()).map_err(|e| e.to_string())
        })
    };
    match trial() {
        Ok(()) => Check::pass("root setup", "chapter 1's mounts and pivot_root work"),
        Err(why) => Check::fail("root setup", format!("chapter 1's root setup fails: {why}"), "boot from a real root filesystem (pivot_root cannot work on an initramfs)"),
    }
}

fn cgroups() -> Check {
    let layout = step04::Layout::detect();
    let wanted = ["cpu", "memory", "pids"];
    let missing: Vec<&str> = wanted.iter().copied().filter(|c| !layout.controllers().iter().any(|have| have == c)).collect();
    match layout.mode {
        step04::layout::Mode::None => Check::fail("cgroups", "no cgroup filesystem is mounted", "mount cgroup2 on /sys/fs/cgroup (or boot with systemd)"),
        _ if !missing.is_empty() => Check::warn(
            "cgroups",
            format!("{layout}; missing controllers: {} (limits need them, chapter 4)", missing.join(" ")),
            "enable them (cgroup v2: echo +memory > /sys/fs/cgroup/cgroup.subtree_control)",
        ),
        _ => Check::pass("cgroups", layout.to_string()),
    }
}

fn firewall() -> Check {
    let Some(nft) = find_in_path("nft") else {
        return Check::fail(
            "firewall",
            "nft not found: the default bridge network needs nftables for its NAT rule (chapter 3)",
            "apt-get install nftables (or run containers with --network none or host)",
        );
    };
    let ruleset = std::process::Command::new(&nft).args(["list", "ruleset"]).output().map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default();
    if drops_forwarded_packets(&ruleset) {
        return Check::warn(
            "firewall",
            "a forward chain with policy drop (Docker and ufw install one): bridged containers reach the host, but nothing beyond it",
            "accept carton's subnet in that chain, e.g. for Docker: iptables -I DOCKER-USER -s 10.88.0.0/16 -j ACCEPT; iptables -I DOCKER-USER -d 10.88.0.0/16 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        );
    }
    Check::pass("firewall", format!("{} (for NAT and published ports, chapter 3)", nft.display()))
}

/// Whether some table of the ruleset drops forwarded packets unless a rule accepts them.
/// nftables runs every base chain of a hook: carton's own table cannot overrule a drop.
fn drops_forwarded_packets(ruleset: &str) -> bool {
    ruleset.lines().any(|line| line.contains("hook forward") && line.contains("policy drop;"))
}

fn busybox() -> Check {
    let found = step01::busybox::find_static_busybox().and_then(|path| step01::busybox::busybox_rootfs(&path).map(|b| (path, b.busybox_version)));
    match found {
        Ok((path, version)) => Check::pass("busybox-static", format!("{} ({version})", path.display())),
        Err(why) => Check::fail("busybox-static", why.to_string(), "apt-get install busybox-static"),
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| step01::process::DEFAULT_PATH.into());
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// Run `trial` in a forked child and report its result: whatever it does to its
/// namespaces dies with it.
fn in_child(trial: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (reader, writer) = pipe().map_err(|e| format!("pipe: {}", e.desc()))?;
    // Safety: doctor is single-threaded.
    match unsafe { fork() }.map_err(|e| format!("fork: {}", e.desc()))? {
        ForkResult::Child => {
            drop(reader);
            let code = match trial() {
                Ok(()) => 0,
                Err(why) => {
                    let _ = fs::File::from(writer).write_all(why.as_bytes());
                    1
                }
            };
            // Safety: leave the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut why = String::new();
            let _ = fs::File::from(reader).read_to_string(&mut why);
            match step01::process::wait_for_exit(child) {
                Ok(step01::ContainerExit::Exited(0)) => Ok(()),
                _ if !why.is_empty() => Err(why),
                other => Err(format!("the trial process ended abnormally: {other:?}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_chain_that_drops_is_noticed() {
        let docker = "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n";
        assert!(drops_forwarded_packets(docker));
        assert!(!drops_forwarded_packets(&docker.replace("policy drop", "policy accept")));
        assert!(!drops_forwarded_packets(""));
    }
}
