//! Step 09 end to end: kept and detached containers, their monitor, names, logs, and the
//! lifecycle commands of the course labs, in Docker's spelling. Needs root. Networks only
//! in throwaway namespaces; every test removes what it made.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A state root with the busybox image, removed on drop (its containers first).
struct State(tempfile::TempDir);

impl State {
    fn new() -> State {
        State(with_busybox_image())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// `carton ARGS` in this state root.
    fn carton(&self, args: &[&str]) -> Output {
        carton().env("CARTON_ROOT", self.path()).args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `carton ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.carton(args);
        assert!(out.status.success(), "carton {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// `carton run -d --network none ARGS`: the new container's id.
    fn detached(&self, args: &[&str]) -> String {
        let id = self.ok(&[&["run", "-d", "--network", "none"], args].concat()).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
        id
    }

    fn containers_left(&self) -> usize {
        std::fs::read_dir(self.path().join("containers")).map(|entries| entries.count()).unwrap_or(0)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let ids = stdout(&self.carton(&["ps", "-aq", "--no-trunc"]));
        for id in ids.lines() {
            let _ = self.carton(&["rm", "-f", id]);
        }
    }
}

/// Nothing of a container is left on the host: no mount below the state root, no cgroup
/// named after it, no state directory.
fn nothing_left_of(state: &State, id: &str) {
    assert!(!host_mounts().iter().any(|m| m.contains(id)), "a mount of {id} is left");
    if let Some(version) = cgroup_version() {
        let cgroup = step04::Cgroup::at(&step04::Layout::detect(), version, id);
        assert!(cgroup.directories().iter().all(|dir| !dir.exists()), "the cgroup of {id} is left");
    }
    assert!(!state.path().join("containers").join(id).exists(), "the state of {id} is left");
    assert!(!state.path().join("overlay/containers").join(id).exists(), "the writable layer of {id} is left");
}

fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(eventually_within(timeout, done), "timed out waiting until {what}");
}

#[test]
fn the_course_lab_a_web_server_detached_with_a_published_port() {
    require_root();
    let state = State::new();
    // The lab, as a student types it, in a network namespace of its own.
    let script = "\
        carton run -d --name web -p 8088:80 busybox sh -c 'mkdir -p /www && echo hello from the lab > /www/index.html && exec httpd -f -v -p 80 -h /www' > /dev/null\n\
        listening web 80\n\
        carton ps --format '{{.Names}}|{{.Status}}|{{.Ports}}' | sed 's/Up .*|/Up|/'\n\
        busybox wget -q -O - http://127.0.0.1:8088/\n\
        carton logs web 2>&1 | grep -c 'response:200'\n\
        carton exec web sh -c 'echo a new page > /www/new.html'\n\
        busybox wget -q -O - http://127.0.0.1:8088/new.html\n\
        carton inspect -f '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}} {{.State.Running}}' web\n\
        carton port web\n\
        carton stop -t 1 web\n\
        carton ps -a --format '{{.Names}} {{.Status}}' | sed 's/ ago$//; s/) .*/)/'\n\
        busybox wget -q -T 1 -O - http://127.0.0.1:8088/ 2>/dev/null || echo refused while stopped\n\
        carton start web\n\
        listening web 80\n\
        busybox wget -q -O - http://127.0.0.1:8088/new.html\n\
        carton rm -f web\n\
        carton run --rm --network bridge busybox sh -c 'ls /www 2>&1 | head -1'\n\
        ip -o link show type veth | wc -l\n\
        ss -Hltn 'sport = :8088' | wc -l";
    let out = in_throwaway_netns(state.path(), script);
    assert_eq!(
        stdout(&out),
        "web|Up|0.0.0.0:8088->80/tcp\n\
         hello from the lab\n\
         1\n\
         a new page\n\
         10.88.0.2 02:42:0a:58:00:02 true\n\
         80/tcp -> 0.0.0.0:8088\n\
         web\n\
         web Exited (137)\n\
         refused while stopped\n\
         web\n\
         a new page\n\
         web\n\
         ls: /www: No such file or directory\n\
         0\n\
         0\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(state.containers_left(), 0);
}

#[test]
fn a_new_container_on_a_removed_ones_address_is_reached_at_once() {
    require_root();
    let state = State::new();
    // `web` is reached, removed, and made again on the same address. The host remembers
    // which hardware address answered for it (its neighbour table): usually for half a
    // minute, here for sure (`ip neigh replace`, with another container keeping the bridge
    // up: a bridge with no port loses its carrier, and the host then forgets anyway). The
    // second `web` must answer to the same hardware address, or the request goes nowhere.
    let script = "\
        carton run -d --name keeper busybox sleep 300 > /dev/null\n\
        for round in first second; do\n\
          carton run -d --name web -p 8088:80 busybox sh -c \"mkdir /www; echo $round > /www/index.html; exec httpd -f -p 80 -h /www\" > /dev/null\n\
          listening web 80\n\
          mac=$(carton exec web cat /sys/class/net/eth0/address)\n\
          echo $(carton inspect -f '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' web) $mac\n\
          timeout 5 busybox wget -q -O - http://127.0.0.1:8088/ || echo no answer\n\
          carton rm -f web > /dev/null\n\
          ip neigh replace 10.88.0.3 lladdr $mac dev carton0 nud reachable\n\
        done\n\
        carton rm -f keeper > /dev/null";
    let out = in_throwaway_netns(state.path(), script);
    assert_eq!(stdout(&out), "10.88.0.3 02:42:0a:58:00:03 02:42:0a:58:00:03\nfirst\n10.88.0.3 02:42:0a:58:00:03 02:42:0a:58:00:03\nsecond\n", "{}", stderr(&out));
    assert_eq!(state.containers_left(), 0);
}

#[test]
fn stop_waits_the_timeout_only_for_a_pid_1_that_ignores_sigterm() {
    require_root();
    let state = State::new();
    // PID 1 of a namespace gets only the signals it has a handler for: `sleep` has none.
    let stubborn = state.detached(&["busybox", "sleep", "60"]);
    let started = Instant::now();
    assert_eq!(state.ok(&["stop", "-t", "1", &stubborn[..12]]), format!("{}\n", &stubborn[..12]));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "SIGTERM, a second, SIGKILL: {took:?}");
    assert_eq!(state.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", &stubborn]), "exited 137\n");
    // One with a handler ends at once, with its own status.
    let polite = state.detached(&["busybox", "sh", "-c", "trap 'exit 3' TERM; sleep 60 & wait"]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    state.ok(&["stop", &polite]);
    assert!(started.elapsed() < Duration::from_secs(3), "no need to wait: {:?}", started.elapsed());
    assert_eq!(state.ok(&["wait", &polite]), "3\n");
    // Stopping a stopped container, or starting a running one, is quietly fine (Docker's).
    assert!(state.carton(&["stop", &polite]).status.success());
    state.ok(&["rm", &polite, &stubborn]);
    nothing_left_of(&state, &polite);
    nothing_left_of(&state, &stubborn);
}

#[test]
fn a_kept_container_starts_again_on_its_own_files_and_a_new_one_starts_clean() {
    require_root();
    let state = State::new();
    let out = state.carton(&["run", "--network", "none", "--name", "keeper", "busybox", "sh", "-c", "cat /note 2>/dev/null; echo kept >> /note; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(state.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]), "keeper Exited (4) Less than a second ago\n");
    assert_eq!(state.ok(&["ps", "-q"]), "", "not running: only ps -a lists it");
    // start -a: attached, its output here, its status this command's.
    let again = state.carton(&["start", "-a", "keeper"]);
    assert_eq!((again.status.code(), stdout(&again)), (Some(4), "kept\n".to_string()), "{}", stderr(&again));
    assert_eq!(state.ok(&["logs", "keeper"]), "kept\n", "an attached run's output is logged too");
    state.ok(&["start", "keeper"]);
    assert_eq!(state.ok(&["wait", "keeper"]), "4\n");
    assert_eq!(state.ok(&["logs", "keeper"]), "kept\nkept\nkept\n", "the log goes on across runs");
    assert_eq!(state.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}}", "keeper"]), "0 4\n");
    let fresh = state.carton(&["run", "--rm", "--network", "none", "busybox", "cat", "/note"]);
    assert_eq!(fresh.status.code(), Some(1), "a new container from the image starts clean: {}", stdout(&fresh));
    let id = state.ok(&["inspect", "-f", "{{.Id}}", "keeper"]).trim().to_string();
    state.ok(&["rm", "keeper"]);
    nothing_left_of(&state, &id);
    assert_eq!(state.containers_left(), 0);
}

#[test]
fn logs_keep_stdout_and_stderr_apart_and_follow_tail_and_rotate() {
    require_root();
    let state = State::new();
    let id = state.detached(&["busybox", "sh", "-c", "for i in 1 2 3; do echo out $i; echo err $i >&2; done; sleep 1; echo late"]);
    state.ok(&["wait", &id]);
    let logs = state.carton(&["logs", &id]);
    assert_eq!((stdout(&logs).as_str(), stderr(&logs).as_str()), ("out 1\nout 2\nout 3\nlate\n", "err 1\nerr 2\nerr 3\n"));
    let tail = state.carton(&["logs", "--tail", "1", &id]);
    assert_eq!((stdout(&tail).as_str(), stderr(&tail).as_str()), ("late\n", ""), "the last line");
    let stamped = state.ok(&["logs", "-t", "--tail", "1", &id]);
    let (time, line) = stamped.split_once(' ').unwrap();
    assert!(step09::record::parse_rfc3339(time).is_some() && line == "late\n", "{stamped}");
    assert_eq!(state.ok(&["logs", "--since", "1h", "--tail", "1", &id]), "late\n");
    assert_eq!(state.ok(&["logs", "--since", "2099-01-01T00:00:00Z", &id]), "");
    // -f: what is there, then each line as it comes, until the container ends.
    let follow = state.detached(&["busybox", "sh", "-c", "echo first; sleep 1; echo second"]);
    let started = Instant::now();
    assert_eq!(state.ok(&["logs", "-f", &follow]), "first\nsecond\n");
    assert!(started.elapsed() >= Duration::from_millis(700), "it followed until the end");
    // A terminal merges the two streams, as Docker's.
    let tty = state.detached(&["-t", "busybox", "sh", "-c", "echo to out; echo to err >&2"]);
    state.ok(&["wait", &tty]);
    let merged = state.carton(&["logs", &tty]);
    assert_eq!((stdout(&merged).as_str(), stderr(&merged).as_str()), ("to out\r\nto err\r\n", ""));
    // Rotation: max-size and max-file keep the log small, and the newest lines.
    let busy = state.detached(&["--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done"]);
    state.ok(&["wait", &busy]);
    let dir = state.path().join("containers").join(&busy);
    let kept: u64 = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("-json.log")).map(|e| e.metadata().unwrap().len()).sum();
    assert!(kept <= 2 * 1024 + 200, "two files of about 1 KiB: {kept} bytes");
    assert!(state.ok(&["logs", &busy]).ends_with("line 199\n"));
    let refused = state.carton(&["run", "-d", "--log-opt", "max-files=2", "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(stderr(&refused).contains("unknown --log-opt \"max-files=2\""), "{}", stderr(&refused));
    // An attached run shows its output and logs it too (a --rm one only shows it).
    let attached = state.carton(&["run", "--network", "none", "--name", "attached", "busybox", "sh", "-c", "echo shown; echo warned >&2; exit 4"]);
    assert_eq!((attached.status.code(), stdout(&attached).as_str(), stderr(&attached).as_str()), (Some(4), "shown\n", "warned\n"));
    let logs = state.carton(&["logs", "attached"]);
    assert_eq!((stdout(&logs).as_str(), stderr(&logs).as_str()), ("shown\n", "warned\n"));
}

#[test]
fn names_prefixes_and_a_race_for_one_name() {
    require_root();
    let state = State::new();
    let id = state.detached(&["--name", "web", "busybox", "sleep", "60"]);
    assert_eq!(state.ok(&["inspect", "-f", "{{.Name}}", "web"]), "/web\n");
    assert_eq!(state.ok(&["inspect", "-f", "{{.Name}}", &id[..5]]), "/web\n", "a unique prefix of the id");
    let random = state.detached(&["busybox", "true"]);
    let name = state.ok(&["inspect", "-f", "{{.Name}}", &random]);
    let parts: Vec<&str> = name.trim().trim_start_matches('/').split('_').collect();
    assert!(parts.len() == 2 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())), "adjective_surname: {name}");
    // The same name from two CLIs at once: one wins, the other says why.
    let racers: Vec<std::process::Child> = (0..2)
        .map(|_| {
            carton()
                .env("CARTON_ROOT", state.path())
                .args(["run", "-d", "--network", "none", "--name", "raced", "busybox", "sleep", "60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<Output> = racers.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
    assert_eq!(results.iter().filter(|out| out.status.success()).count(), 1, "one winner");
    let loser = results.iter().find(|out| !out.status.success()).unwrap();
    assert_eq!(loser.status.code(), Some(125));
    assert!(stderr(loser).contains("the container name \"/raced\" is already in use by container"), "{}", stderr(loser));
    // rename, then the old name is free again.
    state.ok(&["rename", "web", "website"]);
    assert_eq!(state.ok(&["ps", "--filter", "name=websi", "--format", "{{.Names}}"]), "website\n");
    let out = state.carton(&["inspect", "web"]);
    assert!(!out.status.success() && stderr(&out).contains("no such object: web"), "{}", stderr(&out));
    // An ambiguous prefix names the candidates (ids are hex: some share a first digit).
    let all = state.ok(&["ps", "-aq", "--no-trunc"]);
    let ids: Vec<&str> = all.lines().collect();
    if let Some(shared) = ids.iter().flat_map(|a| ids.iter().filter(move |b| *b != a && a[..1] == b[..1]).map(move |_| &a[..1])).next() {
        let out = state.carton(&["inspect", shared]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("is ambiguous"), "{}", stderr(&out));
    }
    state.ok(&["rm", "-f", "website", "raced", &random]);
    assert_eq!(state.containers_left(), 0);
    assert_eq!(std::fs::read_dir(state.path().join("names")).unwrap().count(), 0, "every name was given up");
}

#[test]
fn restart_policies_start_it_again_and_stop_ends_them() {
    require_root();
    let state = State::new();
    let flaky = state.detached(&["--restart", "on-failure:2", "busybox", "sh", "-c", "echo try; exit 1"]);
    wait_until("it has given up", Duration::from_secs(10), || state.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", &flaky]) == "exited 2\n");
    assert_eq!(state.ok(&["logs", &flaky]), "try\ntry\ntry\n", "the first run and two restarts");
    let always = state.detached(&["--restart", "always", "busybox", "sh", "-c", "echo up; sleep 0.2"]);
    wait_until("it has restarted", Duration::from_secs(10), || state.ok(&["inspect", "-f", "{{.RestartCount}}", &always]).trim().parse::<u32>().unwrap() >= 2);
    state.ok(&["stop", "-t", "1", &always]);
    let count = state.ok(&["inspect", "-f", "{{.RestartCount}}", &always]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", &always]), format!("exited {}", count), "stop is not undone by the policy");
    let refused = state.carton(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    let refused = state.carton(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert!(stderr(&refused).contains("invalid --restart \"sometimes\""), "{}", stderr(&refused));
    state.ok(&["rm", &flaky, &always]);
}

#[test]
fn a_killed_monitor_leaves_a_dead_container_that_rm_f_cleans() {
    require_root();
    let state = State::new();
    let id = state.detached(&["--name", "orphan", "busybox", "sleep", "60"]);
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state.path().join("containers").join(&id).join("container.json")).unwrap()).unwrap();
    let monitor: i32 = record["State"]["Monitor"].as_str().unwrap().split(':').next().unwrap().parse().unwrap();
    let pid: i32 = state.ok(&["inspect", "-f", "{{.State.Pid}}", &id]).trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the Pid is the container's process on the host");
    let ns = |pid: i32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    assert_ne!(ns(pid, "pid"), ns(std::process::id() as i32, "pid"), "in a PID namespace of its own");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the container died with its monitor", Duration::from_secs(10), || !Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(state.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]), "orphan Dead\n", "never Up forever");
    let out = state.carton(&["start", "orphan"]);
    assert!(stderr(&out).contains("is dead"), "{}", stderr(&out));
    state.ok(&["rm", "-f", "orphan"]);
    nothing_left_of(&state, &id);
}

#[test]
fn a_cli_killed_during_run_d_leaves_no_half_made_container() {
    require_root();
    let state = State::new();
    for delay in [0, 5, 20, 60] {
        let mut child = carton().env("CARTON_ROOT", state.path()).args(["run", "-d", "--network", "none", "busybox", "sleep", "60"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    // The next command collects what the killed ones left; each container is either
    // running under its monitor, or stopped and kept (created or dead), never half made.
    state.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    for line in state.ok(&["ps", "-a", "--format", "{{.ID}} {{.State}}"]).lines() {
        let (_, status) = line.split_once(' ').unwrap();
        assert!(["running", "created", "dead", "exited"].contains(&status), "{line}");
    }
    let ids = state.ok(&["ps", "-aq", "--no-trunc"]);
    for id in ids.lines() {
        state.ok(&["rm", "-f", id]);
        nothing_left_of(&state, id);
    }
    assert_eq!(state.containers_left(), 0);
}

#[test]
fn pause_freezes_and_top_lists_the_processes() {
    require_root();
    let state = State::new();
    let id = state.detached(&["--name", "counter", "busybox", "sh", "-c", "sleep 60 & while :; do echo tick > /dev/null; done"]);
    let top = state.ok(&["top", "counter"]);
    assert!(top.starts_with("UID") && top.contains("sleep 60"), "{top}");
    state.ok(&["pause", "counter"]);
    let status = state.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(status.trim_end().ends_with("(Paused)"), "{status}");
    let pid = state.ok(&["inspect", "-f", "{{.State.Pid}}", &id]).trim().to_string();
    let cpu = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().split_whitespace().nth(13).unwrap().parse::<u64>().unwrap();
    let before = cpu();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu(), before, "a frozen process runs no more");
    state.ok(&["unpause", "counter"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(cpu() > before, "thawed, it runs again");
    state.ok(&["rm", "-f", "counter"]);
    nothing_left_of(&state, &id);
}

#[test]
fn bad_input_gets_dockers_exit_codes_and_a_clear_message() {
    require_root();
    let state = State::new();
    let stopped = state.detached(&["--name", "stopped", "busybox", "true"]);
    state.ok(&["wait", "stopped"]);
    let running = state.detached(&["--name", "running", "busybox", "sleep", "60"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["stop", "nosuch"], 1, "no such container: nosuch"),
        (&["logs", "nosuch"], 1, "no such container: nosuch"),
        (&["exec", "stopped", "true"], 125, "container stopped is not running"),
        (&["rm", "running"], 1, "you cannot remove a running container"),
        (&["run", "--name", "running", "busybox", "true"], 125, "the container name \"/running\" is already in use"),
        (&["run", "--name", "bad name", "busybox", "true"], 125, "invalid container name"),
        (&["ps", "--filter", "colour=red"], 1, "invalid filter"),
        (&["ps", "--format", "{{.Nmes}}"], 1, "{{.Nmes}} is not a field"),
        (&["inspect", "-f", "{{.State.Nope}}", "running"], 1, "there is no field Nope"),
        (&["logs", "--since", "yesterday", "running"], 1, "invalid --since"),
        (&["kill", "-s", "NOPE", "running"], 1, "invalid signal"),
    ];
    for (args, code, message) in cases {
        let out = state.carton(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: expected {message:?} in {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    // Quietly fine, as Docker's: start of a running one, stop of a stopped one.
    assert_eq!(state.ok(&["start", "running"]), "running\n");
    assert_eq!(state.ok(&["stop", "stopped"]), "stopped\n");
    state.ok(&["rm", "-f", &running, &stopped]);
    assert_eq!(state.containers_left(), 0);
}

#[test]
fn two_hundred_run_d_and_rm_f_cycles_leave_nothing_behind() {
    require_root();
    let state = State::new();
    for _ in 0..200 {
        let id = state.detached(&["busybox", "sleep", "60"]);
        state.ok(&["rm", "-f", &id]);
    }
    assert_eq!(state.containers_left(), 0);
    assert!(!host_mounts().iter().any(|m| m.contains(state.path().to_str().unwrap())), "a mount is left");
    assert_eq!(std::fs::read_dir(state.path().join("names")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(state.path().join("overlay/containers")).unwrap().count(), 0);
}

#[test]
fn cp_diff_and_commit_stay_inside_the_container_and_make_an_image() {
    require_root();
    let state = State::new();
    let scratch = tempfile::tempdir().unwrap();
    let page = scratch.path().join("page.html");
    std::fs::write(&page, "a page from the host\n").unwrap();
    // The image's /www holds links planted to lead out: to /etc, and to /etc/shadow.
    let id = state.detached(&["--name", "site", "busybox", "sh", "-c", "mkdir -p /www; ln -sfn /etc /www/etc-link; ln -sfn /etc/shadow /www/shadow; exec sleep 600"]);
    wait_until("the links are planted", Duration::from_secs(10), || state.carton(&["exec", "site", "test", "-L", "/www/shadow"]).status.success());
    state.ok(&["cp", page.to_str().unwrap(), "site:/www/"]);
    assert_eq!(state.ok(&["exec", "site", "cat", "/www/page.html"]), "a page from the host\n");
    // Through the container's link to /etc: the container's /etc, never the host's.
    state.ok(&["cp", page.to_str().unwrap(), "site:/www/etc-link/planted"]);
    assert!(!Path::new("/etc/planted").exists(), "cp followed a link out of the container");
    assert_eq!(state.ok(&["exec", "site", "cat", "/etc/planted"]), "a page from the host\n");
    let out = scratch.path().join("passwd");
    state.ok(&["cp", "site:/www/etc-link/passwd", out.to_str().unwrap()]);
    let theirs = state.ok(&["exec", "site", "cat", "/etc/passwd"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), theirs, "the container's /etc/passwd");
    assert_ne!(theirs, std::fs::read_to_string("/etc/passwd").unwrap(), "not the host's");
    let link = scratch.path().join("shadow");
    state.ok(&["cp", "site:/www/shadow", link.to_str().unwrap()]);
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/etc/shadow"), "a link is copied as a link, not followed");
    let tree = scratch.path().join("tree");
    state.ok(&["cp", "site:/www", tree.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(tree.join("page.html")).unwrap(), "a page from the host\n");
    let diff = state.ok(&["diff", "site"]);
    for line in ["A /www", "A /www/page.html", "A /etc/planted"] {
        assert!(diff.lines().any(|l| l == line), "{line} in {diff}");
    }
    let image = state.ok(&["commit", "-c", "CMD [\"cat\", \"/www/page.html\"]", "-m", "a page", "site", "lab/site:1"]);
    assert!(image.starts_with("sha256:"), "{image}");
    assert_eq!(state.ok(&["run", "--rm", "--network", "none", "lab/site:1"]), "a page from the host\n");
    let history = state.ok(&["history", "lab/site:1"]);
    assert!(history.contains("carton commit") && history.contains("a page"), "{history}");
    // A stopped container: its root is mounted for the copy, and unmounted after.
    state.ok(&["stop", "-t", "0", "site"]);
    state.ok(&["cp", page.to_str().unwrap(), "site:/www/while-stopped.html"]);
    assert!(!host_mounts().iter().any(|m| m.contains(&id)), "the root stays unmounted");
    state.ok(&["start", "site"]);
    assert_eq!(state.ok(&["exec", "site", "cat", "/www/while-stopped.html"]), "a page from the host\n");
    for (args, message) in [
        (&["cp", page.to_str().unwrap(), "site:/nowhere/x"][..], "the directory /nowhere does not exist in the container"),
        (&["cp", "site:/no-such-file", scratch.path().to_str().unwrap()][..], "/no-such-file does not exist in the container"),
        (&["cp", "a", "b"][..], "one side of cp is a container's path"),
        (&["commit", "site"][..], "give the new image a name"),
    ] {
        let out = state.carton(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    state.ok(&["rm", "-f", "site"]);
    nothing_left_of(&state, &id);
}

#[test]
fn stats_measure_and_redraw_and_info_counts() {
    require_root();
    let state = State::new();
    let busy = state.detached(&["--name", "busy", "-m", "64m", "busybox", "sh", "-c", "while :; do :; done"]);
    let line = state.ok(&["stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", "busy"]);
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert_eq!((fields[0], fields[3]), ("busy", "1"), "{line}");
    let cpu: f64 = fields[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 30.0, "a busy loop uses a CPU: {line}");
    assert!(fields[2].ends_with(" / 64MiB"), "its memory limit: {line}");
    let table = state.ok(&["stats", "--no-stream"]);
    assert!(table.starts_with("CONTAINER ID   NAME   CPU %") && table.contains(&busy[..12]), "{table}");
    // On a terminal it redraws, once a second, from the top left corner.
    let script = format!("timeout 4.5 {} stats --format 'table {{{{.Name}}}}'", env!("CARGO_BIN_EXE_carton"));
    let live = std::process::Command::new("script").args(["-qfc", &script, "/dev/null"]).env("CARTON_ROOT", state.path()).stdin(Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&live.stdout);
    assert!(screen.matches("\x1b[2J\x1b[H").count() >= 2 && screen.contains("busy"), "{screen:?}");
    let info = state.ok(&["info"]);
    assert!(info.contains(" Containers: 1\n  Running: 1\n  Paused: 0\n  Stopped: 0\n Images: 1\n"), "{info}");
    let version = match cgroup_version() {
        Some(step04::Version::V2) => "2",
        _ => "1",
    };
    assert!(info.contains(&format!(" Cgroup Version: {version}\n")), "{info}");
    assert!(state.ok(&["version"]).contains(&format!(" Version:           {}", env!("CARGO_PKG_VERSION"))));
    state.ok(&["rm", "-f", "busy"]);
}

#[test]
fn env_files_ulimits_sysctls_and_publish_all() {
    require_root();
    let state = State::new();
    let scratch = tempfile::tempdir().unwrap();
    let env = scratch.path().join("app.env");
    std::fs::write(&env, "# settings\nA=1\n\nB=two words\n").unwrap();
    let run = |args: &[&str]| state.carton(&[&["run", "--rm", "--network", "none"], args].concat());
    let out = run(&["--env-file", env.to_str().unwrap(), "-e", "A=override", "busybox", "sh", "-c", "echo $A $B"]);
    assert_eq!(stdout(&out), "override two words\n", "{}", stderr(&out));
    let out = run(&["--ulimit", "nofile=512:1024", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(stdout(&out), "512\n1024\n", "{}", stderr(&out));
    let out = run(&["--sysctl", "net.ipv4.ip_unprivileged_port_start=0", "busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]);
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    for (args, message) in [
        (&["--sysctl", "vm.swappiness=10", "busybox", "true"][..], "not namespaced"),
        (&["--ulimit", "nofile=1:99999999999", "busybox", "true"][..], "nofile"),
        (&["--env-file", "/nonexistent.env", "busybox", "true"][..], "cannot read the --env-file /nonexistent.env"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(state.containers_left(), 0, "nothing made for a refused run");
    // -P: an image that exposes port 80 (made with commit), published on a port the kernel chooses.
    let script = "\
        carton run --name base --network none busybox true\n\
        carton commit -c 'EXPOSE 80' -c 'CMD [\"sh\", \"-c\", \"mkdir -p /www; echo exposed > /www/index.html; exec httpd -f -p 80 -h /www\"]' base lab/exposed > /dev/null\n\
        carton rm base\n\
        carton run -d -P --name auto lab/exposed > /dev/null\n\
        listening auto 80\n\
        port=$(carton port auto 80 | cut -d: -f2)\n\
        [ \"$port\" -gt 1024 ] && echo \"a port of the kernel's\"\n\
        busybox wget -q -O - http://127.0.0.1:$port/\n\
        carton rm -f auto";
    let out = in_throwaway_netns(state.path(), script);
    assert_eq!(stdout(&out), "base\na port of the kernel's\nexposed\nauto\n", "{}", stderr(&out));
}

#[test]
fn the_shapes_of_ps_inspect_top_and_stats_are_pinned() {
    require_root();
    let state = State::new();
    state.detached(&["--name", "pinned", "-m", "64m", "busybox", "sh", "-c", "echo hello; exec sleep 600"]);
    assert_eq!(state.carton(&["run", "--network", "none", "--name", "done", "busybox", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let root = regex_escape(state.path().to_str().unwrap());
    let filters: Vec<(String, &str)> = vec![
        (root, "[STATE]"),
        (r"\b[0-9a-f]{64}\b".into(), "[ID]"),
        (r"\b[0-9a-f]{12}\b".into(), "[SHORT ID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z".into(), "[TIME]"),
        (r"(Less than a second|\d+ seconds?|About a minute)".into(), "[DURATION]"),
        (r#""Pid": [1-9]\d*"#.into(), r#""Pid": [PID]"#),
        (r"\d+(\.\d+)?%".into(), "[PERCENT]"),
        (r"\d+(\.\d+)?(KiB|MiB|GiB|kB|MB|GB|B)\b".into(), "[AMOUNT]"),
        (r"\b\d\d:\d\d(:\d\d)?\b".into(), "[CLOCK]"),
        (r"(?m)^(\S+ +)\d+ +\d+ +\d+".into(), "${1}[PID] [PPID] [C]"),
    ];
    let settings: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    insta::with_settings!({ filters => settings.clone() }, {
        insta::assert_snapshot!("inspect", state.ok(&["inspect", "pinned"]));
    });
    // Tables: their columns are as wide as what was redacted, so runs of spaces are one gap.
    let mut settings = settings;
    settings.push((" {2,}", "  "));
    insta::with_settings!({ filters => settings }, {
        insta::assert_snapshot!("ps_a", state.ok(&["ps", "-a"]));
        insta::assert_snapshot!("top", state.ok(&["top", "pinned"]));
        insta::assert_snapshot!("stats", state.ok(&["stats", "--no-stream", "pinned"]));
    });
    state.ok(&["rm", "-f", "pinned", "done"]);
}

#[test]
fn exec_with_a_terminal_in_the_background_and_into_a_stopped_container() {
    require_root();
    let state = State::new();
    let id = state.detached(&["--name", "box", "busybox", "sleep", "600"]);
    // -it in a pty (as a student types it): a terminal of the container's, and its processes.
    let line = format!("{} exec -it box sh -c 'tty; echo sleepers=$(ps -o args | grep -c ^sleep)'", env!("CARGO_BIN_EXE_carton"));
    let out = std::process::Command::new("script").args(["-qfec", &line, "/dev/null"]).env("CARTON_ROOT", state.path()).stdin(Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    // (The terminal may echo a control character script typed at its end: lines, not whole.)
    assert!(screen.contains("/dev/pts/0") && screen.contains("sleepers=1\n"), "{screen:?} {}", stderr(&out));
    // -d: it returns at once; the command goes on in the container.
    let started = Instant::now();
    state.ok(&["exec", "-d", "box", "sh", "-c", "sleep 3; echo done > /tmp/background"]);
    assert!(started.elapsed() < Duration::from_millis(2500), "exec -d waited: {:?}", started.elapsed());
    wait_until("the background command has run", Duration::from_secs(10), || state.carton(&["exec", "box", "cat", "/tmp/background"]).status.success());
    // Exiting an exec does not stop the container.
    assert_eq!(state.ok(&["ps", "--format", "{{.Names}} {{.State}}"]), "box running\n");
    state.ok(&["stop", "-t", "0", "box"]);
    let out = state.carton(&["exec", "box", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("container box is not running"), "{}", stderr(&out));
    state.ok(&["rm", "box"]);
    nothing_left_of(&state, &id);
}

#[test]
fn attach_follows_a_detached_container_and_detach_keys_leave_it_running() {
    require_root();
    let state = State::new();
    // A shell with a terminal, detached; a user attaches from a terminal, types, detaches.
    let id = state.detached(&["-it", "--name", "term", "busybox", "sh"]);
    let line = format!("{} attach term", env!("CARGO_BIN_EXE_carton"));
    let mut user =
        std::process::Command::new("script").args(["-qfec", &line, "/dev/null"]).env("CARTON_ROOT", state.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut keys = user.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::io::Write::write_all(&mut keys, b"echo $((6*7))\r").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::io::Write::write_all(&mut keys, b"\x10\x11").unwrap(); // Ctrl-P Ctrl-Q
    let deadline = Instant::now() + Duration::from_secs(10);
    while user.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "attach did not detach");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(keys);
    let out = user.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("42") && screen.contains("read escape sequence"), "{screen:?}");
    assert_eq!(state.ok(&["ps", "--format", "{{.Names}} {{.State}}"]), "term running\n", "detached, not stopped");
    assert!(state.ok(&["logs", "term"]).contains("42"), "what it printed is in the log too");
    // Without a terminal: the output as it comes, and the container's exit status.
    let later = state.detached(&["busybox", "sh", "-c", "sleep 2; echo late; echo oops >&2; exit 7"]);
    let attached = state.carton(&["attach", "--no-stdin", &later]);
    assert_eq!((attached.status.code(), stdout(&attached), stderr(&attached)), (Some(7), "late\n".to_string(), "oops\n".to_string()));
    let out = state.carton(&["attach", &later]);
    assert!(stderr(&out).contains("you cannot attach to a stopped container"), "{}", stderr(&out));
    // Ctrl-C (SIGINT) to an attached CLI goes to the container (--sig-proxy, the default),
    // or, with --sig-proxy=false, only ends the CLI.
    let trapping = ["busybox", "sh", "-c", "trap 'echo got INT; exit 3' INT; while :; do sleep 0.1; done"];
    let interrupted = |container: &str, flags: &[&str]| {
        let cli = carton().env("CARTON_ROOT", state.path()).args([&["attach", "--no-stdin"], flags, &[container]].concat()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(cli.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
        cli.wait_with_output().unwrap()
    };
    let proxied = state.detached(&trapping);
    let out = interrupted(&proxied, &[]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(3), "got INT\n".to_string()), "{}", stderr(&out));
    let left = state.detached(&trapping);
    let out = interrupted(&left, &["--sig-proxy=false"]);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(2), "the CLI ends by the signal");
    assert_eq!(state.ok(&["inspect", "-f", "{{.State.Status}}", &left]).trim(), "running", "the container did not get it");
    state.ok(&["rm", "-f", &id, &later, &proxied, &left]);
}

#[test]
fn health_checks_run_in_the_monitor_and_show_in_ps_and_inspect() {
    require_root();
    let state = State::new();
    let id = state.detached(&[
        "--name",
        "checked",
        "--health-cmd",
        "echo checking; test -f /tmp/ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "3s",
        "busybox",
        "sleep",
        "300",
    ]);
    let health = |field: &str| state.ok(&["inspect", "-f", &format!("{{{{.State.Health.{field}}}}}"), &id]).trim().to_string();
    assert_eq!(health("Status"), "starting", "failures in the start period do not count");
    assert!(state.ok(&["ps"]).contains("(health: starting)"));
    wait_until("two failures after the start period make it unhealthy", Duration::from_secs(20), || health("Status") == "unhealthy");
    assert!(state.ok(&["ps"]).contains("(unhealthy)"), "{}", state.ok(&["ps"]));
    assert_eq!(state.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(), "running", "an unhealthy container keeps running");
    let log: serde_json::Value = serde_json::from_str(&state.ok(&["inspect", "-f", "{{json .State.Health.Log}}", &id])).unwrap();
    let first = &log[0];
    assert_eq!((first["ExitCode"].as_i64(), first["Output"].as_str()), (Some(1), Some("checking\n")), "{log}");
    state.ok(&["exec", &id, "touch", "/tmp/ready"]);
    wait_until("one success makes it healthy", Duration::from_secs(20), || health("Status") == "healthy");
    assert_eq!(health("FailingStreak"), "0");
    assert!(state.ok(&["ps", "--filter", "health=healthy", "-q"]).contains(&id[..12]));
    assert!(state.ok(&["ps", "--filter", "health=unhealthy", "-q"]).trim().is_empty());
    let log: serde_json::Value = serde_json::from_str(&state.ok(&["inspect", "-f", "{{json .State.Health.Log}}", &id])).unwrap();
    assert!(log.as_array().unwrap().len() <= 5, "the last five checks are kept: {log}");
    assert_eq!(state.ok(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", &id]).trim(), r#"["CMD-SHELL","echo checking; test -f /tmp/ready"]"#);

    // A check that does not answer in time fails with Docker's words; restarting starts over.
    let slow = state.detached(&["--health-cmd", "sleep 5", "--health-interval", "500ms", "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "300"]);
    wait_until("the slow check times out", Duration::from_secs(20), || state.ok(&["inspect", "-f", "{{.State.Health.Status}}", &slow]).trim() == "unhealthy");
    let log = state.ok(&["inspect", "-f", "{{json .State.Health.Log}}", &slow]);
    assert!(log.contains(r#""ExitCode":-1"#) && log.contains("Health check exceeded timeout (300ms)"), "{log}");
    state.ok(&["stop", "-t", "1", &slow]);
    state.ok(&["start", &slow]);
    assert_eq!(state.ok(&["inspect", "-f", "{{.State.Health.Status}}", &slow]).trim(), "starting", "a start begins again");

    // A container without a check has no Health; --no-healthcheck and --health-* conflict.
    let plain = state.detached(&["busybox", "sleep", "300"]);
    assert!(!state.ok(&["inspect", &plain]).contains("\"Health\""));
    let out = state.carton(&["run", "-d", "--no-healthcheck", "--health-cmd", "true", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--no-healthcheck conflicts"), "{}", stderr(&out));
    let out = state.carton(&["run", "-d", "--health-interval", "soon", "busybox", "true"]);
    assert!(out.status.code() == Some(125) && stderr(&out).contains("--health-interval"), "{}", stderr(&out));
}

#[test]
fn system_prune_removes_stopped_containers_and_with_all_every_unused_image() {
    require_root();
    let state = State::new();
    state.ok(&["run", "--network", "none", "--name", "done", "busybox", "true"]);
    let running = state.detached(&["--name", "up", "busybox", "sleep", "300"]);
    state.ok(&["tag", "busybox", "spare:1"]);
    let out = state.carton(&["system", "prune"]);
    assert_eq!(out.status.code(), Some(1), "without a terminal to ask on, -f is needed");
    assert!(stderr(&out).contains("give -f"), "{}", stderr(&out));
    assert_eq!(state.ok(&["ps", "-a", "--format", "{{.Names}}"]), "up\ndone\n", "nothing removed without -f");
    let pruned = state.ok(&["system", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n") && pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(state.ok(&["ps", "-a", "--format", "{{.Names}}"]), "up\n", "the running container stays");
    assert_eq!(state.ok(&["images"]).lines().count(), 3, "no image is dangling: both names stay (and the heading)");
    // -a: both names point at the image the running container uses: kept while it runs.
    assert!(!state.ok(&["system", "prune", "-af"]).contains("untagged"));
    state.ok(&["rm", "-f", &running]);
    let pruned = state.ok(&["system", "prune", "-af"]);
    assert!(pruned.contains("Deleted Images:\nuntagged: busybox:latest\nuntagged: spare:1\ndeleted: sha256:"), "{pruned}");
    assert_eq!(state.ok(&["images"]).lines().count(), 1, "no image is left");
    assert_eq!(std::fs::read_dir(state.path().join("images/blobs/sha256")).map(|d| d.count()).unwrap_or(0), 0, "no blob is left");
}
