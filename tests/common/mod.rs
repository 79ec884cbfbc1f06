//! Helpers shared by the end-to-end tests. These tests run the real `carton` binary
//! and need root: they create mount namespaces and mount file systems.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Panic with a clear message unless running as root, so a non-root run fails loudly
/// instead of passing without testing anything.
pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it creates namespaces and mounts): run `sudo -E cargo test` or run it as root");
}

pub fn carton() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carton"))
}

/// A state root holding the image busybox:latest, made by `carton bootstrap busybox`.
pub fn with_busybox_image() -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let out = carton().env("CARTON_ROOT", state.path()).args(["bootstrap", "busybox"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("made the image busybox:latest ("), "{}", stdout(&out));
    state
}

/// The directory holding the workspace's binaries (`carton`, `step01-chroot`, ...).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_carton")).parent().unwrap().to_path_buf()
}

/// A fresh busybox root filesystem in `dir/rootfs`, made by `carton bootstrap busybox`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let out = carton().args(["bootstrap", "busybox"]).arg(&rootfs).output().unwrap();
    assert!(out.status.success(), "bootstrap failed: {}", String::from_utf8_lossy(&out.stderr));
    rootfs
}

/// A temporary directory holding a fresh busybox root filesystem (removed on drop).
pub fn fresh_rootfs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    (dir, rootfs)
}

/// `carton run --rm --network none --rootfs ROOTFS`, ready for more arguments. Tests that
/// are not about the network never touch the host's: the default network, the bridge,
/// would create `carton0` and NAT rules on the test machine. Network tests give `--network`
/// again (the last one counts, as with Docker) inside a throwaway namespace. `--rm`: what
/// these tests run is not kept (the lifecycle tests keep theirs).
pub fn carton_run(rootfs: &Path) -> Command {
    let mut command = carton();
    command.args(["run", "--rm", "--network", "none", "--rootfs"]).arg(rootfs);
    command
}

/// `carton run --rm --network none IMAGE...` with its state (and so its images) in `state`.
pub fn carton_run_image(state: &Path) -> Command {
    let mut command = carton();
    command.env("CARTON_ROOT", state).args(["run", "--rm", "--network", "none"]);
    command
}

/// [`carton_run`] as a shell command line, for tests that run it from a script.
pub fn carton_run_line(rootfs: &Path) -> String {
    format!("{} run --rm --network none --rootfs {}", env!("CARGO_BIN_EXE_carton"), rootfs.display())
}

/// Run `carton run --rootfs ROOTFS [extra...] -- ARGS` and collect its output.
pub fn run_in(rootfs: &Path, extra: &[&str], args: &[&str]) -> Output {
    carton_run(rootfs).args(extra).arg("--").args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The host's mount table without the per-mount ids, which is what must not change.
/// Network namespaces pinned on the host (`nsfs`) are left out: tests running at the
/// same time pin their containers' there; a test checks its own state root for them.
pub fn host_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|line| !line.contains(" - nsfs ")).map(|line| line.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")).collect()
}

/// A shell line that gives a new network namespace what a fresh machine's has. A new
/// namespace inherits the host's IPv4 settings (`net.core.devconf_inherit_init_net` = 0):
/// on a host that forwards IPv4, as every machine running Docker does, `ip_forward` would
/// already be 1 there, and a test or a book page that relies on "off until carton switches it
/// on" would fail on that host only. So each throwaway namespace sets what it relies on.
pub const FRESH_NETNS_SETUP: &str = "ip link set lo up && echo 0 > /proc/sys/net/ipv4/ip_forward";

/// The bridge network's state of the network namespace a shell runs in (carton keeps it
/// per namespace, under /run; see step 03's `network_state`).
pub const NETWORK_STATE: &str = "/run/carton/networks/netns-$(stat -L -c %d /proc/self/ns/net)-$(stat -L -c %i /proc/self/ns/net)/carton0";

/// A shell function for the scripts of [`in_throwaway_netns`]: `listening NAME PORT` waits (at
/// most 20 s) until container NAME's server listens on PORT, seen from inside by busybox
/// netstat (the published port's relay accepts earlier, so a request could come too soon).
const LISTENING: &str =
    "listening() { for i in $(seq 200); do carton exec \"$1\" netstat -ltn 2>/dev/null | grep -q \":$2 \" && return 0; sleep 0.1; done; echo \"$1 never listened on $2\" >&2; return 1; }";

/// Run `script` with `sh` inside a fresh network namespace (loopback up, IPv4 forwarding
/// off: [`FRESH_NETNS_SETUP`]) that disappears when the script ends, with carton on PATH and
/// its state in `state`. Bridges, veths and traffic stay inside that namespace: the host's
/// network is never touched.
pub fn in_throwaway_netns(state: &Path, script: &str) -> Output {
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    Command::new("unshare")
        .args(["--net", "--", "sh", "-c"])
        .arg(format!("{FRESH_NETNS_SETUP} || exit 125\n{LISTENING}\n{script}\nstatus=$?\nrm -rf \"$(dirname {NETWORK_STATE})\"\nrmdir /run/carton/networks /run/carton 2>/dev/null\nexit $status"))
        .env("PATH", path)
        .env("CARTON_ROOT", state)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The host pids of the children of process `parent`.
pub fn children(parent: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default().split_whitespace().filter_map(|pid| pid.parse().ok().map(nix::unistd::Pid::from_raw)).collect()
}

/// The host pid of the container's PID 1: carton's child in a mount namespace of its own
/// (carton's other child, for a moment, is the go-between of chapter 4's warm-up of the cgroup lock),
/// waited for in case carton has only just been started (30 s at most: the cgroup v2 VM
/// emulates its CPU and is slow).
pub fn container_init(carton: &std::process::Child) -> nix::unistd::Pid {
    let carton = nix::unistd::Pid::from_raw(carton.id() as i32);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mount_ns = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    loop {
        let own = mount_ns(carton);
        if let Some(init) = children(carton).into_iter().find(|child| own.is_some() && mount_ns(*child).is_some_and(|ns| Some(ns) != own)) {
            return init;
        }
        assert!(std::time::Instant::now() < deadline, "carton {carton} started no container");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The cgroup interface carton drives on this machine (hybrid hosts count as v1), checked
/// against the one this run expects: CI runs the cgroup tests here and again in a pure v2 VM
/// (tests/vm/), which sets CARTON_EXPECT_CGROUP=v2, so a VM that came up in another mode fails
/// loudly instead of testing the same path twice. Tests whose files or numbers differ by
/// design (v1's blkio and memsw, v2's io.max and memory.swap.max) assert each mode's own.
pub fn cgroup_version() -> Option<step04::Version> {
    let layout = step04::Layout::detect();
    let found = layout.version();
    if let Ok(expected) = std::env::var("CARTON_EXPECT_CGROUP") {
        let expected = match expected.as_str() {
            "v1" => step04::Version::V1,
            "v2" => step04::Version::V2,
            other => panic!("CARTON_EXPECT_CGROUP={other}: write v1 or v2"),
        };
        assert_eq!(found, Some(expected), "this run expects cgroup {expected:?}, but this machine's layout is {layout:?}");
    }
    found
}

/// `carton create ARGS` then `carton start ID` with the state in `state`: the container's
/// id as printed.
pub fn create_and_start(state: &Path, args: &[&str]) -> String {
    let created = carton().env("CARTON_ROOT", state).arg("create").args(args).stdin(Stdio::null()).output().unwrap();
    assert!(created.status.success(), "create: {}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    let started = carton().env("CARTON_ROOT", state).args(["start", &id[..12]]).stdin(Stdio::null()).output().unwrap();
    assert!(started.status.success(), "start: {}", stderr(&started));
    id
}

/// `text` as a regular expression that matches it literally (for insta's filters).
pub fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '/' { c.to_string() } else { format!("\\{c}") }).collect()
}

/// Wait up to 20 s for `check` to hold, then say whether it did: for what a container does
/// "soon" (a slow machine, or the emulated CPU of the cgroup v2 VM, may take seconds).
pub fn eventually(check: impl FnMut() -> bool) -> bool {
    eventually_within(std::time::Duration::from_secs(20), check)
}

pub fn eventually_within(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}
