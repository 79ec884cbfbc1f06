//! Step 07: the container as an OCI bundle, created, started, signalled and deleted by id,
//! each command its own process; exec; what carton's bundles mean to runc and crun; and the
//! one collector of what a killed carton left. As root.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// The chapter's runtime, `step07-runtime`, with its state in `root`.
fn runtime(root: &Path) -> Command {
    let mut command = Command::new(bin_dir().join("step07-runtime"));
    command.arg("--root").arg(root).stdin(Stdio::null());
    command
}

/// `step07-runtime --root ROOT ARGS...`, its output collected.
fn run_runtime(root: &Path, args: &[&str]) -> Output {
    runtime(root).args(args).output().unwrap()
}

fn status_of(root: &Path, id: &str) -> String {
    let out = run_runtime(root, &["state", id]);
    assert!(out.status.success(), "state {id}: {}", stderr(&out));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    state["status"].as_str().unwrap().to_string()
}

/// Wait (10 s at most) until the container's status is `stopped`.
/// (The callers check the status themselves.)
fn wait_until_stopped(root: &Path, id: &str) {
    eventually_within(std::time::Duration::from_secs(10), || status_of(root, id) == "stopped");
}

/// A bundle in `dir/bundle` for the busybox root filesystem `rootfs`, running `command`.
fn bundle(dir: &Path, rootfs: &Path, command: &[&str]) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let out = Command::new(bin_dir().join("step07-runtime")).current_dir(&bundle).args(["spec", "--rootfs"]).arg(rootfs).args(command).output().unwrap();
    assert!(out.status.success(), "spec: {}", stderr(&out));
    bundle
}

fn ensure_runtime_binary() {
    if !bin_dir().join("step07-runtime").exists() {
        let built = Command::new(env!("CARGO")).args(["build", "-p", "step07-runtime"]).status().unwrap();
        assert!(built.success());
    }
}

#[test]
fn a_bundle_is_created_started_signalled_and_deleted_each_command_its_own_process() {
    require_root();
    ensure_runtime_binary();
    let (dir, rootfs) = fresh_rootfs();
    let root = dir.path().join("state");
    let bundle = bundle(dir.path(), &rootfs, &["sh", "-c", "echo started > /tmp/mark; exec sleep 30"]);
    let log = fs::File::create(dir.path().join("create.log")).unwrap();
    let created = runtime(&root).args(["create", "--bundle"]).arg(&bundle).arg("demo").stdout(log.try_clone().unwrap()).stderr(log).status().unwrap();
    assert!(created.success(), "{}", fs::read_to_string(dir.path().join("create.log")).unwrap());
    assert_eq!(status_of(&root, "demo"), "created");
    let state: serde_json::Value = serde_json::from_slice(&run_runtime(&root, &["state", "demo"]).stdout).unwrap();
    assert_eq!(state["ociVersion"].as_str().unwrap().split('.').next(), Some("1"));
    assert_eq!(state["bundle"].as_str().unwrap(), bundle.to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap();
    assert!(fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap().contains("step07-runtime"), "waits at the gate, before execve");
    assert!(!rootfs.join("tmp/mark").exists(), "nothing of the command ran before start");

    let started = run_runtime(&root, &["start", "demo"]);
    assert!(started.status.success(), "{}", stderr(&started));
    assert_eq!(status_of(&root, "demo"), "running");
    let comm = || fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert!(eventually(|| comm() == "sleep\n"), "the same process, now the command: {}", comm());
    assert_eq!(fs::read_to_string(rootfs.join("tmp/mark")).unwrap(), "started\n");

    let again = run_runtime(&root, &["start", "demo"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(stderr(&again).contains("is running already"), "{}", stderr(&again));
    let refused = run_runtime(&root, &["delete", "demo"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(stderr(&refused).contains("is running: stop it first"), "{}", stderr(&refused));

    let killed = run_runtime(&root, &["kill", "demo", "KILL"]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    wait_until_stopped(&root, "demo");
    assert_eq!(status_of(&root, "demo"), "stopped");
    let exec = run_runtime(&root, &["exec", "demo", "true"]);
    assert_eq!(exec.status.code(), Some(125));
    assert!(stderr(&exec).contains("is not running (stopped)"), "{}", stderr(&exec));
    let deleted = run_runtime(&root, &["delete", "demo"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(!root.join("containers/demo").exists(), "nothing of it is left");
    let gone = run_runtime(&root, &["state", "demo"]);
    assert_eq!(gone.status.code(), Some(125));
    assert!(stderr(&gone).contains("container demo does not exist"), "{}", stderr(&gone));
    if let Some(version) = cgroup_version() {
        let layout = step04::Layout::detect();
        for dir in step04::Cgroup::at(&layout, version, "demo").directories() {
            assert!(!dir.exists(), "its cgroup {} is gone", dir.display());
        }
    }
}

#[test]
fn bad_bundles_and_ids_are_refused_with_what_to_do() {
    require_root();
    ensure_runtime_binary();
    let (dir, rootfs) = fresh_rootfs();
    let root = dir.path().join("state");
    let bundle = bundle(dir.path(), &rootfs, &["sleep", "30"]);
    let config = fs::read_to_string(bundle.join("config.json")).unwrap();
    // A created container holds the stdio it was given (as runc's): the error pipes of
    // `output()` only for creates that fail.
    let create = |id: &str| runtime(&root).args(["create", "--bundle"]).arg(&bundle).arg(id).stdout(Stdio::null()).output().unwrap();
    let first = runtime(&root).args(["create", "--bundle"]).arg(&bundle).arg("once").stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(first.success());
    let twice = create("once");
    assert_eq!(twice.status.code(), Some(125));
    assert!(stderr(&twice).contains("the container id once is in use already"), "{}", stderr(&twice));
    let mut spec: serde_json::Value = serde_json::from_str(&config).unwrap();
    for (broken, expected) in [
        ("{ not json".to_string(), "is not a valid runtime spec"),
        (
            {
                spec.as_object_mut().unwrap().remove("root");
                spec.to_string()
            },
            "has no \"root\"",
        ),
        (
            {
                let mut spec: serde_json::Value = serde_json::from_str(&config).unwrap();
                spec["ociVersion"] = serde_json::json!("9.0.0");
                spec.to_string()
            },
            "carton reads version 1 of the runtime spec",
        ),
    ] {
        fs::write(bundle.join("config.json"), &broken).unwrap();
        let out = create("broken");
        assert_eq!(out.status.code(), Some(125), "{broken}");
        assert!(stderr(&out).contains(expected), "{expected}: {}", stderr(&out));
        assert!(!root.join("containers/broken").exists(), "a refused create leaves nothing");
    }
    let bad_id = create("../escape");
    assert_eq!(bad_id.status.code(), Some(125));
    assert!(stderr(&bad_id).contains("invalid container id"), "{}", stderr(&bad_id));
    // A created container can be killed at its gate (TERM alone would not do: the PID 1 of a
    // namespace ignores the signals it has no handler for, as a running one does).
    assert!(run_runtime(&root, &["kill", "once", "KILL"]).status.success());
    wait_until_stopped(&root, "once");
    assert_eq!(status_of(&root, "once"), "stopped");
    let removed = run_runtime(&root, &["delete", "once"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
}

#[test]
fn exec_joins_the_containers_namespaces_cgroup_and_root_and_the_container_goes_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(carton().env("CARTON_ROOT", &state).args(["bootstrap", "busybox"]).status().unwrap().success());
    let id = create_and_start(&state, &["--network", "none", "--hostname", "box", "--pids-limit", "50", "busybox", "sh", "-c", "echo hello > /tmp/from-pid-1; exec sleep 30"]);
    let pid_1 = || stdout(&carton().env("CARTON_ROOT", &state).args(["exec", &id, "cat", "/proc/1/comm"]).output().unwrap());
    assert!(eventually(|| pid_1() == "sleep\n"), "PID 1 has run its script: {}", pid_1());
    let exec = carton()
        .env("CARTON_ROOT", &state)
        .args(["exec", "-w", "/tmp", "-u", "33:33", "-e", "GREETING=hi", &id, "sh", "-c"])
        .arg("echo $GREETING $(hostname) $(pwd) $(id -u):$(id -g) $$; cat /proc/1/comm from-pid-1; cat /proc/self/cgroup | grep -c ':/$'; exit 4")
        .output()
        .unwrap();
    assert_eq!(exec.status.code(), Some(4), "the command's exit code comes back: {}", stderr(&exec));
    let lines: Vec<String> = stdout(&exec).lines().map(str::to_string).collect();
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(&first[..4], ["hi", "box", "/tmp", "33:33"], "{lines:?}");
    assert_ne!(first[4], "1", "a new process beside PID 1, in its PID namespace: {lines:?}");
    assert!(first[4].parse::<u32>().unwrap() < 100, "a PID of the container's namespace, not the host's: {lines:?}");
    assert_eq!(&lines[1..3], ["sleep", "hello"], "the container's processes and files");
    if cgroup_version().is_some() {
        assert_ne!(lines[3], "0", "in the container's cgroup namespace, its cgroup is /: {lines:?}");
    }
    assert_eq!(status_of(&state, &id), "running", "the container is unaffected");
    let removed = carton().env("CARTON_ROOT", &state).args(["rm", "-f", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(fs::read_dir(state.join("containers")).unwrap().count(), 0);
    assert!(!host_mounts().iter().any(|m| m.contains(state.to_str().unwrap())), "nothing of it stays mounted");
}

#[test]
fn carton_bundles_run_under_runc_and_crun_as_under_carton() {
    require_root();
    ensure_runtime_binary();
    for peer in ["runc", "crun"] {
        assert!(Command::new(peer).arg("--version").output().is_ok_and(|o| o.status.success()), "{peer} is needed: apt-get install -y {peer}");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(carton().env("CARTON_ROOT", &state).args(["bootstrap", "busybox"]).status().unwrap().success());
    let (memory, pids) = match cgroup_version() {
        Some(step04::Version::V2) => ("memory.max", "pids.max"),
        _ => ("memory/memory.limit_in_bytes", "pids/pids.max"),
    };
    let report = format!("echo pid=$$ host=$(hostname) mem=$(cat /sys/fs/cgroup/{memory}) pids=$(cat /sys/fs/cgroup/{pids}) etc=$(cat /etc/hostname); exit 7");
    let created = carton().env("CARTON_ROOT", &state).args(["create", "--network", "none", "--hostname", "peer", "-m", "64m", "--pids-limit", "20", "busybox", "sh", "-c", &report]).output().unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    let bundle = state.join("containers").join(&id);
    let config: serde_json::Value = serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["annotations"]["org.carton.network"], "none", "carton's own extras are annotations");
    assert_eq!(config["root"]["path"], "rootfs", "the image's overlay, mounted in the bundle");
    let expected = "pid=1 host=peer mem=67108864 pids=20 etc=peer\n";
    let runs: Vec<(&str, String)> = vec![
        ("runc", format!("runc --root {0}/runc run --bundle {1} runc-test-{2}", dir.path().display(), bundle.display(), &id[..12])),
        // crun refuses a hybrid host's cgroup2 mount: unmounted in a mount namespace of its own.
        ("crun", format!("umount /sys/fs/cgroup/unified 2>/dev/null; crun --root {0}/crun run --bundle {1} crun-test-{2}", dir.path().display(), bundle.display(), &id[..12])),
        ("step07-runtime", format!("{} --root {}/step07 run --bundle {} s-{}", bin_dir().join("step07-runtime").display(), dir.path().display(), bundle.display(), &id[..12])),
    ];
    for (peer, line) in runs {
        let out = Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &line]).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{peer}: the container's exit code: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{peer}: the same container as under carton: {}", stderr(&out));
    }
    // And under carton itself, from the same bundle.
    let started = carton().env("CARTON_ROOT", &state).args(["start", &id]).output().unwrap();
    assert!(started.status.success(), "{}", stderr(&started));
    let waited = carton().env("CARTON_ROOT", &state).args(["wait", &id]).output().unwrap();
    assert_eq!(stdout(&waited), "7\n", "{}", stderr(&waited));
    let logs = carton().env("CARTON_ROOT", &state).args(["logs", &id]).output().unwrap();
    assert_eq!(stdout(&logs), expected, "{}", stderr(&logs));
    let removed = carton().env("CARTON_ROOT", &state).args(["rm", &id]).output().unwrap();
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!bundle.exists());
}

#[test]
fn the_collector_takes_what_a_killed_run_and_a_killed_unpack_left() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(carton().env("CARTON_ROOT", &state).args(["bootstrap", "busybox"]).status().unwrap().success());
    let mut killed = carton_run_image(&state).args(["busybox", "sh", "-c", "echo up; dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null; exec sleep 30"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut up = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(killed.stdout.as_mut().unwrap()), &mut up).unwrap();
    assert_eq!(up, "up\n");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let id = fs::read_dir(state.join("containers")).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().file_name().to_string_lossy().into_owned();
    killed.kill().unwrap(); // SIGKILL: nothing is cleaned up
    killed.wait().unwrap();
    let layer = state.join("overlay/containers").join(&id);
    assert!(layer.join("upper/big").exists(), "the killed run's writable layer is left");
    assert!(host_mounts().iter().any(|m| m.contains(&id)), "and its root's mount");
    // A pull or first unpack killed half-way leaves a staging directory; one in progress is locked.
    let layers = state.join("overlay/layers");
    fs::create_dir_all(layers.join(".staging-killed/diff")).unwrap();
    fs::write(layers.join(".staging-killed/diff/file"), vec![0u8; 1 << 20]).unwrap();
    fs::create_dir_all(layers.join(".staging-busy")).unwrap();
    let busy = fs::File::open(layers.join(".staging-busy")).unwrap();
    // Safety: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&busy), libc::LOCK_EX) }, 0);

    let next = carton_run_image(&state).args(["busybox", "true"]).output().unwrap();
    assert!(next.status.success(), "{}", stderr(&next));
    assert!(!state.join("containers").join(&id).exists(), "its state directory was collected");
    assert!(!layer.exists(), "its writable layer was collected");
    assert!(!host_mounts().iter().any(|m| m.contains(&id)), "its root was unmounted");
    if let Some(version) = cgroup_version() {
        for cgroup in step04::Cgroup::at(&step04::Layout::detect(), version, &id).directories() {
            assert!(!cgroup.exists(), "its cgroup {} was collected", cgroup.display());
        }
    }
    assert!(!layers.join(".staging-killed").exists(), "an abandoned staging directory is swept");
    assert!(layers.join(".staging-busy").exists(), "one that a live carton holds is not");
    drop(busy);
    let prune = carton().env("CARTON_ROOT", &state).args(["image", "prune", "-f"]).output().unwrap();
    assert!(prune.status.success(), "{}", stderr(&prune));
    assert!(!layers.join(".staging-busy").exists(), "image prune sweeps too, once it is let go");
    assert!(!host_mounts().iter().any(|m| m.contains(state.to_str().unwrap())), "nothing of the state root stays mounted");
}

#[test]
fn a_killed_run_is_reported_stopped_and_rm_f_removes_all_of_it() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    // On the bridge, in a namespace of its own: a cable, a lease, a pinned namespace to remove.
    let script = format!(
        "carton run --network bridge --rootfs {rootfs} -- sh -c 'touch /tmp/up; exec sleep 30' &\n\
         while [ ! -e {rootfs}/tmp/up ]; do sleep 0.1; done; kill -KILL $!; wait\n\
         id=$(ls $CARTON_ROOT/containers)\n\
         step07-runtime state $id | grep -o '\"status\": \"[a-z]*\"'\n\
         ip -o link show type veth | wc -l\n\
         carton rm -f $id >/dev/null\n\
         ls $CARTON_ROOT/containers | wc -l\n\
         ip -o link show type veth | wc -l\n\
         echo leases: $(cat {NETWORK_STATE}/leases)\n\
         grep -c $CARTON_ROOT /proc/self/mountinfo",
        rootfs = rootfs.display()
    );
    ensure_runtime_binary();
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "\"status\": \"stopped\"\n1\n0\n0\nleases:\n0\n", "{}", stderr(&out));
}

#[test]
fn two_state_roots_on_one_bridge_never_share_an_address() {
    require_root();
    // A holds its address until B has run and tried to prune (each waits for the other's file,
    // at most a minute), so the order is fixed even on a slow emulated CPU.
    let (dir, rootfs) = fresh_rootfs();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let script = format!(
        "CARTON_ROOT={a} carton run --network bridge --rootfs {rootfs} -- \
           sh -c 'hostname -i; touch /tmp/a-up; for i in $(seq 600); do [ -e /tmp/b-done ] && break; sleep 0.1; done' &\n\
         for i in $(seq 600); do [ -e {rootfs}/tmp/a-up ] && break; sleep 0.1; done\n\
         CARTON_ROOT={b} carton run --network bridge --rootfs {rootfs} -- hostname -i\n\
         CARTON_ROOT={b} carton network prune; echo prune: $?\n\
         touch {rootfs}/tmp/b-done; wait\n\
         CARTON_ROOT={b} carton network prune >/dev/null; echo prune: $?",
        a = a.display(),
        b = b.display(),
        rootfs = rootfs.display()
    );
    let out = in_throwaway_netns(&a, &script);
    assert_eq!(stdout(&out), "10.88.0.2\n10.88.0.3\nprune: 125\nprune: 0\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("containers still use carton0"), "{}", stderr(&out));
}

#[test]
fn the_specs_rlimits_oom_score_no_new_privileges_user_and_root_propagation_are_applied() {
    require_root();
    ensure_runtime_binary();
    let (dir, rootfs) = fresh_rootfs();
    let root = dir.path().join("state");
    let report = "echo $(ulimit -n) $(ulimit -Hn) $(cat /proc/self/oom_score_adj) $(id -u):$(id -g) $(grep NoNewPrivs /proc/self/status | tr -d '\\t'); awk '$5 == \"/\" && / shared:/' /proc/self/mountinfo | wc -l";
    let bundle = bundle(dir.path(), &rootfs, &["sh", "-c", report]);
    let mut spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    spec["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]);
    spec["process"]["oomScoreAdj"] = serde_json::json!(500);
    spec["process"]["noNewPrivileges"] = serde_json::json!(true);
    spec["process"]["user"] = serde_json::json!({"uid": 33, "gid": 34});
    spec["linux"]["rootfsPropagation"] = serde_json::json!("rshared");
    fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let out = runtime(&root).args(["run", "--bundle"]).arg(&bundle).arg("limits").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1024 2048 500 33:34 NoNewPrivs:1\n1\n", "{}", stderr(&out));
    spec["linux"]["rootfsPropagation"] = serde_json::json!("sideways");
    fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let refused = runtime(&root).args(["run", "--bundle"]).arg(&bundle).arg("limits").output().unwrap();
    assert_eq!(refused.status.code(), Some(125));
    assert!(stderr(&refused).contains("unknown rootfsPropagation \"sideways\""), "{}", stderr(&refused));
}

#[test]
fn a_run_killed_at_any_point_leaves_nothing_that_the_next_run_does_not_collect() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(carton().env("CARTON_ROOT", &state).args(["bootstrap", "busybox"]).status().unwrap().success());
    let mut seen = std::collections::BTreeSet::new();
    // From before the state directory exists to a running container: each kill lands elsewhere.
    for delay in [0u64, 1, 2, 4, 8, 15, 30, 60, 120] {
        let mut killed = carton_run_image(&state).args(["busybox", "sleep", "30"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        killed.kill().unwrap(); // SIGKILL
        killed.wait().unwrap();
        seen.extend(fs::read_dir(state.join("containers")).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
    }
    let next = carton_run_image(&state).args(["busybox", "true"]).output().unwrap();
    assert!(next.status.success(), "{}", stderr(&next));
    let left: Vec<String> = fs::read_dir(state.join("containers")).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(left.is_empty(), "state directories left: {left:?}");
    let layers: Vec<String> = fs::read_dir(state.join("overlay/containers")).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(layers.is_empty(), "writable layers left: {layers:?}");
    assert!(!host_mounts().iter().any(|m| m.contains(state.to_str().unwrap())), "nothing of the state root stays mounted");
    if let Some(version) = cgroup_version() {
        let layout = step04::Layout::detect();
        for id in seen.iter().map(|name| name.trim_start_matches(step03::CLAIMING)) {
            for cgroup in step04::Cgroup::at(&layout, version, id).directories() {
                assert!(!cgroup.exists(), "the cgroup {} was collected", cgroup.display());
            }
        }
    }
}
