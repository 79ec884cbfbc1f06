//! Builds `breakout/main.rs` as a *static* program, so it can run inside a busybox
//! root filesystem that has no C library. The bytes are embedded in the library
//! (`step01::breakout::PROGRAM`) and written into a root filesystem on demand.

include!("static_program.rs");

fn main() {
    println!("cargo:rerun-if-changed=static_program.rs");
    build_static_program("breakout", "breakout/main.rs");
}
