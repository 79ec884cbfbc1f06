//! # Step 09 — the container's life: detached containers, the monitor, and every
//! lifecycle command
//!
//! Until now a container lived as long as the `carton run` that made it. Here it is
//! **kept**: it exists from `create` to `rm`, runs and stops any number of times on the
//! same writable layer, and can run **detached**, with no CLI waiting for it. Without a
//! daemon (podman's answer, not Docker's): each detached container has a small
//! [`monitor`] process of its own (conmon's job) that holds its output, writes its
//! [`logs`], relays its published ports, waits for it, records how it ended and starts it
//! again when its restart policy says so.
//!
//! - [`record`]: `containers/ID/container.json`, what `docker inspect` shows, and the
//!   state machine (created → running ⇄ paused → exited/dead, restarting);
//! - [`names`]: unique names, random or chosen, and how a command finds a container;
//! - [`monitor`]: one run of a container, and the monitor process;
//! - [`lifecycle`]: start, stop, kill, rm, wait, pause, rename, and the collector for a
//!   monitor that was killed;
//! - [`logs`]: Docker's `json-file` log, with rotation;
//! - [`show`]: `ps`'s words and columns; [`inspect`]: `docker inspect`'s shape;
//! - [`health`]: health checks, run by the monitor;
//! - [`cp`], [`layer`]: files in and out of a container, its `diff`, `commit`.

pub mod attach;
pub mod cp;
pub mod flags;
pub mod health;
pub mod inspect;
pub mod layer;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod record;
pub mod show;
pub mod stats;

pub use record::{Container, HostConfig, RestartPolicy, Status};
use step01::Chapter;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 9, title: "the container's life — detached containers, the monitor, logs" };
