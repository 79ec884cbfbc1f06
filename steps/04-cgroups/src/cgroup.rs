//! One container's cgroup: made, filled with limits, joined, measured, frozen, removed.
//!
//! A cgroup is a directory in the cgroup file system, and every operation is a file
//! operation: `mkdir` makes one, writing a number into one of its files sets a limit,
//! writing a PID into `cgroup.procs` moves that process in, reading a file measures,
//! `rmdir` removes it. The two versions differ in where the directories are and what
//! the files are called, and that is all [`settings`] and the small `match`es here decide.
//!
//! carton's cgroups are `carton/ID` under the root of each hierarchy (v1) or of the one
//! tree (v2), as Docker's cgroupfs driver uses `docker/ID`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use step01::{Action, Error, Explain, Result};

use crate::layout::{Layout, Version};
use crate::limits::{Limits, Swap};
use crate::stats::Stats;
use crate::CHAPTER;

/// The directory under each hierarchy's root that holds carton's cgroups.
pub(crate) const PARENT: &str = "carton";

/// The v2 controllers carton switches on for its cgroups.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// One value for one file of the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The controller the file belongs to: in v1, the hierarchy it lives in.
    pub controller: &'static str,
    pub file: std::borrow::Cow<'static, str>,
    pub value: String,
    /// Another file, and its value, for kernels that offer that one instead.
    pub alternative: Option<(&'static str, String)>,
    /// What it means when the kernel offers neither file.
    pub if_missing: IfMissing,
}

/// A setting whose file the kernel does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// An error: the limit was asked for and cannot be had.
    Refuse,
    /// Go on without it, as Docker does for the swap it adds by default.
    Skip,
}

fn set(controller: &'static str, file: impl Into<std::borrow::Cow<'static, str>>, value: impl ToString) -> Setting {
    Setting { controller, file: file.into(), value: value.to_string(), alternative: None, if_missing: IfMissing::Refuse }
}

// ANCHOR: settings
/// The files to write, in order, for `limits`, in the spelling of `version`.
pub fn settings(version: Version, limits: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    let v2 = version == Version::V2;
    if let Some(memory) = limits.memory {
        out.push(set("memory", if v2 { "memory.max" } else { "memory.limit_in_bytes" }, memory));
        // Docker counts memory and swap together; v2's file holds the swap alone.
        let swap = match (limits.effective_swap(), v2) {
            (Some(Swap::Unlimited), true) => Some("max".to_string()),
            (Some(Swap::Unlimited), false) => Some("-1".to_string()),
            (Some(Swap::Total(total)), true) => Some((total - memory).to_string()),
            (Some(Swap::Total(total)), false) => Some(total.to_string()),
            (None, _) => None,
        };
        if let Some(value) = swap {
            let file = if v2 { "memory.swap.max" } else { "memory.memsw.limit_in_bytes" };
            // Swap accounting is optional in the kernel: the default swap goes without it,
            // an explicit --memory-swap does not.
            let if_missing = if limits.memory_swap.is_some() { IfMissing::Refuse } else { IfMissing::Skip };
            out.push(Setting { if_missing, ..set("memory", file, value) });
        }
    }
    if let Some(reservation) = limits.memory_reservation {
        out.push(set("memory", if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" }, reservation));
    }
    // v2 has neither: the kernel decides swapping per system, and never pauses at the limit.
    if let Some(swappiness) = limits.memory_swappiness.filter(|_| !v2) {
        out.push(set("memory", "memory.swappiness", swappiness));
    }
    if limits.oom_kill_disable && !v2 {
        out.push(set("memory", "memory.oom_control", 1));
    }
    if let Some(cpus) = limits.cpus {
        if v2 {
            out.push(set("cpu", "cpu.max", format!("{} {}", cpus.quota_us, cpus.period_us)));
        } else {
            out.push(set("cpu", "cpu.cfs_period_us", cpus.period_us));
            out.push(set("cpu", "cpu.cfs_quota_us", cpus.quota_us));
        }
    }
    if let Some(shares) = limits.cpu_shares {
        out.push(if v2 { set("cpu", "cpu.weight", shares_to_weight(shares)) } else { set("cpu", "cpu.shares", shares) });
    }
    if let Some(cpus) = &limits.cpuset_cpus {
        out.push(set("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(pids) = limits.pids_limit {
        out.push(set("pids", "pids.max", pids));
    }
    if let Some(weight) = limits.blkio_weight {
        // Weights need an I/O scheduler that honours them: BFQ has its own file with
        // Docker's scale; v2's io.weight (for io.cost) has a scale of its own.
        out.push(if v2 {
            Setting { alternative: Some(("io.weight", format!("default {}", blkio_weight_to_io_weight(weight)))), ..set("io", "io.bfq.weight", weight) }
        } else {
            Setting { alternative: Some(("blkio.bfq.weight", weight.to_string())), ..set("blkio", "blkio.weight", weight) }
        });
    }
    // What an engine's spec may ask for beyond Docker's flags: network classes and
    // priorities (v1 only; v2 has no such controllers), huge page limits.
    if let Some(class_id) = limits.net_class_id {
        out.push(set("net_cls", "net_cls.classid", class_id));
    }
    for (interface, priority) in &limits.net_priorities {
        out.push(set("net_prio", "net_prio.ifpriomap", format!("{interface} {priority}")));
    }
    for (page_size, bytes) in &limits.hugepage_limits {
        let file = if v2 { format!("hugetlb.{page_size}.max") } else { format!("hugetlb.{page_size}.limit_in_bytes") };
        out.push(set("hugetlb", file, bytes));
    }
    for (rates, v1_file, v2_key) in [(&limits.device_read_bps, "blkio.throttle.read_bps_device", "rbps"), (&limits.device_write_bps, "blkio.throttle.write_bps_device", "wbps")] {
        for rate in rates {
            let device = format!("{}:{}", rate.major, rate.minor);
            out.push(if v2 { set("io", "io.max", format!("{device} {v2_key}={}", rate.bytes_per_second)) } else { set("blkio", v1_file, format!("{device} {}", rate.bytes_per_second)) });
        }
    }
    out
}
// ANCHOR_END: settings

// ANCHOR: conversions
/// v1's `cpu.shares` (2 to 262144, default 1024) to v2's `cpu.weight` (1 to 10000,
/// default 100), linearly, with crun's long-standing formula (`convert_shares_to_weight`).
/// Note that Docker's default 1024 becomes 39, not 100: the two scales' defaults do not
/// line up, which is why crun 1.23 and runc 1.3.2 (2025) moved to a curve on which
/// 1024 becomes 100. Chapter 4 shows both.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// v1's `blkio.weight` (10 to 1000) to v2's `io.weight` (1 to 10000), linearly, as crun does.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}
// ANCHOR_END: conversions

/// A container's cgroup, in one tree (v2) or in each v1 hierarchy it uses.
#[derive(Debug)]
pub struct Cgroup {
    pub version: Version,
    /// `controller name → directory`: every controller of v2 maps to the one directory.
    dirs: Vec<(String, PathBuf)>,
}

impl Cgroup {
    // ANCHOR: create
    /// Make the cgroup `carton/ID` and write `limits` into it. On failure nothing is left.
    pub fn create(layout: &Layout, id: &str, limits: &Limits, explain: &Explain) -> Result<Cgroup> {
        Cgroup::create_at(layout, &Path::new(PARENT).join(id), limits, explain)
    }

    /// [`Cgroup::create`] at any path below each hierarchy's root (the spec's
    /// `cgroupsPath`, as an engine gives it: `/carton/ID`, `/default/ID`, ...).
    pub fn create_at(layout: &Layout, path: &Path, limits: &Limits, explain: &Explain) -> Result<Cgroup> {
        let version = layout.version().ok_or_else(|| Error::runtime("this machine has no cgroup file system mounted; `carton doctor` explains what to mount"))?;
        let settings = settings(version, limits);
        let available = layout.controllers();
        if let Some(missing) = settings.iter().find(|s| !available.iter().any(|c| c == s.controller)) {
            return Err(Error::runtime(format!(
                "a limit needs the {} controller, which this machine's cgroups do not offer ({layout}); run without that limit, or enable the controller",
                missing.controller
            )));
        }
        let cgroup = Cgroup::at_path(layout, version, path);
        if version == Version::V2 {
            enable_v2_controllers(layout, path, &settings, explain)?;
        }
        let made = cgroup.make_directories(explain).and_then(|()| {
            for setting in &settings {
                let dir = cgroup.dir(setting.controller);
                let offered = std::iter::once((setting.file.as_ref(), &setting.value)).chain(setting.alternative.iter().map(|(file, value)| (*file, value)));
                match offered.map(|(file, value)| (dir.join(file), value)).find(|(file, _)| file.exists()) {
                    Some((file, value)) => write(&file, value, explain)?,
                    None if setting.if_missing == IfMissing::Skip => {}
                    None => return Err(missing(setting, dir)),
                }
            }
            Ok(())
        });
        match made {
            Ok(()) => Ok(cgroup),
            Err(error) => {
                let _ = cgroup.remove();
                Err(error)
            }
        }
    }
    // ANCHOR_END: create

    /// The cgroup `carton/ID` in `layout`, whether it exists or not. On v1 it is in every
    /// hierarchy, as runc's: the container sees each one from its own cgroup.
    pub fn at(layout: &Layout, version: Version, id: &str) -> Cgroup {
        Cgroup::at_path(layout, version, &Path::new(PARENT).join(id))
    }

    /// The cgroup at `path` below each hierarchy's root (a leading `/` is that root).
    pub fn at_path(layout: &Layout, version: Version, path: &Path) -> Cgroup {
        let name = path.strip_prefix("/").unwrap_or(path);
        let dirs = match version {
            Version::V2 => {
                let root = layout.v2_mount.clone().unwrap_or_default();
                V2_CONTROLLERS.iter().map(|c| (c.to_string(), root.join(name))).collect()
            }
            Version::V1 => layout.hierarchies.iter().flat_map(|h| h.controllers.iter().map(|c| (c.clone(), h.path.join(name)))).collect(),
        };
        Cgroup { version, dirs }
    }

    /// The directory holding `controller`'s files.
    pub fn dir(&self, controller: &str) -> &Path {
        self.dirs.iter().find(|(c, _)| c == controller).map(|(_, dir)| dir.as_path()).unwrap_or(Path::new("/nonexistent"))
    }

    /// Each directory once (v1 hierarchies mounted together share one, v2 has one).
    pub fn directories(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self.dirs.iter().map(|(_, dir)| dir.as_path()).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn make_directories(&self, explain: &Explain) -> Result<()> {
        for dir in self.directories() {
            explain.step(|| Action::new(CHAPTER, format!("create the container's cgroup {}", dir.display()), format!("mkdir(\"{}\")", dir.display())).shell(format!("mkdir -p {}", dir.display())));
            fs::create_dir_all(dir).map_err(|e| Error::runtime(format!("cannot create the cgroup {}: {e}", dir.display())))?;
        }
        if self.version == Version::V1 {
            // A new v1 cpuset has no CPUs and no memory nodes, and refuses processes until
            // it has both: copy them from the parent, top down, at each level still empty
            // (an engine's cgroupsPath may be several levels deep).
            let cpuset = self.dir("cpuset");
            let mut levels: Vec<&Path> = cpuset.ancestors().take_while(|dir| dir.join("cpuset.cpus").exists()).collect();
            levels.reverse();
            for dir in levels.into_iter().skip(1) {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if fs::read_to_string(dir.join(file)).unwrap_or_default().trim().is_empty() {
                        if let Ok(inherited) = fs::read_to_string(dir.parent().unwrap_or(dir).join(file)) {
                            write(&dir.join(file), inherited.trim(), explain)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ANCHOR: join
    /// Move process `pid` (and the children it will have) into the cgroup.
    pub fn join(&self, pid: Pid, explain: &Explain) -> Result<()> {
        for dir in self.directories() {
            write(&dir.join("cgroup.procs"), &pid.to_string(), explain)?;
        }
        Ok(())
    }
    // ANCHOR_END: join

    /// The v2 directory, opened, for a child to be born in it (`clone3` with
    /// `CLONE_INTO_CGROUP`, [`crate::Resources`]); `None` on v1, whose hierarchies clone3
    /// cannot name.
    pub fn open_for_birth(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.version != Version::V2 {
            return None;
        }
        let dir = *self.directories().first()?;
        fs::File::options().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir).ok().map(Into::into)
    }

    /// Put process `pid` into the cgroup: nothing to do when it was born there (v2, clone3
    /// with [`Cgroup::open_for_birth`]'s directory), else [`Cgroup::join`].
    pub fn enter(&self, pid: Pid, explain: &Explain) -> Result<()> {
        if self.version == Version::V2 && self.processes().contains(&pid) {
            explain.step(|| {
                let dir = self.directories().first().map_or(String::new(), |dir| dir.display().to_string());
                Action::new(CHAPTER, format!("the process was born in its cgroup {dir}: nothing to move"), format!("clone3(CLONE_INTO_CGROUP, open(\"{dir}\"))"))
            });
            return Ok(());
        }
        self.join(pid, explain)
    }

    /// How many processes of the cgroup the kernel's OOM killer has killed.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V2 => ("memory.events", "oom_kill"),
            Version::V1 => ("memory.oom_control", "oom_kill"),
        };
        crate::stats::keyed(&fs::read_to_string(self.dir("memory").join(file)).unwrap_or_default(), key).unwrap_or(0)
    }

    /// The processes in the cgroup, as host PIDs (what `docker top` lists).
    pub fn processes(&self) -> Vec<Pid> {
        let procs = self.directories().first().and_then(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok()).unwrap_or_default();
        procs.split_whitespace().filter_map(|pid| pid.parse().ok()).map(Pid::from_raw).collect()
    }

    /// The container's current numbers.
    pub fn stats(&self) -> Result<Stats> {
        Stats::read(self)
    }

    // ANCHOR: freeze
    /// Stop every process of the cgroup where it stands (`docker pause`), or let them go on.
    pub fn set_frozen(&self, frozen: bool, explain: &Explain) -> Result<()> {
        let (file, value, done_file, done) = match (self.version, frozen) {
            (Version::V2, true) => ("cgroup.freeze", "1", "cgroup.events", "frozen 1"),
            (Version::V2, false) => ("cgroup.freeze", "0", "cgroup.events", "frozen 0"),
            (Version::V1, true) => ("freezer.state", "FROZEN", "freezer.state", "FROZEN"),
            (Version::V1, false) => ("freezer.state", "THAWED", "freezer.state", "THAWED"),
        };
        let dir = match self.version {
            Version::V1 => self.dir("freezer"),
            Version::V2 => self.directories()[0],
        };
        write(&dir.join(file), value, explain)?;
        // Freezing takes a moment: each process stops at its next return to user space.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !fs::read_to_string(dir.join(done_file)).unwrap_or_default().lines().any(|line| line.trim() == done) {
            if Instant::now() > deadline {
                if frozen {
                    let _ = self.set_frozen(false, explain); // not left half-frozen
                }
                return Err(Error::runtime(format!("the cgroup {} did not become {done:?} in 2 seconds", dir.display())));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
    // ANCHOR_END: freeze

    /// Whether the cgroup is frozen (paused), as the kernel says.
    pub fn is_frozen(&self) -> bool {
        match self.version {
            Version::V1 => fs::read_to_string(self.dir("freezer").join("freezer.state")).is_ok_and(|state| state.trim() == "FROZEN"),
            Version::V2 => fs::read_to_string(self.directories()[0].join("cgroup.events")).is_ok_and(|events| events.lines().any(|line| line.trim() == "frozen 1")),
        }
    }

    /// Remove the cgroup's directories, and any cgroup made inside them. The kernel
    /// refuses while a process is inside, and the last ones may take a moment to go after
    /// the container's PID 1 has ended.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for dir in self.directories().into_iter().flat_map(|dir| depth_first(dir.to_path_buf())) {
            let dir = dir.as_path();
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    // A fake cgroupfs in tests holds ordinary files, which rmdir cannot remove.
                    Err(_) if is_plain_directory(dir) => {
                        let _ = fs::remove_dir_all(dir);
                        break;
                    }
                    Err(e) if Instant::now() > deadline => return Err(Error::runtime(format!("cannot remove the cgroup {}: {e}", dir.display()))),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        Ok(())
    }

    /// End every process in the cgroup: those of a container whose carton was killed and
    /// that did not die with it. v2 has `cgroup.kill`; on v1, freeze, kill each, thaw.
    pub fn kill_all(&self, explain: &Explain) {
        let kill_file = self.directories().first().map(|dir| dir.join("cgroup.kill"));
        if let Some(file) = kill_file.filter(|file| self.version == Version::V2 && file.exists()) {
            let _ = write(&file, "1", explain);
            return;
        }
        let frozen = self.set_frozen(true, explain).is_ok();
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if frozen {
            let _ = self.set_frozen(false, explain);
        }
    }
}

/// `dir` and every directory below it, the deepest first: the order rmdir needs.
fn depth_first(dir: PathBuf) -> Vec<PathBuf> {
    let mut order = Vec::new();
    if let Ok(entries) = fs::read_dir(&dir) {
        for child in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            order.extend(depth_first(child.path()));
        }
    }
    order.push(dir);
    order
}

/// The error for a setting whose file the kernel does not offer in `dir`.
fn missing(setting: &Setting, dir: &Path) -> Error {
    let files = std::iter::once(setting.file.as_ref()).chain(setting.alternative.as_ref().map(|(file, _)| *file)).collect::<Vec<_>>().join(" or ");
    let why = match setting.controller {
        "blkio" | "io" => "I/O weights need the BFQ scheduler (or io.cost) on the disk; run without --blkio-weight",
        "memory" => "this kernel does not account swap (boot it with swapaccount=1, or run without --memory-swap)",
        _ => "this kernel's cgroups do not have it; run without that limit",
    };
    Error::runtime(format!("the kernel offers no {files} in {}: {why}", dir.display()))
}

/// Whether `dir` is on an ordinary file system rather than a cgroup file system.
fn is_plain_directory(dir: &Path) -> bool {
    const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    match nix::sys::statfs::statfs(dir) {
        Ok(fs) => {
            let kind = fs.filesystem_type().0;
            kind != CGROUP_SUPER_MAGIC && kind != CGROUP2_SUPER_MAGIC
        }
        Err(_) => false,
    }
}

/// v2 hands controllers down the tree: a cgroup can use a controller only if its parent
/// lists it in `cgroup.subtree_control`. Switch on carton's at the root and in each
/// cgroup on the way down to the container's (`carton/`).
fn enable_v2_controllers(layout: &Layout, path: &Path, settings: &[Setting], explain: &Explain) -> Result<()> {
    let root = layout.v2_mount.clone().unwrap_or_default();
    let relative = path.strip_prefix("/").unwrap_or(path);
    let ancestors: Vec<PathBuf> = relative.ancestors().skip(1).map(|a| root.join(a)).collect();
    for dir in ancestors.iter().rev() {
        if !dir.exists() {
            explain.step(|| Action::new(CHAPTER, format!("create carton's part of the tree, {}", dir.display()), format!("mkdir(\"{}\")", dir.display())).shell(format!("mkdir {}", dir.display())));
            match fs::create_dir(dir) {
                // Another carton starting at the same moment made it first.
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::runtime(format!("cannot create the cgroup {}: {e}", dir.display()))),
                _ => {}
            }
        }
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for controller in V2_CONTROLLERS.iter().filter(|c| offered.split_whitespace().any(|o| o == **c)) {
            if enabled.split_whitespace().any(|e| e == *controller) {
                continue;
            }
            let written = write(&dir.join("cgroup.subtree_control"), &format!("+{controller}"), explain);
            // Needed for a limit: an error. Only for measuring: go on without it.
            if written.is_err() && settings.iter().any(|s| s.controller == *controller) {
                return written;
            }
        }
    }
    Ok(())
}

// ANCHOR: write
/// `echo VALUE > FILE`, shown with `--explain`. The kernel checks the value when it is
/// written: a bad one is an error from write(2), reported with the file's name. Each
/// write is one command to the kernel, not file content: writing `io.max` twice sets two
/// devices. (Appending, rather than truncating, lets the plain files of a test's
/// imitation record every write the same way.)
pub fn write(file: &Path, value: &str, explain: &Explain) -> Result<()> {
    let shown = file.display();
    explain.step(|| Action::new(CHAPTER, format!("write {value} to {shown}"), format!("write(open(\"{shown}\"), \"{value}\")")).shell(format!("echo {value} > {shown}")));
    // Never created: a cgroup's files are the kernel's, and a missing one is an error.
    let written = fs::OpenOptions::new().append(true).open(file).and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()));
    written.map_err(|e| Error::runtime(format!("cannot write {value:?} to {shown}: {e}")))
}
// ANCHOR_END: write

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{CpuQuota, DeviceRate};

    fn all_limits() -> Limits {
        Limits {
            memory: Some(32 << 20),
            memory_swap: Some(Swap::Total(48 << 20)),
            cpus: Some(CpuQuota { quota_us: 20_000, period_us: 100_000 }),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(64),
            blkio_weight: Some(300),
            device_read_bps: vec![DeviceRate { major: 8, minor: 0, bytes_per_second: 1 << 20 }],
            device_write_bps: vec![DeviceRate { major: 8, minor: 0, bytes_per_second: 2 << 20 }],
            memory_reservation: Some(16 << 20),
            memory_swappiness: Some(10),
            oom_kill_disable: true,
            ..Limits::default()
        }
    }

    fn files(settings: &[Setting]) -> Vec<String> {
        let alternative = |s: &Setting| s.alternative.as_ref().map_or(String::new(), |(file, value)| format!(" (or {file} = {value})"));
        settings.iter().map(|s| format!("{}/{} = {}{}", s.controller, s.file, s.value, alternative(s))).collect()
    }

    #[test]
    fn v1_spelling() {
        assert_eq!(
            files(&settings(Version::V1, &all_limits())),
            [
                "memory/memory.limit_in_bytes = 33554432",
                "memory/memory.memsw.limit_in_bytes = 50331648",
                "memory/memory.soft_limit_in_bytes = 16777216",
                "memory/memory.swappiness = 10",
                "memory/memory.oom_control = 1",
                "cpu/cpu.cfs_period_us = 100000",
                "cpu/cpu.cfs_quota_us = 20000",
                "cpu/cpu.shares = 512",
                "cpuset/cpuset.cpus = 0",
                "pids/pids.max = 64",
                "blkio/blkio.weight = 300 (or blkio.bfq.weight = 300)",
                "blkio/blkio.throttle.read_bps_device = 8:0 1048576",
                "blkio/blkio.throttle.write_bps_device = 8:0 2097152",
            ]
        );
    }

    #[test]
    fn v2_spelling() {
        assert_eq!(
            files(&settings(Version::V2, &all_limits())),
            [
                "memory/memory.max = 33554432",
                "memory/memory.swap.max = 16777216",
                "memory/memory.low = 16777216",
                "cpu/cpu.max = 20000 100000",
                "cpu/cpu.weight = 20",
                "cpuset/cpuset.cpus = 0",
                "pids/pids.max = 64",
                "io/io.bfq.weight = 300 (or io.weight = default 2930)",
                "io/io.max = 8:0 rbps=1048576",
                "io/io.max = 8:0 wbps=2097152",
            ]
        );
    }

    #[test]
    fn unlimited_swap_and_dockers_default_swap() {
        let unlimited = Limits { memory: Some(1 << 30), memory_swap: Some(Swap::Unlimited), ..Limits::default() };
        assert_eq!(files(&settings(Version::V2, &unlimited))[1], "memory/memory.swap.max = max");
        assert_eq!(files(&settings(Version::V1, &unlimited))[1], "memory/memory.memsw.limit_in_bytes = -1");
        let default = Limits { memory: Some(1 << 30), ..Limits::default() };
        assert_eq!(files(&settings(Version::V2, &default))[1], "memory/memory.swap.max = 1073741824");
        // The default swap goes without swap accounting; an explicit --memory-swap does not.
        assert_eq!(settings(Version::V2, &default)[1].if_missing, IfMissing::Skip);
        assert_eq!(settings(Version::V2, &unlimited)[1].if_missing, IfMissing::Refuse);
    }

    #[test]
    fn weight_conversions_match_crun() {
        assert_eq!([shares_to_weight(2), shares_to_weight(1024), shares_to_weight(262_144)], [1, 39, 10000]);
        assert_eq!([blkio_weight_to_io_weight(10), blkio_weight_to_io_weight(500), blkio_weight_to_io_weight(1000)], [1, 4950, 10000]);
    }
}
