//! The bench's lab: a network namespace and a mount namespace of its own (the default bridge,
//! the registry and every mount the peers make vanish with them), a throwaway directory with
//! carton's state, a busybox root filesystem and image, and the peers set up to run the same
//! image: runc and crun on one bundle, podman with storage of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Set by SIGINT, SIGTERM or SIGHUP: the bench stops at the next command it would start,
/// and its work directory, containers and peers are cleaned up on the way out.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch Ctrl-C and friends instead of dying with containers running.
pub fn catch_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(note_interrupt), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// An error once the bench was asked to stop.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: stopping, and removing what the bench made");
    }
    Ok(())
}

/// Where everything lives while the bench runs. Dropping it removes the containers it made.
pub struct Lab {
    pub work: tempfile::TempDir,
    /// The directory with `carton` and `carton-oci`.
    pub bin: PathBuf,
    /// carton's state root (with the busybox image).
    pub state: PathBuf,
    /// busybox as a plain directory, for the floor, `--rootfs` and the bundle.
    pub rootfs: PathBuf,
}

/// Leave the host's network and mounts alone: everything the bench makes (bridges, firewall
/// rules, veths, a registry's port, overlay mounts) lives in namespaces of its own, and goes
/// when the bench's last process does. Must run before any thread starts.
pub fn enter_namespaces() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("carton-bench needs root (it starts containers): run it with sudo");
    }
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).context("cannot make the bench's own network and mount namespaces")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).context("cannot make / private in the bench's mount namespace")?;
    run(Command::new("ip").args(["link", "set", "lo", "up"])).context("cannot bring up lo (install iproute2)")?;
    // A new network namespace starts with the host's IPv4 settings; the bridge wants this one.
    fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("cannot enable IPv4 forwarding in the bench's namespace")?;
    Ok(())
}

impl Lab {
    pub fn new(bin: PathBuf) -> Result<Lab> {
        for program in ["carton", "carton-oci"] {
            if !bin.join(program).is_file() {
                bail!("{} not found: build it first (cargo build --release), or pass --bin-dir", bin.join(program).display());
            }
        }
        let work = tempfile::Builder::new().prefix("carton-bench.").tempdir_in("/tmp").context("cannot make a work directory under /tmp")?;
        let lab = Lab { state: work.path().join("state"), rootfs: work.path().join("rootfs"), bin, work };
        run(lab.carton().args(["bootstrap", "busybox"])).context("cannot make the busybox image (install busybox-static)")?;
        run(lab.carton().arg("bootstrap").arg("busybox").arg(&lab.rootfs)).context("cannot make a busybox root filesystem")?;
        Ok(lab)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `carton --root STATE`.
    pub fn carton(&self) -> Command {
        let mut command = Command::new(self.bin.join("carton"));
        command.arg("--root").arg(&self.state);
        command
    }

    /// The same, as words for a timed row.
    pub fn carton_argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec![self.bin.join("carton").display().to_string(), "--root".into(), self.state.display().to_string()];
        argv.extend(args.iter().map(|arg| arg.to_string()));
        argv
    }

    /// A bundle made by `runc spec` (carton-oci's own `spec` where runc is missing), running
    /// `/bin/true` on the busybox directory, without a terminal.
    pub fn bundle(&self) -> Result<PathBuf> {
        let bundle = self.path("bundle");
        if bundle.join("config.json").exists() {
            return Ok(bundle);
        }
        fs::create_dir_all(&bundle)?;
        let spec_maker = which("runc").unwrap_or_else(|| self.bin.join("carton-oci"));
        run(Command::new(spec_maker).arg("spec").current_dir(&bundle))?;
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["root"] = serde_json::json!({ "path": self.rootfs, "readonly": false });
        fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(bundle)
    }

    /// Remove every container carton holds (detached ones from the density part too).
    pub fn remove_containers(&self) {
        let Ok(out) = self.carton().args(["ps", "-aq", "--no-trunc"]).output() else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        for chunk in ids.chunks(50) {
            let _ = self.carton().args(["rm", "-f"]).args(chunk).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove_containers();
        let _ = self.carton().args(["network", "prune"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        // carton keeps address leases per network namespace under /run/carton (chapter 3):
        // this namespace's go with it.
        if let Ok(netns) = fs::metadata("/proc/self/ns/net") {
            use std::os::unix::fs::MetadataExt;
            let _ = fs::remove_dir_all(format!("/run/carton/networks/netns-{}-{}", netns.dev(), netns.ino()));
        }
        // podman's storage stays mounted in the bench's mount namespace: unmount it (deepest
        // first) so that the work directory can go.
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).filter(|point| Path::new(point).starts_with(self.work.path())).collect();
        points.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in points {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|path| path.is_file())
}

/// Run to the end; an error names the command line and carries its last line of stderr.
pub fn run(command: &mut Command) -> Result<String> {
    let line = std::iter::once(command.get_program()).chain(command.get_args()).map(|word| word.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let out = command.stdin(Stdio::null()).output().with_context(|| format!("cannot run {line}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("no message");
        bail!("`{line}` failed ({}): {last}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A process's private memory (USS, as smem counts it): pages no other process maps, KiB.
pub fn uss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| text.lines().find_map(|line| line.strip_prefix(name)?.split_whitespace().next()?.parse::<u64>().ok());
    Some(field("Private_Clean:")? + field("Private_Dirty:")?)
}

/// MemAvailable of /proc/meminfo, KiB: what the whole machine can still give out.
pub fn mem_available_kib() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix("MemAvailable:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// podman with storage, run root and configuration of its own in the lab; runc as its
/// runtime (crun refuses hybrid cgroup hosts) and this machine's hard limits as its ulimits.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// podman, with the busybox image loaded from carton's store; Err says why not.
    pub fn new(lab: &Lab) -> Result<Podman> {
        which("podman").context("podman is not installed (apt-get install podman)")?;
        let dir = lab.path("podman");
        fs::create_dir_all(dir.join("tmp"))?;
        // What the lab notes give: within this machine's hard limits, never above.
        let nofile = hard_limit(libc::RLIMIT_NOFILE).min(20000);
        let nproc = hard_limit(libc::RLIMIT_NPROC).min(32768);
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\ntmp_dir = \"{dir}/tmp\"\nimage_copy_tmp_dir = \"{dir}/tmp\"\n\
                 [network]\nnetwork_config_dir = \"{dir}/networks\"\n",
                dir = dir.display()
            ),
        )?;
        fs::write(dir.join("storage.conf"), format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{dir}/root\"\nrunroot = \"{dir}/runroot\"\n", dir = dir.display()))?;
        // podman keeps a blob cache in /var/lib/containers whatever its storage: a tmpfs there
        // (in the bench's mount namespace only) keeps the host's untouched.
        if Path::new("/var/lib/containers").is_dir() {
            mount(Some("carton-bench"), "/var/lib/containers", Some("tmpfs"), MsFlags::empty(), Some("size=16m,mode=0700"))?;
        }
        let podman = Podman { dir };
        let archive = lab.path("busybox.tar");
        run(lab.carton().args(["save", "-o"]).arg(&archive).arg("busybox")).context("cannot save the busybox image for podman")?;
        run(podman.command().arg("load").arg("-i").arg(&archive)).context("podman cannot load the busybox image")?;
        Ok(podman)
    }

    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let command = self.command();
        let mut argv = vec!["env".to_string()];
        argv.extend(command.get_envs().filter_map(|(key, value)| Some(format!("{}={}", key.to_str()?, value?.to_str()?))));
        argv.push(command.get_program().to_string_lossy().into_owned());
        argv.extend(command.get_args().map(|arg| arg.to_string_lossy().into_owned()));
        argv.extend(args.iter().map(|arg| arg.to_string()));
        argv
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", self.dir.join("containers.conf")).env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"));
        command.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("runroot"));
        command
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all", "--force", "--time", "0"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        // podman's cgroupfs manager leaves its parent cgroups behind (empty ones only go).
        for hierarchy in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let parent = if hierarchy.path().join("libpod_parent").is_dir() { hierarchy.path().join("libpod_parent") } else { continue };
            let _ = fs::remove_dir(parent.join("conmon"));
            let _ = fs::remove_dir(&parent);
        }
        let _ = fs::remove_dir("/sys/fs/cgroup/libpod_parent/conmon");
        let _ = fs::remove_dir("/sys/fs/cgroup/libpod_parent");
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(resource, &mut limit) };
    limit.rlim_max
}
