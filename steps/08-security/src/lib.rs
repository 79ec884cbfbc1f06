//! # Step 08 — security: what a root process in a container may not do
//!
//! The container's process is root, and until now it was root with every power root has on
//! the host: it could load kernel modules, mount the host's disk, change the host's kernel
//! settings. This step takes those powers away, as the OCI spec describes and runc does:
//!
//! - [`capabilities`]: the five capability sets of `process.capabilities` (the bounding set
//!   cut before the user switch, the others set after it);
//! - [`paths`]: `linux.maskedPaths` hidden, `linux.readonlyPaths` read-only;
//! - [`sysctl`]: `linux.sysctl`, only for settings of the container's own namespaces;
//! - [`devices`]: the device nodes of `linux.devices`;
//! - [`device_rules`]: `linux.resources.devices`, which nodes may be opened (the cgroup);
//! - [`seccomp`]: `linux.seccomp`, a filter on the system calls themselves;
//! - [`docker`]: what Docker's defaults and flags (`--cap-add`, `--privileged`,
//!   `--security-opt`, `--device`, `--read-only`) write into a spec.
//!
//! They plug into the start sequence as one more layer of hooks, [`Security`], around the
//! hooks of steps 02 and 04, and into `exec` through [`step07::exec::ExecSecurity`]. What
//! carton cannot apply (user namespaces' id mappings, until the rootless chapter) is warned
//! about ([`unapplied`]), never silently obeyed in part.

pub mod capabilities;
pub mod device_rules;
pub mod devices;
pub mod docker;
pub mod exe;
pub mod paths;
pub mod probe;
pub mod seccomp;
pub mod sysctl;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use step01::container::Hooks;
use step01::{Chapter, ContainerSpec, Error, Explain, Result};

pub use capabilities::{CapSet, Capabilities};

pub const CHAPTER: Chapter = Chapter { number: 8, title: "Security: capabilities, seccomp, masked paths, devices" };

// ANCHOR: security
/// The security settings of one container, applied around the hooks of the steps before.
pub struct Security {
    inner: step07::StepHooks,
    /// `None`: the spec gives no `process.capabilities`, and the process keeps root's.
    capabilities: Option<Capabilities>,
    masked: Vec<String>,
    readonly: Vec<String>,
    sysctl: Vec<(String, String)>,
    devices: Vec<oci_spec::runtime::LinuxDevice>,
    /// `linux.resources.devices`, put on the container's cgroup (step 04's).
    device_rules: Vec<oci_spec::runtime::LinuxDeviceCgroup>,
    seccomp: Option<seccomp::Filter>,
    /// `process.noNewPrivileges`: decides when the seccomp filter is loaded.
    no_new_privileges: bool,
}

impl Hooks for Security {
    fn inner(&self) -> Option<&dyn Hooks> {
        Some(&self.inner)
    }

    fn inner_mut(&mut self) -> Option<&mut dyn Hooks> {
        Some(&mut self.inner)
    }

    /// The new root furnished, before pivot_root: the spec's device nodes, then the device
    /// rules on the container's cgroup (as runc sets them once the root is ready: its own
    /// nodes are made by then). The host's cgroup file system is still in reach here.
    fn child_before_pivot(&self, spec: &ContainerSpec, rootfs: &std::path::Path, explain: &Explain) -> Result<()> {
        self.inner.child_before_pivot(spec, rootfs, explain)?;
        self.devices.iter().try_for_each(|device| devices::make(rootfs, device, explain))?;
        if self.device_rules.is_empty() {
            return Ok(());
        }
        let cgroup = self.inner.cgroup().ok_or_else(|| Error::runtime("linux.resources.devices needs cgroups, and this machine has none mounted"))?;
        device_rules::restrict(cgroup, &self.device_rules, explain)
    }

    /// After pivot_root, still root with every capability: the kernel settings (while
    /// `/proc/sys` may be written), the read-only and masked paths, the bounding set.
    fn child_after_root(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        self.inner.child_after_root(spec, explain)?;
        for (key, value) in &self.sysctl {
            sysctl::write(key, value, explain)?;
        }
        for path in &self.readonly {
            paths::make_read_only(path, explain)?;
        }
        for path in &self.masked {
            paths::mask(path, explain)?;
        }
        if let Some(caps) = &self.capabilities {
            capabilities::drop_bounding(caps.bounding, explain)?;
        }
        // Without no_new_privs the kernel takes a filter only from a process with
        // CAP_SYS_ADMIN: now, before the user switch and capset take it away (runc's order).
        match &self.seccomp {
            Some(filter) if !self.no_new_privileges => seccomp::load(filter, explain),
            _ => Ok(()),
        }
    }

    /// After the user switch, just before the command: the capability sets, then (with
    /// no_new_privs) the seccomp filter, as late as possible: the fewer calls carton still
    /// makes under it, the fewer a profile must allow.
    fn child_after_user(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        self.inner.child_after_user(spec, explain)?;
        if let Some(caps) = &self.capabilities {
            capabilities::apply(caps, explain)?;
        }
        if let Ok(program) = spec.process.find_program() {
            exe::refuse_own_binary(&program)?;
        }
        match &self.seccomp {
            Some(filter) if self.no_new_privileges => seccomp::load(filter, explain),
            _ => Ok(()),
        }
    }
}
// ANCHOR_END: security

/// What a caller is told about the spec's security settings before the container starts.
pub struct Reading {
    pub security: Security,
    /// Parts of the spec that are not applied: each a line for the log and stderr.
    pub warnings: Vec<String>,
}

// ANCHOR: from_oci
/// Read this step's part of `spec` around `inner`, the hooks of the steps before.
/// A sysctl of the host is refused here, before anything is made.
pub fn from_oci(spec: &Spec, inner: step07::StepHooks) -> Result<Reading> {
    let process = spec.process().as_ref();
    let linux = spec.linux().as_ref();
    let mut warnings = unapplied(spec);
    let capabilities = match process.and_then(|p| p.capabilities().as_ref()) {
        None => None,
        Some(caps) => {
            let (reachable, left_out) = Capabilities::from_oci(caps)?.within_reach();
            warnings.extend(left_out);
            Some(reachable)
        }
    };
    let own = own_namespaces(spec);
    let mut settings: Vec<(String, String)> = linux.and_then(|l| l.sysctl().clone()).unwrap_or_default().into_iter().collect();
    settings.sort();
    for (key, _) in &settings {
        sysctl::check(key, own)?;
    }
    let list = |paths: Option<&Vec<String>>| paths.cloned().unwrap_or_default();
    let security = Security {
        inner,
        capabilities,
        masked: list(linux.and_then(|l| l.masked_paths().as_ref())),
        readonly: list(linux.and_then(|l| l.readonly_paths().as_ref())),
        sysctl: settings,
        devices: linux.and_then(|l| l.devices().clone()).unwrap_or_default(),
        device_rules: device_rules::with_runtimes_own(linux.and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().clone()).unwrap_or_default()),
        seccomp: linux.and_then(|l| l.seccomp().as_ref()).map(seccomp::Filter::from_oci).transpose()?,
        no_new_privileges: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
    };
    Ok(Reading { security, warnings })
}
// ANCHOR_END: from_oci

/// The namespaces the container does not share with the host: each one the spec lists,
/// made new or joined by path (another container's).
fn own_namespaces(spec: &Spec) -> CloneFlags {
    use oci_spec::runtime::LinuxNamespaceType as Kind;
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    namespaces.iter().fold(CloneFlags::empty(), |own, namespace| {
        own | match namespace.typ() {
            Kind::Network => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            _ => CloneFlags::empty(),
        }
    })
}

/// The parts of `spec` carton reads but cannot apply yet, each named: user namespaces'
/// id mappings (the rootless chapter).
pub fn unapplied(spec: &Spec) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(linux) = spec.linux() else { return warnings };
    if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
        warnings.push("linux.uidMappings/gidMappings are not applied yet (no user namespace): ids inside are the host's".to_string());
    }
    warnings
}

// ANCHOR: exec
/// What an exec'd process gets: the capabilities of the spec's (or exec's) `process` and
/// the container's seccomp filter, in the same order as the container's own process.
pub struct ExecPolicy {
    pub capabilities: Option<Capabilities>,
    pub seccomp: Option<seccomp::Filter>,
    pub no_new_privileges: bool,
}

impl ExecPolicy {
    /// The policy of the container `spec` describes, with `capabilities` for the process.
    pub fn new(spec: &Spec, capabilities: Option<Capabilities>, no_new_privileges: bool) -> Result<ExecPolicy> {
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()).map(seccomp::Filter::from_oci).transpose()?;
        Ok(ExecPolicy { capabilities, seccomp, no_new_privileges })
    }
}

impl step07::exec::ExecSecurity for ExecPolicy {
    fn before_user(&self, explain: &Explain) -> Result<()> {
        if let Some(caps) = &self.capabilities {
            capabilities::drop_bounding(caps.bounding, explain)?;
        }
        match &self.seccomp {
            Some(filter) if !self.no_new_privileges => seccomp::load(filter, explain),
            _ => Ok(()),
        }
    }

    fn after_user(&self, explain: &Explain) -> Result<()> {
        if let Some(caps) = &self.capabilities {
            capabilities::apply(caps, explain)?;
        }
        match &self.seccomp {
            Some(filter) if self.no_new_privileges => seccomp::load(filter, explain),
            _ => Ok(()),
        }
    }
}
// ANCHOR_END: exec
