//! IP address management: which container has which address on the bridge.
//!
//! The bridge, its NAT table and its subnet are one per network namespace (one per host,
//! for the host's), so the leases are too: one small file under `/run/carton`, named by
//! the network namespace (see [`crate::network_state`]), whatever state root each
//! container uses. `ADDRESS HOLDER` per line, changed only while holding an exclusive lock
//! (flock) on a lock file beside it, so two `carton run` at once never get the same
//! address. HOLDER is the container's state directory: a lease whose container is gone
//! (collected after a crash, or removed) is stale and reused.

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

/// Who holds a lease: the state directory of the container it was given to
/// (`/var/lib/carton/containers/ID`). A lease is stale once that directory is gone, whatever
/// state root the container was in: one table serves every root on the host.
pub type Holder = PathBuf;

/// Drop the leases whose container no longer exists (a crashed or killed carton whose
/// container was collected, or a teardown that never ran).
pub fn forget_stale(leases: &mut Vec<(Ipv4Addr, Holder)>) {
    leases.retain(|(_, holder)| holder.is_dir());
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
    pub fn locked<T>(&self, change: impl FnOnce(&mut Vec<(Ipv4Addr, Holder)>) -> Result<T>) -> Result<T> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::runtime(format!("cannot create {}: {e}", self.dir.display())))?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("lock")).map_err(|e| Error::runtime(format!("cannot open the network lock: {e}")))?;
        // Safety: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::syscall("lock the lease file", nix::errno::Errno::last()));
        }
        let path = self.dir.join("leases");
        let mut leases: Vec<(Ipv4Addr, Holder)> = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (address, holder) = line.split_once(' ')?;
                Some((address.parse().ok()?, PathBuf::from(holder)))
            })
            .collect();
        let result = change(&mut leases)?;
        let text: String = leases.iter().map(|(address, holder)| format!("{address} {}\n", holder.display())).collect();
        // Write a new file and rename it over the old: a crash never leaves half a table.
        let staging = self.dir.join("leases.new");
        fs::write(&staging, text).and_then(|()| fs::rename(&staging, &path)).map_err(|e| Error::runtime(format!("cannot write the lease table: {e}")))?;
        drop::<File>(lock);
        Ok(result)
    }

    // ANCHOR: allocate
    /// The lowest free address, leased to `holder`.
    pub fn allocate(&self, holder: &Path) -> Result<Lease> {
        self.locked(|leases| self.allocate_in(leases, holder))
    }

    /// [`Ipam::allocate`] inside [`Ipam::locked`], for callers that change more under the lock.
    pub(crate) fn allocate_in(&self, leases: &mut Vec<(Ipv4Addr, Holder)>, holder: &Path) -> Result<Lease> {
        forget_stale(leases);
        let free = self.subnet.hosts().find(|candidate| leases.iter().all(|(taken, _)| taken != candidate));
        let address = free.ok_or_else(|| Error::runtime(format!("no free address left in {}/{}", self.subnet.network, self.subnet.prefix)))?;
        leases.push((address, holder.to_path_buf()));
        Ok(Lease { address })
    }
    // ANCHOR_END: allocate

    /// Give back every address `holder` has.
    pub fn release(&self, holder: &Path) -> Result<()> {
        self.locked(|leases| {
            leases.retain(|(_, held_by)| held_by != holder);
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
        let ipam = Ipam::new(&dir.path().join("net"), "192.0.2.0/29".parse().unwrap());
        let holder = |name: &str| {
            let path = dir.path().join(name);
            fs::create_dir_all(&path).unwrap();
            path
        };
        let (a, b) = (holder("a"), holder("b"));
        let first = ipam.allocate(&a).unwrap();
        let second = ipam.allocate(&b).unwrap();
        assert_eq!((first.address, second.address), (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)));
        ipam.release(&a).unwrap();
        assert_eq!(ipam.allocate(&holder("c")).unwrap().address, Ipv4Addr::new(192, 0, 2, 2), "a released address is reused");
        // .4 .5 .6 left in a /29 (.7 is broadcast); the lease of a container that is gone is reclaimed.
        let gone = holder("gone");
        ipam.allocate(&gone).unwrap();
        fs::remove_dir(&gone).unwrap();
        assert_eq!(ipam.allocate(&holder("d")).unwrap().address, Ipv4Addr::new(192, 0, 2, 4), "a stale lease is reused");
        ipam.allocate(&holder("e")).unwrap();
        ipam.allocate(&holder("f")).unwrap();
        assert!(ipam.allocate(&holder("g")).unwrap_err().message.contains("no free address"));
    }
}
