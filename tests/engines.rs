//! Real engines drive `carton-oci` as their runtime, as root: podman 4 (through conmon) and
//! containerd 1.6 (through its io.containerd.runc.v2 shim, driven with `ctr`). Each engine gets
//! its own throwaway state, configuration and image (busybox made offline by `carton bootstrap
//! busybox`, then `carton save`), never the host's network, and is torn down with everything
//! it made (containers, its daemons and monitors ended by pid, mounts, cgroups) even when a test
//! fails; at the end each test checks that nothing is left. The peers are Debian's packages:
//! `apt-get install podman containerd` (podman brings conmon; containerd brings ctr and the
//! shim). A missing peer fails the test, saying which package to install.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const OCI: &str = env!("CARGO_BIN_EXE_carton-oci");
/// carton-oci's default state root: podman calls its runtime without `--root`.
const OCI_DEFAULT_ROOT: &str = "/run/carton-oci";
/// The name `carton save` gives busybox in the archive, which both engines keep.
const IMAGE: &str = "docker.io/library/busybox:latest";
/// How long one engine command may take before the test gives up on it.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The path of the peer `binary` (on PATH, or in the sbin directories a user's PATH may lack);
/// a missing one fails the test with the package that brings it.
fn peer(binary: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path.split(':').chain(["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"]).map(|dir| Path::new(dir).join(binary)).find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| panic!("{binary} is a peer these tests need: apt-get install -y {package}"))
}

/// Run `command` to its end with no input, its output collected in files (a daemon it starts
/// may keep a pipe open forever, a file never blocks), killed after `limit`.
fn try_output(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let (out_file, err_file) = (File::create(&out_path).map_err(|e| e.to_string())?, File::create(&err_path).map_err(|e| e.to_string())?);
    let mut child = command.stdin(Stdio::null()).stdout(out_file).stderr(err_file).spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{command:?} did not finish within {limit:?}: {}", fs::read_to_string(&err_path).unwrap_or_default()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output { status, stdout: fs::read(&out_path).unwrap_or_default(), stderr: fs::read(&err_path).unwrap_or_default() })
}

fn output(command: &mut Command) -> Output {
    try_output(command, COMMAND_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Both streams of a command, for assertion messages.
fn both(out: &Output) -> String {
    format!("exit {:?}\nstdout: {}\nstderr: {}", out.status.code(), stdout(out), stderr(out))
}

/// busybox as an image archive in `dir`, made offline by carton itself (`bootstrap busybox`,
/// then `save`, Docker's format which is also an OCI layout): the archive the engines load.
fn busybox_archive(dir: &Path) -> PathBuf {
    let state = dir.join("carton");
    let archive = dir.join("busybox.tar");
    let out = carton().arg("--root").arg(&state).args(["bootstrap", "busybox"]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "carton bootstrap busybox: {}", both(&out));
    let out = carton().arg("--root").arg(&state).args(["save", "busybox", "-o"]).arg(&archive).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "carton save busybox: {}", both(&out));
    fs::remove_dir_all(&state).unwrap();
    archive
}

/// Processes other than this one whose command line names a path under `dir` (a test's own
/// temporary directory): the daemons, shims and monitors an engine started for it.
fn processes_naming(dir: &Path) -> Vec<Pid> {
    let needle = format!("{}/", dir.display());
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).map(|line| String::from_utf8_lossy(&line).contains(&needle)).unwrap_or(false))
        .map(Pid::from_raw)
        .collect()
}

/// End the processes naming `dir`, each by its pid: SIGTERM, then SIGKILL after 5 s.
fn end_processes_naming(dir: &Path) {
    for pid in processes_naming(dir) {
        let _ = kill(pid, Signal::SIGTERM);
    }
    if !eventually_within(Duration::from_secs(5), || processes_naming(dir).is_empty()) {
        for pid in processes_naming(dir) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        eventually_within(Duration::from_secs(5), || processes_naming(dir).is_empty());
    }
}

/// The mount points under `dir` in this process's mount table (mountinfo's fifth field,
/// its octal escapes undone).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// Unmount everything under `dir`, the deepest first (detached: a busy one goes when freed).
fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let mut points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
        for point in points {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The directories of the cgroup `relative` (e.g. `carton-engines-podman-123`) in every
/// hierarchy: each v1 controller's, the hybrid's unified one, or a pure v2 root.
fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut bases = vec![root.to_path_buf()];
    bases.extend(fs::read_dir(root).into_iter().flatten().flatten().map(|entry| entry.path()).filter(|path| path.is_dir()));
    bases.into_iter().map(|base| base.join(relative)).filter(|dir| dir.is_dir()).collect()
}

/// Remove the cgroup `dir` and the cgroups below it, children first (rmdir only removes an
/// empty cgroup: one with a process left stays, and the test's final check names it).
fn remove_cgroup_tree(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// carton-oci's containers under `root` whose bundle lies under `dir`: (id, status).
fn runtime_containers(root: &Path, dir: &Path) -> Vec<(String, String)> {
    let Ok(out) = try_output(Command::new(OCI).arg("--root").arg(root).args(["list", "--format", "json"]), COMMAND_LIMIT) else { return Vec::new() };
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter()
        .filter(|container| container["bundle"].as_str().is_some_and(|bundle| Path::new(bundle).starts_with(dir)))
        .map(|container| (container["id"].as_str().unwrap_or_default().to_string(), container["status"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// `carton-oci state ID` under `root`, as JSON (Null when there is no such container).
fn runtime_state(root: &Path, id: &str) -> Value {
    let out = output(Command::new(OCI).arg("--root").arg(root).args(["state", id]));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Force-delete carton-oci's containers under `root` that were made from bundles under `dir`.
fn delete_runtime_containers(root: &Path, dir: &Path) {
    for (id, _) in runtime_containers(root, dir) {
        let _ = try_output(Command::new(OCI).arg("--root").arg(root).args(["delete", "--force", &id]), COMMAND_LIMIT);
    }
}

/// What an engine left behind once torn down: its processes, mounts, runtime containers and
/// cgroups. Empty when the teardown was clean.
fn leftovers(dir: &Path, runtime_root: &Path, cgroup: &str) -> Vec<String> {
    let mut left = Vec::new();
    left.extend(processes_naming(dir).into_iter().map(|pid| format!("process {pid}: {}", fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " "))));
    left.extend(mounts_under(dir).into_iter().map(|point| format!("mount {}", point.display())));
    left.extend(runtime_containers(runtime_root, dir).into_iter().map(|(id, status)| format!("carton-oci container {id} ({status}) under {}", runtime_root.display())));
    left.extend(cgroup_dirs(cgroup).into_iter().map(|dir| format!("cgroup {}", dir.display())));
    left
}

/// podman with its own storage, run root, configuration and events file in a temporary
/// directory, carton-oci as its runtime, cgroupfs as its cgroup manager and every container
/// under its own cgroup parent.
struct Podman {
    dir: Option<tempfile::TempDir>,
    cgroup_parent: String,
}

impl Podman {
    fn new() -> Podman {
        peer("podman", "podman");
        peer("conmon", "conmon");
        let podman = Podman { dir: Some(tempfile::tempdir().unwrap()), cgroup_parent: format!("carton-engines-podman-{}", std::process::id()) };
        let dir = podman.path();
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{dir}/tmp\"\nimage_copy_tmp_dir = \"{dir}/tmp\"\n\
                 [network]\nnetwork_config_dir = \"{dir}/networks\"\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        fs::write(dir.join("storage.conf"), format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{dir}/root\"\nrunroot = \"{dir}/runroot\"\n", dir = dir.display())).unwrap();
        podman
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `podman --root ... --runroot ... --runtime carton-oci`, with this podman's configuration.
    fn command(&self) -> Command {
        let dir = self.path();
        let mut command = Command::new(peer("podman", "podman"));
        command.env("CONTAINERS_CONF", dir.join("containers.conf")).env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"));
        command.arg("--root").arg(dir.join("root")).arg("--runroot").arg(dir.join("runroot")).args(["--runtime", OCI]);
        command
    }

    fn podman(&self, args: &[&str]) -> Output {
        output(self.command().args(args))
    }

    /// `podman run --network none --cgroup-parent PARENT ARGS...`: never the default network,
    /// which would make a bridge and firewall rules on the host.
    fn run(&self, args: &[&str]) -> Output {
        let parent = format!("/{}", self.cgroup_parent);
        output(self.command().args(["run", "--network", "none", "--cgroup-parent", &parent]).args(args))
    }

    /// `podman load -i ARCHIVE`. Copying an image updates containers/image's blob-info cache,
    /// which is /var/lib/containers/cache for root whatever the storage: podman loads in a
    /// mount namespace of its own where /var/lib is an empty tmpfs, so the host's is untouched.
    fn load(&self, archive: &Path) -> Output {
        let podman = self.command();
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "--", "sh", "-c", "mount -t tmpfs -o size=16m,mode=0755 carton-engines /var/lib && exec \"$0\" \"$@\""]);
        command.arg(podman.get_program()).args(podman.get_args()).args(["load", "-i"]).arg(archive);
        command.envs(podman.get_envs().filter_map(|(key, value)| Some((key, value?))));
        output(&mut command)
    }

    /// Remove the containers (podman first, then carton-oci for any it left), end conmon and
    /// podman's cleanup processes, unmount the storage, remove the cgroups; then what is left.
    fn teardown(&mut self) -> Vec<String> {
        let Some(dir) = self.dir.as_ref().map(|dir| dir.path().to_path_buf()) else { return Vec::new() };
        let _ = try_output(self.command().args(["rm", "--all", "--force", "--time", "0"]), COMMAND_LIMIT);
        delete_runtime_containers(Path::new(OCI_DEFAULT_ROOT), &dir);
        // conmon runs podman's exit command (`podman container cleanup`) as a container ends:
        // let it finish, then end what is still there.
        eventually_within(Duration::from_secs(5), || processes_naming(&dir).is_empty());
        end_processes_naming(&dir);
        unmount_under(&dir);
        for cgroup in cgroup_dirs(&self.cgroup_parent) {
            remove_cgroup_tree(&cgroup);
        }
        // podman calls carton-oci without --root: its default state directory, gone again when
        // empty (removing a directory fails while anything is in it, a user's containers say).
        let _ = fs::remove_dir(Path::new(OCI_DEFAULT_ROOT).join("containers"));
        let _ = fs::remove_dir(OCI_DEFAULT_ROOT);
        let left = leftovers(&dir, Path::new(OCI_DEFAULT_ROOT), &self.cgroup_parent);
        if left.is_empty() {
            if let Err(e) = self.dir.take().unwrap().close() {
                return vec![format!("cannot remove {}: {e}", dir.display())];
            }
        }
        left
    }

    /// Tear down and fail if anything is left.
    fn finish(mut self) {
        let left = self.teardown();
        assert!(left.is_empty(), "podman's teardown left: {left:#?}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("podman's teardown left: {left:#?}");
        }
    }
}

#[test]
fn podman_runs_execs_logs_pauses_stops_and_removes_containers_with_carton_oci() {
    require_root();
    let podman = Podman::new();
    let out = podman.load(&busybox_archive(podman.path()));
    assert!(out.status.success() && stdout(&out).contains(&format!("Loaded image: {IMAGE}")), "podman load: {}", both(&out));

    // run --rm: the output and the exit code come back, and nothing is left.
    let out = podman.run(&["--rm", IMAGE, "sh", "-c", "echo hello from $(hostname); echo to stderr >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the container's exit code: {}", both(&out));
    let hostname = stdout(&out).strip_prefix("hello from ").map(|rest| rest.trim_end().to_string()).unwrap_or_default();
    assert_eq!(hostname.len(), 12, "podman names the container's host after its short id: {}", both(&out));
    assert!(stderr(&out).contains("to stderr"), "{}", both(&out));
    // What podman writes in config.json is applied: env, working directory, user, the rlimits
    // of containers.conf.
    let out = podman.run(&["--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "1000:1000", IMAGE, "sh", "-c", "echo $GREETING $(pwd) $(id -u):$(id -g) $(ulimit -n)"]);
    assert_eq!(stdout(&out), "hi /tmp 1000:1000 20000\n", "{}", both(&out));
    let out = podman.podman(&["ps", "--all", "--quiet"]);
    assert_eq!(stdout(&out), "", "--rm removed the containers: {}", both(&out));

    // run -d, then ps shows it and carton-oci holds it, running.
    let script = "trap 'echo got TERM; exit 0' TERM; echo started > /tmp/started; echo started; sleep 300 & wait";
    let out = podman.run(&["-d", "--name", "web", IMAGE, "sh", "-c", script]);
    assert!(out.status.success(), "podman run -d: {}", both(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the container's id: {}", both(&out));
    let out = podman.podman(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(stdout(&out).starts_with(&format!("{} web Up ", &id[..12])), "podman ps: {}", both(&out));
    let state = runtime_state(Path::new(OCI_DEFAULT_ROOT), &id);
    assert_eq!(state["status"], "running", "carton-oci state {id}: {state}");
    assert!(state["bundle"].as_str().is_some_and(|bundle| Path::new(bundle).starts_with(podman.path())), "the bundle is podman's: {state}");

    // logs, once the container has written its line.
    assert!(eventually(|| stdout(&podman.podman(&["logs", "web"])) == "started\n"), "podman logs: {}", both(&podman.podman(&["logs", "web"])));

    // exec: in the same container (its files, its PID 1), with its exit code; and with a terminal.
    let out = podman.podman(&["exec", "web", "sh", "-c", "cat /tmp/started; echo pid1=$(cat /proc/1/comm); exit 4"]);
    assert_eq!(out.status.code(), Some(4), "exec's exit code: {}", both(&out));
    assert_eq!(stdout(&out), "started\npid1=sh\n", "{}", both(&out));
    let out = podman.podman(&["exec", "-t", "web", "tty"]);
    assert!(out.status.success() && stdout(&out).starts_with("/dev/pts/"), "exec -t gets a terminal (console socket): {}", both(&out));

    // pause and unpause (the freezer).
    let out = podman.podman(&["pause", "web"]);
    assert!(out.status.success(), "podman pause: {}", both(&out));
    let out = podman.podman(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(stdout(&out), "web Paused\n", "{}", both(&out));
    assert_eq!(runtime_state(Path::new(OCI_DEFAULT_ROOT), &id)["status"], "paused");
    let out = podman.podman(&["unpause", "web"]);
    assert!(out.status.success(), "podman unpause: {}", both(&out));
    assert_eq!(runtime_state(Path::new(OCI_DEFAULT_ROOT), &id)["status"], "running");

    // stop: SIGTERM reaches the container's trap, which exits 0 (SIGKILL would be 137).
    let out = podman.podman(&["stop", "-t", "5", "web"]);
    assert!(out.status.success(), "podman stop: {}", both(&out));
    let out = podman.podman(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web"]);
    assert_eq!(stdout(&out), "exited 0\n", "{}", both(&out));
    assert_eq!(stdout(&podman.podman(&["logs", "web"])), "started\ngot TERM\n");
    // A process that ignores SIGTERM (PID 1 without a handler) is killed after -t.
    let out = podman.run(&["-d", "--name", "stubborn", IMAGE, "sleep", "300"]);
    assert!(out.status.success(), "podman run -d: {}", both(&out));
    let out = podman.podman(&["stop", "-t", "1", "stubborn"]);
    assert!(out.status.success(), "podman stop: {}", both(&out));
    let out = podman.podman(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "stubborn"]);
    assert_eq!(stdout(&out), "exited 137\n", "SIGKILL after the timeout: {}", both(&out));

    // rm: gone from podman and from carton-oci.
    let out = podman.podman(&["rm", "web", "stubborn"]);
    assert!(out.status.success(), "podman rm: {}", both(&out));
    assert_eq!(stdout(&podman.podman(&["ps", "--all", "--quiet"])), "");
    assert_eq!(runtime_state(Path::new(OCI_DEFAULT_ROOT), &id), Value::Null, "carton-oci deleted the container");
    podman.finish();
}

/// containerd started by the test: its own root, state, configuration (version 2, the CRI
/// plugin off, no TCP, no debug or metrics address) and socket in a temporary directory, its
/// containers in a namespace of their own (which also names their cgroup parent).
struct Containerd {
    dir: Option<tempfile::TempDir>,
    daemon: Option<Child>,
    namespace: String,
    /// Whether /run/containerd was there before: the shim puts its socket in /run/containerd/s
    /// whatever containerd's state directory (a path built into containerd 1.6).
    had_run_containerd: bool,
}

impl Containerd {
    fn start() -> Containerd {
        let binary = peer("containerd", "containerd");
        peer("ctr", "containerd");
        peer("containerd-shim-runc-v2", "containerd");
        let mut containerd = Containerd {
            dir: Some(tempfile::tempdir().unwrap()),
            daemon: None,
            namespace: format!("carton-engines-{}", std::process::id()),
            had_run_containerd: Path::new("/run/containerd").exists(),
        };
        let dir = containerd.path().to_path_buf();
        fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{dir}/root\"\nstate = \"{dir}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{dir}/containerd.sock\"\n[ttrpc]\n  address = \"\"\n[debug]\n  address = \"\"\n  level = \"debug\"\n\
                 [metrics]\n  address = \"\"\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{dir}/opt\"\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let log = File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new(binary).arg("--config").arg(dir.join("config.toml")).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        containerd.daemon = Some(daemon);
        let ready = eventually(|| containerd.socket().exists() && try_output(containerd.ctr_command().arg("version"), COMMAND_LIMIT).is_ok_and(|out| out.status.success()));
        assert!(ready, "containerd did not answer on {}: {}", containerd.socket().display(), containerd.log());
        containerd
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn socket(&self) -> PathBuf {
        self.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    /// Where the shim tells carton-oci to keep its state (`--runc-root`, then the namespace).
    fn runtime_root(&self) -> PathBuf {
        self.path().join("oci").join(&self.namespace)
    }

    fn ctr_command(&self) -> Command {
        let mut command = Command::new(peer("ctr", "containerd"));
        command.arg("--address").arg(self.socket()).args(["--namespace", &self.namespace]);
        command
    }

    fn ctr(&self, args: &[&str]) -> Output {
        output(self.ctr_command().args(args))
    }

    /// `ctr run` with carton-oci as the shim's runc, its state and the I/O fifos in the
    /// temporary directory, then ARGS.
    fn run(&self, args: &[&str]) -> Output {
        let mut command = self.ctr_command();
        command.args(["run", "--runc-binary", OCI, "--runc-root"]).arg(self.path().join("oci")).arg("--fifo-dir").arg(self.path().join("fifo"));
        output(command.args(args))
    }

    /// A task's status in `ctr task ls` (RUNNING, PAUSED, STOPPED), and its pid.
    fn task(&self, id: &str) -> Option<(String, String)> {
        let out = self.ctr(&["task", "ls"]);
        stdout(&out).lines().map(|line| line.split_whitespace().collect::<Vec<_>>()).find(|fields| fields.first() == Some(&id)).map(|fields| (fields[2].to_string(), fields[1].to_string()))
    }

    /// Delete the tasks and containers (containerd first, then carton-oci for any left), end
    /// containerd by its pid and the shims it started, unmount, remove the cgroups; then
    /// what is left.
    fn teardown(&mut self) -> Vec<String> {
        let Some(dir) = self.dir.as_ref().map(|dir| dir.path().to_path_buf()) else { return Vec::new() };
        if let Ok(out) = try_output(self.ctr_command().args(["container", "ls", "--quiet"]), COMMAND_LIMIT) {
            for id in stdout(&out).lines() {
                let _ = try_output(self.ctr_command().args(["task", "rm", "--force", id]), COMMAND_LIMIT);
                let _ = try_output(self.ctr_command().args(["container", "rm", id]), COMMAND_LIMIT);
            }
        }
        delete_runtime_containers(&self.runtime_root(), &dir);
        if let Some(mut daemon) = self.daemon.take() {
            let _ = kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM);
            if !eventually_within(Duration::from_secs(10), || daemon.try_wait().ok().flatten().is_some()) {
                let _ = daemon.kill();
            }
            let _ = daemon.wait();
        }
        // The shims (`-address DIR/containerd.sock`) outlive containerd by design.
        end_processes_naming(&dir);
        unmount_under(&dir);
        for cgroup in cgroup_dirs(&self.namespace) {
            remove_cgroup_tree(&cgroup);
        }
        if !self.had_run_containerd {
            let _ = fs::remove_dir("/run/containerd/s");
            let _ = fs::remove_dir("/run/containerd");
        }
        let left = leftovers(&dir, &self.runtime_root(), &self.namespace);
        if left.is_empty() {
            if let Err(e) = self.dir.take().unwrap().close() {
                return vec![format!("cannot remove {}: {e}", dir.display())];
            }
        }
        left
    }

    /// Tear down, fail if anything is left, and return containerd's log.
    fn finish(mut self) -> String {
        let log = self.log();
        let left = self.teardown();
        assert!(left.is_empty(), "containerd's teardown left: {left:#?}");
        log
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("containerd's teardown left: {left:#?}");
        }
    }
}

#[test]
fn containerd_runs_execs_pauses_kills_and_deletes_containers_with_carton_oci() {
    require_root();
    let containerd = Containerd::start();
    let archive = busybox_archive(containerd.path());
    let out = containerd.ctr(&["image", "import", archive.to_str().unwrap()]);
    assert!(out.status.success() && stdout(&out).contains(&format!("unpacking {IMAGE}")), "ctr image import: {}", both(&out));

    // run --rm: the output and the exit code come back, and the container is gone.
    // Differences from runc that do not stop the engine are gathered, and fail the test at
    // its end, once everything else has been checked. The shim hands `runc create` and `runc
    // exec` the container's own stdio, and `--log` a file: runc then writes its warnings to
    // the log only, and the container's stderr (a user's `logs`) holds exactly what it wrote.
    let mut differences = Vec::new();
    let mut own_stderr = |what: &str, out: &Output, expected: &str| {
        if stderr(out) != expected {
            differences.push(format!("{what}: with --log, carton-oci's messages belong in the log, not on stderr, which is the container's: its stderr was {:?}, not {expected:?}", stderr(out)));
        }
    };
    let out = containerd.run(&["--rm", IMAGE, "once", "echo", "hello"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "hello\n"), "{}", both(&out));
    own_stderr("ctr run once", &out, "");
    let out = containerd.run(&["--rm", "--env", "GREETING=hi", "--cwd", "/tmp", IMAGE, "twice", "sh", "-c", "echo $GREETING $(pwd) >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the container's exit code: {}", both(&out));
    assert!(stderr(&out).contains("hi /tmp\n"), "{}", both(&out));
    own_stderr("ctr run twice", &out, "hi /tmp\n");
    assert_eq!(stdout(&containerd.ctr(&["container", "ls", "--quiet"])), "", "--rm removed the containers");

    // run -d: a task, running; carton-oci holds it with the pid containerd knows.
    let out = containerd.run(&["-d", IMAGE, "long", "sh", "-c", "echo started > /tmp/started; exec sleep 300"]);
    assert!(out.status.success(), "ctr run -d: {}", both(&out));
    let (status, pid) = containerd.task("long").expect("ctr task ls lists the task");
    assert_eq!(status, "RUNNING");
    let state = runtime_state(&containerd.runtime_root(), "long");
    assert_eq!((state["status"].as_str(), state["pid"].to_string()), (Some("running"), pid.clone()), "carton-oci state long: {state}");
    let out = containerd.ctr(&["task", "ps", "long"]);
    assert!(stdout(&out).lines().any(|line| line.split_whitespace().next() == Some(pid.as_str())), "ctr task ps (carton-oci ps): {}", both(&out));

    // exec: in the same container (its files), with its exit code.
    let mut exec = containerd.ctr_command();
    exec.args(["task", "exec", "--fifo-dir"]).arg(containerd.path().join("fifo"));
    let out = output(exec.args(["--exec-id", "x", "long", "sh", "-c", "until [ -e /tmp/started ]; do usleep 10000; done; cat /tmp/started; echo hi; exit 5"]));
    assert_eq!(out.status.code(), Some(5), "exec's exit code: {}", both(&out));
    assert_eq!(stdout(&out), "started\nhi\n", "{}", both(&out));
    own_stderr("ctr task exec", &out, "");

    // pause and resume (the freezer).
    assert!(containerd.ctr(&["task", "pause", "long"]).status.success());
    assert_eq!(containerd.task("long").map(|task| task.0).as_deref(), Some("PAUSED"));
    assert!(containerd.ctr(&["task", "resume", "long"]).status.success());
    assert_eq!(containerd.task("long").map(|task| task.0).as_deref(), Some("RUNNING"));

    // kill -s KILL: the task stops, with 137.
    let out = containerd.ctr(&["task", "kill", "--signal", "KILL", "long"]);
    assert!(out.status.success(), "ctr task kill: {}", both(&out));
    assert!(eventually(|| containerd.task("long").is_some_and(|task| task.0 == "STOPPED")), "the task stops: {:?}", containerd.task("long"));
    let out = containerd.ctr(&["task", "rm", "long"]);
    assert!(out.status.success() && stderr(&out).contains("exit code 137"), "ctr task rm: {}", both(&out));
    let out = containerd.ctr(&["container", "rm", "long"]);
    assert!(out.status.success(), "ctr container rm: {}", both(&out));
    assert_eq!(stdout(&containerd.ctr(&["container", "ls", "--quiet"])), "");
    assert_eq!(runtime_state(&containerd.runtime_root(), "long"), Value::Null, "carton-oci deleted the container");

    let log = containerd.finish();
    // The shim's cleanup, as a task goes, is `runc delete --force ID` after the delete: runc
    // answers 0 for a container that is already gone, and the shim logs anything else —
    // except a race of containerd's own: its `shim delete` waits for the runtime with
    // go-runc's default monitor while its SIGCHLD reaper (wait4(-1)) runs alongside; when the
    // reaper wins, go-runc's wait fails with ECHILD and it reports "exit status 255" with no
    // output, whatever the runtime returned (runc too, about one shim in five: traced with
    // tracefs). carton-oci fails with 1 and says why on stderr, which the shim quotes;
    // tests/oci.rs checks the forced delete of a deleted container directly.
    let reaper_race = r#"did not terminate successfully: exit status 255: \""#;
    for line in log.lines().filter(|line| line.contains("failed to remove runc container") && !line.contains(reaper_race)) {
        differences.push(format!("`delete --force` of a container already deleted must succeed, as runc's does; containerd logged: {line}"));
    }
    assert!(differences.is_empty(), "carton-oci differs from runc where containerd sees it: {differences:#?}");
}

#[test]
fn podman_loads_and_runs_an_image_carton_built() {
    require_root();
    let podman = Podman::new();
    let state = podman.path().join("carton");
    let context = podman.path().join("context");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("Dockerfile"), "FROM busybox\nRUN echo built by carton > /built\nCMD [\"cat\", \"/built\"]\n").unwrap();
    let archive = podman.path().join("built.tar");
    for args in [vec!["bootstrap", "busybox"], vec!["build", "-q", "--network", "none", "-t", "lab/built:1", context.to_str().unwrap()], vec!["save", "lab/built:1", "-o", archive.to_str().unwrap()]] {
        let out = carton().arg("--root").arg(&state).args(&args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "carton {args:?}: {}", both(&out));
    }
    let out = podman.load(&archive);
    assert!(out.status.success() && stdout(&out).contains("Loaded image: docker.io/lab/built:1"), "podman load: {}", both(&out));
    let out = podman.run(&["--rm", "docker.io/lab/built:1"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "built by carton\n"), "{}", both(&out));
    podman.finish();
}
