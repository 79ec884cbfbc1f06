//! # Step 07 — the OCI runtime: bundles, create and start, exec
//!
//! Until now a container lived inside one `carton run` process and nothing of it was
//! written down. Here it becomes what Docker hands to runc and podman to crun: a **bundle**
//! ([`bundle`]: `config.json`, the OCI runtime spec, and the root filesystem it names),
//! and a **runtime** that creates, starts, signals and deletes it **by id**, each command a
//! process of its own, meeting through the container's [`state`] on disk.
//!
//! - [`Runtime::create`]: namespaces, cgroup, root and mounts made; the container's process
//!   waits at a fifo just before execve (runc's exec fifo);
//! - [`Runtime::start`]: opens the fifo, and the command runs;
//! - [`Runtime::state`], [`Runtime::kill`], [`Runtime::delete`];
//! - [`exec`]: one more process in a running container, by setns;
//! - [`engine`]: what an engine does around the runtime (the image's root mounted, the
//!   network prepared, the bundle written) and the one collector of what a killed carton
//!   left behind.

pub mod bundle;
pub mod engine;
pub mod exec;
pub mod state;

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::ContainerState;
use step01::process::UniquePid;
use step01::{Action, Chapter, ContainerSpec, Error, Explain, Result, Running};
use step04::{Cgroup, Layout};

pub use bundle::Bundle;
pub use state::Record;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 7, title: "the OCI runtime — bundles, create and start, exec" };

/// Where the runtime keeps its containers, and whether it explains itself: the small
/// context every command takes (the spec says everything else).
pub struct Runtime {
    pub state_root: PathBuf,
    pub explain: Explain,
}

/// How the caller wires a new container's process.
pub struct CreateOptions {
    /// Whether the container ends when this process does (`carton run` in a terminal).
    /// A container created to live on its own (`create`, then `start` from another
    /// process) does not.
    pub attached: bool,
    /// Its stdin (and terminal, for `process.terminal`).
    pub stdin: step02::Stdin,
    /// runc's `--no-pivot` (see [`step01::ContainerSpec::no_pivot`]).
    pub no_pivot: bool,
    /// runc's `--preserve-fds N`: descriptors 3 to 3+N-1 reach the container's process.
    pub preserve_fds: u32,
}

impl CreateOptions {
    pub fn new(attached: bool, stdin: step02::Stdin) -> CreateOptions {
        CreateOptions { attached, stdin, no_pivot: false, preserve_fds: 0 }
    }
}

/// The hooks the runtime composes from the spec: step 02's inside step 04's. A later step
/// wraps them with [`Runtime::create_with`].
pub type StepHooks = step04::Resources<step02::Isolation>;

/// A container just created: its process waits at the start gate.
pub struct Created {
    /// The container's first process, a child of this one.
    pub running: Running,
    /// Its cgroup, for the measurements taken when it ends.
    pub cgroup: Option<Rc<Cgroup>>,
    /// Its record, as `state.json` holds it.
    pub record: Record,
    /// What of its spec this runtime read but could not apply, for the caller to say
    /// (an engine's log, a person's terminal).
    pub warnings: Vec<String>,
}

/// The ids the runtime accepts: a directory name, as runc's (letters, digits, `_+-.`).
pub fn check_id(id: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_+-.".contains(&b);
    if id.is_empty() || id.starts_with('.') || !id.bytes().all(allowed) || id.len() > 1024 {
        return Err(Error::runtime(format!("invalid container id {id:?}: use letters, digits and _ + - . (not starting with .)")));
    }
    Ok(())
}

impl Runtime {
    pub fn new(state_root: &Path, explain: Explain) -> Runtime {
        Runtime { state_root: state_root.to_path_buf(), explain }
    }

    /// `STATE_ROOT/containers/ID`: the container's state (and, for carton's own
    /// containers, its bundle too).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_root.join("containers").join(id)
    }

    /// The record of an existing container, under its lock.
    fn existing(&self, id: &str) -> Result<(PathBuf, state::Locked, Record)> {
        check_id(id)?;
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            return Err(no_such_container(id));
        }
        let locked = state::lock(&dir)?;
        match Record::load(&dir)? {
            Some(record) => Ok((dir, locked, record)),
            None if state::Creating::in_progress(&dir) => Err(Error::runtime(format!("container {id} is being created; try again in a moment"))),
            None => Err(no_such_container(id)),
        }
    }

    // ANCHOR: create
    /// Create container `id` from the bundle in `bundle_dir`: everything is made, and its
    /// process waits just before execve until [`Runtime::start`].
    pub fn create(&self, id: &str, bundle_dir: &Path, options: CreateOptions) -> Result<Created> {
        self.create_with(id, bundle_dir, options, |_, hooks| Ok(hooks))
    }

    /// [`Runtime::create`], with the hooks of steps 02 and 04 wrapped by a later step's:
    /// `wrap` gets the spec (to read its own part: capabilities, seccomp...) and the hooks.
    pub fn create_with<H: step01::Hooks>(&self, id: &str, bundle_dir: &Path, options: CreateOptions, wrap: impl FnOnce(&oci_spec::runtime::Spec, StepHooks) -> Result<H>) -> Result<Created> {
        check_id(id)?;
        let dir = self.container_dir(id);
        fs::create_dir_all(&dir).map_err(|e| Error::runtime(format!("cannot create {}: {e}", dir.display())))?;
        // Marked "creating" under the lock, which is then let go: the container's process
        // would otherwise inherit the lock and hold it until its execve.
        let creating = state::Creating::mark(&dir, id)?;
        let created = self.create_in(&dir, id, bundle_dir, options, wrap, creating);
        if created.is_err() && Record::load(&dir).ok().flatten().is_none() {
            // This create made nothing: no trace of it either (an engine's bundle stays).
            for file in [state::EXEC_FIFO, bundle::AS_CREATED, "lock"] {
                let _ = fs::remove_file(dir.join(file));
            }
            let _ = fs::remove_dir(&dir);
        }
        created
    }

    fn create_in<H: step01::Hooks>(
        &self,
        dir: &Path,
        id: &str,
        bundle_dir: &Path,
        options: CreateOptions,
        wrap: impl FnOnce(&oci_spec::runtime::Spec, StepHooks) -> Result<H>,
        creating: state::Creating,
    ) -> Result<Created> {
        let bundle = Bundle::load(bundle_dir)?;
        // The spec as created: an engine may change its config.json afterwards, and that
        // must not change the container (exec, hooks and delete read this copy).
        if bundle.dir != dir {
            Bundle::write_as_created(dir, &bundle.spec)?;
        }
        let spec = &bundle.spec;
        // Each step reads its own part of the spec.
        let mut container = ContainerSpec::from_oci(spec, &bundle.dir)?;
        step02::oci::read_namespaces(spec, &mut container)?;
        let isolation = step02::oci::isolation_from_oci(spec, options.stdin)?;
        container.die_with_carton = options.attached;
        container.no_pivot = options.no_pivot;
        container.process.preserve_fds = options.preserve_fds;
        container.start_gate = Some(make_fifo(&dir.join(state::EXEC_FIFO))?);
        let layout = Layout::detected();
        let (cgroup, cgroups_path) = match step04::oci::create_cgroup(spec, id, layout, &self.explain)? {
            Some((cgroup, path)) => (Some(Rc::new(cgroup)), Some(path)),
            None => (None, None),
        };
        let undo_cgroup = |cgroup: &Option<Rc<Cgroup>>| {
            if let Some(cgroup) = cgroup {
                let _ = cgroup.remove();
            }
        };
        let mut hooks = match wrap(spec, step04::Resources::new(isolation, cgroup.clone(), layout, step04::oci::cgroup_namespace(spec))) {
            Ok(hooks) => hooks,
            Err(error) => {
                undo_cgroup(&cgroup);
                return Err(error);
            }
        };
        let undo = |cgroup: &Option<Rc<Cgroup>>| {
            undo_cgroup(cgroup);
            let _ = fs::remove_file(dir.join(state::EXEC_FIFO));
        };
        let running = match step01::container::start(&container, &mut hooks, &self.explain) {
            Ok(running) => running,
            Err(error) => {
                undo(&cgroup);
                return Err(error);
            }
        };
        let pid = running.pid;
        let record = Record {
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            init: UniquePid::of(pid.as_raw()).unwrap_or(UniquePid { pid: pid.as_raw(), start_time: 0 }),
            cgroups_path,
            created: state::now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            shared_mount_root: (!container.has_own_mount_namespace()).then(|| container.rootfs.canonicalize().unwrap_or(container.rootfs.clone())),
        };
        if let Err(error) = creating.finish(&record) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = step01::process::wait_for_exit(pid);
            undo(&cgroup);
            return Err(error);
        }
        self.explain.step(|| {
            Action::new(CHAPTER, "created: the container's process waits at its start gate; its record is written", "write(\"state.json\")").shell(format!("cat {}/state.json", dir.display()))
        });
        Ok(Created { running, cgroup, record, warnings: step04::oci::unapplied(spec, layout) })
    }
    // ANCHOR_END: create

    // ANCHOR: start
    /// Let a created container's process go on to execve: open the exec fifo, read the
    /// byte the container writes there, and remove the fifo (the container is running).
    pub fn start(&self, id: &str) -> Result<()> {
        let (dir, _locked, record) = self.existing(id)?;
        match record.status(&dir) {
            ContainerState::Created => {}
            ContainerState::Stopped => return Err(Error::runtime(format!("container {id} has stopped; a container starts once: delete it and create it again"))),
            _ => return Err(Error::runtime(format!("container {id} is running already"))),
        }
        self.pass_gate(&dir, &record)
    }

    /// Open the start gate of the created container in `dir`.
    fn pass_gate(&self, dir: &Path, record: &Record) -> Result<()> {
        let id = &record.id;
        let fifo_path = dir.join(state::EXEC_FIFO);
        self.explain.step(|| {
            Action::new(CHAPTER, "start: open the exec fifo; the container's process, waiting on the other end, goes on to execve", format!("open(\"{}\", O_RDONLY); read()", fifo_path.display()))
                .shell(format!("cat {}", fifo_path.display()))
        });
        // Not blocking: should the container die before it writes, this must not wait forever.
        let mut fifo = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo_path).map_err(|e| Error::runtime(format!("cannot open {}: {e}", fifo_path.display())))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if Instant::now() > deadline {
                return Err(Error::runtime(format!("container {id} does not answer at its start gate (did something else open {}?); delete it with --force", fifo_path.display())));
            }
            let mut poll = [nix::poll::PollFd::new(fifo.as_fd(), nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(100u8));
            let mut byte = [0u8; 1];
            match fifo.read(&mut byte) {
                Ok(1) => break,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(Error::runtime(format!("cannot read {}: {e}", fifo_path.display()))),
                _ if !record.init.is_alive() => return Err(Error::runtime(format!("container {id} ended before it could start"))),
                _ => {}
            }
        }
        let _ = fs::remove_file(&fifo_path);
        Ok(())
    }
    // ANCHOR_END: start

    /// Container `id`'s bundle with its spec as it was created (not as its config.json
    /// may say now).
    pub fn bundle_of(&self, id: &str) -> Result<Bundle> {
        let (dir, _locked, record) = self.existing(id)?;
        Bundle::as_created(&dir, &record.bundle)
    }

    /// The state as the runtime spec defines it (`runc state`'s JSON).
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let (dir, _locked, record) = self.existing(id)?;
        Ok(record.to_oci(&dir))
    }

    // ANCHOR: kill
    /// Send `signal` to the container's first process, or with `all` to every process of
    /// its cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let (dir, _locked, record) = self.existing(id)?;
        if record.status(&dir) == ContainerState::Stopped {
            return Err(Error::runtime(format!("container {id} is not running (stopped): there is nothing to signal")));
        }
        self.explain.step(|| {
            Action::new(CHAPTER, format!("send {signal} to the container's {}", if all { "processes" } else { "first process" }), format!("kill({}, {signal})", record.init.pid)).shell(format!(
                "kill -{} {}",
                signal.as_str().trim_start_matches("SIG"),
                record.init.pid
            ))
        });
        if all {
            for pid in cgroup_of(&record).map(|c| c.processes()).unwrap_or_default() {
                let _ = kill(pid, signal);
            }
        }
        kill(Pid::from_raw(record.init.pid), signal).map_err(|errno| Error::syscall(format!("cannot send {signal} to container {id}"), errno))
    }
    // ANCHOR_END: kill

    /// The host PIDs of the container's processes (its cgroup's; without one, its first).
    pub fn processes(&self, id: &str) -> Result<Vec<i32>> {
        let (_dir, _locked, record) = self.existing(id)?;
        Ok(match cgroup_of(&record) {
            Some(cgroup) => cgroup.processes().iter().map(|pid| pid.as_raw()).collect(),
            None => vec![record.init.pid],
        })
    }

    // ANCHOR: pause
    /// Freeze every process of a running container where it stands (`pause`), or thaw a
    /// paused one (`resume`): step 04's freezer.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let (dir, _locked, record) = self.existing(id)?;
        let verb = if paused { "pause" } else { "resume" };
        let status = record.status(&dir);
        if status != ContainerState::Running {
            return Err(Error::runtime(format!("container {id} is {status}: only a running container can {verb}")));
        }
        if record.is_paused() == paused {
            return Err(Error::runtime(format!("container {id} is {} already", if paused { "paused" } else { "running (not paused)" })));
        }
        let cgroup = cgroup_of(&record).ok_or_else(|| Error::runtime(format!("container {id} has no cgroup: it cannot {verb} without the freezer")))?;
        cgroup.set_frozen(paused, &self.explain)
    }
    // ANCHOR_END: pause

    // ANCHOR: delete
    /// Remove what `create` made: the cgroup, the fifo, the state. A created or running
    /// container is refused unless `force`, which kills it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let (dir, locked, record) = self.existing(id)?;
        let status = record.status(&dir);
        if status != ContainerState::Stopped && !force {
            return Err(Error::runtime(format!("container {id} is {status}: stop it first (kill), or delete it with --force")));
        }
        self.remove(&dir, &record, status, locked)
    }

    /// Delete the container in `dir`, whose status is `status`: a live one is killed.
    fn remove(&self, dir: &Path, record: &Record, status: ContainerState, locked: state::Locked) -> Result<()> {
        let cgroup = cgroup_of(record);
        if status != ContainerState::Stopped {
            if let Some(cgroup) = &cgroup {
                cgroup.kill_all(&self.explain);
            }
            let _ = kill(Pid::from_raw(record.init.pid), Signal::SIGKILL);
        }
        // Until its parent has collected it (the host's init, for a detached container), an
        // ended process still holds its cgroup.
        let deadline = Instant::now() + Duration::from_secs(10);
        while record.init.exists() && Instant::now() < deadline {
            // When the caller is that parent (a create that failed after the fact), collect it.
            let _ = nix::sys::wait::waitpid(Pid::from_raw(record.init.pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            std::thread::sleep(Duration::from_millis(5));
        }
        unmount_shared_namespace_mounts(record);
        if let Some(cgroup) = &cgroup {
            self.explain.step(|| Action::new(CHAPTER, "delete: remove the container's cgroup", "rmdir(cgroup)"));
            cgroup.remove()?;
        }
        for file in [state::EXEC_FIFO, "state.json", bundle::AS_CREATED, "lock"] {
            let _ = fs::remove_file(dir.join(file));
        }
        drop(locked);
        let _ = fs::remove_dir(dir); // only if nothing else (an engine's bundle) is in it
        Ok(())
    }
    // ANCHOR_END: delete

    // ANCHOR: run
    /// `run`: create, start, wait, delete, with the container attached to this process
    /// (it ends if this process is killed). `between` runs once the container is created
    /// and before it starts (a terminal's relay, published ports); what it returns is kept
    /// until the container has ended. Returns how it ended, with its last measurements.
    pub fn run<T>(&self, id: &str, bundle: &Path, stdin: step02::Stdin, between: impl FnOnce(&Running) -> Result<T>) -> Result<step04::Finished> {
        self.run_with(id, bundle, CreateOptions::new(true, stdin), |_, hooks| Ok(hooks), between)
    }

    /// [`Runtime::run`], with the hooks wrapped by a later step's (as [`Runtime::create_with`]).
    pub fn run_with<H: step01::Hooks, T>(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions,
        wrap: impl FnOnce(&oci_spec::runtime::Spec, StepHooks) -> Result<H>,
        between: impl FnOnce(&Running) -> Result<T>,
    ) -> Result<step04::Finished> {
        let Created { running, cgroup, record, warnings } = self.create_with(id, bundle, options, wrap)?;
        warnings.iter().for_each(|warning| eprintln!("carton: warning: {warning}"));
        let (pid, dir) = (running.pid, self.container_dir(id));
        // The container is this process's child, and its record is known: no need to read it back.
        let exit = match between(&running).and_then(|kept| self.pass_gate(&dir, &record).map(|()| kept)) {
            Err(error) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = running.wait();
                Err(error)
            }
            // confirm_exec reaps the container when its command could not run.
            Ok(kept) => running.confirm_exec().and_then(|running| {
                step02::explain_running(pid, &self.explain);
                let exit = running.wait();
                drop(kept); // the last output, then the user's terminal as it was
                exit
            }),
        };
        let stats = cgroup.as_ref().map(|cgroup| cgroup.stats());
        // Gone already if someone removed it meanwhile (`rm -f`): its exit status still counts.
        let deleted = if dir.is_dir() { state::lock(&dir).and_then(|locked| self.remove(&dir, &record, ContainerState::Stopped, locked)) } else { Ok(()) };
        let exit = exit?;
        deleted?;
        Ok(step04::Finished { exit, stats: stats.transpose()?.unwrap_or_default() })
    }
    // ANCHOR_END: run

    /// The ids of the containers under this root that have a state.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.state_root.join("containers")) else { return Vec::new() };
        let mut ids: Vec<String> = entries.flatten().filter(|e| e.path().join("state.json").is_file()).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
        ids.sort();
        ids
    }
}

/// A signal as `kill` takes it: a name (`TERM`, `SIGTERM`) or a number (`15`).
pub fn parse_signal(text: &str) -> Result<Signal> {
    let bad = || Error::runtime(format!("invalid signal {text:?}: give a name (TERM, SIGHUP, KILL) or a number"));
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().map_err(|_| bad())
}

/// A container without a mount namespace of its own mounted its `/proc`, `/dev`, ... in
/// the caller's, below its root, and its root onto itself: they outlive it there (runc
/// leaves them), so delete takes them down, deepest first, and that one bind of the root
/// (an engine's own mount of it, underneath, stays).
fn unmount_shared_namespace_mounts(record: &Record) {
    let Some(root) = &record.shared_mount_root else { return };
    let mountinfo = step01::process::read_kernel_file("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<PathBuf> = engine::mount_points(&mountinfo).into_iter().filter(|point| point.starts_with(root) && point != root).collect();
    // One unmount per listed mount: two stacked at one path take two.
    below.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    below.push(root.clone());
    for point in below {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW);
    }
}

/// The container's cgroup, as its record names it.
pub fn cgroup_of(record: &Record) -> Option<Cgroup> {
    let layout = Layout::detected();
    let version = layout.version()?;
    Some(Cgroup::at_path(layout, version, Path::new(record.cgroups_path.as_deref()?)))
}

fn no_such_container(id: &str) -> Error {
    Error::runtime(format!("container {id} does not exist (the runtime's `list` shows the containers there are)"))
}

/// Make the exec fifo (replacing a stale one).
fn make_fifo(path: &Path) -> Result<PathBuf> {
    let _ = fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|errno| Error::syscall(format!("cannot make the exec fifo {}", path.display()), errno))?;
    Ok(path.to_path_buf())
}
