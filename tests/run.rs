//! `carton run --rootfs`: the container's view of the file system, exit codes, and bad input.
//! Needs root.

mod common;

use std::fs;
use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn root_is_the_rootfs_and_host_files_are_invisible() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    fs::write(rootfs.join("rootfs-marker"), "inside").unwrap();
    let host_marker = dir.path().join("host-marker");
    fs::write(&host_marker, "outside").unwrap();
    let host_marker = host_marker.to_str().unwrap();

    let out = run_in(&rootfs, &[], &["sh", "-c", &format!("cat /rootfs-marker; test -e {host_marker} && echo host-visible || echo host-hidden")]);
    assert_eq!(stdout(&out), "insidehost-hidden\n", "stderr: {}", stderr(&out));
    assert!(out.status.success());
}

#[test]
fn proc_dev_and_sys_are_the_containers_own() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(
        &rootfs,
        &[],
        &["sh", "-c", "ls /dev | tr '\\n' ' '; echo; grep -E ' / | /proc | /dev | /sys ' /proc/self/mountinfo | cut -d' ' -f5,6,9; touch /sys/x 2>&1 | grep -o 'Read-only file system'"],
    );
    let text = stdout(&out);
    assert_eq!(text.lines().next().unwrap(), "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ", "only the safe devices: {text}");
    assert!(text.contains("\n/ rw"), "{text}");
    assert!(text.contains("/proc rw,nosuid,nodev,noexec,relatime proc"), "{text}");
    assert!(text.contains("/dev rw,nosuid tmpfs"), "{text}");
    assert!(text.contains("/sys ro,nosuid,nodev,noexec,relatime sysfs"), "{text}");
    assert!(text.contains("Read-only file system"), "/sys must be read-only: {text}");
    // Only the container's own mounts: nothing of the host's table is visible.
    // (Below /proc and /sys: chapter 8's masked and read-only paths, counted in tests/security.rs.)
    let count = run_in(&rootfs, &[], &["sh", "-c", "cut -d' ' -f5 /proc/self/mountinfo | grep -vc -e '^/sys/' -e '^/proc/'; grep -c ' /sys/fs/cgroup' /proc/self/mountinfo"]);
    let counts: Vec<String> = stdout(&count).lines().map(String::from).collect();
    assert_eq!(counts[0], "10", "/, /proc, /dev, /dev/pts, /dev/shm, /sys, /etc/hostname, /etc/hosts, /etc/resolv.conf, /dev/mqueue");
    assert_ne!(counts[1], "0", "and the container's own cgroups (chapter 4)");
}

#[test]
fn a_run_leaves_the_host_mount_table_unchanged() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let before = host_mounts();
    for (command, code) in [("true", 0), ("false", 1), ("no-such-command", 127)] {
        let out = carton_run(&rootfs).env("CARTON_ROOT", &state).args(["--", command]).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{command}: {}", stderr(&out));
    }
    assert_eq!(host_mounts(), before, "a mount leaked to the host");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(state.to_str().unwrap()), "a network namespace stayed pinned: {mountinfo}");
}

#[test]
fn the_breakout_that_escapes_chroot_fails_in_carton() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    step01::breakout::install(&rootfs).unwrap();
    let host_marker = dir.path().join("host-secret");
    fs::write(&host_marker, "host secret\n").unwrap();
    let out = run_in(&rootfs, &[], &["/bin/breakout", host_marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("host secret"));
    assert!(stderr(&out).contains("no way out of this root filesystem"), "{}", stderr(&out));
}

#[test]
fn exit_codes_pass_through() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    assert_eq!(run_in(&rootfs, &[], &["true"]).status.code(), Some(0));
    assert_eq!(run_in(&rootfs, &[], &["sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(run_in(&rootfs, &[], &["sh", "-c", "exit 7"]).status.code(), Some(7));
    // Killed by a signal: 128 + the signal number, as a shell reports it, real-time
    // signals included (SIGRTMIN+6 = 40 on Linux). Under --init, so that the shell is
    // not PID 1, which may not be killed from inside its own namespace at all.
    for (signal, code) in [("INT", 130), ("KILL", 137), ("TERM", 143), ("40", 168)] {
        let out = run_in(&rootfs, &["--init"], &["sh", "-c", &format!("kill -{signal} $$")]);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {}", stderr(&out));
    }
}

#[test]
fn a_missing_command_is_127_and_a_non_executable_one_is_126() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();

    let out = run_in(&rootfs, &[], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("\"no-such-command\": executable file not found in $PATH"), "{}", stderr(&out));

    let out = run_in(&rootfs, &[], &["/no/such/file"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("/no/such/file: no such file or directory"), "{}", stderr(&out));

    let out = run_in(&rootfs, &[], &["/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));

    let out = run_in(&rootfs, &[], &["/etc"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));

    // A dynamically linked host program: the file is there, its loader is not.
    fs::copy(std::env::current_exe().unwrap(), rootfs.join("bin/dynamic")).unwrap();
    let out = run_in(&rootfs, &[], &["dynamic"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("dynamic loader is missing"), "{}", stderr(&out));
}

#[test]
fn bad_input_is_a_clear_error_with_exit_125() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--rootfs".into(), dir.path().join("missing").display().to_string(), "true".into()], "does not exist; make one with `carton bootstrap busybox"),
        (vec!["--rootfs".into(), file.display().to_string(), "true".into()], "is not a directory"),
        (vec!["--rootfs".into(), rootfs.display().to_string()], "no command given"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "--".into(), "".into()], "no command given"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "-w".into(), "relative/dir".into(), "pwd".into()], "needs to be an absolute path"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "-e".into(), "=x".into(), "env".into()], "write it as KEY=VALUE"),
        (
            vec!["--pull".into(), "never".into(), "no-such-image".into(), "echo".into()],
            "no image no-such-image:latest here; `carton pull no-such-image:latest` fetches it (or `carton bootstrap busybox`",
        ),
        // Not here, so it is pulled: from a registry on this machine that is not running.
        (vec!["127.0.0.1:1/no-such-image".into(), "echo".into()], "cannot reach the registry 127.0.0.1:1"),
        (vec!["--pull".into(), "sometimes".into(), "busybox".into()], "invalid value 'sometimes' for '--pull <WHEN>'"),
        (vec!["UPPER:case".into()], "invalid reference format \"UPPER:case\": repository names must be lowercase"),
        (vec![], "give an image to run"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "--entrypoint".into(), "sh".into(), "true".into()], "with --rootfs, give the command itself"),
        (vec!["--rootfs".into(), "/tmp/..".into(), "true".into()], "is the host's own /"),
        (vec!["--mount".into(), "type=bind,source=/no/such/dir,target=/x".into(), "--rootfs".into(), rootfs.display().to_string(), "sh".into()], "bind source path does not exist: /no/such/dir"),
        (vec!["-v".into(), "/srv:srv".into(), "--rootfs".into(), rootfs.display().to_string(), "sh".into()], "must be an absolute path inside the container"),
        (vec!["--no-such-flag".into(), "--rootfs".into(), rootfs.display().to_string(), "sh".into()], "unexpected argument '--no-such-flag'"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "-e".into()], "a value is required for '--env"),
        (vec!["--rootfs".into(), rootfs.display().to_string(), "-w".into(), "/etc/passwd".into(), "pwd".into()], "exists in the container but is not a directory"),
    ];
    for (args, message) in cases {
        let out = carton().args(["run", "--rm", "--network", "none"]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        // carton's own error is its last word (a pull's lines may come before it).
        let last = stderr(&out).lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("carton: ") || stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: expected {message:?} in {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

#[test]
fn a_relative_rootfs_is_resolved_from_the_current_directory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    let out = carton().current_dir(dir.path()).args(["run", "--rm", "--network", "none", "--rootfs", "rootfs", "--", "echo", "relative ok"]).output().unwrap();
    assert_eq!(stdout(&out), "relative ok\n", "{}", stderr(&out));
}

#[test]
fn stdin_env_and_workdir_reach_the_process() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let mut child = carton_run(&rootfs)
        .args(["-i", "-e", "GREETING=hello", "-w", "/made/for/you", "--", "sh", "-c", "read line; echo \"$GREETING $line from $(pwd) with PATH=$PATH\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"world\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "hello world from /made/for/you with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
}

#[test]
fn the_command_starts_with_no_signal_ignored() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // carton itself ignores SIGPIPE (every Rust program does); an ignored signal would
    // stay ignored across execve, and `yes | head` would then never see SIGPIPE.
    let out = run_in(&rootfs, &[], &["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    assert_eq!(stdout(&out), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

#[test]
fn flags_after_the_command_belong_to_the_command() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = carton_run(&rootfs).args(["echo", "-n", "--rm", "-it"]).output().unwrap();
    assert_eq!(stdout(&out), "--rm -it", "{}", stderr(&out));
    let out = carton().args(["run", "--rm", "--network", "none", "--rootfs"]).arg(&rootfs).args(["true"]).output().unwrap();
    assert!(out.status.success(), "--rm is accepted: {}", stderr(&out));
}

#[test]
fn inherited_descriptors_do_not_reach_the_command() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    // fd 7 is an open directory of the host: through /proc/self/fd/7 it would lead out.
    let script = format!("exec 7</ 8>{}/out; exec {} -- sh -c 'ls /proc/self/fd/7 >/dev/null 2>&1 && echo leaked || echo closed'", dir.path().display(), carton_run_line(&rootfs));
    let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(stdout(&out), "closed\n", "{}", stderr(&out));
    // Under --init, PID 1 is carton's own code and never calls execve: it must close them itself.
    let script = format!("exec 7</; exec {} --init -- sh -c 'ls /proc/1/fd | tr \"\\n\" \" \"'", carton_run_line(&rootfs));
    let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(stdout(&out), "0 1 2 ", "the init keeps only stdin, stdout and stderr: {}", stderr(&out));
}

#[test]
fn the_container_dies_with_carton_even_after_kill_9() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let mut carton = carton_run(&rootfs).env("CARTON_ROOT", &state).args(["--", "sleep", "30"]).spawn().unwrap();
    let init = container_init(&carton);
    carton.kill().unwrap(); // SIGKILL: carton cannot pass anything on
    carton.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{init}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!std::path::Path::new(&format!("/proc/{init}")).exists(), "the container outlived carton");
    // What the killed carton could not clean up, the next run does: its state, its pinned
    // network namespace and its cgroup.
    let left: Vec<String> = fs::read_dir(state.join("containers")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left.len(), 1, "the killed container's state is left");
    let layout = step04::Layout::detect();
    let cgroup = step04::Cgroup::at(&layout, cgroup_version().unwrap(), &left[0]);
    assert!(cgroup.directories().iter().all(|dir| dir.exists()), "the killed container's cgroup is left");
    assert!(carton_run(&rootfs).env("CARTON_ROOT", &state).arg("true").status().unwrap().success());
    assert_eq!(fs::read_dir(state.join("containers")).unwrap().count(), 0, "the next run collects it");
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(state.to_str().unwrap()), "its namespace stayed pinned");
    assert!(cgroup.directories().iter().all(|dir| !dir.exists()), "its cgroup stayed");
}

#[test]
fn an_ignored_sigchld_does_not_make_carton_wait_forever() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // `trap '' CHLD` ignores SIGCHLD, and an ignored signal stays ignored across exec.
    let script = format!("trap '' CHLD; exec timeout 20 {} -- true", carton_run_line(&rootfs));
    let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_terminal_whose_reader_went_away_does_not_hang_carton() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let script = format!("timeout 20 {} -t -- yes | head -n 1; echo \"exit ${{PIPESTATUS:-done}}\"", carton_run_line(&rootfs));
    let out = std::process::Command::new("bash").arg("-c").arg(script.replace("${PIPESTATUS:-done}", "${PIPESTATUS[0]}")).output().unwrap();
    let text = stdout(&out).replace('\r', "");
    assert!(text.starts_with("y\n"), "{text:?}");
    assert!(!text.contains("exit 124"), "carton hung until timeout killed it: {text:?}");
}

#[test]
fn signals_sent_to_carton_reach_the_container() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let mut child = carton_run(&rootfs).args(["--", "sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(7), "carton waits for the container and passes its status on");
}

#[test]
fn a_symlinked_mount_point_in_the_rootfs_is_refused() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_dir(rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, rootfs.join("proc")).unwrap();
    let out = run_in(&rootfs, &[], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("/proc in the root filesystem is a symbolic link"), "{}", stderr(&out));
}

#[test]
fn a_symlink_to_a_rootfs_works_like_the_rootfs() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&rootfs, &link).unwrap();
    let out = run_in(&link, &[], &["cat", "/etc/passwd"]);
    assert!(stdout(&out).starts_with("root:x:0:0:"), "{}", stderr(&out));
}

#[test]
fn every_command_of_the_course_is_in_help_and_a_typo_gets_a_tip() {
    let help = stdout(&carton().arg("--help").output().unwrap());
    assert!(help.contains("  pull ") && help.contains("  ps ") && help.contains("  attach ") && help.contains("  volume ") && help.contains("  build "), "{help}");
    let out = carton().arg("imagse").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("'images'"), "{}", stderr(&out));
}
