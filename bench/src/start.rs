//! How long `true` takes to start and end in a container, beside the same in every peer and
//! the floor; whether it stays flat as containers pile up; what an idle container costs.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::lab::{mem_available_kib, run, uss_kib, which, Lab, Podman};
use crate::timing::{interleaved, Row, Stats, Timed};

pub const FLOOR: &str = "unshare + chroot (the floor)";
pub const CARTON_NONE: &str = "carton run --rm --network none";
pub const CARTON_BRIDGE: &str = "carton run --rm (default bridge)";
pub const CARTON_OCI: &str = "carton-oci run (bundle)";
pub const CRUN: &str = "crun run (bundle)";
pub const RUNC: &str = "runc run (bundle)";
pub const CRUN_WRAPPER: &str = "crun's wrapper alone (unshare, sh, umount)";
pub const PODMAN: &str = "podman run --rm --network none";

/// The start rows, every peer that is here, timed interleaved.
pub fn peers(lab: &Lab, podman: Option<&Podman>, runs: usize, progress: &dyn Fn(&str)) -> Result<Timed> {
    let rootfs = lab.rootfs.display().to_string();
    let mut rows = vec![
        // util-linux making the same namespaces and chrooting: no mounts, no image, no cgroup,
        // no record. A lower bound for a runtime that makes these namespaces.
        Row::new(FLOOR, ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", &rootfs, "/bin/true"].map(String::from).to_vec(), false),
        carton_none(lab),
        Row::new(CARTON_BRIDGE, lab.carton_argv(&["run", "--rm", "busybox", "true"]), true),
    ];
    let mut notes = Vec::new();
    rows.push(bundle_run(lab, CARTON_OCI, &lab.bin.join("carton-oci"), true)?);
    match which("runc") {
        Some(runc) => rows.push(bundle_run(lab, RUNC, &runc, false)?),
        None => notes.push("runc: not installed (apt-get install runc)".to_string()),
    }
    match which("crun") {
        Some(crun) => {
            let mut argv = bundle_run(lab, CRUN, &crun, false)?.argv;
            if hybrid_cgroups() {
                // crun refuses a cgroup2 mount beside the v1 hierarchies: it runs in a mount
                // namespace of its own without /sys/fs/cgroup/unified. The wrapper alone, around
                // /bin/true, is a row too: the carton-oci target takes its time off crun's.
                let wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/unified && exec \"$@\"", "sh"].map(String::from).to_vec();
                rows.push(Row::new(CRUN_WRAPPER, wrapper.iter().cloned().chain(["/bin/true".to_string()]).collect(), false));
                argv = wrapper.into_iter().chain(argv).collect();
                notes.push("crun: this host has hybrid cgroups, which crun refuses; it runs with /sys/fs/cgroup/unified unmounted in a mount namespace of its own. The wrapper's own time is a row of its own, and the carton-oci target compares with crun's time less the wrapper's".into());
            }
            rows.push(Row::new(CRUN, argv, false));
        }
        None => notes.push("crun: not installed (apt-get install crun)".into()),
    }
    match podman {
        Some(podman) => rows.push(Row::new(PODMAN, podman.argv(&["run", "--rm", "--network", "none", "busybox", "true"]), false)),
        None => notes.push("podman: skipped (see above)".into()),
    }
    let docker = docker_runs(lab);
    if docker {
        rows.push(Row::new("docker run --rm --network none", ["docker", "run", "--rm", "--network", "none", DOCKER_IMAGE, "true"].map(String::from).to_vec(), false));
    } else {
        notes.push("docker: no Docker daemon answers here; not timed".into());
    }
    let (measured, mut skipped) = interleaved(rows, runs, 3, progress);
    if docker {
        let _ = run(std::process::Command::new("docker").args(["rmi", DOCKER_IMAGE]));
    }
    notes.append(&mut skipped);
    Ok((measured, notes))
}

/// `carton run --rm --network none busybox true`: carton's own start, the row the targets measure.
fn carton_none(lab: &Lab) -> Row {
    Row::new(CARTON_NONE, lab.carton_argv(&["run", "--rm", "--network", "none", "busybox", "true"]), true)
}

/// `RUNTIME --root DIR run --bundle BUNDLE ID`: an OCI runtime on the lab's one bundle, with a
/// state directory of its own.
fn bundle_run(lab: &Lab, name: &str, runtime: &Path, ours: bool) -> Result<Row> {
    let program = runtime.file_name().map_or_else(|| "runtime".into(), |name| name.to_string_lossy().into_owned());
    let argv = [
        runtime.display().to_string(),
        "--root".into(),
        lab.path(&format!("oci-{program}")).display().to_string(),
        "run".into(),
        "--bundle".into(),
        lab.bundle()?.display().to_string(),
        format!("bench-{program}"),
    ];
    Ok(Row::new(name, argv.to_vec(), ours))
}

/// v1 controllers with cgroup2 mounted beside them (Debian 11/12's default).
fn hybrid_cgroups() -> bool {
    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|line| line.split(' ').nth(4) == Some("/sys/fs/cgroup/unified"))
}

/// The image name the Docker row uses: the bench's own, so that a user's `busybox` in
/// Docker is never replaced.
const DOCKER_IMAGE: &str = "carton-bench/busybox:latest";

/// A Docker daemon answers, and has (or now has, from carton's store) the bench's image.
fn docker_runs(lab: &Lab) -> bool {
    if which("docker").is_none() || run(std::process::Command::new("docker").arg("info")).is_err() {
        return false;
    }
    let archive = lab.path("busybox-for-docker.tar");
    run(lab.carton().args(["tag", "busybox", DOCKER_IMAGE])).is_ok()
        && run(lab.carton().args(["save", "-o"]).arg(&archive).arg(DOCKER_IMAGE)).is_ok()
        && run(std::process::Command::new("docker").arg("load").arg("-i").arg(&archive)).is_ok()
}

/// A detached idle container, as `docker run -d busybox sleep` makes.
fn start_idle(lab: &Lab) -> Result<String> {
    crate::lab::check_interrupted()?;
    let id = run(lab.carton().args(["run", "-d", "--network", "none", "busybox", "sleep", "1d"]))?;
    Ok(id.trim().to_string())
}

/// One level of the running part: the start times with `running` idle containers beside.
pub struct Level {
    pub running: usize,
    pub carton: Stats,
    /// runc on the bundle, in the same rounds: how much of a change is the kernel's (more
    /// mounts to copy into a new mount namespace, more processes for pivot_root to visit).
    pub runc: Option<Stats>,
}

/// The start time of `carton run --rm --network none busybox true` (and `runc run`) with 0
/// and then each of `levels` idle containers running. The containers stay for the density
/// part.
pub fn with_running(lab: &Lab, levels: &[usize], runs: usize, progress: &dyn Fn(&str)) -> Result<Vec<Level>> {
    let mut rows = vec![carton_none(lab)];
    if let Some(runc) = which("runc") {
        rows.push(bundle_run(lab, RUNC, &runc, false)?);
    }
    let mut running = 0;
    let mut results = Vec::new();
    for &level in [0].iter().chain(levels) {
        progress(&format!("starting idle containers: {level} running"));
        while running < level {
            start_idle(lab)?;
            running += 1;
        }
        let (measured, skipped) = interleaved(rows.clone(), runs, 3, progress);
        let find = |name: &str| measured.iter().find(|(row, _)| row.name == name).map(|(_, stats)| *stats);
        let carton = find(CARTON_NONE).ok_or_else(|| anyhow::anyhow!("{}", skipped.join("; ")))?;
        results.push(Level { running: level, carton, runc: find(RUNC) });
    }
    Ok(results)
}

/// What idle containers cost, measured on up to `max` of them.
pub struct Density {
    pub containers: usize,
    /// Why it stopped there: the count asked for, or half the memory that was free.
    pub stopped_because: String,
    /// Medians, KiB: the monitor's private memory, and the container's own process's.
    pub monitor_uss_kib: u64,
    pub container_uss_kib: u64,
    /// How much the machine's available memory fell per container (kernel objects too:
    /// namespaces, the cgroup, the overlay mount, page tables).
    pub available_drop_kib: u64,
    pub podman: Option<PodmanDensity>,
}

pub struct PodmanDensity {
    pub containers: usize,
    pub conmon_uss_kib: u64,
    pub container_uss_kib: u64,
}

/// Start idle containers up to `max` (the running part left some) or until half the memory
/// that was free before the first (`free_before_kib`) is gone; then read each one's monitor
/// and process.
pub fn density(lab: &Lab, podman: Option<&Podman>, max: usize, podman_count: usize, free_before_kib: u64, progress: &dyn Fn(&str)) -> Result<Density> {
    let mut stopped_because = format!("the {max} asked for");
    // The fall per container is the slope between here and the end: the bench's own setup
    // (images, archives, page cache) is in neither end.
    let (count_before, available_before) = (containers(lab)?.len(), mem_available_kib());
    for count in count_before..max {
        if count % 50 == 0 {
            progress(&format!("density: {count} idle containers"));
        }
        if free_before_kib.saturating_sub(mem_available_kib()) > free_before_kib / 2 {
            stopped_because = "half of the free memory".into();
            break;
        }
        start_idle(lab)?;
    }
    let records = containers(lab)?;
    let n = records.len();
    let (mut monitors, mut processes) = (Vec::new(), Vec::new());
    for (pid, monitor) in &records {
        monitors.extend(uss_kib(*monitor));
        processes.extend(uss_kib(*pid));
    }
    if monitors.is_empty() || processes.is_empty() {
        bail!("no running container's memory could be read");
    }
    let available_drop_kib = available_before.saturating_sub(mem_available_kib()) / n.saturating_sub(count_before).max(1) as u64;
    let podman = match podman {
        Some(podman) => match podman_density(podman, podman_count) {
            Ok(density) => Some(density),
            Err(e) => {
                progress(&format!("podman's density skipped: {e:#}"));
                None
            }
        },
        None => None,
    };
    Ok(Density { containers: n, stopped_because, monitor_uss_kib: median(monitors), container_uss_kib: median(processes), available_drop_kib, podman })
}

/// (container process, monitor) pids of the running containers, from carton's records.
fn containers(lab: &Lab) -> Result<Vec<(u32, u32)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(lab.state.join("containers")).context("carton's containers directory")? {
        let record = entry?.path().join("container.json");
        let Ok(bytes) = fs::read(&record) else { continue };
        let record: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{}", record.display()))?;
        let state = &record["State"];
        let pid = state["Pid"].as_u64().unwrap_or(0) as u32;
        let monitor = state["Monitor"].as_str().and_then(|m| m.split(':').next()?.parse().ok()).unwrap_or(0);
        if state["Status"] == "running" && pid > 0 && monitor > 0 {
            found.push((pid, monitor));
        }
    }
    Ok(found)
}

fn podman_density(podman: &Podman, count: usize) -> Result<PodmanDensity> {
    let (mut conmons, mut processes) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let id = run(podman.command().args(["run", "-d", "--network", "none", "busybox", "sleep", "1d"]))?;
        let pids = run(podman.command().args(["inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", id.trim()]))?;
        let mut words = pids.split_whitespace().filter_map(|word| word.parse::<u32>().ok());
        let (Some(conmon), Some(pid)) = (words.next(), words.next()) else { bail!("podman inspect gave no pids: {pids}") };
        conmons.extend(uss_kib(conmon));
        processes.extend(uss_kib(pid));
    }
    let _ = podman.command().args(["rm", "--all", "--force", "--time", "0"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if conmons.is_empty() {
        bail!("conmon's memory could not be read");
    }
    Ok(PodmanDensity { containers: count, conmon_uss_kib: median(conmons), container_uss_kib: median(processes) })
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// The "no performance impact" claim: the same CPU-bound program on the host and in a
/// container. Each side's start (of `true`) is taken off, what is left is the work itself.
pub struct CpuBound {
    pub program: String,
    pub host_ms: f64,
    pub container_ms: f64,
}

pub fn cpu_bound(lab: &Lab, iterations: u64, runs: usize, progress: &dyn Fn(&str)) -> Result<CpuBound> {
    let busybox = lab.rootfs.join("bin/busybox");
    if !Path::new(&busybox).exists() {
        bail!("no busybox in the lab's root filesystem");
    }
    let script = format!("BEGIN{{for(i=0;i<{iterations};i++)s+=i%7;print s}}");
    let host = |args: &[&str]| std::iter::once(busybox.display().to_string()).chain(args.iter().map(|a| a.to_string())).collect::<Vec<_>>();
    let rows = vec![
        Row::new("host: true", host(&["true"]), false),
        Row::new("host: awk", host(&["awk", &script]), false),
        Row::new("carton: true", carton_none(lab).argv, true),
        Row::new("carton: awk", lab.carton_argv(&["run", "--rm", "--network", "none", "busybox", "awk", &script]), true),
    ];
    let (measured, skipped) = interleaved(rows, runs, 1, progress);
    if let Some(reason) = skipped.first() {
        bail!("{reason}");
    }
    let median = |name: &str| measured.iter().find(|(row, _)| row.name == name).map(|(_, stats)| stats.median).unwrap_or(f64::NAN);
    Ok(CpuBound { program: format!("busybox awk '{script}'"), host_ms: median("host: awk") - median("host: true"), container_ms: median("carton: awk") - median("carton: true") })
}
