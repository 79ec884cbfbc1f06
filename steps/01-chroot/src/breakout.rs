//! The breakout program (source: `breakout/main.rs`), built static by `build.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The static breakout executable.
pub const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/breakout"));

/// Put the breakout program at `/bin/breakout` inside `rootfs`.
pub fn install(rootfs: &Path) -> Result<PathBuf> {
    let bin = rootfs.join("bin");
    let path = bin.join("breakout");
    fs::create_dir_all(&bin)
        .and_then(|()| fs::write(&path, PROGRAM))
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
        .map_err(|e| Error::runtime(format!("cannot install the breakout program at {}: {e}", path.display())))?;
    Ok(path)
}
