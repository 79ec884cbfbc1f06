//! # Step 11 — build: from a Dockerfile to an image
//!
//! A Dockerfile is a recipe of layers: each RUN is a container whose changes are committed
//! (chapter 9's `commit`), each COPY a layer of files from the build context, the other
//! instructions changes to the image's config. Each step's image is remembered by a key
//! (the image it starts from, the instruction, the files it copies): a rebuild reuses it.
//!
//! - [`dockerfile`]: parser directives, continuation lines, instructions and their shapes,
//!   errors with file, line and column;
//! - [`words`]: quotes, escapes and `$VARIABLE` substitution, as Docker's shell lexer;
//! - [`ignore`]: the `.dockerignore` file;
//! - [`build`]: the steps run, the cache; [`copy`]: COPY and ADD's layers;
//! - [`progress`]: RUN's output under a live status line, on a terminal.

pub mod build;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
pub mod progress;
pub mod words;

use step01::Chapter;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 11, title: "build — from a Dockerfile to an image" };
