//! The library calls `pause`, `unpause` and `stats` will use, on the host's real cgroups.
//! Needs root. A busy loop's CPU time stands still while its cgroup is frozen.

use std::process::{Child, Command};
use std::time::Duration;

use step01::Explain;
use step04::{Cgroup, Layout, Limits};

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
    let layout = Layout::detect();
    let id = format!("test-freeze-{}", std::process::id());
    let limits = Limits { pids_limit: Some(10), ..Limits::default() };
    let cgroup = Cgroup::create(&layout, &id, &limits, &Explain::off()).unwrap();
    let child = Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
    let trial = Trial { child, cgroup };
    trial.cgroup.join(nix::unistd::Pid::from_raw(trial.child.id() as i32), &Explain::off()).unwrap();
    let cpu = || trial.cgroup.stats().unwrap().cpu_nanoseconds;
    let pause = || std::thread::sleep(Duration::from_millis(300));

    pause();
    let stats = trial.cgroup.stats().unwrap();
    assert_eq!((stats.pids, stats.pids_limit), (1, Some(10)), "{stats:?}");
    assert!(stats.cpu_nanoseconds > 0, "{stats:?}");

    trial.cgroup.set_frozen(true, &Explain::off()).unwrap();
    let frozen_at = cpu();
    pause();
    assert_eq!(cpu(), frozen_at, "a frozen process ran");

    trial.cgroup.set_frozen(false, &Explain::off()).unwrap();
    pause();
    assert!(cpu() > frozen_at, "the thawed process did not go on");
}
