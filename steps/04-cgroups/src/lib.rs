//! # Step 04 — limits and measurements: cgroups
//!
//! Namespaces decide what a container can *see*; control groups decide how much it can
//! *use*. Every container gets a cgroup of its own, `carton/ID`, with the limits of
//! `docker run` written into its files ([`cgroup`]), and carton reads the same files to
//! measure it ([`stats`]).
//!
//! - [`layout`]: which of the three layouts this machine has (v1, hybrid, v2), read at
//!   run time; carton drives v1 or v2 accordingly.
//! - [`limits`]: Docker's flags and units, checked before anything exists.
//! - [`cgroup`]: make, fill, join, freeze, measure and remove one cgroup.
//! - the container joins its cgroup before it may go on, so nothing of it ever runs
//!   unlimited; then it gets a cgroup namespace, in which its own cgroup is `/`, and
//!   sees its own subtree, read-only, at `/sys/fs/cgroup`.

pub mod cgroup;
pub mod layout;
pub mod limits;
pub mod oci;
pub mod stats;
pub mod warm;

use std::path::Path;
use std::rc::Rc;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use step01::rootfs::mount_point;
use step01::{Action, Chapter, ContainerExit, ContainerSpec, Error, Explain, Hooks, Result};
use step02::Context;

pub use cgroup::Cgroup;
pub use layout::{Layout, Version};
pub use limits::Limits;
pub use stats::Stats;
pub use warm::warm_up;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 4, title: "limits: cgroups" };

/// How a container ended, with its last measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit: ContainerExit,
    /// Read just before the cgroup was removed: the CPU time, throttling, OOM kills...
    pub stats: Stats,
}

impl Finished {
    /// Whether the kernel's OOM killer killed a process of the container (Docker's `OOMKilled`).
    pub fn oom_killed(&self) -> bool {
        self.stats.oom_kills > 0
    }
}

/// Step 04's additions to the start sequence, around step 03's. (Shared with [`run`],
/// which measures and removes the cgroup once the container has ended.)
pub struct Resources<H: Hooks> {
    inner: H,
    cgroup: Option<Rc<Cgroup>>,
    layout: &'static Layout,
    namespace: CgroupNamespace,
}

/// The spec's `cgroup` namespace: a new one (carton's own containers), one joined by path,
/// or none listed (the container sees the host's cgroup tree, as runc does then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupNamespace {
    New,
    Join(std::path::PathBuf),
    Host,
}

impl<H: Hooks> Resources<H> {
    /// Put the container into `cgroup` (none: unmeasured), around the hooks `inner`, with
    /// the cgroup namespace the spec asks for.
    pub fn new(inner: H, cgroup: Option<Rc<Cgroup>>, layout: &'static Layout, namespace: CgroupNamespace) -> Resources<H> {
        Resources { inner, cgroup, layout, namespace }
    }

    /// The container's cgroup, for a later step that adds to it (the security step's device
    /// rules): the one at the spec's `cgroupsPath`, or carton's default path for the id.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_deref()
    }
}

impl<H: Hooks> Hooks for Resources<H> {
    fn inner(&self) -> Option<&dyn Hooks> {
        Some(&self.inner)
    }

    fn inner_mut(&mut self) -> Option<&mut dyn Hooks> {
        Some(&mut self.inner)
    }

    // ANCHOR: hooks
    fn birth_cgroup(&self) -> Option<std::os::fd::OwnedFd> {
        // On v2 the child is born in its cgroup; v1 has no such clone.
        self.cgroup.as_ref().and_then(|cgroup| cgroup.open_for_birth()).or_else(|| self.inner.birth_cgroup())
    }

    fn parent_after_clone(&mut self, child: Pid, explain: &Explain) -> Result<()> {
        // The child waits for "go": it has run nothing yet, and runs nothing unlimited.
        if let Some(cgroup) = &self.cgroup {
            cgroup.enter(child, explain)?;
        }
        self.inner.parent_after_clone(child, explain)
    }

    fn child_before_pivot(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        if self.cgroup.is_some() {
            match &self.namespace {
                CgroupNamespace::New => enter_cgroup_namespace(explain)?,
                CgroupNamespace::Join(path) => join_cgroup_namespace(path, explain)?,
                CgroupNamespace::Host => {}
            }
            mount_cgroups(rootfs, self.layout, explain)?;
        }
        self.inner.child_before_pivot(spec, rootfs, explain)
    }
    // ANCHOR_END: hooks
}

// ANCHOR: namespace
/// A cgroup namespace made now, after carton moved this process into its cgroup: that
/// cgroup becomes the namespace's `/`, so `/proc/self/cgroup` shows `/` and the paths
/// of the host's tree stay hidden.
fn enter_cgroup_namespace(explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "a cgroup namespace: the container's own cgroup becomes its /", "unshare(CLONE_NEWCGROUP)").shell("unshare --cgroup"));
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|errno| Error::syscall("cannot create a cgroup namespace", errno))
}

/// The cgroup namespace at `path` (another container's), joined instead of a new one.
fn join_cgroup_namespace(path: &Path, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, format!("join the cgroup namespace pinned at {}", path.display()), "setns(open(path), CLONE_NEWCGROUP)"));
    let file = std::fs::File::open(path).map_err(|e| Error::runtime(format!("cannot open the cgroup namespace {}: {e}", path.display())))?;
    nix::sched::setns(file, CloneFlags::CLONE_NEWCGROUP).map_err(|errno| Error::syscall(format!("cannot join the cgroup namespace {}", path.display()), errno))
}

/// The container's cgroups at `/sys/fs/cgroup`, read-only: mounted from inside the new
/// cgroup namespace, each tree starts at the container's own cgroup.
fn mount_cgroups(rootfs: &Path, layout: &Layout, explain: &Explain) -> Result<()> {
    let target = mount_point(rootfs, "sys/fs/cgroup")?;
    let shown = target.display();
    let read_only = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let failed = |what: &str, errno| Error::syscall(format!("cannot mount {what} at {shown}"), errno);
    if layout.version() == Some(Version::V2) {
        explain.step(|| {
            Action::new(CHAPTER, "show the container its own cgroup tree, read-only", format!("mount(\"cgroup2\", \"{shown}\", \"cgroup2\", MS_RDONLY, NULL)"))
                .shell(format!("mount -t cgroup2 -o ro cgroup2 {shown}"))
        });
        return mount(Some("cgroup2"), &target, Some("cgroup2"), read_only, None::<&str>).map_err(|errno| failed("cgroup2", errno));
    }
    // v1: a small tmpfs holding one mount per hierarchy, as on the host.
    explain.step(|| {
        Action::new(CHAPTER, "show the container its own cgroup hierarchies, read-only", format!("mount(\"tmpfs\", \"{shown}\") + one cgroup mount per hierarchy"))
            .shell(format!("mount -t tmpfs tmpfs {shown}; mount -t cgroup -o ro,memory cgroup {shown}/memory; ..."))
    });
    mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=755")).map_err(|errno| failed("tmpfs", errno))?;
    for hierarchy in &layout.hierarchies {
        let name = hierarchy.path.file_name().and_then(|n| n.to_str()).unwrap_or("unknown");
        let dir = mount_point(&target, name)?;
        let controllers = hierarchy.controllers.join(",");
        mount(Some("cgroup"), &dir, Some("cgroup"), read_only, Some(controllers.as_str())).map_err(|errno| failed(&controllers, errno))?;
        // cpu,cpuacct mounted together is also reachable as cpu and as cpuacct.
        for controller in hierarchy.controllers.iter().filter(|c| *c != name) {
            let _ = std::os::unix::fs::symlink(name, target.join(controller));
        }
    }
    mount(None::<&str>, &target, None::<&str>, MsFlags::MS_REMOUNT | read_only, Some("mode=755")).map_err(|errno| failed("tmpfs read-only", errno))
}
// ANCHOR_END: namespace

// ANCHOR: run
/// Run the container `spec` describes with steps 01–03 and this step's limits; wait for
/// it. Its cgroup exists while it runs, and is removed after its last measurement.
pub fn run(spec: &Spec, context: &Context) -> Result<Finished> {
    run_with(spec, context, |resources| resources)
}

/// [`run`], with this step's hooks wrapped by a later step's (`wrap` receives them).
pub fn run_with<H: Hooks>(spec: &Spec, context: &Context, wrap: impl FnOnce(Resources<step03::Networking<step02::Isolation>>) -> H) -> Result<Finished> {
    let layout = Layout::detected();
    oci::unapplied(spec, layout).iter().for_each(|warning| eprintln!("carton: warning: {warning}"));
    let cgroup = oci::create_cgroup(spec, context.id.as_str(), layout, &context.explain)?.map(|(cgroup, _path)| Rc::new(cgroup));
    let namespace = oci::cgroup_namespace(spec);
    let exit = step03::run_with(spec, context, |inner| wrap(Resources::new(inner, cgroup.clone(), layout, namespace)));
    let Some(cgroup) = cgroup else { return exit.map(|exit| Finished { exit, stats: Stats::default() }) };
    let stats = cgroup.stats();
    // Should a process linger past the 2 seconds `remove` waits, the cgroup is empty by
    // the next run, which collects it: the container's result is not lost for that.
    let _ = cgroup.remove();
    Ok(Finished { exit: exit?, stats: stats? })
}
// ANCHOR_END: run

/// How long an empty cgroup of carton's may stand before it counts as abandoned: far
/// longer than between making a cgroup and putting the container into it.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Remove every empty cgroup of carton's older than a minute: one a carton killed before
/// its container's state existed left, whatever state root it used. (Step 07's collector
/// removes the cgroups of the containers it collects by name.)
pub fn sweep_abandoned(layout: &Layout) {
    let Some(version) = layout.version() else { return };
    let probe = Cgroup::at(layout, version, "");
    let Some(parent) = probe.directories().first().map(|dir| dir.to_path_buf()) else { return };
    let Ok(entries) = std::fs::read_dir(&parent) else { return };
    for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|made| made.elapsed().is_ok_and(|age| age > ABANDONED_AFTER));
        let empty = std::fs::read_to_string(entry.path().join("cgroup.procs")).is_ok_and(|procs| procs.trim().is_empty());
        if old && empty {
            if let Some(id) = entry.file_name().to_str() {
                let _ = Cgroup::at(layout, version, id).remove();
            }
        }
    }
}
