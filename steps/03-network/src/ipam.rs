//! IP address management: which container has which address on the bridge.
//!
//! The leases are one small file under the state root, `ADDRESS OWNER` per line, changed
//! only while holding an exclusive lock (flock) on a lock file beside it, so two
//! `carton run` at once never get the same address. OWNER is the carton process that
//! holds the lease, as `PID:STARTTIME`: a PID alone can be reused by another process
//! (after a reboot, say), the pair cannot. A lease whose owner is gone (a crash, a
//! `kill -9`, which takes the container with it) is stale and reused.

use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use step01::{Error, Result};

/// An IPv4 subnet such as 10.88.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// The first address is the gateway (the bridge itself).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Host addresses after the gateway, without the broadcast address.
    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | (u32::MAX >> self.prefix);
        (first..broadcast).map(Ipv4Addr::from)
    }
}

impl std::str::FromStr for Subnet {
    type Err = Error;
    fn from_str(text: &str) -> Result<Subnet> {
        let bad = || Error::runtime(format!("invalid subnet {text:?}: write it as ADDRESS/PREFIX with a prefix from 8 to 30, e.g. 10.88.0.0/16"));
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let (address, prefix): (Ipv4Addr, u8) = (address.parse().map_err(|_| bad())?, prefix.parse().map_err(|_| bad())?);
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet { network: Ipv4Addr::from(u32::from(address) & mask), prefix })
    }
}

/// The process that holds a lease: its PID and its start time (field 22 of
/// `/proc/PID/stat`), which together name one process for the whole life of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub start_time: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id() as i32;
        Owner { pid, start_time: start_time(pid).unwrap_or(0) }
    }

    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?.parse().ok()
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.start_time)
    }
}

impl std::str::FromStr for Owner {
    type Err = ();
    fn from_str(text: &str) -> std::result::Result<Owner, ()> {
        let (pid, start_time) = text.split_once(':').ok_or(())?;
        Ok(Owner { pid: pid.parse().map_err(|_| ())?, start_time: start_time.parse().map_err(|_| ())? })
    }
}

/// Drop the leases whose owner no longer runs: a crashed or killed carton (its
/// container died with it).
pub fn forget_stale(leases: &mut Vec<(Ipv4Addr, Owner)>) {
    leases.retain(|(_, owner)| owner.is_alive());
}

/// An address held by a running container; give it back with [`Ipam::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
}

/// The leases of one network, kept in `DIR/leases`.
pub struct Ipam {
    dir: PathBuf,
    pub subnet: Subnet,
}

impl Ipam {
    pub fn new(dir: &Path, subnet: Subnet) -> Ipam {
        Ipam { dir: dir.to_path_buf(), subnet }
    }

    /// Run `change` on the lease table while holding the network's lock.
    pub fn locked<T>(&self, change: impl FnOnce(&mut Vec<(Ipv4Addr, Owner)>) -> Result<T>) -> Result<T> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::runtime(format!("cannot create {}: {e}", self.dir.display())))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .map_err(|e| Error::runtime(format!("cannot open the network lock: {e}")))?;
        // Safety: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::syscall("lock the lease file", nix::errno::Errno::last()));
        }
        let path = self.dir.join("leases");
        let mut leases: Vec<(Ipv4Addr, Owner)> = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (address, owner) = line.split_once(' ')?;
                Some((address.parse().ok()?, owner.parse().ok()?))
            })
            .collect();
        let result = change(&mut leases)?;
        let text: String = leases.iter().map(|(address, owner)| format!("{address} {owner}\n")).collect();
        // Write a new file and rename it over the old: a crash never leaves half a table.
        let staging = self.dir.join("leases.new");
        fs::write(&staging, text)
            .and_then(|()| fs::rename(&staging, &path))
            .map_err(|e| Error::runtime(format!("cannot write the lease table: {e}")))?;
        drop::<File>(lock);
        Ok(result)
    }

    // ANCHOR: allocate
    /// The lowest free address, leased to `owner`.
    pub fn allocate(&self, owner: Owner) -> Result<Lease> {
        self.locked(|leases| self.allocate_in(leases, owner))
    }

    /// [`Ipam::allocate`] inside [`Ipam::locked`], for callers that change more under the lock.
    pub fn allocate_in(&self, leases: &mut Vec<(Ipv4Addr, Owner)>, owner: Owner) -> Result<Lease> {
        forget_stale(leases);
        let free = self.subnet.hosts().find(|candidate| leases.iter().all(|(taken, _)| taken != candidate));
        let address = free.ok_or_else(|| Error::runtime(format!("no free address left in {}/{}", self.subnet.network, self.subnet.prefix)))?;
        leases.push((address, owner));
        Ok(Lease { address })
    }
    // ANCHOR_END: allocate

    pub fn release(&self, lease: Lease) -> Result<()> {
        self.locked(|leases| {
            leases.retain(|(address, _)| *address != lease.address);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_name_their_gateway() {
        let subnet: Subnet = "10.88.7.9/16".parse().unwrap();
        assert_eq!(subnet, Subnet { network: Ipv4Addr::new(10, 88, 0, 0), prefix: 16 });
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        for bad in ["10.88.0.0", "10.88.0.0/31", "ten/16", "10.88.0.0/x"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_unique_released_and_stale_ones_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "192.0.2.0/29".parse().unwrap());
        let me = Owner::current();
        assert!(me.is_alive());
        let a = ipam.allocate(me).unwrap();
        let b = ipam.allocate(me).unwrap();
        assert_eq!((a.address, b.address), (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)));
        ipam.release(a).unwrap();
        assert_eq!(ipam.allocate(me).unwrap().address, Ipv4Addr::new(192, 0, 2, 2), "a released address is reused");
        // .4 .5 .6 left in a /29 (.7 is broadcast); a lease of a dead process is reclaimed.
        ipam.locked(|leases| {
            // A PID that exists (ours) with another start time: a reused PID, not the owner.
            leases.push((Ipv4Addr::new(192, 0, 2, 4), Owner { start_time: me.start_time + 1, ..me }));
            Ok(())
        })
        .unwrap();
        assert_eq!(ipam.allocate(me).unwrap().address, Ipv4Addr::new(192, 0, 2, 4), "a stale lease is reused");
        ipam.allocate(me).unwrap();
        ipam.allocate(me).unwrap();
        assert!(ipam.allocate(me).unwrap_err().message.contains("no free address"));
    }
}
