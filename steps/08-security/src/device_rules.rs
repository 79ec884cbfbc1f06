//! `linux.resources.devices`: which device nodes the container may use.
//!
//! Making a node (`mknod`) is one thing; opening it is what reaches the hardware. With
//! CAP_MKNOD, root in a container can make `/dev/vda` with the host disk's numbers; the
//! devices cgroup is what stops it from opening it. Docker's rules: make any node, open
//! only the harmless ones (null, zero, full, random, urandom, tty, console, ptmx, pts).
//!
//! The rules are kept in order, a later one overriding an earlier one (the first is
//! usually "deny everything"). cgroup v1 has files for them (`devices.deny`,
//! `devices.allow`); cgroup v2 has none: the runtime attaches an eBPF program to the
//! container's cgroup, which the kernel runs on each open or mknod of a device node.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use step01::{Action, Error, Explain, Result};
use step04::{Cgroup, Version};

use crate::CHAPTER;

// ANCHOR: docker_rules
/// Docker's default rules: deny all, then allow `mknod` of any node and read/write of the
/// nodes every program expects.
pub fn docker_default() -> Vec<LinuxDeviceCgroup> {
    let rule = |allow: bool, typ: Option<LinuxDeviceType>, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(allow).set_typ(typ).set_major(major).set_minor(minor).set_access(Some(access.to_string()));
        rule
    };
    let char_device = |major: i64, minor: Option<i64>| rule(true, Some(LinuxDeviceType::C), Some(major), minor, "rwm");
    vec![
        rule(false, Some(LinuxDeviceType::A), None, None, "rwm"),
        rule(true, Some(LinuxDeviceType::C), None, None, "m"),
        rule(true, Some(LinuxDeviceType::B), None, None, "m"),
        char_device(1, Some(3)), // /dev/null
        char_device(1, Some(5)), // /dev/zero
        char_device(1, Some(7)), // /dev/full
        char_device(1, Some(8)), // /dev/random
        char_device(1, Some(9)), // /dev/urandom
        char_device(5, Some(0)), // /dev/tty
        char_device(5, Some(1)), // /dev/console
        char_device(5, Some(2)), // /dev/ptmx
        char_device(136, None),  // /dev/pts/*
    ]
}
// ANCHOR_END: docker_rules

// ANCHOR: with_runtimes_own
/// `rules` as the cgroup gets them: the spec's, then (as runc appends its own) an allow rule
/// for each node the runtime itself makes, so that a spec denying everything still gets a
/// working `/dev` (chapter 1's six nodes and the pseudo-terminals). The nodes of
/// `linux.devices` get only what the spec's rules give them (`--device /dev/x:r`: read).
pub fn with_runtimes_own(rules: Vec<LinuxDeviceCgroup>) -> Vec<LinuxDeviceCgroup> {
    if rules.is_empty() {
        return rules; // no rules: the cgroup allows everything already
    }
    let allow = |typ: LinuxDeviceType, major: i64, minor: Option<i64>| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true).set_typ(Some(typ)).set_major(Some(major)).set_minor(minor).set_access(Some("rwm".to_string()));
        rule
    };
    let own = step01::rootfs::DEVICES.iter().map(|(_, major, minor)| allow(LinuxDeviceType::C, *major as i64, Some(*minor as i64)));
    let terminals = [allow(LinuxDeviceType::C, 5, Some(2)), allow(LinuxDeviceType::C, 136, None)];
    rules.into_iter().chain(own).chain(terminals).collect()
}
// ANCHOR_END: with_runtimes_own

/// A rule as cgroup v1 writes it: `c 1:3 rwm`, `a`, with `*` for any number.
pub fn v1_line(rule: &LinuxDeviceCgroup) -> String {
    let number = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
    match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A if rule.major().is_none() && rule.minor().is_none() => "a".to_string(),
        typ => format!("{} {}:{} {}", type_letter(typ), number(rule.major()), number(rule.minor()), rule.access().as_deref().unwrap_or("rwm")),
    }
}

fn type_letter(typ: LinuxDeviceType) -> &'static str {
    match typ {
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => "p",
        LinuxDeviceType::A => "a",
    }
}

// ANCHOR: restrict
/// Put `rules` on the container's cgroup, before its process goes on.
pub fn restrict(cgroup: &Cgroup, rules: &[LinuxDeviceCgroup], explain: &Explain) -> Result<()> {
    match cgroup.version {
        Version::V1 => {
            let dir = cgroup.dir("devices");
            explain.step(|| {
                Action::new(
                    CHAPTER,
                    format!("device rules for the container's cgroup: {} lines into {}", rules.len(), dir.display()),
                    "write(open(\"devices.deny\"), \"a\"); write(open(\"devices.allow\"), \"c 1:3 rwm\"); ...",
                )
                .shell(format!("echo a > {}/devices.deny; echo 'c 1:3 rwm' > {}/devices.allow; ...", dir.display(), dir.display()))
            });
            // Each file opened once; the kernel takes one rule per write.
            let open = |name: &str| {
                let path = dir.join(name);
                std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::runtime(format!("cannot open {}: {e}", path.display())))
            };
            let (mut allow, mut deny) = (open("devices.allow")?, open("devices.deny")?);
            for rule in rules {
                let (file, name) = if rule.allow() { (&mut allow, "devices.allow") } else { (&mut deny, "devices.deny") };
                std::io::Write::write_all(file, v1_line(rule).as_bytes()).map_err(|e| Error::runtime(format!("cannot write {:?} to {}: {e}", v1_line(rule), dir.join(name).display())))?;
            }
            Ok(())
        }
        Version::V2 => {
            let program = ebpf_program(rules)?;
            let dir = cgroup.directories().first().copied().ok_or_else(|| Error::runtime("the container has no cgroup directory to attach the device filter to"))?;
            attach(&program, dir, explain)
        }
    }
}
// ANCHOR_END: restrict

// ANCHOR: ebpf
/// One eBPF instruction (`struct bpf_insn`): opcode, two registers in one byte, a jump
/// offset, a constant.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbpfInstruction {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND64_K: u8 = 0x57; // dst &= imm
const RSH64_K: u8 = 0x77; // dst >>= imm
const MOV64_X: u8 = 0xbf; // dst = src
const MOV64_K: u8 = 0xb7; // dst = imm
const JNE_K: u8 = 0x55; // if dst != imm: skip off
const JNE_X: u8 = 0x5d; // if dst != src: skip off
const EXIT: u8 = 0x95; // return r0

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInstruction {
    EbpfInstruction { code, regs: dst | src << 4, off, imm }
}

/// The program for `rules`: r1 points at `struct bpf_cgroup_dev_ctx { u32 access_type; u32
/// major; u32 minor; }`. It reads the device's type (r2), the access asked for (r3: 1 mknod,
/// 2 read, 4 write), major (r4) and minor (r5), then tries the rules from the last to the
/// first: the first that matches answers (1 allow, 0 deny). No rule matches: allowed, as a
/// cgroup without rules is.
pub fn ebpf_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<EbpfInstruction>> {
    let mut program = vec![insn(LDX_W, 2, 1, 0, 0), insn(AND64_K, 2, 0, 0, 0xffff), insn(LDX_W, 3, 1, 0, 0), insn(RSH64_K, 3, 0, 0, 16), insn(LDX_W, 4, 1, 4, 0), insn(LDX_W, 5, 1, 8, 0)];
    for rule in rules.iter().rev() {
        let mut tests = Vec::new();
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => tests.push(insn(JNE_K, 2, 0, 0, 1)),                      // BPF_DEVCG_DEV_BLOCK
            LinuxDeviceType::C | LinuxDeviceType::U => tests.push(insn(JNE_K, 2, 0, 0, 2)), // BPF_DEVCG_DEV_CHAR
            LinuxDeviceType::P => continue,                                                 // a fifo is no device: the kernel never asks
        }
        let access = access_bits(rule.access().as_deref().unwrap_or("rwm"))?;
        if access != 0b111 {
            // The access asked for must be within the rule's: (r3 & rule) == r3.
            tests.extend([insn(MOV64_X, 1, 3, 0, 0), insn(AND64_K, 1, 0, 0, access), insn(JNE_X, 1, 3, 0, 0)]);
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            tests.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            tests.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        // Each test jumps over the rest of this rule when it fails: past the return.
        let len = tests.len();
        for (at, test) in tests.iter_mut().enumerate() {
            if test.code == JNE_K || test.code == JNE_X {
                test.off = (len - at - 1 + 2) as i16;
            }
        }
        let matches_everything = tests.is_empty();
        program.extend(tests);
        program.extend([insn(MOV64_K, 0, 0, 0, rule.allow() as i32), insn(EXIT, 0, 0, 0, 0)]);
        if matches_everything {
            // It answers every request: the rules before it could never be reached, and the
            // verifier refuses a program with instructions that cannot run.
            return Ok(program);
        }
    }
    program.extend([insn(MOV64_K, 0, 0, 0, 1), insn(EXIT, 0, 0, 0, 0)]);
    Ok(program)
}
// ANCHOR_END: ebpf

fn access_bits(access: &str) -> Result<i32> {
    access.chars().try_fold(0, |bits, c| match c {
        'm' => Ok(bits | 1),
        'r' => Ok(bits | 2),
        'w' => Ok(bits | 4),
        other => Err(Error::runtime(format!("a device rule's access {access:?} has {other:?}: use r, w and m"))),
    })
}

/// The `bpf(2)` attributes of BPF_PROG_LOAD, as far as this program needs them.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The attributes of BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf<T>(command: libc::c_long, attr: &T) -> std::result::Result<i64, Errno> {
    // Safety: attr is a live, initialised bpf_attr prefix of the size given.
    Errno::result(unsafe { libc::syscall(libc::SYS_bpf, command, attr as *const T, std::mem::size_of::<T>()) })
}

/// Load `program` into the kernel and attach it to the cgroup at `dir`. The attachment
/// keeps the program alive; it goes with the cgroup.
fn attach(program: &[EbpfInstruction], dir: &Path, explain: &Explain) -> Result<()> {
    explain.step(|| {
        Action::new(
            CHAPTER,
            format!("device rules for the container's cgroup: an eBPF program of {} instructions attached to {}", program.len(), dir.display()),
            "bpf(BPF_PROG_LOAD, CGROUP_DEVICE); bpf(BPF_PROG_ATTACH, cgroup fd)",
        )
        .shell(format!("bpftool cgroup show {}", dir.display()))
    });
    let program_fd = load(program)?;
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::runtime(format!("cannot open the cgroup {}: {e}", dir.display())))?;
    let attach = ProgAttach { target_fd: cgroup.as_raw_fd() as u32, attach_bpf_fd: program_fd.as_raw_fd() as u32, attach_type: BPF_CGROUP_DEVICE, attach_flags: BPF_F_ALLOW_MULTI };
    bpf(BPF_PROG_ATTACH, &attach).map_err(|errno| Error::syscall(format!("cannot attach the device filter to {}", dir.display()), errno))?;
    Ok(())
}

/// Load `program` into the kernel, whose verifier checks it first: a descriptor for it.
pub fn load(program: &[EbpfInstruction]) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"carton_device");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoad::default()
    };
    match bpf(BPF_PROG_LOAD, &load) {
        // Safety: bpf returned a new descriptor, owned here.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(errno) => {
            // Again, with the verifier's log: it says which instruction it refused, and why.
            let mut log = vec![0u8; 64 * 1024];
            let verbose = ProgLoad { log_level: 1, log_size: log.len() as u32, log_buf: log.as_mut_ptr() as u64, ..load };
            let _ = bpf(BPF_PROG_LOAD, &verbose);
            let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
            let last: Vec<&str> = text.lines().rev().take(3).collect();
            Err(Error::syscall(format!("cannot load the device filter (bpf BPF_PROG_LOAD; the verifier: {})", last.into_iter().rev().collect::<Vec<_>>().join(" / ")), errno))
        }
    }
}

/// The program as text, for the chapter and `step08-security devices`.
pub fn disassemble(program: &[EbpfInstruction]) -> String {
    let mut text = String::new();
    for (at, i) in program.iter().enumerate() {
        let (dst, src) = (i.regs & 0xf, i.regs >> 4);
        let line = match i.code {
            LDX_W => format!("r{dst} = *(u32 *)(r{src} + {})", i.off),
            AND64_K => format!("r{dst} &= {:#x}", i.imm),
            RSH64_K => format!("r{dst} >>= {}", i.imm),
            MOV64_X => format!("r{dst} = r{src}"),
            MOV64_K => format!("r{dst} = {}", i.imm),
            JNE_K => format!("if r{dst} != {} goto {}", i.imm, at as i64 + 1 + i.off as i64),
            JNE_X => format!("if r{dst} != r{src} goto {}", at as i64 + 1 + i.off as i64),
            EXIT => "exit".to_string(),
            code => format!("(opcode {code:#x})"),
        };
        text.push_str(&format!("{at:4}: {line}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel would answer: the program run on one request.
    fn run(program: &[EbpfInstruction], typ: u32, access: u32, major: u32, minor: u32) -> i64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[i.off as usize / 4] as i64,
                AND64_K => r[dst] &= i.imm as i64,
                RSH64_K => r[dst] >>= i.imm,
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64,
                JNE_K if r[dst] != i.imm as i64 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                code => panic!("opcode {code:#x}"),
            }
        }
    }

    const BLOCK: u32 = 1;
    const CHAR: u32 = 2;
    const MKNOD: u32 = 1;
    const READ: u32 = 2;
    const WRITE: u32 = 4;

    #[test]
    fn dockers_rules_let_a_disk_node_be_made_but_not_opened() {
        let program = ebpf_program(&docker_default()).unwrap();
        assert_eq!(run(&program, BLOCK, MKNOD, 254, 0), 1, "mknod /dev/vda");
        assert_eq!(run(&program, BLOCK, READ, 254, 0), 0, "open /dev/vda for reading");
        assert_eq!(run(&program, BLOCK, READ | WRITE, 8, 0), 0);
        assert_eq!(run(&program, CHAR, READ | WRITE, 1, 3), 1, "/dev/null");
        assert_eq!(run(&program, CHAR, READ, 136, 7), 1, "/dev/pts/7");
        assert_eq!(run(&program, CHAR, READ, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&program, CHAR, WRITE, 10, 200), 0, "/dev/net/tun");
    }

    #[test]
    fn later_rules_win_and_v1_lines_read_as_the_kernel_wants() {
        let mut rules = docker_default();
        let mut disk = LinuxDeviceCgroup::default();
        disk.set_allow(true).set_typ(Some(LinuxDeviceType::B)).set_major(Some(254)).set_minor(Some(0)).set_access(Some("r".into()));
        rules.push(disk.clone());
        let program = ebpf_program(&rules).unwrap();
        assert_eq!(run(&program, BLOCK, READ, 254, 0), 1);
        assert_eq!(run(&program, BLOCK, WRITE, 254, 0), 0);
        assert_eq!(rules.iter().map(v1_line).take(4).collect::<Vec<_>>(), ["a", "c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert_eq!(v1_line(&disk), "b 254:0 r");
        assert!(disassemble(&program).contains("exit"));
    }

    #[test]
    fn the_kernels_verifier_accepts_the_programs() {
        // Needs root (CAP_BPF or CAP_SYS_ADMIN), as the tests of this workspace do; loading
        // works on either cgroup version (only attaching needs v2).
        assert!(nix::unistd::geteuid().is_root(), "this test needs root: it loads eBPF programs into the kernel");
        let mut disk = LinuxDeviceCgroup::default();
        disk.set_allow(true).set_typ(Some(LinuxDeviceType::B)).set_major(Some(7)).set_access(Some("r".into()));
        for rules in [docker_default(), with_runtimes_own(vec![disk.clone()]), vec![disk]] {
            load(&ebpf_program(&rules).unwrap()).unwrap();
        }
    }

    #[test]
    fn a_bad_access_string_is_named() {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true).set_access(Some("rx".into()));
        assert!(ebpf_program(&[rule]).unwrap_err().message.contains("\"rx\" has 'x'"));
    }
}
