//! Where the cgroup file systems are: read from `/proc/self/mountinfo` at run time.
//!
//! Three layouts exist in the wild:
//!
//! - **legacy** (cgroup v1 only): one hierarchy per controller (or a few controllers
//!   mounted together, `cpu,cpuacct`), each its own tree under `/sys/fs/cgroup/NAME`;
//! - **hybrid** (this book's lab machine; systemd's default before version 247, as on
//!   Ubuntu 20.04): the v1 hierarchies, plus a cgroup2 tree at `/sys/fs/cgroup/unified`
//!   that systemd uses to track processes but that holds no controllers;
//! - **unified** (cgroup v2 only: Ubuntu 22.04+, Debian 11+, Fedora 31+): one tree at
//!   `/sys/fs/cgroup` with every controller.
//!
//! carton drives v2 when cgroup2 is mounted at `/sys/fs/cgroup` (or is the only cgroup
//! file system), and the v1 hierarchies otherwise.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Which cgroup interface carton drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// How cgroups are mounted on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cgroup v1 only: one hierarchy per controller.
    Legacy,
    /// v1 controllers, plus a cgroup2 tree without them (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// cgroup v2 only: one tree at /sys/fs/cgroup.
    Unified,
    /// No cgroup file system at all.
    None,
}

/// One v1 hierarchy: a mount of the `cgroup` file system with its controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub path: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// The v1 hierarchies with a controller (named ones such as `name=systemd` left out).
    pub hierarchies: Vec<Hierarchy>,
    /// Where cgroup2 is mounted, if it is.
    pub v2_mount: Option<PathBuf>,
    /// The controllers cgroup2 offers (its root's `cgroup.controllers`).
    pub v2_controllers: Vec<String>,
}

/// The v1 controllers the kernel can have.
const V1_CONTROLLERS: [&str; 14] = ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"];

impl Layout {
    /// This machine's layout.
    pub fn detect() -> Layout {
        Layout::from_mountinfo(step01::mounts::mountinfo_at_start())
    }

    /// This machine's layout, detected once per process (each command is one).
    pub fn detected() -> &'static Layout {
        static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
        LAYOUT.get_or_init(Layout::detect)
    }

    /// Read the layout from `/proc/self/mountinfo` text.
    pub fn from_mountinfo(mountinfo: &str) -> Layout {
        let mut hierarchies = Vec::new();
        let mut v2_mount = None;
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
            let (Some(root), Some(mount_point), Some(fstype), Some(options)) = (fields.get(3), fields.get(4), fields.get(dash + 1), fields.get(dash + 3)) else { continue };
            // Only whole trees: a bind mount of a subtree (root not "/") is someone's view, not the tree.
            if *root != "/" {
                continue;
            }
            match *fstype {
                // The one at /sys/fs/cgroup wins over any other mount of it.
                "cgroup2" if v2_mount.is_none() || Path::new(mount_point) == Path::new("/sys/fs/cgroup") => v2_mount = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    // The first mount of a hierarchy is the host's: a later one is a copy
                    // (a container sharing this mount namespace mounts its own view below its root).
                    let seen = |controller: &&str| hierarchies.iter().any(|h: &Hierarchy| h.controllers.iter().any(|c| c == controller));
                    let controllers: Vec<String> = options.split(',').filter(|o| V1_CONTROLLERS.contains(o) && !seen(o)).map(String::from).collect();
                    if !controllers.is_empty() {
                        hierarchies.push(Hierarchy { path: PathBuf::from(mount_point), controllers });
                    }
                }
                _ => {}
            }
        }
        let v2_controllers = v2_mount.as_deref().map(read_controllers).unwrap_or_default();
        Layout::new(hierarchies, v2_mount, v2_controllers)
    }

    fn new(hierarchies: Vec<Hierarchy>, v2_mount: Option<PathBuf>, v2_controllers: Vec<String>) -> Layout {
        let mode = match (&v2_mount, hierarchies.is_empty()) {
            (Some(at), _) if at == Path::new("/sys/fs/cgroup") => Mode::Unified,
            (Some(_), false) => Mode::Hybrid,
            (None, false) => Mode::Legacy,
            (Some(_), true) => Mode::Unified,
            (None, true) => Mode::None,
        };
        Layout { mode, hierarchies, v2_mount, v2_controllers }
    }

    /// A cgroup2 tree at `root` (a real one, or a directory that imitates it in tests).
    pub fn unified_at(root: &Path) -> Layout {
        Layout::new(Vec::new(), Some(root.to_path_buf()), read_controllers(root))
    }

    /// v1 hierarchies `root/NAME`, one per controller (a directory that imitates them in tests).
    pub fn legacy_at(root: &Path, controllers: &[&str]) -> Layout {
        let hierarchies = controllers.iter().map(|c| Hierarchy { path: root.join(c), controllers: vec![c.to_string()] }).collect();
        Layout::new(hierarchies, None, Vec::new())
    }

    /// The interface carton drives here: v2 when cgroup2 holds the controllers.
    pub fn version(&self) -> Option<Version> {
        match self.mode {
            Mode::Unified => Some(Version::V2),
            Mode::Legacy | Mode::Hybrid => Some(Version::V1),
            Mode::None => None,
        }
    }

    /// The controllers limits can use in this layout, sorted.
    pub fn controllers(&self) -> Vec<String> {
        let mut names = match self.mode {
            Mode::Unified => self.v2_controllers.clone(),
            _ => self.hierarchies.iter().flat_map(|h| h.controllers.iter().cloned()).collect(),
        };
        names.sort();
        names.dedup();
        names
    }

    /// The root of the v1 hierarchy that holds `controller`.
    #[cfg(test)]
    fn hierarchy_of(&self, controller: &str) -> Option<&Path> {
        self.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == controller)).map(|h| h.path.as_path())
    }
}

fn read_controllers(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("cgroup.controllers")).map(|text| text.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| if names.is_empty() { "none".to_string() } else { names.join(" ") };
        match self.mode {
            Mode::Unified => write!(f, "v2 (unified): controllers {}", list(&self.v2_controllers)),
            Mode::Legacy => write!(f, "v1 (legacy): controllers {}", list(&self.controllers())),
            Mode::Hybrid => write!(
                f,
                "hybrid: v1 controllers {}; cgroup2 at {} with controllers: {}",
                list(&self.controllers()),
                self.v2_mount.as_deref().unwrap_or(Path::new("?")).display(),
                list(&self.v2_controllers)
            ),
            Mode::None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_has_v1_controllers_and_a_cgroup2_tree() {
        let layout = Layout::from_mountinfo(HYBRID);
        assert_eq!(layout.mode, Mode::Hybrid);
        assert_eq!(layout.version(), Some(Version::V1));
        assert_eq!(layout.controllers(), ["cpu", "cpuacct", "memory", "pids"]);
        assert_eq!(layout.hierarchy_of("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(layout.hierarchies.len(), 4, "name=systemd has no controller");
        assert_eq!(layout.v2_mount.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn unified_is_cgroup2_at_sys_fs_cgroup() {
        let layout = Layout::from_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(layout.mode, Mode::Unified);
        assert_eq!(layout.version(), Some(Version::V2));
        assert!(layout.hierarchies.is_empty());
    }

    #[test]
    fn legacy_has_only_v1_and_combined_hierarchies_count() {
        let info = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let layout = Layout::from_mountinfo(info);
        assert_eq!(layout.mode, Mode::Legacy);
        assert_eq!(layout.controllers(), ["cpu", "cpuacct", "memory"]);
        assert_eq!(layout.hierarchy_of("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
    }

    #[test]
    fn nothing_mounted_is_none() {
        let layout = Layout::from_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        assert_eq!((layout.mode, layout.version()), (Mode::None, None));
    }
}
