//! The numbers `docker stats` and `docker top` show, read from the container's cgroup.

use std::fs;

use step01::Result;

use crate::cgroup::Cgroup;
use crate::layout::Version;

/// A container's resource use at one moment. Limits are `None` when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_bytes: u64,
    pub memory_limit: Option<u64>,
    /// CPU time used by every process of the container, together, in nanoseconds.
    pub cpu_nanoseconds: u64,
    /// CFS bandwidth periods that have passed while the container could run, and those in
    /// which it used up its quota and had to wait (`--cpus`).
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_nanoseconds: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Processes the OOM killer has killed in the cgroup.
    pub oom_kills: u64,
}

// ANCHOR: read
impl Stats {
    pub fn read(cgroup: &Cgroup) -> Result<Stats> {
        let text = |controller: &str, file: &str| fs::read_to_string(cgroup.dir(controller).join(file)).unwrap_or_default();
        let number = |controller: &str, file: &str| text(controller, file).trim().parse::<u64>().ok();
        let cpu_stat = text("cpu", "cpu.stat");
        let mut stats = Stats {
            pids: number("pids", "pids.current").unwrap_or(0),
            pids_limit: number("pids", "pids.max"), // "max" reads as no limit
            cpu_periods: keyed(&cpu_stat, "nr_periods").unwrap_or(0),
            cpu_throttled_periods: keyed(&cpu_stat, "nr_throttled").unwrap_or(0),
            oom_kills: cgroup.oom_kills(),
            ..Stats::default()
        };
        match cgroup.version {
            Version::V2 => {
                stats.memory_bytes = number("memory", "memory.current").unwrap_or(0);
                stats.memory_limit = number("memory", "memory.max");
                stats.cpu_nanoseconds = keyed(&cpu_stat, "usage_usec").unwrap_or(0) * 1000;
                stats.cpu_throttled_nanoseconds = keyed(&cpu_stat, "throttled_usec").unwrap_or(0) * 1000;
                // io.stat: one line per device, "8:0 rbytes=1 wbytes=2 rios=3 ...".
                for line in text("io", "io.stat").lines() {
                    for (key, value) in line.split_whitespace().filter_map(|field| field.split_once('=')) {
                        match key {
                            "rbytes" => stats.io_read_bytes += value.parse().unwrap_or(0),
                            "wbytes" => stats.io_write_bytes += value.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
            }
            Version::V1 => {
                stats.memory_bytes = number("memory", "memory.usage_in_bytes").unwrap_or(0);
                // "No limit" is the largest page-aligned number the kernel can hold.
                stats.memory_limit = number("memory", "memory.limit_in_bytes").filter(|&limit| limit < (1 << 62));
                stats.cpu_nanoseconds = number("cpuacct", "cpuacct.usage").unwrap_or(0);
                stats.cpu_throttled_nanoseconds = keyed(&cpu_stat, "throttled_time").unwrap_or(0);
                // "8:0 Read 4096" lines, then "8:0 Total ..." and a last "Total" line.
                for line in text("blkio", "blkio.throttle.io_service_bytes").lines() {
                    match line.split_whitespace().collect::<Vec<_>>()[..] {
                        [_, "Read", bytes] => stats.io_read_bytes += bytes.parse().unwrap_or(0),
                        [_, "Write", bytes] => stats.io_write_bytes += bytes.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
        }
        Ok(stats)
    }
}
// ANCHOR_END: read

/// The number after `key` in a "key value" file such as `cpu.stat` or `memory.events`.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_their_whole_key() {
        let text = "nr_periods 12\nnr_throttled 5\nthrottled_time 900\n";
        assert_eq!(keyed(text, "nr_throttled"), Some(5));
        assert_eq!(keyed(text, "throttled_time"), Some(900));
        assert_eq!(keyed(text, "nr_"), None);
        assert_eq!(keyed("oom 1\noom_kill 2\n", "oom"), Some(1));
    }
}
