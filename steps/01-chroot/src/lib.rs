//! # Step 01 — a filesystem of its own
//!
//! The first idea of a container: a process that sees a directory of ours as `/`.
//!
//! - [`chroot`]: the 1979 way — fork, `chroot`, `chdir`, exec — and why it is not enough
//!   (the `breakout` program escapes it).
//! - [`rootfs`]: the fix — a new mount namespace, `/` made private, the root filesystem
//!   bind-mounted on itself, a fresh `/proc`, a small `/dev`, a read-only `/sys`, then
//!   `pivot_root` and the old root detached.
//! - [`mounts`]: the OCI spec's other mounts (bind mounts, tmpfs), and how a path is
//!   found inside the container's root without following a link out of it.
//! - [`process`]: what runs inside — argv, environment, working directory, and the exit
//!   codes Docker uses when it cannot run it.
//! - [`container`]: the start sequence every later step plugs into.
//! - [`busybox`]: the base root filesystem, made offline from the host's static busybox.
//! - [`explain`]: `--explain`, each kernel-level action in plain words.

pub mod breakout;
pub mod busybox;
pub mod chroot;
pub mod container;
pub mod error;
pub mod explain;
pub mod mounts;
pub mod process;
pub mod rootfs;

pub use container::{ContainerSpec, Hooks, NoHooks, Running, StartReport};
pub use error::{Error, Failure, Result};
pub use explain::{Action, Chapter, Explain};
pub use process::{ContainerExit, Process};

/// The chapter this step belongs to; every action it explains points here.
pub const CHAPTER: Chapter = Chapter { number: 1, title: "a filesystem of its own" };
