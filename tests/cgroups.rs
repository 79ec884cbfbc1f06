//! Step 04 on the host's real cgroups (v1, hybrid or v2: whatever this machine has).
//! Needs root. Counters are asserted, never wall time. The network is `none` throughout.

mod common;

use std::fs;

use common::*;
use step04::{Layout, Version};

/// The cgroup file `name` as the container sees it, whichever version the host has.
fn inside(controller: &str, file: &str) -> String {
    match cgroup_version() {
        Some(Version::V1) => format!("/sys/fs/cgroup/{controller}/{file}"),
        _ => format!("/sys/fs/cgroup/{file}"),
    }
}

#[test]
fn a_fork_bomb_is_capped_by_the_pids_limit() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // A bomb with a fuse: 2^11 processes at most, should the limit fail. It runs in the
    // background; the container's shell waits with its own `read` (no fork: a failed fork
    // would end it) on a stdin that stays open, until the bomb is over. Then it reads the
    // limit, the refused forks (pids.events) and the peak (pids.peak, kernel 6.1 and later).
    let script = format!(
        "bomb() {{ [ $1 -gt 0 ] && {{ bomb $(($1 - 1)) & bomb $(($1 - 1)) & }}; sleep 2; }}; \
         bomb 10 2>/dev/null & read -t 4 line; \
         cat {} {}; cat {} 2>/dev/null || echo no peak",
        inside("pids", "pids.max"),
        inside("pids", "pids.events"),
        inside("pids", "pids.peak")
    );
    let mut child = carton_run(&rootfs).args(["-i", "--pids-limit", "30", "--", "sh", "-c", &script]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let _open_stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"30"), "pids.max inside: {text}{}", stderr(&out));
    let refused = lines.iter().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    assert!(refused > 0, "pids.events counts the forks the limit refused: {text}");
    if let Some(peak) = lines.last().and_then(|l| l.parse::<u64>().ok()) {
        assert!(peak <= 30, "the bomb got past the limit: {text}");
    }
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // The shell doubles a string to 64 MiB in its own memory, under a 32 MiB limit. It starts no
    // child (a child chosen by the OOM killer first would leave the shell running a while).
    const HOG: &str = "x=a; i=0; while [ $i -lt 26 ]; do x=$x$x; i=$((i + 1)); done; echo survived";
    let out = run_in(&rootfs, &["--memory", "32m"], &["sh", "-c", HOG]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "the hog survived");
    assert!(stderr(&out).contains("carton: OOM killed: the kernel's out-of-memory killer ended the container (its --memory limit is 32 MiB)"), "{}", stderr(&out));
    // Without the limit the same command survives: it was the limit, not the machine.
    let out = run_in(&rootfs, &[], &["sh", "-c", HOG]);
    assert_eq!(stdout(&out), "survived\n");
}

#[test]
fn a_busy_loop_under_a_cpu_quota_is_throttled() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let script = format!("timeout 1 sh -c 'while :; do :; done'; cat {}", inside("cpu", "cpu.stat"));
    let out = run_in(&rootfs, &["--cpus", "0.2"], &["sh", "-c", &script]);
    let text = stdout(&out);
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse::<u64>().ok()).unwrap_or(0);
    assert!(value("nr_periods") > 0, "{text}{}", stderr(&out));
    // A loop that wants a whole CPU and gets a fifth of one is held back in most periods.
    assert!(value("nr_throttled") * 2 > value("nr_periods"), "{text}");
    let throttled = value("throttled_time") + value("throttled_usec") * 1000;
    assert!(throttled > 0, "{text}");
}

#[test]
fn inside_its_own_cgroup_is_the_root_and_read_only() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--pids-limit", "50"], &["sh", "-c", &format!("cat /proc/self/cgroup; cat {}; mkdir /sys/fs/cgroup/x 2>&1", inside("pids", "pids.max"))]);
    let text = stdout(&out);
    let cgroup_lines: Vec<&str> = text.lines().filter(|l| l.contains(':')).take_while(|l| !l.contains("mkdir")).collect();
    assert!(!cgroup_lines.is_empty(), "{text}{}", stderr(&out));
    assert!(cgroup_lines.iter().all(|l| l.ends_with(":/")), "every hierarchy shows the container's cgroup as /: {text}");
    assert!(text.contains("\n50\n"), "the container sees its own limit: {text}");
    assert!(text.contains("Read-only file system"), "{text}");
}

#[test]
fn the_cgroup_is_gone_after_the_container_exits() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--memory", "64m"], &["hostname"]);
    let short_id = stdout(&out).trim().to_string();
    assert_eq!(short_id.len(), 12, "{}", stderr(&out));
    let layout = Layout::detect();
    let roots: Vec<std::path::PathBuf> = match cgroup_version() {
        Some(Version::V1) => layout.hierarchies.iter().map(|h| h.path.join("carton")).collect(),
        _ => vec![layout.v2_mount.clone().unwrap().join("carton")],
    };
    for root in roots.into_iter().filter(|root| root.exists()) {
        let left: Vec<String> = fs::read_dir(&root).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|name| name.starts_with(&short_id)).collect();
        assert!(left.is_empty(), "{} still holds {left:?}", root.display());
    }
}

#[test]
fn bad_limits_are_clear_errors_before_anything_is_made() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    for (flags, message) in [
        (&["--memory", "10x"][..], "invalid --memory \"10x\": write a size such as 512m"),
        (&["--memory", "1m"][..], "the minimum memory limit is 6m"),
        (&["--cpus", "-1"][..], "--cpus -1: the range is 0.01 to"),
        (&["--cpuset-cpus", "99"][..], "--cpuset-cpus 99: this machine has no CPU 99"),
        (&["--pids-limit", "lots"][..], "invalid --pids-limit \"lots\""),
        (&["--memory-swap", "1g"][..], "--memory-swap needs --memory as well"),
        (&["--memory", "64m", "--memory-swap", "32m"][..], "must be at least as large"),
        (&["--device-read-bps", "/dev/null:1mb"][..], "/dev/null is not a block device"),
    ] {
        let out = carton_run(&rootfs).env("CARTON_ROOT", &state).args(flags).args(["--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{flags:?}: {}", stderr(&out));
        assert!(!state.exists(), "{flags:?}: refused only after something was made");
    }
}

#[test]
fn explain_shows_each_cgroup_file_written_with_its_echo() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--explain", "--pids-limit", "20"], &["true"]);
    let trace = stderr(&out);
    assert!(trace.contains("[explain] ── chapter 4: limits: cgroups ──"), "{trace}");
    let pids_max = trace.lines().find(|l| l.contains("shell:   echo 20 > ") && l.ends_with("/pids.max"));
    assert!(pids_max.is_some_and(|l| l.contains("/carton/")), "{trace}");
    // Joining is shown too: a move on v1; on v2 the child is born in its cgroup (clone3).
    if cgroup_version() == Some(Version::V2) {
        assert!(trace.contains("syscall: clone3(") && trace.contains("|CLONE_INTO_CGROUP"), "{trace}");
        assert!(trace.lines().any(|l| l.contains("the process was born in its cgroup ") && l.ends_with(": nothing to move")), "{trace}");
    } else {
        assert!(trace.lines().any(|l| l.contains("shell:   echo ") && l.ends_with("/cgroup.procs")), "{trace}");
    }
    assert!(trace.contains("shell:   unshare --cgroup"), "{trace}");
}

/// The same Docker flags become different files, and sometimes different numbers, in each
/// mode: this test runs on both (here and in the v2 VM) and asserts each mode's own.
#[test]
fn each_limit_lands_in_its_own_versions_files() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // A block device both kinds of test machine have: loop devices exist without a backing file.
    let (major, minor) = (7, 0);
    assert!(std::path::Path::new("/sys/dev/block/7:0").exists(), "this test needs /dev/loop0 (the loop driver)");
    let flags = ["-m", "64m", "--memory-swap", "96m", "--memory-reservation", "32m", "--memory-swappiness", "10", "--oom-kill-disable"];
    let flags = [&flags[..], &["--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "40", "--device-write-bps", "/dev/loop0:1mb"]].concat();
    let (files, expected): (Vec<String>, Vec<String>) = match cgroup_version() {
        Some(Version::V1) => {
            let files = [
                ("memory", "memory.limit_in_bytes", "67108864".to_string()),
                // v1 counts memory and swap together, as Docker's flag does: 96 MiB.
                ("memory", "memory.memsw.limit_in_bytes", "100663296".to_string()),
                ("memory", "memory.soft_limit_in_bytes", "33554432".to_string()),
                ("memory", "memory.swappiness", "10".to_string()),
                ("cpu", "cpu.cfs_quota_us", "50000".to_string()),
                ("cpu", "cpu.cfs_period_us", "100000".to_string()),
                ("cpu", "cpu.shares", "512".to_string()),
                ("pids", "pids.max", "40".to_string()),
                ("blkio", "blkio.throttle.write_bps_device", format!("{major}:{minor} 1048576")),
            ];
            files.into_iter().map(|(c, f, v)| (inside(c, f), v)).unzip()
        }
        Some(Version::V2) => {
            let files = [
                ("memory.max", "67108864".to_string()),
                // v2's file holds the swap alone: 96 MiB - 64 MiB.
                ("memory.swap.max", "33554432".to_string()),
                // v2 has no swappiness and never pauses at the limit: those two are ignored.
                ("memory.low", "33554432".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                // shares 2..262144 onto weight 1..10000: 1 + (512 - 2) * 9999 / 262142 = 20.
                ("cpu.weight", "20".to_string()),
                ("pids.max", "40".to_string()),
                ("io.max", format!("{major}:{minor} rbps=max wbps=1048576 riops=max wiops=max")),
            ];
            files.into_iter().map(|(f, v)| (inside("", f), v)).unzip()
        }
        None => panic!("this machine has no cgroup file system"),
    };
    let out = run_in(&rootfs, &flags, &["sh", "-c", &format!("for f in {}; do cat $f; done", files.join(" "))]);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines, expected, "{files:?}\n{}", stderr(&out));
}
