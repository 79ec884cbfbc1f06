//! The chapter's demo binary, end to end. Needs root.

use std::path::Path;
use std::process::Command;

fn step02(args: &[&str], rootfs: &Path, command: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_step02-namespaces")).args(args).arg(rootfs).args(command).output().unwrap()
}

#[test]
fn the_demo_runs_a_command_in_its_own_pid_and_uts_namespaces() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (namespaces and mounts): run it as root");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    step01::busybox::bootstrap(&rootfs).unwrap();
    let out = step02(&["--hostname", "demo"], &rootfs, &["sh", "-c", "hostname; echo $$; ps -o comm"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The hostname, the shell's own pid (1), and every process there is: just ps, because
    // busybox's sh replaces itself with the last command of -c, so ps is now PID 1.
    assert_eq!(text, "demo\n1\nCOMMAND\nps\n", "{}", String::from_utf8_lossy(&out.stderr));
}
