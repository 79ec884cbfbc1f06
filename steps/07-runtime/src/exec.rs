//! `exec`: one more process in a running container.
//!
//! Nothing new is created: the process joins what the container's first process already
//! has, each namespace through its file under `/proc/PID/ns/` (setns), and its cgroup
//! (one write to `cgroup.procs`). One namespace needs an extra step: joining a PID
//! namespace changes where this process's *children* go, not the process itself, so
//! after the setns calls it forks once more. That child is the command.
//!
//! ```text
//!  carton exec                joiner (fork)                     command (clone, CLONE_PARENT)
//!  ───────────                ─────────────                     ─────────────────────────────
//!  fork ───────────────────▶  join the cgroup
//!                             setns ipc, uts, net, pid, cgroup, mnt
//!                             clone(CLONE_PARENT) ─────────────▶ chdir, user, execve
//!                             send its PID, exit
//!  wait for the command  ◀───────────────────────────────────── (a child of carton exec)
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use oci_spec::runtime::ContainerState;
use step01::container::{cloexec_pipe, decode_error};
use step01::{Action, ContainerExit, Error, Process, Result, Running, StartReport};
use step02::User;

use crate::{cgroup_of, Runtime, CHAPTER};

/// What to run in the container.
pub struct ExecProcess {
    pub process: Process,
    /// `None`: root.
    pub user: Option<User>,
    /// `-i`: keep stdin; otherwise it is /dev/null, as with `docker exec`.
    pub interactive: bool,
    /// The container's own `rlimits` and `noNewPrivileges`: an exec'd process gets them too
    /// (as with runc), or a set-uid program of the image would win privileges back.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    pub no_new_privileges: bool,
    /// Whether the process lives on when this one ends (`runc exec -d`: an engine's
    /// monitor, a subreaper, takes it over); otherwise it dies with the caller.
    pub detached: bool,
    /// `-t` with a console socket: a terminal made in the container, its master end sent
    /// over this socket (as for the container's own process).
    pub console: Option<std::os::unix::net::UnixStream>,
    /// What a later step does around the user switch (the security step's capabilities).
    pub security: Option<Box<dyn ExecSecurity>>,
}

/// A later step's part in an exec'd process: just before the user switch (still root),
/// and just after it (the last thing before execve).
pub trait ExecSecurity {
    fn before_user(&self, explain: &step01::Explain) -> Result<()>;
    fn after_user(&self, explain: &step01::Explain) -> Result<()>;
}

impl ExecProcess {
    /// The process `process` describes (the container's own changed by exec's options, or
    /// an engine's `exec --process FILE`), in the container of `spec` and `bundle`: its
    /// arguments, environment, working directory, user, limits and no_new_privs. Its stdin
    /// is the caller's.
    pub fn from_oci(spec: &oci_spec::runtime::Spec, bundle: &std::path::Path, process: &oci_spec::runtime::Process) -> step01::Result<ExecProcess> {
        let mut with_process = spec.clone();
        with_process.set_process(Some(process.clone()));
        let container = step01::ContainerSpec::from_oci(&with_process, bundle)?;
        let user = step02::oci::user_from_oci(process);
        Ok(ExecProcess {
            process: container.process,
            user,
            interactive: true,
            rlimits: container.rlimits,
            no_new_privileges: container.no_new_privileges,
            detached: false,
            console: None,
            security: None,
        })
    }
}

/// Exec's usual options applied to a copy of the container's `process`: the command, the
/// working directory, variables added (`KEY=VALUE`, replacing the container's).
pub fn change_process(process: &mut oci_spec::runtime::Process, args: Vec<String>, cwd: Option<PathBuf>, env: &[String]) -> Result<()> {
    process.set_args(Some(args));
    if let Some(cwd) = cwd {
        process.set_cwd(cwd);
    }
    add_env(process, env)
}

/// Add variables (`KEY=VALUE`) to `process`'s environment, each replacing one of its name.
pub fn add_env(process: &mut oci_spec::runtime::Process, assignments: &[String]) -> Result<()> {
    let mut changed = Process { env: process.env().clone().unwrap_or_default(), ..Process::new(Vec::new()) };
    for assignment in assignments {
        changed.set_env(assignment)?;
    }
    process.set_env(Some(changed.env));
    Ok(())
}

/// Run `process` as `user` instead (and with its HOME, when known).
pub fn set_user(process: &mut oci_spec::runtime::Process, user: &User) -> Result<()> {
    process.set_user(step02::oci::user_to_oci(user)?);
    if !user.home.is_empty() {
        add_env(process, &[format!("HOME={}", user.home)])?;
    }
    Ok(())
}

/// runc's `--user UID[:GID]`: numbers only (no file of the container is read).
pub fn numeric_user(text: &str) -> Result<User> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, "0"));
    let bad = || Error::runtime(format!("invalid --user {text:?}: give UID[:GID] as numbers"));
    Ok(User { uid: uid.parse().map_err(|_| bad())?, gid: gid.parse().map_err(|_| bad())?, additional_gids: Vec::new(), home: String::new() })
}

impl Runtime {
    /// The bundle of container `id` and a copy of its `process`, for an exec to change.
    pub fn container_process(&self, id: &str) -> Result<(crate::Bundle, oci_spec::runtime::Process)> {
        let bundle = self.bundle_of(id)?;
        let process = bundle.spec.process().clone().unwrap_or_default();
        Ok((bundle, process))
    }
}

/// The namespaces joined, in order: the mount namespace last, since after it the paths of
/// the host (`/proc/PID/ns/...`) are out of reach (the files are opened before any setns).
const JOINED: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

// ANCHOR: namespaces_of
/// The namespaces of process `pid` that are not this process's, each opened through
/// `/proc/PID/ns/`, the mount namespace last (for a joiner, and for an OCI hook that runs
/// in the container's namespaces).
pub fn namespaces_of(pid: i32) -> Result<Vec<(&'static str, CloneFlags, File)>> {
    let mut namespaces = Vec::new();
    for (name, kind) in JOINED {
        let (theirs, ours) = (format!("/proc/{pid}/ns/{name}"), format!("/proc/self/ns/{name}"));
        let same = std::fs::metadata(&theirs).ok().map(|m| m.ino()) == std::fs::metadata(&ours).ok().map(|m| m.ino());
        if !same {
            let file = File::open(&theirs).map_err(|e| Error::runtime(format!("cannot open {theirs}: {e}")))?;
            namespaces.push((name, kind, file));
        }
    }
    Ok(namespaces)
}
// ANCHOR_END: namespaces_of

impl Runtime {
    // ANCHOR: exec
    /// Run `exec` in container `id` and wait for it; its exit code comes back. The
    /// container goes on when it ends.
    pub fn exec(&self, id: &str, exec: &ExecProcess) -> Result<ContainerExit> {
        self.exec_spawn(id, exec)?.wait()
    }

    /// Start `exec` in container `id`: returns once its command runs (a child of this
    /// process, to be waited for or detached), or with the reason it cannot.
    pub fn exec_spawn(&self, id: &str, exec: &ExecProcess) -> Result<Running> {
        let (dir, locked, record) = self.existing(id)?;
        if record.status(&dir) != ContainerState::Running {
            return Err(Error::runtime(format!("container {id} is not running ({}): exec needs a running container", record.status(&dir))));
        }
        drop(locked); // an exec may last long; other commands go on meanwhile
        exec.process.validate()?;
        let pid = record.init.pid;
        let namespaces = namespaces_of(pid)?;
        // Opened by PID: still the container's process (not a newcomer with its PID)?
        if !record.init.is_alive() {
            return Err(Error::runtime(format!("container {id} stopped")));
        }
        let cgroup = cgroup_of(&record);
        // On cgroup v2 the joiner is born in the container's cgroup, as the container was.
        let birth_cgroup = cgroup.as_ref().and_then(step04::Cgroup::open_for_birth);
        let (error_reader, error_writer) = cloexec_pipe()?;
        let (pid_reader, pid_writer) = cloexec_pipe()?;
        let previous_mask = step01::container::block_forwarded_signals()?;
        self.explain.step(|| {
            let fork = if birth_cgroup.is_some() { "clone3(CLONE_INTO_CGROUP)" } else { "fork()" };
            Action::new(CHAPTER, format!("exec: a new process joins container {id}'s cgroup and namespaces"), format!("{fork}; setns(open(\"/proc/{pid}/ns/*\")); clone(CLONE_PARENT)"))
                .shell(format!("nsenter --target {pid} --all {}", exec.process.args.join(" ")))
        });
        // Safety: carton is single-threaded here (it starts no thread before exec).
        let forked = unsafe { step01::container::fork_into_namespaces(CloneFlags::empty(), birth_cgroup.as_ref()) };
        drop(birth_cgroup);
        match forked {
            Err(errno) => {
                let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&previous_mask), None);
                Err(Error::syscall("fork for exec", errno))
            }
            Ok(None) => {
                drop((error_reader, pid_reader));
                joiner(self, exec, cgroup, namespaces, StartReport::new(error_writer), pid_writer)
            }
            Ok(Some(joiner)) => {
                drop((error_writer, pid_writer));
                let mut pid_bytes = [0u8; 4];
                let got_pid = File::from(pid_reader).read_exact(&mut pid_bytes);
                let joined = step01::process::wait_for_exit(joiner);
                let mut report = Vec::new();
                let _ = File::from(error_reader).read_to_end(&mut report);
                let command = Pid::from_raw(i32::from_ne_bytes(pid_bytes));
                if got_pid.is_err() || !report.is_empty() {
                    if got_pid.is_ok() {
                        let _ = step01::process::wait_for_exit(command);
                    }
                    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&previous_mask), None);
                    return Err(if report.is_empty() { Error::runtime(format!("exec failed before its command started ({joined:?})")) } else { decode_error(&report) });
                }
                Ok(Running::adopt(command, previous_mask))
            }
        }
    }
    // ANCHOR_END: exec
}

/// The joiner's side: into the cgroup and the namespaces, then the command. Never returns.
fn joiner(runtime: &Runtime, exec: &ExecProcess, cgroup: Option<step04::Cgroup>, namespaces: Vec<(&str, CloneFlags, File)>, report: StartReport, pid_pipe: OwnedFd) -> ! {
    let explain = &runtime.explain;
    if let Some(cgroup) = cgroup {
        if let Err(error) = cgroup.enter(nix::unistd::getpid(), explain) {
            report.fail(error)
        }
    }
    for (name, kind, file) in namespaces {
        explain.step(|| Action::new(CHAPTER, format!("join the container's {name} namespace"), format!("setns(open(\"/proc/PID/ns/{name}\"), {})", step01::container::flag_names(kind))));
        if let Err(errno) = setns(file, kind) {
            report.fail(Error::syscall(format!("cannot join the container's {name} namespace"), errno))
        }
    }
    explain.step(|| Action::new(CHAPTER, "fork once more: only children of this process are in the PID namespace it joined", "clone(CLONE_PARENT|SIGCHLD)"));
    // Safety: raw clone without a new stack behaves as fork; this process is single-threaded.
    let child = unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    match Errno::result(child) {
        Err(errno) => report.fail(Error::syscall("cannot fork into the container's PID namespace", errno)),
        Ok(0) => {
            drop(pid_pipe);
            if let Err(error) = command(exec, explain) {
                report.fail(error)
            }
            report.fail(exec.process.exec(explain))
        }
        Ok(pid) => {
            let _ = File::from(pid_pipe).write_all(&(pid as i32).to_ne_bytes());
            drop(report); // the command's copy says whether its execve worked
                          // Safety: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// In the command's process, before execve: its stdin, its working directory, its user.
fn command(exec: &ExecProcess, explain: &step01::Explain) -> Result<()> {
    if !exec.detached {
        step01::container::die_with_parent();
    }
    if let Some(console) = &exec.console {
        let owner = exec.user.as_ref().map(|user| (user.uid, user.gid));
        step02::tty::open_as_stdio(console, None, owner, false, explain)?;
    } else if !exec.interactive {
        let null = File::open("/dev/null").map_err(|e| Error::runtime(format!("cannot open /dev/null: {e}")))?;
        // Safety: dup2 onto descriptor 0 of this process.
        if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
            return Err(Error::syscall("make /dev/null stdin", Errno::last()));
        }
    }
    let cwd: &PathBuf = &exec.process.cwd;
    explain.step(|| Action::new(CHAPTER, "enter the working directory", format!("chdir({cwd:?})")));
    nix::unistd::chdir(cwd).map_err(|errno| Error::runtime(format!("the working directory {} is not usable in the container: {}", cwd.display(), errno.desc())))?;
    exec.process.set_limits(&exec.rlimits, None, explain)?;
    if let Some(security) = &exec.security {
        security.before_user(explain)?;
    }
    if let Some(user) = &exec.user {
        user.switch(explain)?;
    }
    // Safety: prctl with integer arguments.
    if exec.no_new_privileges && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::syscall("cannot set no_new_privs", Errno::last()));
    }
    match &exec.security {
        Some(security) => security.after_user(explain),
        None => Ok(()),
    }
}
