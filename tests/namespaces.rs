//! Step 02 seen from inside and outside: PID, UTS and IPC namespaces, PID 1 and its
//! signals, zombies and --init, users and terminals. Needs root.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn pid_uts_ipc_mount_and_network_namespaces_are_new() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &[], &["sh", "-c", "for ns in pid uts ipc mnt net; do readlink /proc/self/ns/$ns; done"]);
    let inside: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(inside.len(), 5, "{}", stderr(&out));
    // The network namespace is chapter 3's, new unless `--network host` (below).
    for (ns, inside) in ["pid", "uts", "ipc", "mnt", "net"].iter().zip(&inside) {
        let host = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(host.to_str().unwrap(), inside, "the {ns} namespace is the host's");
    }
    let out = run_in(&rootfs, &["--network", "host"], &["readlink", "/proc/self/ns/net"]);
    assert_eq!(fs::read_link("/proc/self/ns/net").unwrap().to_str().unwrap(), stdout(&out).trim_end());
}

#[test]
fn ps_inside_lists_only_the_container_and_pid_1_is_the_command() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // `; true` keeps sh from exec'ing ps in its place, so the table holds exactly two
    // processes (a pipeline would race: ps may read /proc before sh forked the other side).
    let text = stdout(&run_in(&rootfs, &[], &["sh", "-c", "ps -o pid,args; true"]));
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    // sh itself and ps: nothing of the host.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("1 sh -c ps -o pid,args"), "{lines:?}");
    assert!(lines[1].starts_with("2 ") && lines[1].contains("ps"), "{lines:?}");
    let text = stdout(&run_in(&rootfs, &["--init"], &["ps", "-o", "pid,args"]));
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines.len(), 2, "init and the command: {lines:?}");
    assert!(lines[0].starts_with("1 ") && lines[0].contains("--init"), "PID 1 is carton's init: {lines:?}");
    assert!(lines[1].starts_with("2 ps"), "{lines:?}");
}

#[test]
fn the_hostname_is_the_short_id_or_the_one_given_and_the_hosts_is_untouched() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let host_before = nix::unistd::gethostname().unwrap();
    let out = run_in(&rootfs, &[], &["sh", "-c", "hostname; echo $HOSTNAME"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", stderr(&out));
    assert_eq!(lines[0].len(), 12, "{lines:?}");
    assert!(lines[0].chars().all(|c| c.is_ascii_hexdigit()), "{lines:?}");
    assert_eq!(lines[0], lines[1], "HOSTNAME is set, as Docker sets it");
    let other = run_in(&rootfs, &[], &["hostname"]);
    assert_ne!(stdout(&other), format!("{}\n", lines[0]), "each run gets its own id");
    assert_eq!(stdout(&run_in(&rootfs, &["--hostname", "web-1"], &["hostname"])), "web-1\n");
    assert_eq!(nix::unistd::gethostname().unwrap(), host_before);
}

/// A System V message queue and a POSIX one, created on the host, removed on drop.
struct HostQueues {
    sysv: i32,
    posix: std::ffi::CString,
}

impl HostQueues {
    fn create() -> HostQueues {
        // Safety: plain IPC system calls with valid arguments.
        let sysv = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        assert!(sysv >= 0, "msgget failed");
        let posix = std::ffi::CString::new(format!("/carton-test-{}", std::process::id())).unwrap();
        let fd = unsafe { libc::mq_open(posix.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600, std::ptr::null_mut::<libc::mq_attr>()) };
        assert!(fd >= 0, "mq_open failed");
        unsafe { libc::mq_close(fd) };
        HostQueues { sysv, posix }
    }
}

impl Drop for HostQueues {
    fn drop(&mut self) {
        unsafe {
            libc::msgctl(self.sysv, libc::IPC_RMID, std::ptr::null_mut());
            libc::mq_unlink(self.posix.as_ptr());
        }
    }
}

#[test]
fn message_queues_of_the_host_are_invisible_inside() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let queues = HostQueues::create();
    let host_ids = fs::read_to_string("/proc/sysvipc/msg").unwrap();
    assert!(host_ids.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(&queues.sysv.to_string())));
    let out = run_in(&rootfs, &[], &["sh", "-c", "tail -n +2 /proc/sysvipc/msg | wc -l; ls /dev/mqueue | wc -l"]);
    assert_eq!(stdout(&out), "0\n0\n", "System V queues, then POSIX queues: {}", stderr(&out));
}

fn spawn_waiting(rootfs: &std::path::Path, extra: &[&str], script: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = carton_run(rootfs).args(extra).args(["--", "sh", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

fn still_running_after(child: &mut Child, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_bare_shell_as_pid_1_ignores_sigterm_and_init_does_not() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let script = "echo ready; while :; do sleep 0.05; done";

    let (mut carton, _out) = spawn_waiting(&rootfs, &[], script);
    kill(Pid::from_raw(carton.id() as i32), Signal::SIGTERM).unwrap(); // carton passes it on
    let ignored = still_running_after(&mut carton, Duration::from_millis(600));
    // From outside its namespace, SIGKILL always reaches PID 1.
    kill(container_init(&carton), Signal::SIGKILL).unwrap();
    let status = carton.wait().unwrap();
    assert!(ignored, "sh as PID 1 has no SIGTERM handler, so the kernel drops the signal");
    assert_eq!(status.code(), Some(137));

    let (mut carton, _out) = spawn_waiting(&rootfs, &["--init"], script);
    kill(Pid::from_raw(carton.id() as i32), Signal::SIGTERM).unwrap();
    let stopped = !still_running_after(&mut carton, Duration::from_secs(5));
    if !stopped {
        kill(container_init(&carton), Signal::SIGKILL).unwrap();
    }
    assert!(stopped, "with --init, SIGTERM reaches the shell, which is not PID 1");
    assert_eq!(carton.wait().unwrap().code(), Some(143));
}

/// The state letters of the processes whose parent is `parent` (host pids).
fn children_states(parent: Pid) -> Vec<char> {
    children(parent).into_iter().filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok()).filter_map(|stat| stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())).collect()
}

#[test]
fn orphans_become_zombies_under_a_plain_pid_1_and_init_reaps_them() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    // The subshell starts `sleep 0.1` and exits at once: the sleep is orphaned and handed to
    // PID 1. Then PID 1 becomes `sleep 2` (exec), which never calls wait().
    let script = "(sleep 0.1 &); echo ready; exec sleep 2";

    let (mut carton, _out) = spawn_waiting(&rootfs, &[], script);
    std::thread::sleep(Duration::from_millis(500));
    let states = children_states(container_init(&carton));
    kill(container_init(&carton), Signal::SIGKILL).unwrap();
    carton.wait().unwrap();
    assert_eq!(states, ['Z'], "the orphan stays a zombie: nobody reaps it");

    let (mut carton, _out) = spawn_waiting(&rootfs, &["--init"], script);
    std::thread::sleep(Duration::from_millis(500));
    let states = children_states(container_init(&carton));
    kill(container_init(&carton), Signal::SIGKILL).unwrap();
    carton.wait().unwrap();
    assert_eq!(states, ['S'], "init reaped the orphan; only the sleeping command is left");
}

#[test]
fn stdin_is_dev_null_without_i_and_attached_with_it() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    for (extra, expected) in [(&[][..], ""), (&["-i"][..], "typed\n")] {
        let mut child = carton_run(&rootfs).args(extra).args(["--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
        assert_eq!(stdout(&child.wait_with_output().unwrap()), expected, "{extra:?}");
    }
}

#[test]
fn t_gives_a_terminal_from_the_containers_own_devpts() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["-t"], &["sh", "-c", "tty; echo $TERM; test -t 0 && test -t 1 && test -t 2 && echo all three"]);
    assert_eq!(stdout(&out).replace("\r\n", "\n"), "/dev/pts/0\nxterm\nall three\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    // With -i as well, input reaches the terminal and its end is Ctrl-D.
    let mut child = carton_run(&rootfs).args(["-it", "--", "sh", "-c", "read line; echo \"got $line\"; cat; echo done"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(stdout(&out).replace("\r\n", "\n").ends_with("got hello\ndone\n"), "{:?}", stdout(&out));
}

#[test]
fn u_runs_the_command_as_that_user() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["-u", "33"], &["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    assert_eq!(stdout(&out), "33\n33\n33\n/var/www\n", "uid, gid and home from the container's passwd: {}", stderr(&out));
    let out = run_in(&rootfs, &["-u", "www-data:nobody"], &["sh", "-c", "id -u; id -g; echo $HOME"]);
    assert_eq!(stdout(&out), "33\n65534\n/var/www\n", "names from the container's passwd and group: {}", stderr(&out));
    let out = run_in(&rootfs, &["-u", "1000:1000"], &["sh", "-c", "id -u; id -g; echo $HOME; touch /root/x"]);
    assert!(stdout(&out).starts_with("1000\n1000\n/\n"), "{}", stdout(&out));
    assert!(stderr(&out).contains("Permission denied"), "an ordinary user cannot write root's home: {}", stderr(&out));
}

#[test]
fn bad_process_options_are_clear_errors_with_exit_125() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let long = "a".repeat(65);
    for (extra, message) in [
        (&["-u", "abc"][..], "unable to find user \"abc\""),
        (&["-u", "1000:staff"][..], "unable to find group \"staff\""),
        (&["-u", "1000:"][..], "invalid user \"1000:\""),
        (&["-e", "=x"][..], "write it as KEY=VALUE"),
        (&["--hostname", long.as_str()][..], "invalid hostname"),
        (&["--hostname", "bad_name"][..], "invalid hostname"),
    ] {
        let out = run_in(&rootfs, extra, &["true"]);
        assert_eq!(out.status.code(), Some(125), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{extra:?}: {}", stderr(&out));
    }
}
