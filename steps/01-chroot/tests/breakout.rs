//! The chapter's central demo, end to end with the step binary: the breakout escapes
//! plain chroot and fails after pivot_root. Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn step01(args: &[&str], rootfs: &Path, command: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_step01-chroot")).args(args).arg(rootfs).args(command).output().unwrap()
}

fn prepared_rootfs(dir: &Path) -> (PathBuf, PathBuf) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (chroot, mount namespaces): run it as root");
    let rootfs = dir.join("rootfs");
    let made = step01(&["rootfs"], &rootfs, &[]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(step01(&["add-breakout"], &rootfs, &[]).status.success());
    let secret = dir.join("host-secret");
    fs::write(&secret, "only the host knows this\n").unwrap();
    (rootfs, secret)
}

#[test]
fn breakout_escapes_plain_chroot() {
    let dir = tempfile::tempdir().unwrap();
    let (rootfs, secret) = prepared_rootfs(dir.path());
    // Inside the chroot the secret's path does not exist...
    let inside = step01(&["chroot"], &rootfs, &["cat", secret.to_str().unwrap()]);
    assert!(!inside.status.success());
    // ...but the breakout reaches it.
    let out = step01(&["chroot"], &rootfs, &["/bin/breakout", secret.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("escaped! {} says: only the host knows this\n", secret.display()), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(!rootfs.join(".breakout").exists(), "breakout left its jail directory behind");
}

#[test]
fn breakout_fails_after_pivot_root() {
    let dir = tempfile::tempdir().unwrap();
    let (rootfs, secret) = prepared_rootfs(dir.path());
    let out = step01(&["contain"], &rootfs, &["/bin/breakout", secret.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no way out of this root filesystem"));
}
