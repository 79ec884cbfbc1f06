//! One error type for the whole start sequence.
//!
//! A container can fail to start for three reasons, and Docker gives each its own exit
//! code so scripts can tell them apart: the runtime itself failed (125), the command
//! exists but cannot be run (126), the command is not there (127). Anything else is the
//! container's own exit status.

use std::fmt;

/// Why a container did not start; [`Failure::exit_code`] is what `carton run` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Bad input or a failed setup step: the runtime's fault or the user's (125).
    Runtime,
    /// The command was found but cannot be executed (126).
    CannotInvoke,
    /// The command was not found in the container (127).
    NotFound,
}

impl Failure {
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Runtime => 125,
            Failure::CannotInvoke => 126,
            Failure::NotFound => 127,
        }
    }

    pub fn from_exit_code(code: u8) -> Option<Failure> {
        [Failure::Runtime, Failure::CannotInvoke, Failure::NotFound].into_iter().find(|f| f.exit_code() == code)
    }
}

/// A start failure with a message that says what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub failure: Failure,
    pub message: String,
}

impl Error {
    pub fn runtime(message: impl Into<String>) -> Self {
        Error { failure: Failure::Runtime, message: message.into() }
    }

    pub fn cannot_invoke(message: impl Into<String>) -> Self {
        Error { failure: Failure::CannotInvoke, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error { failure: Failure::NotFound, message: message.into() }
    }

    /// A system call that failed during setup: `what` names it, `errno` says why.
    pub fn syscall(what: impl fmt::Display, errno: nix::errno::Errno) -> Self {
        Error::runtime(format!("{what}: {}", errno.desc()))
    }

    pub fn exit_code(&self) -> u8 {
        self.failure.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
