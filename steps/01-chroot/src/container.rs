//! The start sequence: one container start, with the seams later steps plug into.
//!
//! ```text
//!  parent (carton)                          child
//!  ───────────────                          ─────
//!  validate the spec
//!  two pipes: "go" and "error"
//!  clone(namespace flags) ───────────────▶  starts in new namespaces, waits for "go"
//!  Hooks::parent_after_clone (cgroups, ...)
//!  write "go" ───────────────────────────▶  joins the namespaces named by path (network)
//!                                           Hooks::child_mount_root (layers)
//!                                           enter_root: mounts, pivot_root
//!                                           Hooks::child_after_root (hostname, security, ...)
//!                                           working directory, execve
//!  read "error" until it closes  ◀────────  on failure: the error, then _exit(125/126/127)
//!   empty: execve succeeded                 on success: execve closes the pipe (O_CLOEXEC)
//!  wait for the exit status, passing on
//!  the signals carton receives
//! ```
//!
//! The child is cloned from carton's single thread, so it may allocate and format
//! messages: no other thread can hold a lock the child would wait on forever.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{getpgid, getpgrp, pipe2, Pid};

use crate::error::{Error, Failure, Result};
use crate::explain::{Action, Explain};
use crate::mounts::{mount_in_root, Mount};
use crate::process::{reap, wait_for_exit, ContainerExit, Process};
use crate::{rootfs, CHAPTER};

/// What to run and where: the part of an OCI runtime spec this step knows.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The directory that becomes the container's `/`. Absolute.
    pub rootfs: PathBuf,
    pub process: Process,
    /// The namespaces the child starts in. Step 01 needs only a mount namespace;
    /// later steps add theirs (`CLONE_NEWPID`, `CLONE_NEWUTS`, ...).
    pub namespaces: CloneFlags,
    /// Namespaces that exist already and that the child joins instead, as the OCI
    /// runtime spec's `namespaces[].path` says: step 03 prepares a network namespace
    /// under a name before the container starts, as CNI and netavark do.
    pub join: Vec<JoinedNamespace>,
    /// The spec's mounts beyond the default file systems: bind mounts, tmpfs.
    pub mounts: Vec<Mount>,
    /// `root.readonly`: the root filesystem itself is mounted read-only.
    pub readonly_root: bool,
    /// Whether the container ends when the carton that started it ends (`carton run`
    /// waiting in a terminal). A container created to live on its own (step 07's
    /// `create`) does not.
    pub die_with_carton: bool,
    /// Step 07's exec fifo: when set, the child stops just before execve until someone
    /// opens this fifo to read (`start`), as runc's containers wait at theirs.
    pub start_gate: Option<PathBuf>,
    /// The spec's `process.rlimits`: (resource, soft, hard), set before the user switch.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// `process.oomScoreAdj`: how eagerly the OOM killer picks the container (-1000 to 1000).
    pub oom_score_adj: Option<i32>,
    /// `process.noNewPrivileges`: no execve (of a set-uid program, say) grants more privileges.
    pub no_new_privileges: bool,
    /// `linux.rootfsPropagation`: the propagation of the container's `/` (private by default).
    pub rootfs_propagation: Option<nix::mount::MsFlags>,
    /// runc's `--no-pivot`: move the root over `/` and chroot, for a host whose own root is
    /// an initramfs (where pivot_root cannot work). Weaker: the old root stays reachable
    /// to a process that can escape a chroot.
    pub no_pivot: bool,
}

/// An existing namespace, named by a file (`/proc/PID/ns/net`, or a bind mount of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedNamespace {
    /// Which kind, as its clone flag (`CLONE_NEWNET`).
    pub kind: CloneFlags,
    pub path: PathBuf,
}

impl ContainerSpec {
    /// Whether the container has a mount namespace of its own (new, or joined by path);
    /// without one it shares the caller's, as the OCI spec allows and runc does.
    pub fn has_own_mount_namespace(&self) -> bool {
        self.namespaces.contains(CloneFlags::CLONE_NEWNS) || self.join.iter().any(|joined| joined.kind == CloneFlags::CLONE_NEWNS)
    }

    pub fn new(rootfs: PathBuf, process: Process) -> Self {
        ContainerSpec {
            rootfs,
            process,
            namespaces: CloneFlags::CLONE_NEWNS,
            join: Vec::new(),
            mounts: Vec::new(),
            readonly_root: false,
            die_with_carton: true,
            start_gate: None,
            rlimits: Vec::new(),
            oom_score_adj: None,
            no_new_privileges: false,
            rootfs_propagation: None,
            no_pivot: false,
        }
    }

    // ANCHOR: from_oci
    /// The part of an OCI runtime spec this step owns: `root` (relative to the bundle
    /// directory, as the spec says), `process` (args, env, cwd) and `mounts`. Later steps
    /// read their own parts (step 02 the namespaces, step 04 the resources).
    pub fn from_oci(spec: &oci_spec::runtime::Spec, bundle: &Path) -> Result<ContainerSpec> {
        let root = spec.root().as_ref().ok_or_else(|| Error::runtime("config.json has no \"root\": say which directory becomes the container's / (\"root\": {\"path\": \"rootfs\"})"))?;
        let oci_process = spec.process().as_ref().ok_or_else(|| Error::runtime("config.json has no \"process\": say what to run (\"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"})"))?;
        let process = Process { args: oci_process.args().clone().unwrap_or_default(), env: oci_process.env().clone().unwrap_or_default(), cwd: oci_process.cwd().clone(), preserve_fds: 0 };
        let mut container = ContainerSpec::new(bundle.join(root.path()), process);
        container.readonly_root = root.readonly().unwrap_or(false);
        for rlimit in oci_process.rlimits().iter().flatten() {
            container.rlimits.push((crate::process::rlimit_resource(&rlimit.typ())?, rlimit.soft(), rlimit.hard()));
        }
        container.oom_score_adj = oci_process.oom_score_adj();
        container.no_new_privileges = oci_process.no_new_privileges().unwrap_or(false);
        if let Some(propagation) = spec.linux().as_ref().and_then(|linux| linux.rootfs_propagation().clone()) {
            container.rootfs_propagation = Some(crate::mounts::propagation(&propagation)?);
        }
        for entry in spec.mounts().iter().flatten() {
            let mut mount = Mount::from_oci(entry)?;
            // A relative bind source is relative to the bundle, as the spec says.
            if let Some(source) = mount.source.as_mut().filter(|s| s.is_relative() && mount.flags.contains(nix::mount::MsFlags::MS_BIND)) {
                *source = bundle.join(&*source);
            }
            if !mount.is_furnished() {
                container.mounts.push(mount);
            }
        }
        Ok(container)
    }
    // ANCHOR_END: from_oci

    /// Check everything that can be checked before a process exists, and return the
    /// root filesystem with every symbolic link resolved: the path the child mounts.
    pub fn validate(&self) -> Result<PathBuf> {
        let resolved = check_root(&self.rootfs)?;
        // Without a mount namespace of its own (a spec may ask for that) every mount is
        // still made below `rootfs`, and the child chroots instead of pivot_root.
        if let Some(both) = self.join.iter().find(|joined| self.namespaces.intersects(joined.kind)) {
            return Err(Error::runtime(format!("the child cannot both create and join a namespace ({})", flag_names(both.kind))));
        }
        self.process.validate()?;
        Ok(resolved)
    }
}

// ANCHOR: base_spec
/// The OCI spec of a container running `process` on `root` (relative to the bundle, or
/// absolute), with the default file systems every container gets and only this step's
/// mount namespace: each later step writes its own part into it (`step02::oci::write`,
/// `NetworkOptions::write_oci`, `step04::oci::write`), and reads it back in its `run`.
pub fn base_spec(process: &Process, root: &Path) -> Result<oci_spec::runtime::Spec> {
    let spec = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "root": {"path": root, "readonly": false},
        "process": {"args": process.args, "env": process.env, "cwd": process.cwd, "user": {"uid": 0, "gid": 0}, "terminal": false},
        "mounts": oci_spec::runtime::get_default_mounts(),
        "linux": {"namespaces": [{"type": "mount"}]},
    });
    serde_json::from_value(spec).map_err(|e| Error::runtime(format!("cannot make the runtime spec: {e}")))
}
// ANCHOR_END: base_spec

/// Point `spec`'s `root.path` at `path`: a root a later step made (an overlay, a copy).
pub fn set_root_path(spec: &mut oci_spec::runtime::Spec, path: PathBuf) {
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(path);
    spec.set_root(Some(root));
}

/// Check that `rootfs` can be a container's root: an absolute path to a directory that is
/// not the host's own `/`. Returns it with every symbolic link resolved.
pub fn check_root(rootfs: &Path) -> Result<PathBuf> {
    if !rootfs.is_absolute() {
        return Err(Error::runtime(format!("the root filesystem path {rootfs:?} must be absolute")));
    }
    let resolved = match std::fs::canonicalize(rootfs) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::runtime(format!("the root filesystem {} does not exist; make one with `carton bootstrap busybox {}`", rootfs.display(), rootfs.display())))
        }
        Err(e) => return Err(Error::runtime(format!("cannot read the root filesystem {}: {e}", rootfs.display()))),
        Ok(resolved) => resolved,
    };
    if !resolved.is_dir() {
        return Err(Error::runtime(format!("the root filesystem {} is not a directory; give the directory that should become / in the container", rootfs.display())));
    }
    if resolved.parent().is_none() {
        return Err(Error::runtime(format!("the root filesystem {} is the host's own /; give a separate directory", rootfs.display())));
    }
    Ok(resolved)
}

// ANCHOR: hooks
/// Where later steps plug into the start sequence. Each step wraps the hooks of the step
/// before it and names them with `inner`; every method it does not write goes on to
/// them, and, at the innermost, does nothing (or execve, for `child_exec`). So a step
/// writes only what it adds, and cannot lose what an earlier step does.
pub trait Hooks {
    /// The hooks of the step before, which these wrap.
    fn inner(&self) -> Option<&dyn Hooks> {
        None
    }

    fn inner_mut(&mut self) -> Option<&mut dyn Hooks> {
        None
    }

    /// In carton, just before the clone: a cgroup v2 directory, opened, for the child to be
    /// born in (`clone3` with `CLONE_INTO_CGROUP`) rather than moved into afterwards (chapter
    /// 4). A kernel that refuses it gets a plain clone: `parent_after_clone` then moves it.
    fn birth_cgroup(&self) -> Option<OwnedFd> {
        self.inner().and_then(|inner| inner.birth_cgroup())
    }

    /// In carton, after the child exists and before it may go on: the place to put it
    /// in a cgroup or wire its network namespace.
    fn parent_after_clone(&mut self, child: Pid, explain: &Explain) -> Result<()> {
        self.inner_mut().map_or(Ok(()), |inner| inner.parent_after_clone(child, explain))
    }

    /// In the child, once its mounts are private and before the new root is furnished:
    /// the place to mount the root filesystem itself at `rootfs` (step 05's overlay of
    /// image layers). Without it, `rootfs` is used as it is.
    fn child_mount_root(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_mount_root(spec, rootfs, explain))
    }

    /// In the child, once the new root's `/dev` is mounted and before `/sys`: the place for
    /// the file systems a later step keeps under `/dev` (step 02's `/dev/mqueue`), so that
    /// every mount comes in the order the OCI spec lists them. `rootfs` is the new root.
    fn child_under_dev(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_under_dev(spec, rootfs, explain))
    }

    /// In the child, when the new root is furnished but the host's files are still in
    /// reach, just before pivot_root: the place for mounts that bring host files in
    /// (`/etc/hosts`, volumes). `rootfs` is the new root's path on the host.
    fn child_before_pivot(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_before_pivot(spec, rootfs, explain))
    }

    /// In the child, after the root filesystem is in place and before execve: the place
    /// for the hostname, capabilities, seccomp.
    fn child_after_root(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_after_root(spec, explain))
    }

    /// In the child, after the start gate: become the container's user (step 02's `-u`).
    /// By default the child stays who it is, root.
    fn child_switch_user(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_switch_user(spec, explain))
    }

    /// In the child, after the user switch and just before the command: the place for what
    /// must come last (capabilities, seccomp: the security step).
    fn child_after_user(&self, spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        self.inner().map_or(Ok(()), |inner| inner.child_after_user(spec, explain))
    }

    /// In the child, last: become the command. The default is execve; an init (step 02)
    /// forks here, hands `report` to the command's process and stays behind as PID 1.
    fn child_exec(&self, spec: &ContainerSpec, report: StartReport, explain: &Explain) -> ! {
        match self.inner() {
            Some(inner) => inner.child_exec(spec, report, explain),
            None => report.fail(spec.process.exec(explain)),
        }
    }
}
// ANCHOR_END: hooks

/// The child's end of the error pipe: how the child tells carton why the container did
/// not start. It is close-on-exec, so a successful execve closes it without a word.
pub struct StartReport(OwnedFd);

/// The byte that says "created: stopped at the start gate" (an error's first byte is its
/// exit code, 125 to 127, never 0).
const CREATED: u8 = 0;

impl StartReport {
    /// The write end of a [`cloexec_pipe`], as a report (step 07's exec reports this way too).
    pub fn new(pipe: OwnedFd) -> StartReport {
        StartReport(pipe)
    }

    /// Tell carton that everything is ready and the child waits at the start gate.
    fn created(&self) -> Result<()> {
        self.0.try_clone().map(std::fs::File::from).and_then(|mut pipe| pipe.write_all(&[CREATED])).map_err(|e| Error::runtime(format!("cannot tell carton the container is created: {e}")))
    }

    /// Send `error` to carton and end this process with its exit code (125, 126, 127).
    pub fn fail(self, error: Error) -> ! {
        if std::fs::File::from(self.0).write_all(&encode_error(&error)).is_err() {
            // Nobody reads the report any more (a detached container's creator is gone):
            // the container's stderr is the place left to say it.
            eprintln!("carton: {}", error.message);
        }
        // Safety: _exit ends this process without running the parent's atexit handlers.
        unsafe { libc::_exit(error.exit_code().into()) }
    }
}

/// No additions: step 01 on its own.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// The signals carton passes on to the container while it waits, as `docker run` does.
const FORWARDED_SIGNALS: [Signal; 6] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// A container whose command is running.
#[derive(Debug)]
#[must_use = "a started container must be waited for, or it stays a zombie"]
pub struct Running {
    pub pid: Pid,
    /// carton's signal mask before `start` blocked the forwarded signals.
    previous_mask: SigSet,
    /// With a start gate: the rest of the start report, which says whether execve
    /// worked once the gate opens.
    report: Option<std::fs::File>,
}

impl Running {
    /// Whether the container waits at its start gate (created, not started).
    pub fn is_gated(&self) -> bool {
        self.report.is_some()
    }

    /// Once the start gate is open: wait until the command runs (the report closes on
    /// execve) or say why it cannot; the container is reaped then.
    pub fn confirm_exec(mut self) -> Result<Running> {
        let Some(mut report) = self.report.take() else { return Ok(self) };
        let mut bytes = Vec::new();
        let _ = report.read_to_end(&mut bytes);
        if bytes.is_empty() {
            return Ok(self);
        }
        let _ = wait_for_exit(self.pid);
        restore_mask(&self.previous_mask);
        Err(decode_error(&bytes))
    }

    /// A process started some other way (step 07's exec), to be waited for the same way.
    /// The forwarded signals must be blocked since before it was started:
    /// `previous_mask` is what [`block_forwarded_signals`] returned.
    pub fn adopt(pid: Pid, previous_mask: SigSet) -> Running {
        Running { pid, previous_mask, report: None }
    }

    /// Let the container live on without this process (step 07's `create` returns while
    /// the container waits at its gate; whoever outlives carton reaps it).
    pub fn detach(self) -> Pid {
        restore_mask(&self.previous_mask);
        self.pid
    }

    // ANCHOR: wait
    /// Wait for the command to end, passing on every signal someone sends to carton.
    pub fn wait(self) -> Result<ContainerExit> {
        let waiting = forwarded_signals_and_sigchld();
        let result = loop {
            match reap(self.pid, libc::WNOHANG) {
                Ok(Some((_, exit))) => break Ok(exit),
                Err(error) => break Err(error),
                Ok(None) => {}
            }
            // Sleep until a signal arrives: SIGCHLD (the child changed state) or one to pass on.
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
            // Safety: the set is initialised and `info` is a valid place to write to.
            let signal = unsafe { libc::sigwaitinfo(waiting.as_ref(), info.as_mut_ptr()) };
            if signal <= 0 || signal == libc::SIGCHLD {
                continue;
            }
            // Safety: sigwaitinfo succeeded, so it filled `info`.
            let from_terminal = unsafe { info.assume_init() }.si_code == libc::SI_KERNEL;
            // Ctrl-C at a terminal reaches carton's whole process group: if the container is
            // in it, it has the signal already. Anything else (kill PID, or a container in a
            // session of its own) is passed on.
            let already_delivered = from_terminal && getpgid(Some(self.pid)) == Ok(getpgrp());
            if !already_delivered {
                let _ = kill(self.pid, Signal::try_from(signal).ok());
            }
        };
        restore_mask(&self.previous_mask);
        result
    }
    // ANCHOR_END: wait
}

/// Block the signals [`Running::wait`] passes on (and SIGCHLD), before starting a process
/// it will wait for; returns the mask as it was.
pub fn block_forwarded_signals() -> Result<SigSet> {
    block(&forwarded_signals_and_sigchld())
}

fn forwarded_signals_and_sigchld() -> SigSet {
    let mut set = SigSet::empty();
    FORWARDED_SIGNALS.iter().for_each(|s| set.add(*s));
    set.add(Signal::SIGCHLD);
    set
}

// ANCHOR: start
/// Start the container: returns once its command runs (or with the reason it cannot).
pub fn start(spec: &ContainerSpec, hooks: &mut dyn Hooks, explain: &Explain) -> Result<Running> {
    let rootfs = spec.validate()?;
    ensure_single_threaded()?;
    // With SIGCHLD ignored (inherited from whoever started carton) the kernel reaps the
    // child itself and never says so: the wait below would sleep forever.
    // Safety: SIG_DFL installs no handler.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) };
    let (go_reader, go_writer) = cloexec_pipe()?;
    let (error_reader, error_writer) = cloexec_pipe()?;
    // Blocked from before the clone, so no signal meant for the container is lost;
    // the child unblocks everything just before execve.
    let previous_mask = block(&forwarded_signals_and_sigchld())?;

    let birth_cgroup = hooks.birth_cgroup();
    explain.step(|| {
        let call = match birth_cgroup {
            Some(_) => format!("clone3({}|CLONE_INTO_CGROUP, exit_signal: SIGCHLD, cgroup: the cgroup's directory)", flag_names(spec.namespaces)),
            None => format!("clone({}|SIGCHLD)", flag_names(spec.namespaces)),
        };
        Action::new(CHAPTER, "create the child process in new namespaces", call).shell(unshare_equivalent(spec.namespaces))
    });
    let _joined = PidNamespaceForChildren::join(&spec.join, explain)?;
    // Safety: carton is single-threaded here (checked above), so the child may run ordinary Rust code.
    let forked = unsafe { fork_into_namespaces(spec.namespaces, birth_cgroup.as_ref()) };
    drop(birth_cgroup); // (close-on-exec in the child)
    match forked {
        Err(errno) => {
            restore_mask(&previous_mask);
            let hint = if errno == Errno::EPERM { "; carton needs root for now: run it with sudo (`carton doctor` checks the machine)" } else { "" };
            let flags = flag_names(spec.namespaces);
            Err(Error::runtime(format!("cannot create the container process in new namespaces ({flags}): {}{hint}", errno.desc())))
        }
        Ok(None) => {
            drop((go_writer, error_reader));
            child(spec, &rootfs, &*hooks, explain, go_reader, error_writer)
        }
        Ok(Some(pid)) => {
            drop((go_reader, error_writer));
            let started = parent(pid, hooks, explain, go_writer, error_reader);
            if started.is_err() {
                restore_mask(&previous_mask);
            }
            started.map(|report| Running { pid, previous_mask, report })
        }
    }
}
// ANCHOR_END: start

/// The parent's side: returns the rest of the start report when the child stopped at its
/// start gate, `None` when it ran its command already.
fn parent(pid: Pid, hooks: &mut dyn Hooks, explain: &Explain, go: OwnedFd, errors: OwnedFd) -> Result<Option<std::fs::File>> {
    let stop_child = |error: Error| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = wait_for_exit(pid);
        Err(error)
    };
    if let Err(error) = hooks.parent_after_clone(pid, explain) {
        return stop_child(error);
    }
    // If the child died already the write fails; its error (if any) is read below.
    let _ = std::fs::File::from(go).write_all(b"g");

    let mut errors = std::fs::File::from(errors);
    let mut first = [0u8; 1];
    match errors.read(&mut first) {
        Ok(0) => return Ok(None), // execve closed the pipe: the command runs
        Ok(_) if first[0] == CREATED => return Ok(Some(errors)),
        Ok(_) => {}
        Err(e) => return stop_child(Error::runtime(format!("cannot read the container's start report: {e}"))),
    }
    let mut report = first.to_vec();
    let _ = errors.read_to_end(&mut report);
    let _ = wait_for_exit(pid);
    Err(decode_error(&report))
}

// ANCHOR: child
/// The child's side of the start sequence. Never returns.
fn child(spec: &ContainerSpec, rootfs: &Path, hooks: &dyn Hooks, explain: &Explain, go: OwnedFd, errors: OwnedFd) -> ! {
    let report = StartReport(errors);
    // A container run from a terminal lives no longer than the carton that runs it, even
    // after a `kill -9` (nothing else would stop it, clean up after it, or know it is there).
    if spec.die_with_carton {
        die_with_parent();
    }
    // A panic must not unwind into the parent's code: this is a separate process.
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_go(go)?;
        // Opened while the host's files are in reach; waited at after everything else.
        let gate = spec.start_gate.as_deref().map(open_gate).transpose()?;
        join_namespaces(&spec.join, explain)?;
        explain.step(|| Action::new(CHAPTER, "new files get mode 644 and directories 755, whatever carton's umask was", "umask(022)").shell("umask 022"));
        umask(Mode::from_bits_truncate(0o022));
        // A spec may leave the mount namespace out: the container then shares the caller's,
        // whose mounts must not change propagation, and whose root must not be pivoted.
        let own_mounts = spec.has_own_mount_namespace();
        match spec.rootfs_propagation.filter(|p| p.contains(nix::mount::MsFlags::MS_SLAVE)) {
            // A spec that wants the container's mounts to hear of the host's (rslave) keeps
            // them connected from the start, as runc does. (A shared root would make
            // pivot_root fail: runc then makes the root's parent mount private first; here a
            // shared root is set after pivot_root, and does not reach the host.)
            Some(propagation) if own_mounts => rootfs::set_root_propagation(propagation, explain)?,
            _ if own_mounts => rootfs::make_mounts_private(explain)?,
            _ => {}
        }
        hooks.child_mount_root(spec, rootfs, explain)?;
        rootfs::prepare_root(rootfs, explain, || hooks.child_under_dev(spec, rootfs, explain))?;
        for mount in &spec.mounts {
            mount_in_root(rootfs, mount, explain)?;
        }
        hooks.child_before_pivot(spec, rootfs, explain)?;
        if spec.readonly_root {
            rootfs::make_read_only(rootfs, explain)?;
        }
        if !own_mounts {
            rootfs::chroot_into(rootfs, explain)?;
        } else if spec.no_pivot {
            rootfs::move_into(rootfs, explain)?;
        } else {
            rootfs::pivot_into(rootfs, explain)?;
        }
        if let Some(propagation) = spec.rootfs_propagation {
            rootfs::set_root_propagation(propagation, explain)?;
        }
        hooks.child_after_root(spec, explain)?;
        spec.process.enter_workdir(explain)?;
        // Raising a limit, or lowering the OOM score, needs root: before the user switch.
        spec.process.set_limits(&spec.rlimits, spec.oom_score_adj, explain)?;
        // With a gate, the command must exist before `create` says "created".
        if gate.is_some() {
            spec.process.find_program()?;
        }
        Ok(gate)
    }));
    match prepared {
        Ok(Ok(gate)) => {
            if let Some(gate) = gate {
                if let Err(error) = wait_at_gate(gate, &report, explain) {
                    report.fail(error)
                }
            }
            if let Err(error) = become_the_user(spec, hooks, explain) {
                report.fail(error)
            }
            let _panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hooks.child_exec(spec, report, explain)));
            // Safety: child_exec never returns; only a panic ends up here.
            unsafe { libc::_exit(Failure::Runtime.exit_code().into()) }
        }
        Ok(Err(error)) => report.fail(error),
        Err(_) => report.fail(Error::runtime("the container process panicked during setup")),
    }
}
// ANCHOR_END: child

/// A PID namespace named by path is joined by the parent, just before the clone: setns
/// with CLONE_NEWPID changes where this process's children go, not the process itself.
/// Dropped (in the parent), it puts this process's children back in its own namespace.
struct PidNamespaceForChildren(Option<std::fs::File>);

impl PidNamespaceForChildren {
    fn join(joined: &[JoinedNamespace], explain: &Explain) -> Result<PidNamespaceForChildren> {
        let Some(JoinedNamespace { path, .. }) = joined.iter().find(|j| j.kind == CloneFlags::CLONE_NEWPID) else { return Ok(PidNamespaceForChildren(None)) };
        let own = std::fs::File::open("/proc/self/ns/pid").map_err(|e| Error::runtime(format!("cannot open /proc/self/ns/pid: {e}")))?;
        explain.step(|| Action::new(CHAPTER, format!("the child will be born in the PID namespace pinned at {}", path.display()), "setns(open(path), CLONE_NEWPID)"));
        let theirs = std::fs::File::open(path).map_err(|e| Error::runtime(format!("cannot open the namespace {}: {e}", path.display())))?;
        nix::sched::setns(theirs, CloneFlags::CLONE_NEWPID).map_err(|errno| Error::syscall(format!("cannot join the PID namespace {}", path.display()), errno))?;
        Ok(PidNamespaceForChildren(Some(own)))
    }
}

impl Drop for PidNamespaceForChildren {
    fn drop(&mut self) {
        if let Some(own) = self.0.take() {
            let _ = nix::sched::setns(own, CloneFlags::CLONE_NEWPID);
        }
    }
}

// ANCHOR: join_namespaces
/// Enter the namespaces the spec names by path, before anything is mounted: `/sys`
/// shows the network devices of the namespace it is mounted from. (A PID namespace was
/// joined for the child by its parent.)
fn join_namespaces(joined: &[JoinedNamespace], explain: &Explain) -> Result<()> {
    for JoinedNamespace { kind, path } in joined.iter().filter(|j| j.kind != CloneFlags::CLONE_NEWPID) {
        let shown = path.display();
        explain.step(|| {
            Action::new(CHAPTER, format!("join the namespace pinned at {shown}"), format!("setns(open(\"{shown}\"), {})", flag_names(*kind)))
                .shell(format!("nsenter {}={shown}", nsenter_option(*kind)))
        });
        let file = std::fs::File::open(path).map_err(|e| Error::runtime(format!("cannot open the namespace {shown}: {e}")))?;
        nix::sched::setns(file, *kind).map_err(|errno| Error::syscall(format!("cannot join the namespace {shown}"), errno))?;
    }
    Ok(())
}
// ANCHOR_END: join_namespaces

/// Ask for SIGKILL when the parent dies. (If it died before this, the "go" pipe reads
/// end-of-file and the child gives up; getppid() cannot tell, being 0 in a new PID
/// namespace.) Changing the user clears the request, so step 02 makes it again after setuid.
pub fn die_with_parent() {
    // Safety: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// The last steps before the command: the user switch (step 02), no_new_privs, and what
/// must come after the switch (the security step's hook).
fn become_the_user(spec: &ContainerSpec, hooks: &dyn Hooks, explain: &Explain) -> Result<()> {
    hooks.child_switch_user(spec, explain)?;
    if spec.no_new_privileges {
        explain.step(|| Action::new(CHAPTER, "no execve may grant more privileges (a set-uid program runs as its caller)", "prctl(PR_SET_NO_NEW_PRIVS, 1)").shell("setpriv --no-new-privs"));
        // Safety: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::syscall("cannot set no_new_privs", Errno::last()));
        }
    }
    hooks.child_after_user(spec, explain)
}

// ANCHOR: gate
/// Open the exec fifo without opening it for writing yet (that would block): a
/// descriptor that still names it after pivot_root, when its path is out of reach.
fn open_gate(fifo: &Path) -> Result<OwnedFd> {
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_CLOEXEC).open(fifo).map_err(|e| Error::runtime(format!("cannot open the start gate {}: {e}", fifo.display())))?;
    Ok(file.into())
}

/// Say "created", then wait: opening the fifo to write blocks until `start` opens it to
/// read. The byte written is what `start` waits for before it says "running".
fn wait_at_gate(gate: OwnedFd, report: &StartReport, explain: &Explain) -> Result<()> {
    explain.step(|| Action::new(CHAPTER, "created: wait at the start gate until `start` opens the exec fifo", "open(\"exec.fifo\", O_WRONLY); write(\"0\")").shell("echo 0 > exec.fifo"));
    report.created()?;
    // While it waits, a signal (`kill` of a created container) reaches it as it would reach
    // its command: carton's blocked set ends here, not at execve.
    restore_mask(&SigSet::empty());
    let through = format!("/proc/self/fd/{}", gate.as_raw_fd());
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&through).map_err(|e| Error::runtime(format!("cannot open the start gate: {e}")))?;
    fifo.write_all(b"0").map_err(|e| Error::runtime(format!("cannot pass the start gate: {e}")))
}
// ANCHOR_END: gate

fn wait_for_go(go: OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    match std::fs::File::from(go).read(&mut byte) {
        Ok(1) => Ok(()),
        _ => Err(Error::runtime("carton stopped before letting the container start")),
    }
}

/// The error travels as one byte (the exit code) and the message.
fn encode_error(error: &Error) -> Vec<u8> {
    let mut bytes = vec![error.exit_code()];
    bytes.extend_from_slice(error.message.as_bytes());
    bytes
}

/// The error a non-empty start report carries.
pub fn decode_error(bytes: &[u8]) -> Error {
    let failure = Failure::from_exit_code(bytes[0]).unwrap_or(Failure::Runtime);
    Error { failure, message: String::from_utf8_lossy(&bytes[1..]).into_owned() }
}

/// Block `signals` and return the mask as it was before.
fn block(signals: &SigSet) -> Result<SigSet> {
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(signals), Some(&mut previous)).map_err(|errno| Error::syscall("cannot block signals", errno))?;
    Ok(previous)
}

fn restore_mask(previous: &SigSet) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(previous), None);
}

/// The child of a multi-threaded process may only call async-signal-safe functions
/// until execve; the child here allocates and formats. So refuse to clone from more
/// than one thread (a later step that starts a thread must clone before it does).
fn ensure_single_threaded() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).map(str::trim);
    match threads {
        Some("1") | None => Ok(()),
        Some(n) => Err(Error::runtime(format!("carton has {n} threads; a container must be cloned from a single-threaded process"))),
    }
}

/// A pipe whose ends close on execve: (read end, write end).
pub fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|errno| Error::syscall("cannot create a pipe", errno))
}

// ANCHOR: fork_into_namespaces
/// fork(2), except that the child starts in the new namespaces named by `flags` (and, given
/// a cgroup v2 directory, in that cgroup).
///
/// The raw clone system call with no new stack behaves like fork: the child goes on
/// from here on a copy of our stack, and the call returns `None` in the child and the
/// child's pid in the parent (crun starts its containers the same way).
///
/// # Safety
/// The caller must be single-threaded, as with fork.
pub unsafe fn fork_into_namespaces(flags: CloneFlags, cgroup: Option<&OwnedFd>) -> Result<Option<Pid>, Errno> {
    let born_in_cgroup = cgroup.map(|cgroup| clone3_into_cgroup(flags, cgroup));
    let pid = match born_in_cgroup {
        Some(Ok(pid)) => pid,
        // Refused (a kernel before 5.7, or a seccomp filter that answers ENOSYS, as Docker's
        // does inside a container): a plain clone; the cgroup step then moves the child.
        Some(Err(_)) | None => {
            let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
            let null = std::ptr::null_mut::<libc::c_void>();
            Errno::result(libc::syscall(libc::SYS_clone, flags, null, null, null, null))?
        }
    };
    match pid {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}
// ANCHOR_END: fork_into_namespaces

// ANCHOR: clone3_into_cgroup
/// clone3's arguments (`struct clone_args` of linux/sched.h, up to `cgroup`: its second version).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 with the namespace flags and CLONE_INTO_CGROUP: no stack given, so like fork.
///
/// # Safety
/// As [`fork_into_namespaces`].
unsafe fn clone3_into_cgroup(flags: CloneFlags, cgroup: &OwnedFd) -> Result<libc::c_long, Errno> {
    let args = CloneArgs { flags: flags.bits() as u32 as u64 | CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: cgroup.as_raw_fd() as u64, ..CloneArgs::default() };
    Errno::result(libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()))
}
// ANCHOR_END: clone3_into_cgroup

/// Each namespace's option of `unshare` and `nsenter`, which spell them alike.
const NAMESPACE_OPTIONS: [(CloneFlags, &str); 7] = [
    (CloneFlags::CLONE_NEWNS, "--mount"),
    (CloneFlags::CLONE_NEWUTS, "--uts"),
    (CloneFlags::CLONE_NEWIPC, "--ipc"),
    (CloneFlags::CLONE_NEWNET, "--net"),
    (CloneFlags::CLONE_NEWPID, "--pid"),
    (CloneFlags::CLONE_NEWUSER, "--user"),
    (CloneFlags::CLONE_NEWCGROUP, "--cgroup"),
];

/// The `unshare` command that creates the same namespaces, for `--explain`.
pub fn unshare_equivalent(flags: CloneFlags) -> String {
    let mut command = String::from("unshare");
    for (flag, option) in NAMESPACE_OPTIONS {
        if flags.contains(flag) {
            command.push(' ');
            command.push_str(option);
        }
    }
    command + " --fork"
}

/// `nsenter`'s option for one kind of namespace (`--net`).
fn nsenter_option(kind: CloneFlags) -> &'static str {
    NAMESPACE_OPTIONS.iter().find(|(flag, _)| *flag == kind).map_or("--all", |(_, option)| option)
}

/// `CLONE_NEWNS|CLONE_NEWPID`, for messages and `--explain`.
pub fn flag_names(flags: CloneFlags) -> String {
    flags.iter_names().map(|(name, _)| name).collect::<Vec<_>>().join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshare_equivalent_names_each_namespace() {
        assert_eq!(unshare_equivalent(CloneFlags::CLONE_NEWNS), "unshare --mount --fork");
        assert_eq!(unshare_equivalent(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID), "unshare --mount --pid --fork");
    }

    #[test]
    fn errors_survive_the_pipe() {
        let error = Error::not_found("\"nope\": executable file not found");
        assert_eq!(decode_error(&encode_error(&error)), error);
    }

    #[test]
    fn validate_names_what_is_wrong_with_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let process = Process::new(vec!["sh".into()]);
        let missing = ContainerSpec::new(dir.path().join("missing"), process.clone());
        assert!(missing.validate().unwrap_err().message.contains("does not exist"));
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let not_dir = ContainerSpec::new(file, process.clone());
        assert!(not_dir.validate().unwrap_err().message.contains("is not a directory"));
        let relative = ContainerSpec::new(PathBuf::from("rootfs"), process.clone());
        assert!(relative.validate().unwrap_err().message.contains("must be absolute"));
        let host = ContainerSpec::new(PathBuf::from("/tmp/.."), process.clone());
        assert!(host.validate().unwrap_err().message.contains("host's own /"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(ContainerSpec::new(link, process.clone()).validate().unwrap(), dir.path().canonicalize().unwrap());
        // A spec may leave the mount namespace out (the child chroots then, as runc does).
        let mut no_mount_namespace = ContainerSpec::new(dir.path().to_path_buf(), process);
        assert!(no_mount_namespace.has_own_mount_namespace());
        no_mount_namespace.namespaces = CloneFlags::empty();
        assert!(no_mount_namespace.validate().is_ok() && !no_mount_namespace.has_own_mount_namespace());
    }
}
