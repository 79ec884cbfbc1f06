//! # Step 05 — layers: overlayfs
//!
//! An image is a stack of read-only layers; each container adds a thin writable layer
//! on top. overlayfs shows the stack as one directory tree: reads come from the highest
//! layer that has the file, writes go to the container's own layer (a file of a lower
//! layer is first *copied up*), and a deletion leaves a *whiteout*.
//!
//! - [`archive`]: layer tarballs in and out (whiteouts, opaque directories, hostile input).
//! - [`diff`]: what a container changed, in `docker container diff`'s A/C/D form.

pub mod archive;
pub mod diff;

use step01::Chapter;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 5, title: "layers: overlayfs" };
