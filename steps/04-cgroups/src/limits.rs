//! The limits `docker run` takes, in Docker's spelling and units, checked before any
//! cgroup exists: a bad value is an error message, never a half-made cgroup.

use std::path::Path;

use step01::{Error, Result};

/// `--memory-swap`: memory plus swap together, as Docker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// `-1`: as much swap as there is.
    Unlimited,
    /// Memory and swap together, in bytes.
    Total(u64),
}

/// `--cpus`, as the kernel's CFS bandwidth control takes it: `quota` microseconds of CPU
/// time in every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// `--device-read-bps` / `--device-write-bps`: a block device and bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRate {
    pub major: u64,
    pub minor: u64,
    pub bytes_per_second: u64,
}

/// Every limit of one container; `None` (or empty) means "not limited".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub memory_swap: Option<Swap>,
    pub cpus: Option<CpuQuota>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    /// `None` or a positive number: Docker's 0 and -1 both mean "unlimited".
    pub pids_limit: Option<u64>,
    pub blkio_weight: Option<u16>,
    pub device_read_bps: Vec<DeviceRate>,
    pub device_write_bps: Vec<DeviceRate>,
    /// `--memory-reservation`: a soft limit, what the kernel reclaims down to under pressure.
    pub memory_reservation: Option<u64>,
    /// `--memory-swappiness` (0 to 100): how eagerly its pages are swapped out (v1 only).
    pub memory_swappiness: Option<u64>,
    /// `--oom-kill-disable`: at the limit, processes wait instead of being killed (v1 only).
    pub oom_kill_disable: bool,
    /// The spec's `network.classID`: the class tag of the container's packets (v1 net_cls).
    pub net_class_id: Option<u32>,
    /// The spec's `network.priorities`: (interface, priority) (v1 net_prio).
    pub net_priorities: Vec<(String, u32)>,
    /// The spec's `hugepageLimits`: (page size such as `2MB`, bytes).
    pub hugepage_limits: Vec<(String, u64)>,
}

/// The smallest memory limit Docker accepts: below it not even a shell starts.
pub const MINIMUM_MEMORY: u64 = 6 * 1024 * 1024;

/// The CFS period Docker uses with `--cpus`: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        *self != Limits::default()
    }

    /// The swap limit to apply: `--memory-swap`, or Docker's default when only
    /// `--memory` is given: as much swap as memory (memory + swap = 2 × memory).
    pub fn effective_swap(&self) -> Option<Swap> {
        self.memory_swap.or(self.memory.map(|memory| Swap::Total(memory.saturating_mul(2))))
    }
}

// ANCHOR: parse_bytes
/// Docker's sizes: `512`, `64k`, `32m`, `1.5g`, `2GiB`... Units are powers of 1024, as
/// in `docker run -m`; a `b`, an `i` and a space before the unit are allowed.
pub fn parse_bytes(flag: &str, text: &str) -> Result<u64> {
    let bad = || Error::runtime(format!("invalid {flag} {text:?}: write a size such as 512m or 1g (units b, k, m, g, t)"));
    let lower = text.trim().to_ascii_lowercase();
    let without_b = lower.strip_suffix('b').unwrap_or(&lower);
    let without_i = without_b.strip_suffix('i').unwrap_or(without_b);
    let (number, scale) = match without_i.chars().last() {
        Some('k') => (&without_i[..without_i.len() - 1], 1u64 << 10),
        Some('m') => (&without_i[..without_i.len() - 1], 1 << 20),
        Some('g') => (&without_i[..without_i.len() - 1], 1 << 30),
        Some('t') => (&without_i[..without_i.len() - 1], 1 << 40),
        _ if without_i.len() < without_b.len() => return Err(bad()), // an "i" without a unit
        _ => (without_i, 1),
    };
    let number = number.trim_end();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}
// ANCHOR_END: parse_bytes

/// `-m/--memory`.
pub fn parse_memory(text: &str) -> Result<u64> {
    let bytes = parse_bytes("--memory", text)?;
    if bytes < MINIMUM_MEMORY {
        return Err(Error::runtime(format!("--memory {text}: the minimum memory limit is 6m; a container needs more than that to start")));
    }
    Ok(bytes)
}

/// `--memory-swap`: `-1` for unlimited swap, else memory + swap together.
pub fn parse_memory_swap(text: &str, memory: Option<u64>) -> Result<Swap> {
    let Some(memory) = memory else {
        return Err(Error::runtime("--memory-swap needs --memory as well: it is the limit of memory and swap together"));
    };
    if text.trim() == "-1" {
        return Ok(Swap::Unlimited);
    }
    let total = parse_bytes("--memory-swap", text)?;
    if total < memory {
        return Err(Error::runtime(format!("--memory-swap {text} is smaller than --memory: it counts memory and swap together, so it must be at least as large")));
    }
    Ok(Swap::Total(total))
}

// ANCHOR: parse_cpus
/// `--cpus 1.5`: one and a half CPUs' worth of time, as a quota per 100 ms period.
pub fn parse_cpus(text: &str, online: usize) -> Result<CpuQuota> {
    let cpus: f64 = text.trim().parse().map_err(|_| Error::runtime(format!("invalid --cpus {text:?}: give a number of CPUs such as 0.5 or 2")))?;
    if !(0.01..=online as f64).contains(&cpus) {
        return Err(Error::runtime(format!("--cpus {text}: the range is 0.01 to {online}.00, as this machine has {online} CPUs")));
    }
    Ok(CpuQuota { quota_us: (cpus * CPU_PERIOD_US as f64).round() as u64, period_us: CPU_PERIOD_US })
}
// ANCHOR_END: parse_cpus

/// `--cpu-shares`: a relative weight, 1024 being the default share.
pub fn parse_cpu_shares(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(shares) if (2..=262_144).contains(&shares) => Ok(shares),
        _ => Err(Error::runtime(format!("invalid --cpu-shares {text:?}: give a weight from 2 to 262144 (1024 is every container's default)"))),
    }
}

/// `--cpuset-cpus 0-1,3`: which CPUs, each of them one of this machine's `online` CPUs.
pub fn parse_cpuset(text: &str, online: &[usize]) -> Result<String> {
    let bad = || Error::runtime(format!("invalid --cpuset-cpus {text:?}: list CPU numbers and ranges, e.g. 0-1,3"));
    let cpus = parse_cpu_list(text).ok_or_else(bad)?;
    if cpus.is_empty() {
        return Err(bad());
    }
    if let Some(missing) = cpus.iter().find(|cpu| !online.contains(cpu)) {
        return Err(Error::runtime(format!("--cpuset-cpus {text}: this machine has no CPU {missing}; its CPUs are {}", format_cpu_list(online))));
    }
    Ok(text.trim().to_string())
}

/// `--pids-limit`: the most processes (and threads) at once; 0 or -1 is no limit.
pub fn parse_pids_limit(text: &str) -> Result<Option<u64>> {
    match text.trim().parse::<i64>() {
        Ok(limit) if limit > 0 => Ok(Some(limit as u64)),
        Ok(0 | -1) => Ok(None),
        _ => Err(Error::runtime(format!("invalid --pids-limit {text:?}: give a number of processes, e.g. 100 (-1 for no limit)"))),
    }
}

/// `--memory-swappiness`: 0 (swap only when it must) to 100 (as eagerly as the host).
pub fn parse_memory_swappiness(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(swappiness) if swappiness <= 100 => Ok(swappiness),
        _ => Err(Error::runtime(format!("invalid --memory-swappiness {text:?}: give a number from 0 to 100"))),
    }
}

/// `--blkio-weight`: 10 to 1000 (500 is the default).
pub fn parse_blkio_weight(text: &str) -> Result<u16> {
    match text.trim().parse::<u16>() {
        Ok(weight) if (10..=1000).contains(&weight) => Ok(weight),
        _ => Err(Error::runtime(format!("invalid --blkio-weight {text:?}: give a weight from 10 to 1000"))),
    }
}

/// `--device-read-bps /dev/sda:1mb`: the device must be a block device on the host.
pub fn parse_device_rate(flag: &str, text: &str) -> Result<DeviceRate> {
    let (device, rate) = text.rsplit_once(':').ok_or_else(|| Error::runtime(format!("invalid {flag} {text:?}: write DEVICE:RATE, e.g. /dev/sda:1mb")))?;
    let bytes_per_second = parse_bytes(flag, rate)?;
    let metadata = std::fs::metadata(Path::new(device)).map_err(|e| Error::runtime(format!("{flag} {text}: cannot use {device}: {e}")))?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !metadata.file_type().is_block_device() {
        return Err(Error::runtime(format!("{flag} {text}: {device} is not a block device (lsblk lists them)")));
    }
    let rdev = metadata.rdev();
    Ok(DeviceRate { major: libc::major(rdev) as u64, minor: libc::minor(rdev) as u64, bytes_per_second })
}

/// The CPUs this machine has online (`/sys/devices/system/cpu/online`, e.g. `0-1`).
pub fn online_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|text| parse_cpu_list(&text)).unwrap_or_else(|| vec![0])
}

/// `0-2,5` → [0, 1, 2, 5]; `None` if it is not such a list.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
                if first > last || last - first > 4096 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

fn format_cpu_list(cpus: &[usize]) -> String {
    match (cpus.first(), cpus.last()) {
        (Some(first), Some(last)) if cpus.len() == last - first + 1 && cpus.len() > 1 => format!("{first}-{last}"),
        _ => cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_dockers_units() {
        for (text, bytes) in [("512", 512), ("64k", 65536), ("32m", 32 << 20), ("32M", 32 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29), ("2GiB", 2 << 30), ("10mb", 10 << 20), ("7b", 7)] {
            assert_eq!(parse_bytes("-m", text).unwrap(), bytes, "{text}");
        }
        for text in ["10x", "", "m", "-5m", "1e3", "ki", "1.2.3m"] {
            let error = parse_bytes("--memory", text).unwrap_err();
            assert!(error.message.contains("write a size such as 512m"), "{text}: {}", error.message);
        }
    }

    #[test]
    fn memory_below_the_minimum_is_refused() {
        assert!(parse_memory("4m").unwrap_err().message.contains("minimum memory limit is 6m"));
        assert_eq!(parse_memory("6m").unwrap(), MINIMUM_MEMORY);
    }

    #[test]
    fn swap_counts_memory_too() {
        assert_eq!(parse_memory_swap("-1", Some(1 << 20)).unwrap(), Swap::Unlimited);
        assert_eq!(parse_memory_swap("64m", Some(32 << 20)).unwrap(), Swap::Total(64 << 20));
        assert!(parse_memory_swap("16m", Some(32 << 20)).unwrap_err().message.contains("at least as large"));
        assert!(parse_memory_swap("64m", None).unwrap_err().message.contains("needs --memory"));
        let limits = Limits { memory: Some(32 << 20), ..Limits::default() };
        assert_eq!(limits.effective_swap(), Some(Swap::Total(64 << 20)), "Docker's default: as much swap as memory");
    }

    #[test]
    fn cpus_become_a_quota_per_period() {
        assert_eq!(parse_cpus("0.2", 2).unwrap(), CpuQuota { quota_us: 20_000, period_us: 100_000 });
        assert_eq!(parse_cpus("1.5", 2).unwrap().quota_us, 150_000);
        assert!(parse_cpus("-1", 2).unwrap_err().message.contains("the range is 0.01 to 2.00"));
        assert!(parse_cpus("3", 2).unwrap_err().message.contains("this machine has 2 CPUs"));
        assert!(parse_cpus("lots", 2).unwrap_err().message.contains("invalid --cpus"));
    }

    #[test]
    fn cpusets_name_only_online_cpus() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), [0, 1, 2, 5]);
        assert_eq!(parse_cpuset("0-1", &[0, 1]).unwrap(), "0-1");
        let error = parse_cpuset("99", &[0, 1]).unwrap_err();
        assert_eq!(error.message, "--cpuset-cpus 99: this machine has no CPU 99; its CPUs are 0-1");
        assert!(parse_cpuset("1-0", &[0, 1]).unwrap_err().message.contains("invalid --cpuset-cpus"));
    }

    #[test]
    fn other_limits_have_dockers_ranges() {
        assert_eq!(parse_pids_limit("100").unwrap(), Some(100));
        assert_eq!(parse_pids_limit("-1").unwrap(), None);
        assert!(parse_pids_limit("-5").is_err());
        assert_eq!(parse_cpu_shares("512").unwrap(), 512);
        assert!(parse_cpu_shares("1").is_err());
        assert_eq!(parse_blkio_weight("300").unwrap(), 300);
        assert!(parse_blkio_weight("5").is_err());
        assert!(parse_device_rate("--device-read-bps", "/dev/null:1mb").unwrap_err().message.contains("not a block device"));
        assert!(parse_device_rate("--device-read-bps", "/dev/sda").unwrap_err().message.contains("write DEVICE:RATE"));
    }
}
