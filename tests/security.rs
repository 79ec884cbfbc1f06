//! Step 08 seen from inside a container: each escape of a container with root's full power
//! is tried by default (where it must fail) and with `--privileged` (where harmless forms
//! of it succeed, so the test proves that the defaults do the blocking). Needs root.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

/// A state root with the busybox image, removed on drop.
fn state_with_busybox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = carton().env("CARTON_ROOT", dir.path()).args(["bootstrap", "busybox"]).output().unwrap();
    assert!(out.status.success(), "bootstrap: {}", stderr(&out));
    dir
}

/// `carton run --rm --network none [flags] busybox sh -c SCRIPT`.
fn sh(state: &Path, flags: &[&str], script: &str) -> Output {
    carton_run_image(state).args(flags).args(["busybox", "sh", "-c", script]).stdin(Stdio::null()).output().unwrap()
}

/// The value of `field` in /proc/self/status, as the script printed it.
fn field<'a>(text: &'a str, field: &str) -> &'a str {
    text.lines().find_map(|line| line.strip_prefix(field)).map(str::trim).unwrap_or_else(|| panic!("no {field} in {text}"))
}

const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn a_default_container_has_dockers_capabilities_and_seccomp_and_cannot_escape() {
    require_root();
    let state = state_with_busybox();
    let host_ratio = std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap();
    let script = r#"grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status
        mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED
        mount -o remount,rw /sys 2>/dev/null && echo SYS-RW
        mount -t proc proc /tmp 2>/dev/null && echo PROC
        echo 51 2>/dev/null > /proc/sys/vm/overcommit_ratio && echo SYSCTL
        echo 1 2>/dev/null > /proc/sys/net/ipv4/ip_forward && echo NETSYSCTL
        echo 1 2>/dev/null > /sys/fs/cgroup/pids/pids.max && echo CGROUP-V1
        echo 1 2>/dev/null > /sys/fs/cgroup/pids.max && echo CGROUP-V2
        hostname changed 2>/dev/null && echo HOSTNAME
        dmesg >/dev/null 2>&1 && echo DMESG
        unshare -U true 2>/dev/null && echo USERNS
        mknod /dev/xloop b 7 0 && echo MKNOD
        head -c 1 /dev/xloop 2>&1 | grep -q 'not permitted' && echo OPEN-REFUSED
        echo ok > /dev/null && echo NULL-OK
        for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $p ] && [ -n "$(head -c 1 $p 2>/dev/null)" ] && echo READ $p; done
        [ -z "$(ls /sys/firmware 2>/dev/null)" ] && echo FIRMWARE-HIDDEN
        touch /proc/sysrq-trigger 2>/dev/null && echo SYSRQ
        true"#;
    let out = sh(state.path(), &["--pids-limit", "20", "-m", "64m"], script);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for (name, want) in
        [("CapBnd:", DOCKER_CAPS), ("CapEff:", DOCKER_CAPS), ("CapPrm:", DOCKER_CAPS), ("CapInh:", "0000000000000000"), ("CapAmb:", "0000000000000000"), ("Seccomp:", "2"), ("NoNewPrivs:", "0")]
    {
        assert_eq!(field(&text, name), want, "{name} {text}");
    }
    for escaped in ["MOUNTED", "SYS-RW", "PROC", "SYSCTL", "NETSYSCTL", "CGROUP-V1", "CGROUP-V2", "HOSTNAME", "DMESG", "USERNS", "READ ", "SYSRQ"] {
        assert!(!text.contains(escaped), "{escaped} worked from a default container:\n{text}");
    }
    for held in ["MKNOD", "OPEN-REFUSED", "NULL-OK", "FIRMWARE-HIDDEN"] {
        assert!(text.contains(held), "{held} missing:\n{text}{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap(), host_ratio);
}

#[test]
fn seccomp_refuses_what_dockers_profile_refuses_and_clone3_says_enosys() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    step08::probe::install(&rootfs).unwrap();
    let probe = |flags: &[&str]| {
        let out = run_in(&rootfs, flags, &["/bin/probe", "clone3", "keyctl", "userns", "kexec_load"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);
    assert_eq!(probe(&[]), format!("clone3={enosys}\nkeyctl={eperm}\nuserns={eperm}\nkexec_load={eperm}\n"));
    // The same capabilities without the filter: the kernel itself lets keyctl and a new user
    // namespace through (no capability is needed for them), so it was seccomp that refused.
    let unconfined = probe(&["--security-opt", "seccomp=unconfined"]);
    assert!(unconfined.contains("keyctl=0\n") && unconfined.contains("userns=0\n"), "{unconfined}");
    assert!(!unconfined.contains(&format!("clone3={enosys}")), "{unconfined}");
    // Threads and pipes still work: clone without namespace flags is allowed.
    let out = run_in(&rootfs, &[], &["sh", "-c", "echo piped | cat"]);
    assert_eq!(stdout(&out), "piped\n", "{}", stderr(&out));
}

#[test]
fn privileged_gives_the_power_back_and_the_same_probes_succeed() {
    require_root();
    let state = state_with_busybox();
    let script = r#"grep -E '^(CapEff|Seccomp):' /proc/self/status
        mount -t tmpfs none /tmp && echo MOUNTED && umount /tmp
        mknod /dev/xloop b 7 0 && head -c 0 /dev/xloop && echo OPENED
        hostname changed && echo HOSTNAME
        echo 1 > /proc/sys/net/ipv4/ip_forward && echo NETSYSCTL
        true"#;
    let out = sh(state.path(), &["--privileged"], script);
    let text = stdout(&out);
    let own_bounding = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(field(&text, "CapEff:"), field(&own_bounding, "CapBnd:"), "{text}");
    assert_eq!(field(&text, "Seccomp:"), "0");
    // (A namespaced setting: the container's own network namespace, not the host's.)
    for worked in ["MOUNTED", "OPENED", "HOSTNAME", "NETSYSCTL"] {
        assert!(text.contains(worked), "{worked} missing with --privileged:\n{text}{}", stderr(&out));
    }
}

#[test]
fn cap_flags_users_and_profiles_change_what_the_container_may_do() {
    require_root();
    let state = state_with_busybox();
    let out = sh(state.path(), &["--cap-drop", "ALL", "-u", "1000"], "grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    assert_eq!(field(&stdout(&out), "CapEff:"), "0000000000000000", "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "CapBnd:"), "0000000000000000");
    // A user other than root has no capability in use, the bounding set stays Docker's.
    let out = sh(state.path(), &["-u", "1000"], "grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    assert_eq!((field(&stdout(&out), "CapEff:"), field(&stdout(&out), "CapBnd:")), ("0000000000000000", DOCKER_CAPS));
    let out = sh(state.path(), &["--cap-drop", "chown", "--cap-add", "CAP_SYS_PTRACE"], "grep CapEff /proc/self/status; chown 1 /tmp 2>&1");
    assert_eq!(field(&stdout(&out), "CapEff:"), "00000000a80c25fa", "{}", stdout(&out));
    assert!(stdout(&out).contains("Operation not permitted"));

    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("deny-mkdir.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#).unwrap();
    let option = format!("seccomp={}", profile.display());
    let out = sh(state.path(), &["--security-opt", &option], "mkdir /tmp/new 2>&1; touch /tmp/file && echo touched");
    assert_eq!(stdout(&out), "mkdir: can't create directory '/tmp/new': Operation not permitted\ntouched\n", "{}", stderr(&out));

    let out = sh(state.path(), &["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges"], "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status");
    assert_eq!((field(&stdout(&out), "Seccomp:"), field(&stdout(&out), "NoNewPrivs:")), ("0", "1"));
    // no_new_privs with the default profile: loaded last, after capset.
    let out = sh(state.path(), &["--security-opt", "no-new-privileges=true"], "grep -E '^(Seccomp|CapEff):' /proc/self/status");
    assert_eq!((field(&stdout(&out), "Seccomp:"), field(&stdout(&out), "CapEff:")), ("2", DOCKER_CAPS), "{}", stderr(&out));

    let out = sh(state.path(), &["--read-only"], "touch /file 2>&1; touch /tmp/file 2>&1");
    assert_eq!(stdout(&out).matches("Read-only file system").count(), 2, "{}", stdout(&out));
}

#[test]
fn bad_security_options_are_refused_before_anything_runs() {
    require_root();
    let state = state_with_busybox();
    for (flags, says) in [
        (vec!["--security-opt", "sekcomp=unconfined"], "unknown --security-opt \"sekcomp=unconfined\""),
        (vec!["--security-opt", "seccomp=/nonexistent.json"], "cannot read the seccomp profile /nonexistent.json"),
        (vec!["--cap-add", "FLY"], "unknown capability \"FLY\""),
        (vec!["--device", "/etc/passwd"], "not a device node"),
        (vec!["--security-opt", "no-new-privileges=maybe"], "give true or false"),
    ] {
        let out = sh(state.path(), &flags, "echo RAN");
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("RAN"));
    }
    let containers = std::fs::read_dir(state.path().join("containers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(containers, 0, "a refused run leaves no container behind");
}

#[test]
fn a_device_given_with_device_can_be_used_and_no_other() {
    require_root();
    let state = state_with_busybox();
    let out = sh(
        state.path(),
        &["--device", "/dev/loop0:/dev/disk0:r"],
        "head -c 0 /dev/disk0 && echo READ-OK; echo x 2>&1 > /dev/disk0 | grep -c 'not permitted'; mknod /dev/xloop b 7 1; head -c 0 /dev/xloop 2>&1 | grep -c 'not permitted'",
    );
    assert_eq!(stdout(&out), "READ-OK\n1\n1\n", "{}", stderr(&out));
}

#[test]
fn exec_gets_the_containers_capabilities_seccomp_and_cgroup() {
    require_root();
    let state = state_with_busybox();
    let id = create_and_start(state.path(), &["--network", "none", "--cap-drop", "NET_RAW", "busybox", "sleep", "30"]);
    let exec = |args: &[&str]| carton().env("CARTON_ROOT", state.path()).arg("exec").args(args).stdin(Stdio::null()).output().unwrap();
    let out = exec(&[&id, "sh", "-c", "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; mount -t tmpfs none /tmp 2>&1; cat /proc/self/cgroup | grep -c ':/$'"]);
    let text = stdout(&out);
    assert_eq!(field(&text, "CapEff:"), "00000000a80405fb", "{text}{}", stderr(&out)); // without NET_RAW (13)
    assert_eq!(field(&text, "Seccomp:"), "2");
    assert!(text.contains("permission denied") || text.contains("not permitted"), "{text}");
    let out = exec(&["-u", "1000", &id, "grep", "CapEff", "/proc/self/status"]);
    assert_eq!(field(&stdout(&out), "CapEff:"), "0000000000000000", "{}", stderr(&out));
    let removed = carton().env("CARTON_ROOT", state.path()).args(["rm", "-f", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
}

#[test]
fn the_runtime_binary_cannot_be_reopened_for_writing_from_inside_cve_2019_5736() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A copy of carton that nothing else runs: "text file busy" cannot hide a writable file.
    let copy = dir.path().join("carton");
    std::fs::copy(env!("CARGO_BIN_EXE_carton"), &copy).unwrap();
    let rootfs = busybox_rootfs(dir.path());
    step08::probe::install(&rootfs).unwrap();
    // 2019's exploit: the container's program is a script whose interpreter is /proc/self/exe,
    // so an exec of it runs the runtime's own binary inside the container.
    std::fs::write(rootfs.join("bin/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(rootfs.join("bin/evil"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    // The container's monitor runs carton for as long as the container does: from the
    // usual binary, so that nothing runs the copy once the execs are done (a file being
    // run answers ETXTBSY before EROFS, and would hide whether the copy was reachable).
    let carton = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_carton"));
        command.env("CARTON_ROOT", &state).stdin(Stdio::null());
        command
    };
    let carton_copy = || {
        let mut command = std::process::Command::new(&copy);
        command.env("CARTON_ROOT", &state).stdin(Stdio::null());
        command
    };
    let created = carton().args(["create", "--network", "none", "--rootfs"]).arg(&rootfs).args(["--", "/bin/probe", "hunt", "/stop-hunting", "60000"]).output().unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    assert!(carton().args(["start", &id]).output().unwrap().status.success());
    for _ in 0..20 {
        let exec = carton_copy().args(["exec", &id, "/bin/evil"]).output().unwrap();
        assert_ne!(exec.status.code(), Some(0), "the script ran carton's binary, which refuses its arguments");
    }
    // Every carton process has ended: the attacker may try its descriptors now (a file of
    // the root filesystem, which the container sees through its overlay).
    std::fs::write(rootfs.join("stop-hunting"), "").unwrap();
    // The attacker prints its report and exits: `wait` returns once the monitor has recorded it.
    let waited = carton().args(["wait", &id]).output().unwrap();
    assert_eq!(stdout(&waited), "0\n", "the attacker ended well: {}", stderr(&waited));
    let report = stdout(&carton().args(["logs", &id]).output().unwrap());
    let removed = carton().args(["rm", "-f", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
    let seen: usize = report.lines().find_map(|l| l.strip_prefix("seen=")).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no report: {report}"));
    assert!(seen > 0, "the attacker never saw the runtime's binary run in the container: {report}");
    let erofs = format!("reopen={}", libc::EROFS);
    for line in report.lines().filter(|l| l.starts_with("reopen=")) {
        assert_eq!(line, erofs, "the runtime's binary was reachable for writing: {report}");
    }
}

#[test]
fn the_first_process_cannot_run_the_runtimes_binary_through_proc_self_exe() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // 2019's exploit in its first form: the container's own entrypoint leads to
    // /proc/self/exe, by a script's interpreter, a script naming that script, or a symlink.
    let executable = |path: &str, text: &str| {
        std::fs::write(rootfs.join(path), text).unwrap();
        std::fs::set_permissions(rootfs.join(path), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    executable("bin/evil", "#!/proc/self/exe\n");
    executable("bin/evil-twice", "#!/bin/evil --flag\n");
    std::os::unix::fs::symlink("/proc/self/exe", rootfs.join("bin/evil-link")).unwrap();
    for program in ["/bin/evil", "/bin/evil-twice", "/bin/evil-link", "/proc/self/exe"] {
        let out = run_in(&rootfs, &[], &[program]);
        assert_eq!(out.status.code(), Some(126), "{program}: {}", stderr(&out));
        assert!(stderr(&out).contains("leads to carton's own binary"), "{program}: {}", stderr(&out));
    }
    // A script with an ordinary interpreter still runs.
    executable("bin/fine", "#!/bin/sh\necho fine\n");
    let out = run_in(&rootfs, &[], &["/bin/fine"]);
    assert_eq!(stdout(&out), "fine\n", "{}", stderr(&out));
}

#[test]
fn a_working_directory_through_proc_self_fd_never_reaches_the_host_cve_2024_21626() {
    require_root();
    let state = state_with_busybox();
    let id = create_and_start(state.path(), &["--network", "none", "busybox", "sleep", "30"]);
    // The 2024 attack: the working directory is a descriptor the runtime still holds on a
    // host directory when it changes into it. carton holds none there, so every one fails.
    for fd in 3..16 {
        let cwd = format!("/proc/self/fd/{fd}");
        let run = sh(state.path(), &["-w", &cwd], "pwd");
        assert_ne!(run.status.code(), Some(0), "run -w {cwd} started in {}", stdout(&run));
        let exec = carton().env("CARTON_ROOT", state.path()).args(["exec", "-w", &cwd, &id, "pwd"]).stdin(Stdio::null()).output().unwrap();
        assert_ne!(exec.status.code(), Some(0), "exec -w {cwd} started in {}", stdout(&exec));
    }
    let removed = carton().env("CARTON_ROOT", state.path()).args(["rm", "-f", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
}

#[test]
fn no_host_descriptor_or_directory_leaks_into_the_container_or_an_exec_cve_2024_21626() {
    require_root();
    let state = state_with_busybox();
    // Each process lists its descriptors (ls's own directory handle is the 4th) and its
    // working directory: 0, 1, 2 and the container's own /.
    let script = "ls /proc/self/fd | tr '\\n' ' '; echo; readlink /proc/self/cwd";
    let out = sh(state.path(), &[], script);
    assert_eq!(stdout(&out), "0 1 2 3 \n/\n", "{}", stderr(&out));
    let id = create_and_start(state.path(), &["--network", "none", "busybox", "sleep", "30"]);
    let exec = carton().env("CARTON_ROOT", state.path()).args(["exec", "-w", "/tmp", &id, "sh", "-c", script]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(stdout(&exec), "0 1 2 3 \n/tmp\n", "{}", stderr(&exec));
    let removed = carton().env("CARTON_ROOT", state.path()).args(["rm", "-f", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
}

#[test]
fn the_init_has_the_containers_restrictions_and_is_not_dumpable() {
    require_root();
    let state = state_with_busybox();
    // PID 1 is carton's init (carton's binary): same capabilities and filter as the command,
    // and its /proc/1/exe closed to the container's processes, which lack CAP_SYS_PTRACE.
    let out = sh(state.path(), &["--init"], "grep -E '^(CapEff|Seccomp):' /proc/1/status; readlink /proc/1/exe 2>&1 || echo DENIED");
    let text = stdout(&out);
    assert_eq!((field(&text, "CapEff:"), field(&text, "Seccomp:")), (DOCKER_CAPS, "2"), "{text}{}", stderr(&out));
    assert!(text.trim_end().ends_with("DENIED"), "{text}");
}

#[test]
fn a_symlink_in_the_root_filesystem_cannot_make_the_runtime_write_on_the_host() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    // The image's /devices points at a directory of the host, by absolute path: the runtime
    // must resolve it inside the container's root (step 07's in-root resolution), as the
    // container itself would, and make the node there.
    let host_dir = dir.path().join("host-only");
    fs_create(&host_dir);
    std::os::unix::fs::symlink(&host_dir, rootfs.join("devices")).unwrap();
    let out = run_in(&rootfs, &["--device", "/dev/null:/devices/null"], &["sh", "-c", "echo ok > /devices/null && echo wrote"]);
    assert_eq!(stdout(&out), "wrote\n", "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0, "nothing was made on the host");
    assert!(rootfs.join(host_dir.strip_prefix("/").unwrap()).join("null").exists(), "the node is inside the root filesystem");
}

fn fs_create(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
}
