//! Builds `breakout/main.rs` as a *static* program, so it can run inside a busybox
//! root filesystem that has no C library. The bytes are embedded in the library
//! (`step01::breakout::PROGRAM`) and written into a root filesystem on demand.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=breakout/main.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("breakout");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").unwrap();
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-name", "breakout", "--target", &target])
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .arg("breakout/main.rs")
        .arg("-o")
        .arg(&out)
        .status()
        .expect("cannot run rustc to build the static breakout program");
    assert!(status.success(), "building the static breakout program failed: a static C library is needed (Debian/Ubuntu: apt-get install libc6-dev)");
}
