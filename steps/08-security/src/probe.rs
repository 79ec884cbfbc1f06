//! The seccomp probe (`probe/main.rs`, built static): system calls Docker's profile
//! refuses, made from inside a container, with the kernel's answers printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use step01::{Error, Result};

/// The static probe executable.
pub const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe"));

/// Put the probe at `/bin/probe` inside `rootfs`.
pub fn install(rootfs: &Path) -> Result<PathBuf> {
    let path = rootfs.join("bin/probe");
    std::fs::write(&path, PROGRAM)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| Error::runtime(format!("cannot install the seccomp probe at {}: {e}", path.display())))?;
    Ok(path)
}
