// Shared by the build scripts of step 01 (the breakout program) and step 08 (the security
// probe), with include!: each builds one Rust source file as a *static* program, so it runs
// inside a busybox root filesystem that has no C library, and embeds it in its library.

/// Build `source` (relative to the crate) into `$OUT_DIR/name`, static, small, stripped.
fn build_static_program(name: &str, source: &str) {
    println!("cargo:rerun-if-changed={source}");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap();
    let status = std::process::Command::new(rustc)
        .args(["--edition", "2021", "--crate-name", name, "--target", &target])
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .arg(source)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run rustc to build the static program {name}: {e}"));
    assert!(status.success(), "building the static program {name} failed: a static C library is needed (Debian/Ubuntu: apt-get install libc6-dev)");
}
