//! Step 04's part of the OCI runtime spec: `linux.resources` and `linux.cgroupsPath`.
//!
//! `carton run`'s flags are parsed once, in Docker's units ([`crate::limits`]), and written
//! here in the spec's: bytes, CFS microseconds, shares, weights, device numbers. The
//! runtime reads them back into [`Limits`], which [`crate::Cgroup::create`] applies.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDevice, LinuxThrottleDeviceBuilder, Spec,
};
use step01::{Error, Explain, Result};

use crate::limits::{CpuQuota, DeviceRate, Limits, Swap};
use crate::{Cgroup, Layout};

/// Where carton puts a container's cgroup, relative to each hierarchy's root.
pub fn cgroups_path(id: &str) -> String {
    format!("/{}/{id}", crate::cgroup::PARENT)
}

/// Write what `docker run`'s limits mean into `spec`: the resources, the cgroup's path
/// (`/carton/ID`), and a cgroup namespace.
pub fn write(spec: &mut Spec, id: &str, limits: &Limits) -> Result<()> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(limits.to_oci()?));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path(id))));
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    step02::oci::add_namespace(&mut namespaces, LinuxNamespaceType::Cgroup, None);
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    Ok(())
}

/// The cgroup namespace the spec lists (see [`crate::CgroupNamespace`]).
pub fn cgroup_namespace(spec: &Spec) -> crate::CgroupNamespace {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    match namespaces.iter().find(|namespace| namespace.typ() == LinuxNamespaceType::Cgroup) {
        None => crate::CgroupNamespace::Host,
        Some(namespace) => namespace.path().clone().map_or(crate::CgroupNamespace::New, crate::CgroupNamespace::Join),
    }
}

/// What of `spec`'s resources this machine does not apply, each a sentence for a warning.
pub fn unapplied(spec: &Spec, layout: &Layout) -> Vec<String> {
    let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else { return Vec::new() };
    let (limits, not_applied) = Limits::from_oci(resources);
    let mut warnings: Vec<String> = not_applied.into_iter().map(|field| format!("config.json sets {field}, which carton does not apply yet")).collect();
    if layout.version() == Some(crate::Version::V2) && (limits.memory_swappiness.is_some() || limits.oom_kill_disable) {
        warnings.push("cgroup v2 has no memory swappiness and no way to disable the OOM killer: those settings are ignored, as Docker does".to_string());
    }
    warnings
}

// ANCHOR: create_from_oci
/// The cgroup `spec` asks for, made with its limits, and its path (`linux.cgroupsPath`, by
/// default `/carton/ID`). On a machine without cgroups a container that asks for no limit
/// runs unmeasured (`None`) rather than not at all. The fields this step cannot apply are
/// named by [`unapplied`], for the caller to say (never silently dropped).
pub fn create_cgroup(spec: &Spec, id: &str, layout: &Layout, explain: &Explain) -> Result<Option<(Cgroup, String)>> {
    let linux = spec.linux().as_ref();
    let (limits, _) = linux.and_then(|l| l.resources().as_ref()).map_or((Limits::default(), Vec::new()), Limits::from_oci);
    let path = linux.and_then(|l| l.cgroups_path().as_ref()).map_or_else(|| cgroups_path(id), |p| p.display().to_string());
    match layout.version() {
        Some(_) => Ok(Some((Cgroup::create_at(layout, Path::new(&path), &limits, explain)?, path))),
        None if limits.any() => Err(Error::runtime("limits need cgroups, and this machine has no cgroup file system mounted; `carton doctor` explains what to mount")),
        None => Ok(None),
    }
}
// ANCHOR_END: create_from_oci

fn built<T, E: std::fmt::Display>(part: &str, result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| Error::runtime(format!("cannot write linux.resources.{part}: {e}")))
}

fn throttles(rates: &[DeviceRate]) -> Result<Vec<LinuxThrottleDevice>> {
    rates.iter().map(|rate| built("blockIO", LinuxThrottleDeviceBuilder::default().major(rate.major as i64).minor(rate.minor as i64).rate(rate.bytes_per_second).build())).collect()
}

fn rates(devices: &Option<Vec<LinuxThrottleDevice>>) -> Vec<DeviceRate> {
    devices.iter().flatten().map(|d| DeviceRate { major: d.major() as u64, minor: d.minor() as u64, bytes_per_second: d.rate() }).collect()
}

impl Limits {
    // ANCHOR: to_oci
    /// The limits in the spec's terms (`docker run -m 512m` → `"memory": {"limit": 536870912}`).
    pub fn to_oci(&self) -> Result<LinuxResources> {
        let mut resources = LinuxResourcesBuilder::default();
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some() || self.memory_swappiness.is_some() || self.oom_kill_disable {
            let mut memory = LinuxMemoryBuilder::default();
            if let Some(limit) = self.memory {
                memory = memory.limit(limit as i64);
            }
            if let Some(reservation) = self.memory_reservation {
                memory = memory.reservation(reservation as i64);
            }
            if let Some(swappiness) = self.memory_swappiness {
                memory = memory.swappiness(swappiness);
            }
            if self.oom_kill_disable {
                memory = memory.disable_oom_killer(true);
            }
            match self.effective_swap() {
                Some(Swap::Unlimited) => memory = memory.swap(-1),
                Some(Swap::Total(total)) => memory = memory.swap(total as i64),
                None => {}
            }
            resources = resources.memory(built("memory", memory.build())?);
        }
        if self.cpus.is_some() || self.cpu_shares.is_some() || self.cpuset_cpus.is_some() {
            let mut cpu = LinuxCpuBuilder::default();
            if let Some(CpuQuota { quota_us, period_us }) = self.cpus {
                cpu = cpu.quota(quota_us as i64).period(period_us);
            }
            if let Some(shares) = self.cpu_shares {
                cpu = cpu.shares(shares);
            }
            if let Some(cpus) = &self.cpuset_cpus {
                cpu = cpu.cpus(cpus.clone());
            }
            resources = resources.cpu(built("cpu", cpu.build())?);
        }
        if let Some(limit) = self.pids_limit {
            resources = resources.pids(built("pids", LinuxPidsBuilder::default().limit(limit as i64).build())?);
        }
        if self.blkio_weight.is_some() || !self.device_read_bps.is_empty() || !self.device_write_bps.is_empty() {
            let mut block_io = LinuxBlockIoBuilder::default().throttle_read_bps_device(throttles(&self.device_read_bps)?).throttle_write_bps_device(throttles(&self.device_write_bps)?);
            if let Some(weight) = self.blkio_weight {
                block_io = block_io.weight(weight);
            }
            resources = resources.block_io(built("blockIO", block_io.build())?);
        }
        built("", resources.build())
    }
    // ANCHOR_END: to_oci

    /// Read the spec's resources. Returns the limits and the names of the fields this step
    /// cannot apply yet, for the runtime to warn about (never silently dropped).
    pub fn from_oci(resources: &LinuxResources) -> (Limits, Vec<&'static str>) {
        let mut limits = Limits::default();
        let mut not_applied = Vec::new();
        if let Some(memory) = resources.memory() {
            limits.memory = memory.limit().filter(|limit| *limit > 0).map(|limit| limit as u64);
            limits.memory_swap = memory.swap().map(|swap| if swap < 0 { Swap::Unlimited } else { Swap::Total(swap as u64) });
            limits.memory_reservation = memory.reservation().filter(|bytes| *bytes > 0).map(|bytes| bytes as u64);
            limits.memory_swappiness = memory.swappiness();
            limits.oom_kill_disable = memory.disable_oom_killer().unwrap_or(false);
            if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
                not_applied.push("linux.resources.memory (kernel, kernelTCP: gone from Linux since 6.x)");
            }
        }
        if let Some(cpu) = resources.cpu() {
            if let Some(quota) = cpu.quota().filter(|quota| *quota > 0) {
                limits.cpus = Some(CpuQuota { quota_us: quota as u64, period_us: cpu.period().unwrap_or(crate::limits::CPU_PERIOD_US) });
            }
            limits.cpu_shares = cpu.shares().filter(|shares| *shares > 0);
            limits.cpuset_cpus = cpu.cpus().clone().filter(|cpus| !cpus.is_empty());
            if cpu.mems().is_some() || cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
                not_applied.push("linux.resources.cpu (mems, realtime)");
            }
        }
        if let Some(pids) = resources.pids() {
            limits.pids_limit = Some(pids.limit()).filter(|limit| *limit > 0).map(|limit| limit as u64);
        }
        if let Some(block_io) = resources.block_io() {
            limits.blkio_weight = block_io.weight();
            limits.device_read_bps = rates(block_io.throttle_read_bps_device());
            limits.device_write_bps = rates(block_io.throttle_write_bps_device());
            if block_io.weight_device().is_some() || block_io.throttle_read_iops_device().is_some() || block_io.throttle_write_iops_device().is_some() {
                not_applied.push("linux.resources.blockIO (weightDevice, iops)");
            }
        }
        // linux.resources.devices is the security step's (step 08 reads it).
        if let Some(network) = resources.network() {
            limits.net_class_id = network.class_id();
            limits.net_priorities = network.priorities().iter().flatten().map(|p| (p.name().clone(), p.priority())).collect();
        }
        limits.hugepage_limits = resources.hugepage_limits().iter().flatten().map(|h| (h.page_size().clone(), h.limit().max(0) as u64)).collect();
        if resources.rdma().is_some() || resources.unified().is_some() {
            not_applied.push("linux.resources (rdma, unified)");
        }
        (limits, not_applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_written_to_the_spec_read_back_the_same() {
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(Swap::Total(128 << 20)),
            cpus: Some(CpuQuota { quota_us: 50_000, period_us: 100_000 }),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(20),
            blkio_weight: Some(300),
            device_read_bps: vec![DeviceRate { major: 7, minor: 0, bytes_per_second: 1 << 20 }],
            device_write_bps: vec![],
            memory_reservation: Some(32 << 20),
            memory_swappiness: Some(0),
            oom_kill_disable: true,
            ..Limits::default()
        };
        let resources = limits.to_oci().unwrap();
        let json = serde_json::to_value(&resources).unwrap();
        assert_eq!(json["memory"]["limit"], 64 << 20);
        assert_eq!(json["cpu"]["quota"], 50_000);
        assert_eq!(json["pids"]["limit"], 20);
        assert_eq!(json["blockIO"]["throttleReadBpsDevice"][0]["rate"], 1 << 20);
        let (read, not_applied) = Limits::from_oci(&resources);
        assert_eq!(read, limits);
        assert!(not_applied.is_empty());
        // Only -m: Docker's swap default (as much again) is written out, so a runtime needs no default.
        let only_memory = Limits { memory: Some(64 << 20), ..Limits::default() }.to_oci().unwrap();
        assert_eq!(only_memory.memory().as_ref().unwrap().swap(), Some(128 << 20));
    }

    #[test]
    fn fields_that_cannot_be_applied_are_named() {
        let resources: LinuxResources = serde_json::from_str(
            r#"{"devices": [{"allow": false, "access": "rwm"}], "memory": {"kernel": 1}, "rdma": {}, "hugepageLimits": [{"pageSize": "2MB", "limit": 1048576}], "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 5}]}}"#,
        )
        .unwrap();
        let (limits, not_applied) = Limits::from_oci(&resources);
        // The device rules are the security step's to name, not this one's.
        assert_eq!(not_applied.len(), 2, "{not_applied:?}");
        assert!(not_applied.iter().all(|field| !field.contains("devices")), "{not_applied:?}");
        // Network classes and huge pages are applied (or refused, without their controller).
        assert_eq!((limits.net_class_id, &limits.net_priorities[..]), (Some(7), &[("eth0".to_string(), 5)][..]));
        assert_eq!(limits.hugepage_limits, [("2MB".to_string(), 1 << 20)]);
        let files: Vec<String> = crate::cgroup::settings(crate::Version::V1, &limits).iter().map(|s| format!("{}/{} = {}", s.controller, s.file, s.value)).collect();
        assert_eq!(files, ["net_cls/net_cls.classid = 7", "net_prio/net_prio.ifpriomap = eth0 5", "hugetlb/hugetlb.2MB.limit_in_bytes = 1048576"]);
    }
}
