//! Step 02's additions to the start sequence, plugged in through step 01's [`Hooks`].

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::unistd::{fork, sethostname, ForkResult};
use step01::{Action, ContainerSpec, Error, Explain, Hooks, Result, StartReport};

use crate::user::User;
use crate::{init, tty, CHAPTER};

/// Where the command's stdin comes from.
pub enum Stdin {
    /// `-i`: carton's own stdin.
    Inherit,
    /// Neither `-i` nor `-t`: `/dev/null`, as with Docker.
    Null,
    /// `-t`: a terminal made in the container. `console` is the child's end of the
    /// socket its master end travels back on; `size` is the user's window, if any.
    Terminal { console: UnixStream, size: Option<libc::winsize> },
}

/// Everything step 02 adds to a container.
pub struct Isolation {
    /// `None`: keep the hostname the UTS namespace started with.
    pub hostname: Option<String>,
    pub init: bool,
    pub user: Option<User>,
    pub stdin: Stdin,
}

impl Hooks for Isolation {
    fn parent_after_clone(&mut self, _child: nix::unistd::Pid, _explain: &Explain) -> Result<()> {
        // The child has its own copy of the console socket's child end; carton must not
        // keep one, or a child that died before sending its terminal would never be noticed.
        if let Stdin::Terminal { .. } = self.stdin {
            self.stdin = Stdin::Null;
        }
        Ok(())
    }

    // ANCHOR: child_under_dev
    /// POSIX message queues belong to the IPC namespace; their file system shows them.
    fn child_under_dev(&self, _spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        let target = rootfs.join("dev/mqueue");
        fs::create_dir_all(&target).map_err(|e| Error::runtime(format!("cannot create /dev/mqueue: {e}")))?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        explain.step(|| {
            Action::new(CHAPTER, "mount the message-queue file system of the container's IPC namespace", format!("mount(\"mqueue\", {target:?}, \"mqueue\", MS_NOSUID|MS_NODEV|MS_NOEXEC, NULL)"))
                .shell(format!("mount -t mqueue mqueue {}", target.display()))
        });
        mount(Some("mqueue"), &target, Some("mqueue"), flags, None::<&str>).map_err(|e| Error::syscall("mount /dev/mqueue", e))
    }
    // ANCHOR_END: child_under_dev

    // ANCHOR: child_after_root
    fn child_after_root(&self, _spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        if let Some(name) = &self.hostname {
            explain.step(|| Action::new(CHAPTER, "set the hostname, in the container's own UTS namespace", format!("sethostname({name:?}, {})", name.len())).shell(format!("hostname {name}")));
            sethostname(name).map_err(|e| Error::syscall(format!("cannot set the hostname {name:?}"), e))?;
        }

        match &self.stdin {
            Stdin::Inherit => Ok(()),
            Stdin::Terminal { console, size } => tty::open_as_stdio(console, *size, self.user.as_ref().map(|u| (u.uid, u.gid)), true, explain),
            Stdin::Null => {
                explain.step(|| Action::new(CHAPTER, "no -i: stdin is /dev/null, as with Docker", "dup2(open(\"/dev/null\"), 0)").shell("exec </dev/null"));
                let null = File::open("/dev/null").map_err(|e| Error::runtime(format!("cannot open /dev/null: {e}")))?;
                // Safety: dup2 onto descriptor 0 of this process.
                if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
                    return Err(Error::syscall("make /dev/null stdin", nix::errno::Errno::last()));
                }
                Ok(())
            }
        }
    }
    // ANCHOR_END: child_after_root

    // ANCHOR: switch_user
    fn child_switch_user(&self, _spec: &ContainerSpec, explain: &Explain) -> Result<()> {
        match &self.user {
            Some(user) => user.switch(explain),
            None => Ok(()),
        }
    }
    // ANCHOR_END: switch_user

    // ANCHOR: child_exec
    fn child_exec(&self, spec: &ContainerSpec, report: StartReport, explain: &Explain) -> ! {
        if !self.init {
            report.fail(spec.process.exec(explain))
        }
        explain.step(|| Action::new(CHAPTER, "--init: fork the command; this process stays PID 1 to pass on signals and reap zombies", "fork()"));
        // Safety: the container's process is single-threaded.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Only the container's own terminal: a terminal of the user's (-i without
                // -t) belongs to the user's shell, which must get it back.
                if let Stdin::Terminal { .. } = self.stdin {
                    init::become_foreground_job();
                }
                report.fail(spec.process.exec(explain))
            }
            Ok(ForkResult::Parent { child }) => {
                // The init runs carton's binary for the container's whole life, where its
                // processes can see it: not dumpable, so /proc/1/exe and /proc/1/mem stay
                // closed to them without CAP_SYS_PTRACE (CVE-2019-5736, chapter 8).
                // Safety: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
                drop(report); // the command's copy tells carton whether execve worked
                              // The init never calls execve, so close-on-exec never closes anything it
                              // inherited from carton: close it all (an open host directory would be a way
                              // out of the container).
                              // Safety: close_range closes this process's descriptors 3 and up.
                unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) };
                init::run(child)
            }
            Err(errno) => report.fail(Error::syscall("fork the command under --init", errno)),
        }
    }
    // ANCHOR_END: child_exec
}
