//! The chapter's demo binary, end to end. Needs root.

use std::process::Command;

#[test]
fn the_demo_gives_the_container_a_network_of_its_own_with_only_loopback() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (namespaces and mounts): run it as root");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    step01::busybox::bootstrap(&rootfs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_step03-network"))
        .env("CARTON_ROOT", dir.path().join("state"))
        .args(["--add-host", "db:192.0.2.7"])
        .arg(&rootfs)
        .args(["sh", "-c", "ls /sys/class/net; tail -n 1 /etc/hosts"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lo\n192.0.2.7\tdb\n", "{}", String::from_utf8_lossy(&out.stderr));
}
