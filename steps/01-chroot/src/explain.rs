//! `--explain`: say each kernel-level action as it happens.
//!
//! Every step of the book records what it asks of the kernel as an [`Action`]: the
//! action in plain words, the system call, the shell command that does the same, and
//! the chapter that explains it. Later steps record their own actions through the same
//! [`Explain`] handle; they never print on their own.
//!
//! When explaining is off the closure that builds an action is never called, so the
//! runtime pays one branch per action and allocates nothing.

use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};

/// A chapter of the book. Each step crate declares its own, e.g. [`crate::CHAPTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chapter {
    pub number: u8,
    pub title: &'static str,
}

impl fmt::Display for Chapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chapter {}: {}", self.number, self.title)
    }
}

/// One thing the runtime asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub chapter: Chapter,
    /// What happens and why, in plain words.
    pub what: String,
    /// The system call as C would write it (or, for an action that is not one, what
    /// `label` says it is: an HTTP request, a name).
    pub syscall: String,
    /// What `syscall` holds: "syscall" unless an action says otherwise.
    pub label: &'static str,
    /// The shell command that does the same, when there is one.
    pub shell: Option<String>,
}

impl Action {
    pub fn new(chapter: Chapter, what: impl Into<String>, syscall: impl Into<String>) -> Self {
        Action { chapter, what: what.into(), syscall: syscall.into(), label: "syscall", shell: None }
    }

    /// Name what the action's second line shows when it is not a system call: `request`
    /// for HTTP (chapter 6). Up to seven letters keep the lines aligned.
    pub fn label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    pub fn shell(mut self, command: impl Into<String>) -> Self {
        self.shell = Some(command.into());
        self
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[explain] {}", self.what)?;
        write!(f, "          {:<8} {}", format!("{}:", self.label), self.syscall)?;
        if let Some(shell) = &self.shell {
            write!(f, "\n          shell:   {shell}")?;
        }
        Ok(())
    }
}

/// Something that receives actions: stderr, a test's list, a lab checker.
type Sink = Box<dyn Fn(&Action)>;

/// Where actions go: nowhere (the default), to stderr, or to any sink a caller gives.
#[derive(Default)]
pub struct Explain {
    sink: Option<Sink>,
}

impl Explain {
    /// Explaining off: [`Explain::step`] costs one branch.
    pub fn off() -> Self {
        Explain { sink: None }
    }

    /// `--explain`: [`Explain::to_stderr`] when `on`, else [`Explain::off`].
    pub fn when(on: bool) -> Self {
        if on {
            Explain::to_stderr()
        } else {
            Explain::off()
        }
    }

    /// Print each action on carton's stderr, so the container's stdout stays the
    /// container's, under a heading that names the chapter whenever it changes.
    ///
    /// It writes to a copy of the descriptor taken now: the container process may later
    /// make a terminal its stderr (`-t`), and the trace must not go through that. The
    /// copy is close-on-exec, so the command never inherits it.
    pub fn to_stderr() -> Self {
        let Ok(copy) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return Explain::off();
        };
        let stderr = std::fs::File::from(copy);
        let last_chapter = shared_chapter_marker();
        Explain::to_sink(move |action| {
            let mut text = String::new();
            if last_chapter.swap(action.chapter.number, Ordering::Relaxed) != action.chapter.number {
                text += &format!("[explain] ── {} ──\n", action.chapter);
            }
            text += &format!("{action}\n");
            let _ = (&stderr).write_all(text.as_bytes());
        })
    }

    /// Hand each action to `sink` (a lab checker or a test can collect them).
    pub fn to_sink(sink: impl Fn(&Action) + 'static) -> Self {
        Explain { sink: Some(Box::new(sink)) }
    }

    /// Record an action. `make` runs only when explaining is on.
    pub fn step(&self, make: impl FnOnce() -> Action) {
        if let Some(sink) = &self.sink {
            sink(&make());
        }
    }
}

/// The number of the chapter whose heading was printed last, in memory that carton and
/// the container process share after the clone: both print steps, and a heading must
/// appear whenever the chapter changes, whichever process printed the one before.
fn shared_chapter_marker() -> &'static AtomicU8 {
    // Safety: a fresh anonymous mapping of one page, never unmapped (it lives as long as
    // the process); an AtomicU8 is valid for any bit pattern, and the page starts zeroed.
    unsafe {
        let page = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
        if page == libc::MAP_FAILED {
            return Box::leak(Box::new(AtomicU8::new(0))); // unshared: headings may repeat
        }
        &*(page as *const AtomicU8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    const TEST_CHAPTER: Chapter = Chapter { number: 9, title: "testing" };

    #[test]
    fn off_never_builds_the_action() {
        let explain = Explain::off();
        explain.step(|| panic!("an action was built while explaining is off"));
    }

    #[test]
    fn a_sink_receives_actions_in_order() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let into = seen.clone();
        let explain = Explain::to_sink(move |a| into.borrow_mut().push(a.syscall.clone()));
        explain.step(|| Action::new(TEST_CHAPTER, "first", "one()"));
        explain.step(|| Action::new(TEST_CHAPTER, "second", "two()"));
        assert_eq!(*seen.borrow(), ["one()", "two()"]);
    }

    #[test]
    fn display_shows_the_syscall_and_the_shell_equivalent() {
        let text = Action::new(TEST_CHAPTER, "do a thing", "thing(1)").shell("thing --one").to_string();
        assert_eq!(text, "[explain] do a thing\n          syscall: thing(1)\n          shell:   thing --one");
    }
}
