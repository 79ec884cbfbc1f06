//! The whole path from limits to files, against a directory that imitates a cgroup file
//! system, for both versions: exactly the right files get exactly the right values.
//! Needs no root and no cgroups: it runs the same on every machine.

use std::fs;
use std::path::Path;

use step01::Explain;
use step04::limits::{CpuQuota, DeviceRate, Swap};
use step04::{Cgroup, Layout, Limits, Version};

fn limits() -> Limits {
    Limits {
        memory: Some(32 << 20),
        memory_swap: Some(Swap::Total(48 << 20)),
        cpus: Some(CpuQuota { quota_us: 50_000, period_us: 100_000 }),
        cpu_shares: Some(2048),
        cpuset_cpus: Some("0-1".into()),
        pids_limit: Some(100),
        blkio_weight: Some(500),
        device_read_bps: vec![DeviceRate { major: 8, minor: 0, bytes_per_second: 1 << 20 }],
        device_write_bps: vec![DeviceRate { major: 8, minor: 16, bytes_per_second: 3 << 20 }],
        ..Limits::default()
    }
}

/// What the kernel does on mkdir in a cgroup file system: the new directory comes with
/// its controllers' files, empty here. carton only ever writes to files that exist.
fn kernel_files(dir: &Path, names: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for name in names {
        fs::write(dir.join(name), "").unwrap();
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file in `dir` with its content, sorted: what carton wrote there (cgroup.procs,
/// written only by `join`, is checked on its own).
fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("cgroup.procs"))
        .map(|p| format!("{} = {:?}", p.file_name().unwrap().to_str().unwrap(), read(&p)))
        .collect();
    out.sort();
    out
}

#[test]
fn v2_writes_each_limit_in_the_one_tree() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
    fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    // What the kernel would show in carton/ once the root hands the controllers down.
    kernel_files(&root.path().join("carton"), &["cgroup.subtree_control", "cgroup.procs"]);
    fs::write(root.path().join("carton/cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
    // Swap accounting is on (memory.swap.max); no BFQ, so io.weight is the I/O weight.
    kernel_files(&root.path().join("carton/c1"), &["cgroup.procs", "cpu.max", "cpu.weight", "cpuset.cpus", "io.max", "io.weight", "memory.max", "memory.swap.max", "pids.max"]);

    let layout = Layout::unified_at(root.path());
    assert_eq!(layout.version(), Some(Version::V2));
    let cgroup = Cgroup::create(&layout, "c1", &limits(), &Explain::off()).unwrap();
    assert_eq!(read(&root.path().join("cgroup.subtree_control")), "+cpu\n+cpuset\n+io\n+memory\n+pids\n");
    assert_eq!(read(&root.path().join("carton/cgroup.subtree_control")), "+cpu\n+cpuset\n+io\n+memory\n+pids\n");
    assert_eq!(
        files(&root.path().join("carton/c1")),
        [
            "cpu.max = \"50000 100000\\n\"",
            "cpu.weight = \"79\\n\"",
            "cpuset.cpus = \"0-1\\n\"",
            "io.max = \"8:0 rbps=1048576\\n8:16 wbps=3145728\\n\"",
            "io.weight = \"default 4950\\n\"",
            "memory.max = \"33554432\\n\"",
            "memory.swap.max = \"16777216\\n\"",
            "pids.max = \"100\\n\"",
        ]
    );
    cgroup.join(nix::unistd::Pid::from_raw(4242), &Explain::off()).unwrap();
    assert_eq!(read(&root.path().join("carton/c1/cgroup.procs")), "4242\n");
    cgroup.remove().unwrap();
    assert!(!root.path().join("carton/c1").exists());
}

#[test]
fn v1_writes_each_limit_in_its_controllers_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let controllers = ["blkio", "cpu", "cpuacct", "cpuset", "freezer", "memory", "pids"];
    for controller in controllers {
        kernel_files(&root.path().join(controller).join("carton/c1"), &["cgroup.procs"]);
    }
    fs::write(root.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    kernel_files(&root.path().join("cpuset/carton"), &["cpuset.cpus", "cpuset.mems"]);
    let leaf = |controller: &str| root.path().join(controller).join("carton/c1");
    kernel_files(&leaf("cpuset"), &["cpuset.cpus", "cpuset.mems"]);
    kernel_files(&leaf("cpu"), &["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"]);
    kernel_files(&leaf("pids"), &["pids.max"]);
    // Swap accounting on; BFQ's weight, not CFQ's.
    kernel_files(&leaf("memory"), &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]);
    kernel_files(&leaf("blkio"), &["blkio.bfq.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"]);
    let layout = Layout::legacy_at(root.path(), &controllers);
    assert_eq!(layout.version(), Some(Version::V1));

    let cgroup = Cgroup::create(&layout, "c1", &limits(), &Explain::off()).unwrap();
    let dir = |controller: &str| root.path().join(controller).join("carton/c1");
    // v1 counts memory and swap together, as Docker's flag does.
    assert_eq!(files(&dir("memory")), ["memory.limit_in_bytes = \"33554432\\n\"", "memory.memsw.limit_in_bytes = \"50331648\\n\""]);
    assert_eq!(files(&dir("cpu")), ["cpu.cfs_period_us = \"100000\\n\"", "cpu.cfs_quota_us = \"50000\\n\"", "cpu.shares = \"2048\\n\""]);
    // A v1 cpuset starts empty: carton copies the memory nodes down before setting the CPUs.
    assert_eq!(files(&root.path().join("cpuset/carton")), ["cpuset.cpus = \"0-3\\n\"", "cpuset.mems = \"0\\n\""]);
    assert_eq!(files(&dir("cpuset")), ["cpuset.cpus = \"0-3\\n0-1\\n\"", "cpuset.mems = \"0\\n\""]);
    assert_eq!(files(&dir("pids")), ["pids.max = \"100\\n\""]);
    assert_eq!(files(&dir("blkio")), ["blkio.bfq.weight = \"500\\n\"", "blkio.throttle.read_bps_device = \"8:0 1048576\\n\"", "blkio.throttle.write_bps_device = \"8:16 3145728\\n\""]);
    assert!(files(&dir("cpuacct")).is_empty() && files(&dir("freezer")).is_empty(), "joined, never limited");

    cgroup.join(nix::unistd::Pid::from_raw(4242), &Explain::off()).unwrap();
    for controller in controllers {
        assert_eq!(read(&dir(controller).join("cgroup.procs")), "4242\n", "{controller}");
    }
    cgroup.remove().unwrap();
    assert!(controllers.iter().all(|c| !dir(c).exists()));
}

#[test]
fn without_swap_accounting_the_default_swap_is_skipped_and_an_explicit_one_refused() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("memory")).unwrap();
    kernel_files(&root.path().join("memory/carton/c1"), &["cgroup.procs", "memory.limit_in_bytes"]);
    kernel_files(&root.path().join("memory/carton/c2"), &["cgroup.procs", "memory.limit_in_bytes"]);
    let layout = Layout::legacy_at(root.path(), &["memory"]);
    let only_memory = Limits { memory: Some(64 << 20), ..Limits::default() };
    Cgroup::create(&layout, "c1", &only_memory, &Explain::off()).unwrap();
    assert_eq!(files(&root.path().join("memory/carton/c1")), ["memory.limit_in_bytes = \"67108864\\n\""]);
    let with_swap = Limits { memory_swap: Some(Swap::Total(128 << 20)), ..only_memory };
    let error = Cgroup::create(&layout, "c2", &with_swap, &Explain::off()).unwrap_err();
    assert!(error.message.contains("does not account swap"), "{}", error.message);
    assert!(!root.path().join("memory/carton/c2").exists(), "the half-made cgroup was removed");
}

#[test]
fn without_an_io_scheduler_that_weighs_blkio_weight_is_refused() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("blkio")).unwrap();
    kernel_files(&root.path().join("blkio/carton/c1"), &["cgroup.procs", "blkio.throttle.read_bps_device"]);
    let layout = Layout::legacy_at(root.path(), &["blkio"]);
    let error = Cgroup::create(&layout, "c1", &Limits { blkio_weight: Some(300), ..Limits::default() }, &Explain::off()).unwrap_err();
    assert!(error.message.contains("no blkio.weight or blkio.bfq.weight") && error.message.contains("BFQ"), "{}", error.message);
    assert!(!root.path().join("blkio/carton/c1").exists());
}

#[test]
fn a_limit_whose_controller_is_missing_is_refused_and_nothing_is_made() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("memory")).unwrap();
    let layout = Layout::legacy_at(root.path(), &["memory"]);
    let limits = Limits { pids_limit: Some(10), ..Limits::default() };
    let error = Cgroup::create(&layout, "c1", &limits, &Explain::off()).unwrap_err();
    assert!(error.message.contains("needs the pids controller"), "{}", error.message);
    assert!(!root.path().join("memory/carton").exists());
}

#[test]
fn a_value_the_kernel_refuses_leaves_no_cgroup() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("pids")).unwrap();
    let layout = Layout::legacy_at(root.path(), &["pids"]);
    // A directory where the file should be: the write fails, as a refused value would.
    fs::create_dir_all(root.path().join("pids/carton/c1/pids.max")).unwrap();
    let limits = Limits { pids_limit: Some(10), ..Limits::default() };
    let error = Cgroup::create(&layout, "c1", &limits, &Explain::off()).unwrap_err();
    assert!(error.message.contains("cannot write \"10\" to") && error.message.contains("pids.max"), "{}", error.message);
    assert!(!root.path().join("pids/carton/c1").exists(), "the half-made cgroup was removed");
}
