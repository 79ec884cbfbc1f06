//! The process a container runs: its arguments, environment and working directory,
//! and how it is started once the root filesystem is in place.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::explain::{Action, Explain};
use crate::CHAPTER;

// ANCHOR: default_path
/// The `PATH` Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// ANCHOR_END: default_path

/// What to run inside the container (the `process` of an OCI runtime spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// `args[0]` is the command: a path, or a name looked up in the container's `PATH`.
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, exactly what `execve` receives.
    pub env: Vec<String>,
    /// Absolute path inside the container; created if missing, as Docker does.
    pub cwd: PathBuf,
    /// How many descriptors after stderr (3, 4, ...) the command gets on purpose (runc's
    /// `--preserve-fds`: sockets an engine hands on); every other one is closed at execve.
    pub preserve_fds: u32,
}

impl Process {
    /// A process with Docker's defaults: `PATH` and `HOME` (root's) set, working directory `/`.
    pub fn new(args: Vec<String>) -> Self {
        Process { args, env: vec![format!("PATH={DEFAULT_PATH}"), "HOME=/root".into()], cwd: PathBuf::from("/"), preserve_fds: 0 }
    }

    /// Set one variable from `KEY=VALUE`, replacing an earlier value of `KEY`.
    pub fn set_env(&mut self, assignment: &str) -> Result<()> {
        let key = match assignment.split_once('=') {
            Some((key, _)) if !key.is_empty() => key,
            _ => return Err(Error::runtime(format!("invalid environment variable {assignment:?}: write it as KEY=VALUE with a non-empty KEY"))),
        };
        let prefix = format!("{key}=");
        self.env.retain(|existing| !existing.starts_with(&prefix));
        self.env.push(assignment.to_string());
        Ok(())
    }

    /// The value of `KEY` in this process's environment.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.env.iter().rev().find_map(|entry| entry.strip_prefix(&prefix))
    }

    /// Check what can be checked before anything is created.
    pub fn validate(&self) -> Result<()> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(Error::runtime("no command given: say what to run, for example `carton run --rootfs DIR -- /bin/sh -c 'echo hi'`"));
        }
        if !self.cwd.is_absolute() {
            return Err(Error::runtime(format!("the working directory {:?} is invalid: it needs to be an absolute path inside the container, such as /tmp", self.cwd)));
        }
        Ok(())
    }

    /// Go to the working directory, creating it if the image lacks it (Docker does too).
    /// Called right after pivot_root, so the process already stands at `/`.
    pub(crate) fn enter_workdir(&self, explain: &Explain) -> Result<()> {
        if self.cwd == Path::new("/") {
            return Ok(());
        }
        if self.cwd.exists() && !self.cwd.is_dir() {
            return Err(Error::runtime(format!("the working directory {:?} exists in the container but is not a directory; choose another -w/--workdir", self.cwd)));
        }
        if !self.cwd.is_dir() {
            explain
                .step(|| Action::new(CHAPTER, "create the missing working directory", format!("mkdir({:?}, 0755)", self.cwd)).shell(format!("mkdir -p {}", shell_quote(&self.cwd.to_string_lossy()))));
            fs::DirBuilder::new().recursive(true).mode(0o755).create(&self.cwd).map_err(|e| Error::runtime(format!("cannot create the working directory {:?}: {e}", self.cwd)))?;
        }
        explain.step(|| Action::new(CHAPTER, "enter the working directory", format!("chdir({:?})", self.cwd)).shell(format!("cd {}", shell_quote(&self.cwd.to_string_lossy()))));
        nix::unistd::chdir(&self.cwd).map_err(|errno| Error::syscall(format!("cannot enter the working directory {:?}", self.cwd), errno))
    }

    // ANCHOR: exec
    /// Replace this process with the command. Returns only if that failed, with the
    /// error that says why (and so the exit code: 126 or 127).
    pub fn exec(&self, explain: &Explain) -> Error {
        let program = match self.find_program() {
            Ok(program) => program,
            Err(error) => return error,
        };
        let (Ok(path), Ok(argv), Ok(envp)) = (CString::new(program.as_os_str().as_encoded_bytes()), cstrings(&self.args), cstrings(&self.env)) else {
            return Error::runtime("an argument or environment variable contains a NUL byte, which execve cannot pass");
        };
        explain.step(|| {
            Action::new(CHAPTER, "replace this process with the command", format!("execve({program:?}, {:?}, {:?})", self.args, self.env))
                .shell(format!("exec {}", self.args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")))
        });
        reset_signals();
        close_inherited_fds(3 + self.preserve_fds);
        let errno = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
        exec_error(&program, errno)
    }
    // ANCHOR_END: exec

    // ANCHOR: find_program
    /// Find the command the way a shell would, but in the container's `PATH`,
    /// not carton's own: a name with a `/` is a path, anything else is looked up.
    pub fn find_program(&self) -> Result<PathBuf> {
        let name = &self.args[0];
        if name.contains('/') {
            return Ok(PathBuf::from(name));
        }
        let search = self.env_var("PATH").unwrap_or(DEFAULT_PATH);
        for dir in search.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = Path::new(dir).join(name);
            let executable = fs::metadata(&candidate).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if executable.unwrap_or(false) {
                return Ok(candidate);
            }
        }
        Err(Error::not_found(format!("{name:?}: executable file not found in $PATH inside the container (PATH={search}); check the name, or give the full path")))
    }
    // ANCHOR_END: find_program
}

/// The spec's rlimit names and the kernel's resources.
const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

/// The kernel's resource for an rlimit of the spec.
pub fn rlimit_resource(typ: &oci_spec::runtime::PosixRlimitType) -> Result<libc::__rlimit_resource_t> {
    let name = serde_json::to_value(typ).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    RLIMITS.iter().find(|(known, _)| *known == name).map(|(_, resource)| *resource).ok_or_else(|| Error::runtime(format!("unknown rlimit {name:?}")))
}

impl Process {
    /// The spec's rlimits and OOM score, set on this process (its command inherits them).
    pub fn set_limits(&self, rlimits: &[(libc::__rlimit_resource_t, u64, u64)], oom_score_adj: Option<i32>, explain: &Explain) -> Result<()> {
        for &(resource, soft, hard) in rlimits {
            let name = RLIMITS.iter().find(|(_, r)| *r == resource).map_or("?", |(name, _)| name);
            explain.step(|| {
                Action::new(CHAPTER, format!("limit {name} to {soft} (hard {hard})"), format!("setrlimit({name}, {{{soft}, {hard}}})"))
                    .shell(format!("prlimit --pid $$ --{}={soft}:{hard}", name.trim_start_matches("RLIMIT_").to_lowercase()))
            });
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // Safety: setrlimit reads the struct given.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                let errno = Errno::last();
                let hint = if errno == Errno::EPERM { " (a hard limit above carton's own needs CAP_SYS_RESOURCE)" } else { "" };
                return Err(Error::runtime(format!("cannot set {name} to {soft}:{hard}: {}{hint}", errno.desc())));
            }
        }
        if let Some(score) = oom_score_adj {
            explain.step(|| {
                Action::new(CHAPTER, format!("OOM score adjustment {score}"), format!("write(\"/proc/self/oom_score_adj\", \"{score}\")")).shell(format!("echo {score} > /proc/self/oom_score_adj"))
            });
            fs::write("/proc/self/oom_score_adj", score.to_string()).map_err(|e| Error::runtime(format!("cannot set oomScoreAdj {score}: {e}")))?;
        }
        Ok(())
    }
}

fn cstrings(strings: &[String]) -> std::result::Result<Vec<CString>, std::ffi::NulError> {
    strings.iter().map(|s| CString::new(s.as_bytes())).collect()
}

/// Mark every descriptor from `first` on close-on-exec (all above stderr, but those handed
/// on on purpose), so nothing carton inherited (an open directory of the host, a socket)
/// reaches the command. runc once leaked one such descriptor, and a container could walk
/// from it to the host's files (CVE-2024-21626).
fn close_inherited_fds(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // Safety: close_range only changes flags on this process's descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) } == 0 {
        return;
    }
    // Kernels before 5.11: one descriptor at a time.
    let Ok(entries) = fs::read_dir("/proc/self/fd") else { return };
    for fd in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).filter(|fd| *fd >= first as i32) {
        // Safety: setting FD_CLOEXEC on a descriptor number is harmless even if it is stale.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Quote `word` for a POSIX shell when it needs it, so `--explain` lines can be pasted.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A new program should start with default signal handling. carton's own process
/// ignores SIGPIPE (every Rust program does), and whatever started carton may ignore
/// more (`nohup` ignores SIGHUP); an ignored signal stays ignored across execve, so
/// `yes | head` inside the container would never see its SIGPIPE.
fn reset_signals() {
    /// The kernel's `struct sigaction`; all zeros is SIG_DFL with no flags.
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: libc::c_ulong,
        flags: libc::c_ulong,
        restorer: libc::c_ulong,
        mask: u64,
    }
    let default = KernelSigaction::default();
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // The raw system call: glibc's sigaction() refuses the two real-time signals it
        // keeps for itself (32 and 33), but they too may arrive ignored.
        // Safety: `default` outlives the call; the kernel only reads it.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, signal, &default as *const KernelSigaction, 0usize, 8usize) };
    }
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

// ANCHOR: exec_error
/// Turn execve's errno into Docker's exit codes and a message that says what to do.
fn exec_error(program: &Path, errno: Errno) -> Error {
    let shown = program.display();
    match errno {
        Errno::ENOENT if program.exists() => Error::not_found(format!(
            "{shown}: no such file or directory, although the file is there: its interpreter (#! line) \
             or dynamic loader is missing from the root filesystem; use a statically linked program or add its libraries"
        )),
        Errno::ENOENT | Errno::ENOTDIR => Error::not_found(format!("{shown}: no such file or directory inside the container")),
        Errno::EACCES if program.is_dir() => Error::cannot_invoke(format!("{shown}: is a directory, not a program")),
        Errno::EACCES => Error::cannot_invoke(format!("{shown}: permission denied; is it executable (chmod +x), and not on a noexec mount?")),
        Errno::ENOEXEC => Error::cannot_invoke(format!("{shown}: exec format error: not a program this kernel can run (a script without a #! line, or a binary for another CPU)")),
        other => Error::cannot_invoke(format!("{shown}: cannot execute: {}", other.desc())),
    }
}
// ANCHOR_END: exec_error

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerExit {
    /// It called exit(code).
    Exited(i32),
    /// Signal number N killed it (a plain number: real-time signals have no name in nix).
    Killed(i32),
}

impl ContainerExit {
    /// The shell's convention, which Docker follows: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ContainerExit::Exited(code) => code,
            ContainerExit::Killed(signal) => 128 + signal,
        }
    }
}

/// `SIGKILL`, or `SIGRTMIN+6` for a real-time signal.
pub fn signal_name(number: i32) -> String {
    match Signal::try_from(number) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) if number >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", number - libc::SIGRTMIN()),
        Err(_) => format!("signal {number}"),
    }
}

/// A process named for the whole life of the machine: its PID and its start time (field
/// 22 of `/proc/PID/stat`). A PID alone is reused once its process is gone; the pair never
/// names another process, so a record of it cannot mistake a newcomer for the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniquePid {
    pub pid: i32,
    pub start_time: u64,
}

impl UniquePid {
    /// This process.
    pub fn current() -> UniquePid {
        // Asked several times per command; a forked child is another process, so the
        // answer kept is only used while the pid is still the one it was read for.
        static CURRENT: std::sync::Mutex<Option<UniquePid>> = std::sync::Mutex::new(None);
        let pid = std::process::id() as i32;
        let mut kept = CURRENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *kept {
            Some(current) if current.pid == pid => current,
            _ => {
                let current = UniquePid::of(pid).unwrap_or(UniquePid { pid, start_time: 0 });
                *kept = Some(current);
                current
            }
        }
    }

    /// Process `pid`, if it exists.
    pub fn of(pid: i32) -> Option<UniquePid> {
        Some(UniquePid { pid, start_time: start_time(pid)? })
    }

    /// Whether the process is still in the process table, ended or not: a zombie is until
    /// its parent collects it, and stays in its cgroup meanwhile.
    pub fn exists(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// Whether the process still exists and has not ended (a zombie has ended: it only
    /// waits for its parent to collect its exit status).
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = read_kernel_file(format!("/proc/{}/stat", self.pid)) else { return false };
        let fields = stat.rsplit_once(") ").map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>()).unwrap_or_default();
        fields.first() != Some(&"Z") && fields.get(19).and_then(|t| t.parse().ok()) == Some(self.start_time)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = read_kernel_file(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?.parse().ok()
}

/// A file the kernel makes up as it is read (`/proc`, `/sys`), read whole in as few
/// calls as it takes: such files say their size is 0, so `fs::read_to_string` starts with
/// tiny reads and grows, a dozen calls for a mount table. On the start path, that counts.
pub fn read_kernel_file(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(16 * 1024);
    fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

impl std::fmt::Display for UniquePid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.start_time)
    }
}

impl std::str::FromStr for UniquePid {
    type Err = Error;
    fn from_str(text: &str) -> Result<UniquePid> {
        let bad = || Error::runtime(format!("{text:?} is not a process record (PID:START_TIME)"));
        let (pid, start_time) = text.trim().split_once(':').ok_or_else(bad)?;
        Ok(UniquePid { pid: pid.parse().map_err(|_| bad())?, start_time: start_time.parse().map_err(|_| bad())? })
    }
}

/// Wait until `pid` ends and say how.
pub fn wait_for_exit(pid: Pid) -> Result<ContainerExit> {
    loop {
        if let Some((_, exit)) = reap(pid, 0)? {
            return Ok(exit);
        }
    }
}

/// One waitpid(2) for `pid` (or any child, with `Pid::from_raw(-1)`): which process
/// ended and how. `None` when nothing ended (with `WNOHANG`) or the wait was
/// interrupted. Decoded by hand: nix's `WaitStatus` cannot hold a real-time signal.
pub fn reap(pid: Pid, flags: libc::c_int) -> Result<Option<(Pid, ContainerExit)>> {
    let mut status = 0;
    // Safety: `status` is a valid place for the kernel to write to.
    let ended = match unsafe { libc::waitpid(pid.as_raw(), &mut status, flags) } {
        -1 if Errno::last() == Errno::EINTR => return Ok(None),
        -1 => return Err(Error::syscall(format!("waiting for process {pid}"), Errno::last())),
        0 => return Ok(None),
        ended => Pid::from_raw(ended),
    };
    if libc::WIFEXITED(status) {
        Ok(Some((ended, ContainerExit::Exited(libc::WEXITSTATUS(status)))))
    } else if libc::WIFSIGNALED(status) {
        Ok(Some((ended, ContainerExit::Killed(libc::WTERMSIG(status)))))
    } else {
        Ok(None) // stopped or continued: not the end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(args: &[&str]) -> Process {
        Process::new(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults_are_dockers() {
        let p = process(&["sh"]);
        assert_eq!(p.env, [format!("PATH={DEFAULT_PATH}"), "HOME=/root".into()]);
        assert_eq!(p.cwd, Path::new("/"));
    }

    #[test]
    fn set_env_replaces_an_earlier_value() {
        let mut p = process(&["sh"]);
        p.set_env("PATH=/bin").unwrap();
        p.set_env("GREETING=a=b").unwrap();
        assert_eq!(p.env, ["HOME=/root", "PATH=/bin", "GREETING=a=b"]);
        assert_eq!(p.env_var("GREETING"), Some("a=b"));
    }

    #[test]
    fn set_env_rejects_a_missing_key() {
        for bad in ["=x", "NOEQUALS", ""] {
            let err = process(&["sh"]).set_env(bad).unwrap_err();
            assert_eq!(err.exit_code(), 125, "{bad:?}");
            assert!(err.message.contains("KEY=VALUE"), "{}", err.message);
        }
    }

    #[test]
    fn validate_rejects_empty_commands_and_relative_workdirs() {
        assert!(process(&[]).validate().unwrap_err().message.contains("no command given"));
        assert!(process(&[""]).validate().is_err());
        let mut p = process(&["sh"]);
        p.cwd = PathBuf::from("tmp");
        assert!(p.validate().unwrap_err().message.contains("absolute path"));
    }

    #[test]
    fn lookup_uses_the_containers_path_and_skips_non_executables() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("tool"), "not executable").unwrap();
        fs::write(b.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let mut p = process(&["tool"]);
        p.set_env(&format!("PATH={}:{}", a.display(), b.display())).unwrap();
        assert_eq!(p.find_program().unwrap(), b.join("tool"));
        p.args[0] = "missing".into();
        let err = p.find_program().unwrap_err();
        assert_eq!(err.exit_code(), 127);
        assert!(err.message.contains("executable file not found in $PATH"), "{}", err.message);
    }

    #[test]
    fn exec_errors_map_to_docker_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(exec_error(&dir.path().join("nope"), Errno::ENOENT).exit_code(), 127);
        assert!(exec_error(dir.path(), Errno::ENOENT).message.contains("dynamic loader"));
        assert!(exec_error(dir.path(), Errno::EACCES).message.contains("is a directory"));
        assert_eq!(exec_error(&dir.path().join("f"), Errno::EACCES).exit_code(), 126);
        assert_eq!(exec_error(&dir.path().join("f"), Errno::ENOEXEC).exit_code(), 126);
    }

    #[test]
    fn exit_code_follows_the_shell_convention() {
        assert_eq!(ContainerExit::Exited(3).code(), 3);
        assert_eq!(ContainerExit::Killed(libc::SIGKILL).code(), 137);
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGRTMIN() + 6), "SIGRTMIN+6");
    }

    #[test]
    fn shell_quote_leaves_plain_words_alone() {
        assert_eq!(shell_quote("/tmp/rootfs"), "/tmp/rootfs");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
