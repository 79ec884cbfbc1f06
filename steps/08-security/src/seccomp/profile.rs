//! Seccomp profiles as Docker writes them, and the default one.
//!
//! A Docker profile (`--security-opt seccomp=FILE`) is the OCI `linux.seccomp` with two
//! additions per rule: `includes` and `excludes`, which say for which capabilities,
//! architectures and kernels the rule counts. The engine resolves them for one container,
//! and writes plain OCI into its spec; the runtime never sees them.
//!
//! carton's default profile is Docker's policy (moby's `profiles/seccomp/default.json`),
//! written out here group by group: every system call a normal program needs is allowed;
//! the ones that reach past the container (mount, kexec, modules, the clock, bpf, ...) only
//! with the capability that would make them legitimate; new namespaces never from `clone`
//! (that is how a container would make a user namespace, where it is root again); `clone3`
//! answers ENOSYS so that libc falls back to `clone`, whose flags the filter can read.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator as Op, LinuxSyscall};
use serde::Deserialize;
use step01::{Error, Result};

use crate::capabilities::{self, CapSet};

/// A profile in Docker's format (a plain OCI `linux.seccomp` is one too).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: Action,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The architectures the filter is for (OCI's field).
    #[serde(default)]
    pub architectures: Vec<Arch>,
    /// Docker's: for each main architecture, the ones a program on it may also use.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule: these system calls get this action (when the arguments match).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// Docker's older spelling of a one-name rule.
    #[serde(default)]
    pub name: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    pub includes: Condition,
    #[serde(default)]
    pub excludes: Condition,
}

/// For whom a rule counts: `includes` needs all of these, `excludes` any one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub caps: Vec<String>,
    /// Go's names: amd64, arm64, x86, x32, arm, ...
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl Profile {
    /// A profile from a file's text; what is wrong is named.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let profile: Profile = serde_json::from_str(text).map_err(|e| Error::runtime(format!("{origin} is not a seccomp profile (Docker's or OCI's JSON format): {e}")))?;
        if profile.listener_path.is_some() {
            return Err(Error::runtime(format!("{origin} gives a listenerPath (a seccomp agent): carton does not support one")));
        }
        Ok(profile)
    }

    // ANCHOR: resolve
    /// The OCI `linux.seccomp` for one container: the rules that count for its capabilities
    /// (`caps`, its bounding set), this architecture and this kernel, as Docker resolves them.
    pub fn resolve(&self, caps: CapSet, arch: Arch) -> Result<LinuxSeccomp> {
        let go_arch = go_name(arch);
        let kernel = kernel_version();
        let has = |name: &String| capabilities::number(name).is_ok_and(|cap| caps.contains(cap));
        let mut syscalls = Vec::new();
        for rule in &self.syscalls {
            let included = rule.includes.caps.iter().all(has)
                && (rule.includes.arches.is_empty() || rule.includes.arches.iter().any(|a| a == go_arch))
                && rule.includes.min_kernel.as_deref().is_none_or(|min| parse_version(min) <= kernel);
            let excluded = rule.excludes.caps.iter().any(has) || rule.excludes.arches.iter().any(|a| a == go_arch);
            if !included || excluded {
                continue;
            }
            let names: Vec<String> = rule.names.iter().chain(rule.name.iter()).cloned().collect();
            if names.is_empty() {
                return Err(Error::runtime("a seccomp rule names no system call (give \"names\")"));
            }
            let mut call = LinuxSyscall::default();
            call.set_names(names).set_action(rule.action).set_errno_ret(rule.errno_ret).set_args((!rule.args.is_empty()).then(|| rule.args.clone()));
            syscalls.push(call);
        }
        let mut architectures = self.architectures.clone();
        for map in self.arch_map.iter().filter(|m| m.architecture == arch) {
            architectures.push(map.architecture);
            architectures.extend(map.sub_architectures.iter().flatten());
        }
        let mut seccomp = LinuxSeccomp::default();
        seccomp
            .set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures((!architectures.is_empty()).then_some(architectures))
            .set_flags((!self.flags.is_empty()).then(|| self.flags.clone()))
            .set_syscalls(Some(syscalls));
        Ok(seccomp)
    }
    // ANCHOR_END: resolve
}

/// Go's name of an architecture, as Docker's `includes.arches` uses them.
fn go_name(arch: Arch) -> &'static str {
    match arch {
        Arch::ScmpArchX86_64 => "amd64",
        Arch::ScmpArchAarch64 => "arm64",
        _ => "other",
    }
}

/// The running kernel's `major.minor`.
fn kernel_version() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|release| parse_version(&release)).unwrap_or((0, 0))
}

fn parse_version(text: &str) -> (u32, u32) {
    let mut parts = text.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

// ANCHOR: default_profile
/// What any program may call: files, memory, signals, time, sockets, processes (but not
/// new namespaces: `clone` is below, with a condition), ids, and the 32-bit spellings of
/// them (left out on 64-bit architectures, which do not have them).
const ALWAYS_ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
    dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
    fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
    fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
    fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv
    futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
    getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
    getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
    inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
    io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
    io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
    listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier
    memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
    mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall
    munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
    pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
    pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
    pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
    recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
    sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
    sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
    setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
    setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
    set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr
    shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
    socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
    sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
    timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
    timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
    umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
    waitpid write writev
    process_vm_readv process_vm_writev ptrace"; // the last three: Docker asks for kernel 4.8+, which carton needs anyway

/// Calls that act on the whole machine, each allowed only with the capability that makes it
/// legitimate (a container gets none of these by default; `--cap-add` brings them back).
const WITH_CAPABILITY: &[(&str, &str)] = &[
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
    ),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
];

/// The namespace flags of clone(2) (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET): without CAP_SYS_ADMIN, `clone` is allowed only when none of them is set.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Docker's default seccomp profile.
pub fn docker_default() -> Profile {
    let rule = |names: &str, action: Action| Rule {
        names: names.split_whitespace().map(String::from).collect(),
        name: None,
        action,
        errno_ret: None,
        args: Vec::new(),
        includes: Condition::default(),
        excludes: Condition::default(),
    };
    let arg = |index: usize, value: u64, value_two: Option<u64>, op: Op| {
        let mut arg = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
        if let Some(two) = value_two {
            arg = arg.value_two(two);
        }
        arg.build().expect("every field is given")
    };
    let caps = |names: &str| Condition { caps: names.split_whitespace().map(String::from).collect(), ..Condition::default() };
    let arches = |names: &str| Condition { arches: names.split_whitespace().map(String::from).collect(), ..Condition::default() };
    let allow = Action::ScmpActAllow;

    let mut syscalls = vec![rule(ALWAYS_ALLOWED, allow)];
    // Any socket but AF_VSOCK (40), which reaches the hypervisor's host.
    syscalls.push(Rule { args: vec![arg(0, 40, None, Op::ScmpCmpNe)], ..rule("socket", allow) });
    // personality(2) only for the personalities programs ask for (Linux, 32-bit, query).
    for persona in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(Rule { args: vec![arg(0, persona, None, Op::ScmpCmpEq)], ..rule("personality", allow) });
    }
    syscalls.push(Rule { includes: arches("arm arm64"), ..rule("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls", allow) });
    syscalls.push(Rule { includes: arches("amd64 x32"), ..rule("arch_prctl", allow) });
    syscalls.push(Rule { includes: arches("amd64 x32 x86"), ..rule("modify_ldt", allow) });
    for (cap, names) in WITH_CAPABILITY {
        syscalls.push(Rule { includes: caps(cap), ..rule(names, allow) });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags; clone3 (whose flags live in
    // memory the filter cannot read) says "not implemented", and libc falls back to clone.
    syscalls.push(Rule { args: vec![arg(0, CLONE_NAMESPACE_FLAGS, Some(0), Op::ScmpCmpMaskedEq)], excludes: caps("CAP_SYS_ADMIN"), ..rule("clone", allow) });
    syscalls.push(Rule { errno_ret: Some(libc::ENOSYS as u32), excludes: caps("CAP_SYS_ADMIN"), ..rule("clone3", Action::ScmpActErrno) });

    let arch_map = [(Arch::ScmpArchX86_64, vec![Arch::ScmpArchX86, Arch::ScmpArchX32]), (Arch::ScmpArchAarch64, vec![Arch::ScmpArchArm])];
    Profile {
        default_action: Action::ScmpActErrno,
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: Vec::new(),
        arch_map: arch_map.into_iter().map(|(architecture, sub)| ArchMap { architecture, sub_architectures: Some(sub) }).collect(),
        flags: Vec::new(),
        listener_path: None,
        syscalls,
    }
}
// ANCHOR_END: default_profile

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::DOCKER_DEFAULT;

    fn allowed(seccomp: &LinuxSeccomp, name: &str) -> bool {
        seccomp.syscalls().as_deref().unwrap_or_default().iter().any(|s| s.action() == Action::ScmpActAllow && s.names().iter().any(|n| n == name) && s.args().is_none())
    }

    #[test]
    fn the_default_profile_follows_the_containers_capabilities() {
        let default = docker_default().resolve(DOCKER_DEFAULT, Arch::ScmpArchX86_64).unwrap();
        assert!(allowed(&default, "read") && allowed(&default, "chroot") && allowed(&default, "arch_prctl"));
        assert!(!allowed(&default, "mount") && !allowed(&default, "unshare") && !allowed(&default, "kexec_load") && !allowed(&default, "keyctl"));
        assert!(!allowed(&default, "set_tls"), "arm's calls are not amd64's");
        let clone3 = default.syscalls().as_deref().unwrap().iter().find(|s| s.names().contains(&"clone3".to_string())).unwrap();
        assert_eq!((clone3.action(), clone3.errno_ret()), (Action::ScmpActErrno, Some(libc::ENOSYS as u32)));

        let admin = docker_default().resolve(CapSet(DOCKER_DEFAULT.0 | 1 << 21), Arch::ScmpArchX86_64).unwrap();
        assert!(allowed(&admin, "mount") && allowed(&admin, "clone") && allowed(&admin, "clone3"));
        assert!(!admin.syscalls().as_deref().unwrap().iter().any(|s| s.action() == Action::ScmpActErrno), "with CAP_SYS_ADMIN, clone3 is not refused");
    }

    #[test]
    fn a_profile_file_is_read_in_dockers_format_and_errors_say_what_is_wrong() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "comment": "no new directories"}]}"#;
        let seccomp = Profile::parse(text, "deny-mkdir.json").unwrap().resolve(CapSet(0), Arch::ScmpArchX86_64).unwrap();
        assert_eq!(seccomp.default_action(), Action::ScmpActAllow);
        assert_eq!(seccomp.syscalls().as_ref().unwrap()[0].names(), &["mkdir", "mkdirat"]);
        let error = Profile::parse(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, "bad.json").unwrap_err();
        assert!(error.message.contains("bad.json is not a seccomp profile") && error.message.contains("SCMP_ACT_MAYBE"), "{}", error.message);
    }

    #[test]
    fn the_default_profile_compiles_within_the_kernels_limit() {
        let seccomp = docker_default().resolve(DOCKER_DEFAULT, Arch::ScmpArchX86_64).unwrap();
        let program = super::super::bpf::compile(&seccomp, Arch::ScmpArchX86_64).unwrap();
        assert!(program.len() > 100 && program.len() < 1000, "{} instructions", program.len());
    }
}
