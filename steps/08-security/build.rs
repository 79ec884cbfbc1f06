//! Builds `probe/main.rs` as a *static* program (as step 01 builds its breakout program,
//! with the same function): the tests and the chapter run it inside a busybox root, which
//! has no C library. The bytes are embedded in the library (`step08::probe::PROGRAM`).

include!("../01-chroot/static_program.rs");

fn main() {
    println!("cargo:rerun-if-changed=../01-chroot/static_program.rs");
    build_static_program("probe", "probe/main.rs");
}
