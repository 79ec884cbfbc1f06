//! How many bytes and packets a container's interfaces moved: the data of `stats`.
//!
//! `/proc/PID/net/dev` shows the interfaces of the network namespace PID is in, so the
//! host can read a container's counters without entering it.

use std::fs;

use nix::unistd::Pid;
use step01::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// The counters of every interface in the network namespace of `pid`.
pub fn read(pid: Pid) -> Result<Vec<InterfaceCounters>> {
    let path = format!("/proc/{pid}/net/dev");
    let text = fs::read_to_string(&path).map_err(|e| Error::runtime(format!("cannot read {path}: {e}")))?;
    Ok(parse(&text))
}

/// Parse `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets ... (8 receive
/// columns) tx_bytes tx_packets ...`.
pub fn parse(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, numbers) = line.split_once(':')?;
            let n: Vec<u64> = numbers.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            (n.len() >= 10).then(|| InterfaceCounters { interface: name.trim().to_string(), rx_bytes: n[0], rx_packets: n[1], tx_bytes: n[8], tx_packets: n[9] })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_table() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1234      5    0    0    0     0          0         0     1234       5    0    0    0     0       0          0\n  eth0: 9000 7 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n";
        let counters = parse(text);
        assert_eq!(counters.len(), 2);
        assert_eq!(counters[1], InterfaceCounters { interface: "eth0".into(), rx_bytes: 9000, rx_packets: 7, tx_bytes: 300, tx_packets: 3 });
    }

    #[test]
    fn reads_a_live_namespace() {
        let mine = read(nix::unistd::getpid()).unwrap();
        assert!(mine.iter().any(|c| c.interface == "lo"), "{mine:?}");
    }
}
