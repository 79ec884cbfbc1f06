//! `stats`: each running container's use of the machine, as `docker stats` shows it: CPU
//! time over an interval (chapter 4's cgroup), memory against its limit, network bytes
//! (chapter 3's counters, read from `/proc/PID/net/dev`), block I/O, processes.

use std::path::Path;
use std::time::{Duration, Instant};

use step01::{Error, Result};

use crate::record::Container;

/// One reading of one container.
pub struct Sample {
    at: Instant,
    stats: step04::Stats,
    net_rx: u64,
    net_tx: u64,
}

/// Read container `container`'s numbers now.
pub fn sample(state_root: &Path, container: &Container) -> Result<Sample> {
    let dir = Container::dir(state_root, &container.id);
    let record = step07::Record::load(&dir)?.ok_or_else(|| Error::runtime(format!("container {} is not running", container.name)))?;
    let cgroup = step07::cgroup_of(&record).ok_or_else(|| Error::runtime(format!("container {} has no cgroup: no numbers to show", container.name)))?;
    let stats = cgroup.stats()?;
    let interfaces = step03::counters::read(nix::unistd::Pid::from_raw(record.init.pid)).unwrap_or_default();
    let outside = interfaces.iter().filter(|i| i.interface != "lo");
    let (net_rx, net_tx) = outside.fold((0, 0), |(rx, tx), i| (rx + i.rx_bytes, tx + i.tx_bytes));
    Ok(Sample { at: Instant::now(), stats, net_rx, net_tx })
}

// ANCHOR: row
/// `docker stats`' columns for one container, from two readings: CONTAINER ID, NAME, CPU %,
/// MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O, PIDS.
pub fn row(container: &Container, before: &Sample, now: &Sample, host_memory: u64) -> Vec<String> {
    let elapsed = now.at.duration_since(before.at).max(Duration::from_millis(1));
    // CPU time used over wall time: 100 % is one CPU busy all along (Docker's convention).
    let cpu = now.stats.cpu_nanoseconds.saturating_sub(before.stats.cpu_nanoseconds) as f64 / elapsed.as_nanos() as f64 * 100.0;
    let limit = now.stats.memory_limit.unwrap_or(host_memory).min(host_memory);
    let memory = now.stats.memory_bytes;
    vec![
        container.id[..12].to_string(),
        container.name.clone(),
        format!("{cpu:.2}%"),
        format!("{} / {}", binary_size(memory), binary_size(limit)),
        format!("{:.2}%", if limit > 0 { memory as f64 / limit as f64 * 100.0 } else { 0.0 }),
        format!("{} / {}", decimal_size(now.net_rx), decimal_size(now.net_tx)),
        format!("{} / {}", decimal_size(now.stats.io_read_bytes), decimal_size(now.stats.io_write_bytes)),
        now.stats.pids.to_string(),
    ]
}
// ANCHOR_END: row

/// The headers of [`row`].
pub const HEADERS: [&str; 8] = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"];

/// The host's memory, in bytes (the limit of a container without one).
pub fn host_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:")).and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).map_or(0, |kib| kib * 1024)
}

/// `1.5MiB`, as Docker writes memory (binary units, two decimals at most).
pub fn binary_size(bytes: u64) -> String {
    scaled(bytes as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

/// `1.2kB`, as Docker writes I/O (decimal units).
pub fn decimal_size(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &["B", "kB", "MB", "GB", "TB"])
}

fn scaled(mut value: f64, base: f64, units: &[&str]) -> String {
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    let text = format!("{value:.3}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    // Four significant digits at most, as Go's %.4g.
    let text = if text.len() > 5 { format!("{value:.2}").trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(decimal_size(1234), "1.234kB");
        assert_eq!(decimal_size(648), "648B");
    }
}
