//! The library calls `pause`, `unpause` and `stats` will use, on the host's real cgroups.
//! Needs root. A busy loop's CPU time stands still while its cgroup is frozen.

use std::process::{Child, Command};
use std::time::Duration;

use step01::Explain;
use step04::{Cgroup, Layout, Limits, Version};

/// This machine's layout, in the mode the run expects: the cgroup v2 VM (tests/vm/) sets
/// CARTON_EXPECT_CGROUP=v2, so these tests cannot pass there on another mode by mistake. (The
/// root package's tests do the same in tests/common's `cgroup_version`, which this crate's
/// tests cannot include: that module needs the `carton` binary.)
fn layout() -> Layout {
    let layout = Layout::detect();
    let expected = match std::env::var("CARTON_EXPECT_CGROUP").as_deref() {
        Err(_) => return layout,
        Ok("v1") => Version::V1,
        Ok("v2") => Version::V2,
        Ok(other) => panic!("CARTON_EXPECT_CGROUP={other}: write v1 or v2"),
    };
    assert_eq!(layout.version(), Some(expected), "this run expects cgroup {expected:?}, but this machine's layout is {layout:?}");
    layout
}

/// The busy loop and its cgroup, both removed however the test ends.
struct Trial {
    child: Child,
    cgroup: Cgroup,
}

impl Drop for Trial {
    fn drop(&mut self) {
        let _ = self.cgroup.set_frozen(false, &Explain::off());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.cgroup.remove();
    }
}

#[test]
fn a_frozen_cgroup_uses_no_cpu_and_thawed_it_goes_on() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root: it makes a cgroup on the host");
    let layout = layout();
    let id = format!("test-freeze-{}", std::process::id());
    let limits = Limits { pids_limit: Some(10), ..Limits::default() };
    let cgroup = Cgroup::create(&layout, &id, &limits, &Explain::off()).unwrap();
    let child = Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
    let trial = Trial { child, cgroup };
    trial.cgroup.join(nix::unistd::Pid::from_raw(trial.child.id() as i32), &Explain::off()).unwrap();
    let cpu = || trial.cgroup.stats().unwrap().cpu_nanoseconds;
    let pause = || std::thread::sleep(Duration::from_millis(300));

    pause();
    assert_eq!(trial.cgroup.processes(), [nix::unistd::Pid::from_raw(trial.child.id() as i32)]);
    let stats = trial.cgroup.stats().unwrap();
    assert_eq!((stats.pids, stats.pids_limit), (1, Some(10)), "{stats:?}");
    assert!(stats.cpu_nanoseconds > 0, "{stats:?}");

    trial.cgroup.set_frozen(true, &Explain::off()).unwrap();
    // cgroup v2 reports `frozen 1` when the task marks itself frozen, just before it schedules
    // out; the CPU time of that last stretch is counted when it does. On a fast machine that is
    // microseconds, in the emulated v2 VM it was 2 ms once. Read the frozen value once it settled.
    std::thread::sleep(Duration::from_millis(50));
    let frozen_at = cpu();
    pause();
    assert_eq!(cpu(), frozen_at, "a frozen process ran");

    trial.cgroup.set_frozen(false, &Explain::off()).unwrap();
    pause();
    assert!(cpu() > frozen_at, "the thawed process did not go on");
}

#[test]
fn kill_all_ends_every_process_of_the_cgroup() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root: it makes a cgroup on the host");
    let layout = layout();
    let cgroup = Cgroup::create(&layout, &format!("test-kill-{}", std::process::id()), &Limits::default(), &Explain::off()).unwrap();
    // The shell forks its sleeps only once it is in the cgroup (the line it waits for).
    let child = Command::new("sh").args(["-c", "read go; sleep 30 & sleep 30 & wait"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    let mut trial = Trial { child, cgroup };
    trial.cgroup.join(nix::unistd::Pid::from_raw(trial.child.id() as i32), &Explain::off()).unwrap();
    std::io::Write::write_all(trial.child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while trial.cgroup.processes().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(trial.cgroup.processes().len(), 3, "the shell and its two sleeps");
    trial.cgroup.kill_all(&Explain::off());
    let status = trial.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    while !trial.cgroup.processes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(trial.cgroup.processes().is_empty(), "the sleeps were killed too");
}
