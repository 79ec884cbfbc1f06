//! # Step 10 — volumes: data that outlives its container, and files shared with the host
//!
//! A container's files live in its writable layer (chapter 5), and go with it at `rm`.
//! Data that must stay (a database's files, uploads, logs) goes somewhere else: a
//! directory mounted into the container at a path of its own choosing.
//!
//! - a **bind mount** (`-v /srv/site:/www`): a host directory, as it is; an edit on the
//!   host is seen in the container at once, no restart;
//! - a **volume** (`-v pgdata:/var/lib/postgresql`): a directory carton manages under
//!   `volumes/`, made on first use and filled with the image's files there (copy-up), kept
//!   until `volume rm`; an **anonymous** one (`-v /cache`, an image's `VOLUME`) is made for one
//!   container and goes with it on `rm -v`;
//! - a **tmpfs** (`--tmpfs /run`): memory, gone when the container stops.
//!
//! Each is an entry of the runtime spec's `mounts`, which step 01 already mounts inside the
//! new root, before pivot_root, resolving each target inside that root.
//!
//! - [`spec`]: `-v`, `--mount` and `--tmpfs` read into requests;
//! - [`store`]: the volumes, their lock, their records;
//! - [`mounts`]: requests to mount points, the spec's entries, copy-up, who uses what;
//! - [`copy`]: a tree copied with its owners and modes.

pub mod copy;
pub mod mounts;
pub mod spec;
pub mod store;

pub use mounts::{MountPoint, Planned};
pub use spec::{Request, Source};
use step01::Chapter;
pub use store::{Volume, VolumeStore};

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 10, title: "volumes — bind mounts, named and anonymous volumes, tmpfs" };
