//! Pinned output: the `--explain` trace and the `carton doctor` report, with the values
//! that differ per machine redacted. Needs root.

mod common;

use std::fs;
use std::path::Path;

use common::*;

#[test]
fn explain_trace_of_a_run() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--explain"], &["echo", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n", "--explain must not touch the container's stdout");
    let filters = [
        (regex_escape(rootfs.to_str().unwrap()), "[ROOTFS]"),
        (r"/var/lib/carton/containers/[0-9a-f]{64}".to_string(), "[STATE]"),
        (r"\b[0-9a-f]{12}\b".to_string(), "[SHORT ID]"),
        (r"(process |/proc/|--target )\d+".to_string(), "$1[PID]"),
    ];
    insta::with_settings!({ filters => filters.iter().map(|(a, b)| (a.as_str(), *b)).collect::<Vec<_>>() }, {
        insta::assert_snapshot!("explain_run_echo", without_cgroup_steps(&stderr(&out)));
    });
}

/// The trace with what depends on the machine left out: chapter 4's steps (which cgroup
/// files exist, and how many hierarchies there are: v1 or v2, its CPUs, whether carton's
/// cgroup parent exists yet; on v2 the clone that is a clone3), and, of chapter 8, how the device rules are put on the cgroup
/// (files on v1, an eBPF program on v2) and which masked paths this kernel has. tests/cgroups.rs
/// and tests/security.rs check those on this machine.
fn without_cgroup_steps(trace: &str) -> String {
    let mut kept = String::new();
    let mut in_chapter_4 = false;
    let mut skipping_step = false;
    let mut hid_paths = false;
    for line in trace.lines() {
        if line.starts_with("[explain] ── ") {
            in_chapter_4 = line.contains("chapter 4:");
            if in_chapter_4 {
                kept += "[explain] ── chapter 4: its steps depend on this machine's cgroups ──\n";
                continue;
            }
        }
        if line.starts_with("[explain] ") {
            skipping_step = false;
            if line.starts_with("[explain] device rules for the container's cgroup") {
                kept += "[explain] device rules for the container's cgroup: [devices files on v1, an eBPF program on v2]\n";
                skipping_step = true;
            } else if line.starts_with("[explain] hide the ") {
                if !hid_paths {
                    kept += "[explain] hide the masked paths this kernel has\n";
                }
                hid_paths = true;
                skipping_step = true;
            }
        }
        // On v2 the child is born in its cgroup: chapter 1's clone is a clone3 with
        // CLONE_INTO_CGROUP (tests/cgroups.rs checks it there); shown as v1's plain clone.
        let line = match line.strip_suffix("|CLONE_INTO_CGROUP, exit_signal: SIGCHLD, cgroup: the cgroup's directory)") {
            Some(flags) => format!("{}|SIGCHLD)", flags.replacen("syscall: clone3(", "syscall: clone(", 1)),
            None => line.to_string(),
        };
        if !in_chapter_4 && !skipping_step {
            kept += &line;
            kept += "\n";
        }
    }
    kept
}

#[test]
fn explain_is_silent_when_off() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &[], &["echo", "hello"]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("hello\n", ""));
}

#[test]
fn doctor_report() {
    require_root();
    let out = carton().arg("doctor").output().unwrap();
    assert!(out.status.success(), "doctor failed on the test machine:\n{}", stdout(&out));
    let filters = vec![
        (r"Linux \S+ \(", "Linux [RELEASE] ("),
        (r"(cgroups\s+)\S.*", "$1[CGROUP LAYOUT]"),
        (r"(busybox-static\s+)\S.*", "$1[BUSYBOX]"),
        (r"(firewall\s+)\S+", "$1[NFT]"),
        (r"works in \S+", "works in [TMPDIR]"),
    ];
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!("doctor", stdout(&out));
    });
}

/// doctor's cgroup line must match what the kernel says /sys/fs/cgroup is.
#[test]
fn doctor_reports_the_real_cgroup_mode() {
    require_root();
    let out = stdout(&carton().arg("doctor").output().unwrap());
    let line = out.lines().find(|l| l.contains("cgroups")).expect("a cgroups line");
    let expected = match (fs_type(Path::new("/sys/fs/cgroup")), fs_type(Path::new("/sys/fs/cgroup/unified"))) {
        (CGROUP2, _) => "v2 (unified)",
        (_, CGROUP2) => "hybrid: v1 controllers",
        _ => "v1 (legacy)",
    };
    assert!(line.contains(expected), "expected {expected:?} in {line:?}");
    // And the kernel's answer is the mode this run expects (CARTON_EXPECT_CGROUP in the v2 VM).
    assert_eq!(cgroup_version() == Some(step04::Version::V2), expected.starts_with("v2"), "{line:?}");
    if expected.starts_with("hybrid") {
        for controller in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let name = controller.file_name().into_string().unwrap();
            if ["cpu", "memory", "pids"].contains(&name.as_str()) {
                assert!(line.contains(&name), "{name} missing from {line:?}");
            }
        }
    }
}

const CGROUP2: Option<i64> = Some(0x63677270); // CGROUP2_SUPER_MAGIC

fn fs_type(path: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(path).ok().map(|s| s.filesystem_type().0)
}

#[test]
fn doctor_fails_when_something_required_is_missing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dynamic = dir.path().join("busybox");
    fs::copy(std::env::current_exe().unwrap(), &dynamic).unwrap();
    for (busybox, why) in [(dir.path().join("missing"), "no busybox found"), (dynamic, "is dynamically linked")] {
        let out = carton().arg("doctor").env("CARTON_BUSYBOX", &busybox).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let line = text.lines().find(|l| l.contains("busybox-static")).unwrap();
        assert!(line.starts_with("  FAIL") && line.contains(why), "{line}");
        assert!(text.contains("fix: apt-get install busybox-static"), "{text}");
        assert!(text.contains("not ready: 1 check failed"), "{text}");
    }
}
