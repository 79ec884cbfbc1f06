//! `carton-oci`: runc's command line over steps 07 and 08. Bundles made by `runc spec`,
//! each command its own process as an engine calls them, the console socket, the hooks,
//! the security fields honoured, and bad input answered in the log with exit 1. As root.

mod common;

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

/// `carton-oci --root ROOT --log LOG --log-format json ARGS...`.
fn oci(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carton-oci"));
    command.arg("--root").arg(root).arg("--log").arg(root.join("log.json")).args(["--log-format", "json"]).stdin(Stdio::null());
    command
}

fn run_oci(root: &Path, args: &[&str]) -> Output {
    oci(root).args(args).output().unwrap()
}

/// The last error the log holds, as an engine reads it.
fn last_logged_error(root: &Path) -> String {
    let log = fs::read_to_string(root.join("log.json")).unwrap_or_default();
    let errors: Vec<Value> = log.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).filter(|entry| entry["level"] == "error").collect();
    errors.last().map(|entry| entry["msg"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

/// A bundle made by `runc spec` in `dir/bundle` with a busybox root, its process changed
/// by `edit` (the spec's JSON).
fn runc_spec_bundle(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let out = Command::new("runc").arg("spec").current_dir(&bundle).output().expect("runc is a peer these tests need: apt-get install runc");
    assert!(out.status.success(), "runc spec: {}", stderr(&out));
    busybox_rootfs(&bundle);
    let mut config: Value = serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    // A cgroup of its own per bundle: ids like "first" are per --root, cgroups per machine,
    // and two runs of these tests at once must not share one.
    let unique: String = bundle.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    config["linux"]["cgroupsPath"] = json!(format!("/carton/oci-test{unique}"));
    edit(&mut config);
    fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    bundle
}

fn set_args(config: &mut Value, script: &str) {
    config["process"]["args"] = json!(["sh", "-c", script]);
}

fn state_of(root: &Path, id: &str) -> Value {
    let out = run_oci(root, &["state", id]);
    assert!(out.status.success(), "state {id}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Removes what a failed test left under `root` (the container, its cgroup).
struct Cleanup<'a>(&'a Path, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = run_oci(self.0, &["delete", "--force", self.1]);
    }
}

#[test]
fn a_runc_spec_bundle_runs_with_its_hostname_read_only_root_capabilities_and_masked_paths() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let script = "echo pid=$$; hostname; grep -E 'Cap(Eff|Bnd|Prm|Inh)' /proc/self/status; \
                  touch /x 2>&1; echo timer_list=$(wc -c < /proc/timer_list); echo firmware=$(ls /sys/firmware | wc -l); \
                  echo 1 > /proc/sys/kernel/domainname 2>&1; exit 7";
    let bundle = runc_spec_bundle(dir.path(), |config| set_args(config, script));
    let root = dir.path().join("state");
    let out = oci(&root).args(["run", "--bundle"]).arg(&bundle).arg("t1").output().unwrap();
    let text = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(7), "the container's exit code: {text}");
    assert!(text.contains("pid=1\nrunc\n"), "PID 1 and runc spec's hostname: {text}");
    // AUDIT_WRITE, KILL and NET_BIND_SERVICE, as the spec lists them; inheritable empty.
    for set in ["CapEff", "CapBnd", "CapPrm"] {
        assert!(text.contains(&format!("{set}:\t0000000020000420")), "{set}: {text}");
    }
    assert!(text.contains("CapInh:\t0000000000000000"), "{text}");
    assert!(text.contains("/x: Read-only file system"), "root.readonly: {text}");
    assert!(fs::metadata("/proc/timer_list").is_ok(), "the host has /proc/timer_list to mask");
    assert!(text.contains("timer_list=0\n"), "a masked file reads as empty: {text}");
    assert!(text.contains("firmware=0\n"), "a masked directory is empty: {text}");
    assert!(text.contains("domainname: Read-only file system"), "/proc/sys is read-only: {text}");
    // What it cannot give is named in the log (not on the container's stderr, which an
    // engine's create shares with the container): runc spec's ambient capabilities, which
    // are not inheritable. Its seccomp-less, deny-all device rules are applied, not warned about.
    assert!(!stderr(&out).contains("not both permitted"), "{}", stderr(&out));
    let log = fs::read_to_string(root.join("log.json")).unwrap();
    assert!(log.contains("\"level\":\"warning\"") && log.contains("not both permitted and inheritable"), "{log}");
    assert!(!log.contains("not applied"), "{log}");
    assert_eq!(stdout(&run_oci(&root, &["list", "-q"])), "", "run deletes the container");
}

#[test]
fn create_start_state_exec_ps_pause_kill_delete_each_its_own_process() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let bundle = runc_spec_bundle(dir.path(), |config| set_args(config, "echo started > /dev/shm/started; exec sleep 300"));
    let root = dir.path().join("state");
    let _cleanup = Cleanup(&root, "life");
    let pid_file = dir.path().join("pid");
    let out = oci(&root).args(["create", "--bundle"]).arg(&bundle).arg("--pid-file").arg(&pid_file).arg("life").stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(out.success(), "create: {}", last_logged_error(&root));
    let state = state_of(&root, "life");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"].as_i64().unwrap().to_string(), fs::read_to_string(&pid_file).unwrap(), "the pid file names the container's process");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    assert!(run_oci(&root, &["start", "life"]).status.success(), "start: {}", last_logged_error(&root));
    assert_eq!(state_of(&root, "life")["status"], "running");

    // exec, from a process file as engines pass it, and with runc's flags.
    let mut process: Value = serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    let mut process = process["process"].take();
    process["args"] = json!(["sh", "-c", "cat /dev/shm/started; grep CapEff /proc/self/status; exit 3"]);
    let process_file = dir.path().join("process.json");
    fs::write(&process_file, process.to_string()).unwrap();
    let out = oci(&root).args(["exec", "--process"]).arg(&process_file).arg("life").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "exec's exit code: {}", stderr(&out));
    assert_eq!(stdout(&out), "started\nCapEff:\t0000000020000420\n", "in the container, with the process's capabilities");
    let out = run_oci(&root, &["exec", "--cwd", "/tmp", "--env", "GREETING=hi", "--user", "1000:1000", "life", "sh", "-c", "echo $GREETING $(pwd) $(id -u):$(id -g)"]);
    assert_eq!(stdout(&out), "hi /tmp 1000:1000\n", "{}", stderr(&out));

    let out = run_oci(&root, &["ps", "--format", "json", "life"]);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(pids.contains(&state["pid"].as_i64().unwrap()), "ps lists the container's process: {pids:?} {}", stderr(&out));

    if cgroup_version().is_some() {
        assert!(run_oci(&root, &["pause", "life"]).status.success(), "pause: {}", last_logged_error(&root));
        assert_eq!(state_of(&root, "life")["status"], "paused");
        let stat = fs::read_to_string(format!("/proc/{}/stat", state["pid"])).unwrap();
        assert!(stat.rsplit_once(") ").unwrap().1.starts_with('D') || stat.rsplit_once(") ").unwrap().1.starts_with('S'), "{stat}");
        assert!(run_oci(&root, &["resume", "life"]).status.success(), "resume: {}", last_logged_error(&root));
        assert_eq!(state_of(&root, "life")["status"], "running");
    }

    assert!(run_oci(&root, &["kill", "life", "KILL"]).status.success(), "kill: {}", last_logged_error(&root));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state_of(&root, "life")["status"] != "stopped" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state_of(&root, "life")["status"], "stopped");
    assert!(state_of(&root, "life").get("pid").is_none(), "no pid once stopped, as the spec says");
    assert!(run_oci(&root, &["delete", "life"]).status.success(), "delete: {}", last_logged_error(&root));
    let gone = run_oci(&root, &["state", "life"]);
    assert_eq!(gone.status.code(), Some(1), "exit status 1 on error, as runc's");
    assert!(last_logged_error(&root).contains("container life does not exist"), "{}", last_logged_error(&root));
    // A forced delete of a container gone already succeeds, as runc's (engines delete twice).
    assert!(run_oci(&root, &["delete", "--force", "life"]).status.success());
    assert_eq!(run_oci(&root, &["delete", "life"]).status.code(), Some(1), "without --force it is an error");
}

/// Receive one descriptor sent over `stream` with SCM_RIGHTS, as conmon does.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
    for cmsg in message.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // Safety: the kernel just gave us this descriptor.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor came over the console socket");
}

#[test]
fn the_terminals_master_end_comes_over_the_console_socket() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let bundle = runc_spec_bundle(dir.path(), |config| {
        config["process"]["terminal"] = json!(true);
        set_args(config, "tty; echo done");
    });
    let root = dir.path().join("state");
    let _cleanup = Cleanup(&root, "tty");
    let socket_path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let out = oci(&root).args(["create", "--bundle"]).arg(&bundle).arg("--console-socket").arg(&socket_path).arg("tty").status().unwrap();
    assert!(out.success(), "create: {}", last_logged_error(&root));
    let (stream, _) = listener.accept().unwrap();
    let master = std::fs::File::from(receive_fd(&stream));
    assert!(run_oci(&root, &["start", "tty"]).status.success(), "start: {}", last_logged_error(&root));
    let mut text = String::new();
    let mut reader = master;
    let mut buffer = [0u8; 256];
    // Until "done" (the pty reports EIO once the last writer is gone).
    while !text.contains("done") {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    assert!(text.contains("/dev/pts/0"), "the container's own terminal: {text:?}");
    // Without a socket, a terminal has nowhere to go: refused, with why.
    let out = run_oci(&root, &["create", "--bundle", bundle.to_str().unwrap(), "tty2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_logged_error(&root).contains("no --console-socket"), "{}", last_logged_error(&root));
    let missing = run_oci(&root, &["create", "--bundle", bundle.to_str().unwrap(), "--console-socket", "/nonexistent.sock", "tty3"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(last_logged_error(&root).contains("cannot connect to the console socket /nonexistent.sock"), "{}", last_logged_error(&root));
}

#[test]
fn hooks_get_the_state_on_stdin_in_order_and_a_failing_or_slow_one_fails_create() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", trace.display())]});
    let bundle = runc_spec_bundle(dir.path(), |config| {
        set_args(config, "exit 0");
        config["root"]["readonly"] = json!(false);
        config["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "hostname > /hook-saw-hostname"]}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    let root = dir.path().join("state");
    let out = oci(&root).args(["run", "--bundle"]).arg(&bundle).arg("hooked").output().unwrap();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let lines: Vec<String> = fs::read_to_string(&trace).unwrap().lines().map(str::to_string).collect();
    let names: Vec<&str> = lines.iter().map(|line| line.split_once(' ').unwrap().0).collect();
    assert_eq!(names, ["createRuntime", "createContainer", "poststart", "poststop"]);
    let state: Value = serde_json::from_str(lines[0].split_once(' ').unwrap().1).unwrap();
    assert_eq!((state["id"].as_str(), state["status"].as_str()), (Some("hooked"), Some("creating")), "{state}");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    // startContainer ran in the container: its / is the bundle's rootfs, its hostname runc's.
    assert_eq!(fs::read_to_string(bundle.join("rootfs/hook-saw-hostname")).unwrap(), "runc\n");

    // A failing hook fails create, with its words in the log; nothing is left.
    let failing = runc_spec_bundle(&dir.path().join("failing"), |config| {
        config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no GPU here >&2; exit 3"]}]});
    });
    let out = oci(&root).args(["create", "--bundle"]).arg(&failing).arg("failing").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = last_logged_error(&root);
    assert!(error.contains("createRuntime hook /bin/sh failed") && error.contains("no GPU here"), "{error}");
    assert_eq!(run_oci(&root, &["state", "failing"]).status.code(), Some(1), "a failed create leaves no container");
    // A hook that outlives its timeout is killed, and create fails.
    let slow = runc_spec_bundle(&dir.path().join("slow"), |config| {
        config["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    });
    let started = std::time::Instant::now();
    let out = oci(&root).args(["create", "--bundle"]).arg(&slow).arg("slow").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the timeout was kept");
    assert!(last_logged_error(&root).contains("did not finish within its timeout of 1 s"), "{}", last_logged_error(&root));
}

#[test]
fn sysctls_of_the_containers_namespaces_are_set_and_the_hosts_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let bundle = runc_spec_bundle(dir.path(), |config| {
        set_args(config, "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/shmmni");
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_local_port_range": "40000\t41000", "kernel.shmmni": "1234"});
        config["linux"]["resources"]["rdma"] = json!({});
    });
    let root = dir.path().join("state");
    let out = oci(&root).args(["run", "--bundle"]).arg(&bundle).arg("sysctl").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "40000\t41000\n1234\n");
    // Step 04's own unapplied fields are logged like step 08's, not written to the container's stderr.
    assert!(!stderr(&out).contains("does not apply yet"), "{}", stderr(&out));
    assert!(fs::read_to_string(root.join("log.json")).unwrap().contains("linux.resources (rdma, unified)"));
    assert_ne!(fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(), "1234\n", "the host's own value is untouched");
    let host = runc_spec_bundle(&dir.path().join("host"), |config| {
        config["linux"]["sysctl"] = json!({"vm.overcommit_ratio": "51"});
    });
    let before = fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap();
    let out = oci(&root).args(["run", "--bundle"]).arg(&host).arg("host").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(last_logged_error(&root).contains("sysctl vm.overcommit_ratio is not namespaced"), "{}", last_logged_error(&root));
    assert_eq!(fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap(), before);
}

#[test]
fn bad_input_and_unsupported_commands_are_clear_errors_in_the_log_with_exit_1() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let cases: [(&[&str], &str); 7] = [
        (&["start", "nosuch"], "container nosuch does not exist"),
        (&["kill", "nosuch"], "container nosuch does not exist"),
        (&["create", "--bundle", "/nonexistent", "x"], "/nonexistent/config.json does not exist"),
        (&["--systemd-cgroup", "state", "x"], "--systemd-cgroup is not supported"),
        (&["update", "--memory", "1m", "x"], "does not support `update`"),
        (&["checkpoint", "x"], "does not support `checkpoint/restore`"),
        (&["exec", "nosuch", "true"], "container nosuch does not exist"),
    ];
    for (args, expected) in cases {
        let out = run_oci(&root, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(last_logged_error(&root).contains(expected), "{args:?}: {}", last_logged_error(&root));
        assert!(stderr(&out).contains(expected), "{args:?} on stderr too: {}", stderr(&out));
    }
    let version = run_oci(&root, &["--version"]);
    assert!(stdout(&version).starts_with("carton-oci ") && stdout(&version).contains("spec: 1."), "{}", stdout(&version));
    let features: Value = serde_json::from_slice(&run_oci(&root, &["features"]).stdout).unwrap();
    assert!(features["hooks"].as_array().unwrap().iter().any(|h| h == "createRuntime"), "{features}");
    assert_eq!(features["linux"]["seccomp"]["enabled"], true, "{features}");
    assert!(!features["linux"]["seccomp"]["actions"].as_array().unwrap().iter().any(|a| a == "SCMP_ACT_NOTIFY"), "no seccomp agent: {features}");
    assert_eq!(features["linux"]["apparmor"]["enabled"], false, "it says what it cannot do");
    // `spec` writes a bundle's config.json that carton-oci itself runs.
    let bundle = dir.path().join("made");
    fs::create_dir_all(&bundle).unwrap();
    busybox_rootfs(&bundle);
    assert!(run_oci(&root, &["spec", "--bundle", bundle.to_str().unwrap()]).status.success());
    let mut config: Value = serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["hostname"]);
    fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let out = oci(&root).args(["run", "--bundle"]).arg(&bundle).arg("made").output().unwrap();
    assert_eq!(stdout(&out), "carton\n", "{}", stderr(&out));
    let again = run_oci(&root, &["spec", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "an existing config.json is kept");
}

#[test]
fn device_nodes_are_made_and_a_pid_namespace_is_joined_by_path() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let first = runc_spec_bundle(&dir.path().join("first"), |config| set_args(config, "exec sleep 300"));
    let _cleanup = Cleanup(&root, "first");
    assert!(oci(&root).args(["create", "--bundle"]).arg(&first).arg("first").stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success());
    assert!(run_oci(&root, &["start", "first"]).status.success(), "{}", last_logged_error(&root));
    let pid = state_of(&root, "first")["pid"].as_i64().unwrap();
    let second = runc_spec_bundle(&dir.path().join("second"), |config| {
        set_args(config, "ps -o pid,args; stat -c '%A %u %g %t:%T' /dev/fuse-like");
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        for namespace in namespaces.iter_mut().filter(|n| n["type"] == "pid") {
            namespace["path"] = json!(format!("/proc/{pid}/ns/pid"));
        }
        config["linux"]["devices"] = json!([{"path": "/dev/fuse-like", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 1000, "gid": 100}]);
    });
    let out = oci(&root).args(["run", "--bundle"]).arg(&second).arg("second").output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(text.contains("    1 sleep 300"), "the first container's processes are seen from the second: {text}");
    // Its mode, owner and numbers (in hexadecimal: 10:229).
    assert!(text.ends_with("crw-r----- 1000 100 a:e5\n"), "the device node: {text}");
}

#[test]
fn a_foreground_run_with_a_terminal_relays_it_and_still_runs_the_hooks_and_writes_the_pid_file() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hook-ran");
    let bundle = runc_spec_bundle(dir.path(), |config| {
        config["process"]["terminal"] = json!(true);
        set_args(config, "tty; exit 4");
        config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker.display())]}]});
    });
    let root = dir.path().join("state");
    let pid_file = dir.path().join("pid");
    let out = oci(&root).args(["run", "--bundle"]).arg(&bundle).arg("--pid-file").arg(&pid_file).arg("fg").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stdout(&out).contains("/dev/pts/0"), "the container's terminal, relayed: {}", stdout(&out));
    assert!(marker.exists(), "the createRuntime hook ran");
    assert!(fs::read_to_string(&pid_file).unwrap().parse::<i32>().is_ok(), "the pid file was written");
}
