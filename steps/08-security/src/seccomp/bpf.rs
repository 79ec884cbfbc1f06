//! From the spec's `linux.seccomp` to a classic BPF program, by hand.
//!
//! The kernel runs the program on every system call the container makes. Its input is a
//! `struct seccomp_data`: the call's number (offset 0), the architecture (offset 4), the
//! instruction pointer (8) and six 64-bit arguments (16, 24, ... 56). It has two 32-bit
//! registers (the accumulator `A`, which this compiler uses alone, and the index `X`), loads
//! 32 bits at a time, compares, jumps forward only, and ends by returning an action: allow,
//! an error number, kill. No loops: the kernel checks that it ends.
//!
//! carton writes the compiler itself (libseccomp does this for runc and crun) because the
//! chapter teaches it and it is small: a check of the architecture, then a binary search
//! over runs of consecutive call numbers that share an action, then for a call with
//! conditions the tests on its arguments, then the default action. `step08-security
//! seccomp` prints the program it makes.

use std::collections::BTreeSet;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompOperator as Op};
use step01::{Error, Result};

use super::syscalls;

// ANCHOR: instruction
/// One instruction, as `struct sock_filter` lays it out: what to do, where to jump when a
/// comparison is true (`jt`) or false (`jf`), counted in instructions after this one, and
/// the constant `k` it works with.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// The opcodes this compiler uses, from their parts (<linux/bpf_common.h>).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00; // a 32-bit word
const BPF_ABS: u16 = 0x20; // at a fixed offset of the input
const BPF_K: u16 = 0x00; // with the constant k
const LD_W_ABS: u16 = BPF_LD | BPF_W | BPF_ABS; // A = the 32 bits of seccomp_data at k
const ALU_AND_K: u16 = BPF_ALU | 0x50 | BPF_K; // A &= k
const JMP_JA: u16 = BPF_JMP; // jump k forward (BPF_JA is 0)
const JMP_JEQ_K: u16 = BPF_JMP | 0x10 | BPF_K; // if A == k
const JMP_JGT_K: u16 = BPF_JMP | 0x20 | BPF_K; // if A > k
const JMP_JGE_K: u16 = BPF_JMP | 0x30 | BPF_K; // if A >= k
const RET_K: u16 = BPF_RET | BPF_K; // end, with the action k
                                    // ANCHOR_END: instruction

/// Where things are in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_low(index: usize) -> u32 {
    16 + 8 * index as u32 // little-endian: the low half first (x86_64 and aarch64 both are)
}

// The actions a program returns (<linux/seccomp.h>).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// On x86_64, system call numbers with this bit are the x32 ABI's: not this filter's.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The architecture carton runs on, as seccomp names it (`AUDIT_ARCH_*`).
pub fn native_arch() -> Result<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(Arch::ScmpArchX86_64),
        "aarch64" => Ok(Arch::ScmpArchAarch64),
        other => Err(Error::runtime(format!("carton compiles seccomp filters for x86_64 and aarch64, not {other}: run with --security-opt seccomp=unconfined (or without linux.seccomp)"))),
    }
}

/// The number of the system call `name` on `arch`, if it has one there.
pub fn syscall_number(arch: Arch, name: &str) -> Option<u32> {
    let table = match arch {
        Arch::ScmpArchX86_64 => syscalls::X86_64,
        Arch::ScmpArchAarch64 => syscalls::AARCH64,
        _ => return None,
    };
    // The tables are sorted by name (gen-syscalls.sh): a profile names some 400 calls.
    table.binary_search_by(|(known, _)| (*known).cmp(name)).ok().map(|at| table[at].1)
}

/// The value a program returns for `action` (with `errno` for the actions that carry one).
pub fn action_value(action: Action, errno: u32) -> Result<u32> {
    Ok(match action {
        Action::ScmpActAllow => RET_ALLOW,
        Action::ScmpActErrno => RET_ERRNO | (errno & 0xffff),
        Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
        Action::ScmpActKillProcess => RET_KILL_PROCESS,
        Action::ScmpActTrap => RET_TRAP,
        Action::ScmpActTrace => RET_TRACE | (errno & 0xffff),
        Action::ScmpActLog => RET_LOG,
        Action::ScmpActNotify => return Err(Error::runtime("a seccomp rule asks for SCMP_ACT_NOTIFY, which needs a seccomp agent (listenerPath): carton does not support one; use another action")),
    })
}

/// A jump's target while a rule is assembled: `Skip(n)` instructions ahead, or past the
/// rule's own return, to the next rule (`Fail`).
#[derive(Clone, Copy)]
enum To {
    Skip(u8),
    Fail,
}

/// An instruction of a rule before its jumps are resolved.
#[derive(Clone, Copy)]
struct Pending {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn load(offset: u32) -> Pending {
    Pending { code: LD_W_ABS, k: offset, jt: To::Skip(0), jf: To::Skip(0) }
}

fn and(mask: u32) -> Pending {
    Pending { code: ALU_AND_K, k: mask, jt: To::Skip(0), jf: To::Skip(0) }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Pending {
    Pending { code, k, jt, jf }
}

// ANCHOR: condition
/// One condition on a 64-bit argument, in 32-bit steps: the high halves decide unless they
/// are equal, then the low halves do. Falls through when it holds, jumps to `Fail` when not.
fn condition(arg: &LinuxSeccompArg) -> Result<Vec<Pending>> {
    let index = arg.index();
    if index > 5 {
        return Err(Error::runtime(format!("a seccomp rule compares argument {index}: system calls have arguments 0 to 5")));
    }
    let (low, high) = (arg_low(index), arg_low(index) + 4);
    let split = |value: u64| ((value >> 32) as u32, value as u32);
    let (v_high, v_low) = split(arg.value());
    use To::{Fail, Skip};
    Ok(match arg.op() {
        Op::ScmpCmpEq => vec![load(high), jump(JMP_JEQ_K, v_high, Skip(0), Fail), load(low), jump(JMP_JEQ_K, v_low, Skip(0), Fail)],
        // Holds when either half differs.
        Op::ScmpCmpNe => vec![load(high), jump(JMP_JEQ_K, v_high, Skip(0), Skip(2)), load(low), jump(JMP_JEQ_K, v_low, Fail, Skip(0))],
        // `value` is the mask, `valueTwo` what the masked argument must be.
        Op::ScmpCmpMaskedEq => {
            let (want_high, want_low) = split(arg.value_two().unwrap_or(0));
            vec![load(high), and(v_high), jump(JMP_JEQ_K, want_high, Skip(0), Fail), load(low), and(v_low), jump(JMP_JEQ_K, want_low, Skip(0), Fail)]
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let low_test = if arg.op() == Op::ScmpCmpGt { JMP_JGT_K } else { JMP_JGE_K };
            vec![load(high), jump(JMP_JGT_K, v_high, Skip(3), Skip(0)), jump(JMP_JEQ_K, v_high, Skip(0), Fail), load(low), jump(low_test, v_low, Skip(0), Fail)]
        }
        // Less than is "not greater or equal"; less or equal is "not greater".
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let low_test = if arg.op() == Op::ScmpCmpLt { JMP_JGE_K } else { JMP_JGT_K };
            vec![load(high), jump(JMP_JGT_K, v_high, Fail, Skip(0)), jump(JMP_JEQ_K, v_high, Skip(0), Skip(2)), load(low), jump(low_test, v_low, Fail, Skip(0))]
        }
    })
}
// ANCHOR_END: condition

/// One rule: its conditions (all must hold), then its action; `Fail` jumps resolved to the
/// instruction after the action.
fn rule(conditions: &[LinuxSeccompArg], action: u32) -> Result<Vec<Instruction>> {
    let mut pending = Vec::new();
    for arg in conditions {
        pending.extend(condition(arg)?);
    }
    let len = pending.len();
    let resolve = |to: To, at: usize| -> Result<u8> {
        match to {
            To::Skip(n) => Ok(n),
            To::Fail => u8::try_from(len - at).map_err(|_| Error::runtime("a seccomp rule has too many conditions for one filter jump (255 instructions)")),
        }
    };
    let mut code = pending.iter().enumerate().map(|(at, p)| Ok(Instruction { code: p.code, jt: resolve(p.jt, at)?, jf: resolve(p.jf, at)?, k: p.k })).collect::<Result<Vec<_>>>()?;
    code.push(Instruction { code: RET_K, jt: 0, jf: 0, k: action });
    Ok(code)
}

/// The rules of one system call, in the profile's order: the first that holds decides.
struct Call {
    number: u32,
    rules: Vec<(Vec<LinuxSeccompArg>, u32)>,
}

/// Each system call the profile names, with its rules. Names this architecture does not
/// have (Docker's profile lists 32-bit ones such as `chown32`) are left out, as runc does;
/// so are rules whose action is the default one (they change nothing).
fn calls(seccomp: &LinuxSeccomp, arch: Arch, default: u32) -> Result<Vec<Call>> {
    let mut calls: Vec<Call> = Vec::new();
    let mut index: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for syscall in seccomp.syscalls().as_deref().unwrap_or_default() {
        let action = action_value(syscall.action(), syscall.errno_ret().unwrap_or(libc::EPERM as u32))?;
        if action == default {
            continue;
        }
        let args = syscall.args().clone().unwrap_or_default();
        // Conditions on one argument index given twice are alternatives (runc's reading):
        // one rule each. Otherwise all of them make one rule.
        let indexes: BTreeSet<usize> = args.iter().map(|a| a.index()).collect();
        let rules: Vec<Vec<LinuxSeccompArg>> = if indexes.len() < args.len() { args.iter().map(|a| vec![*a]).collect() } else { vec![args] };
        for name in syscall.names() {
            let Some(number) = syscall_number(arch, name) else { continue };
            let at = *index.entry(number).or_insert_with(|| {
                calls.push(Call { number, rules: Vec::new() });
                calls.len() - 1
            });
            calls[at].rules.extend(rules.iter().map(|conditions| (conditions.clone(), action)));
        }
    }
    Ok(calls)
}

// ANCHOR: compile
/// The program for `seccomp` on `arch`: any other architecture (a 32-bit program, x32) is
/// killed; each system call the profile names gets its rules; everything else the default.
pub fn compile(seccomp: &LinuxSeccomp, arch: Arch) -> Result<Vec<Instruction>> {
    let default = action_value(seccomp.default_action(), seccomp.default_errno_ret().unwrap_or(libc::EPERM as u32))?;
    let mut program = vec![op(LD_W_ABS, ARCH, 0, 0), op(JMP_JEQ_K, arch as u32, 1, 0), ret(RET_KILL_PROCESS), op(LD_W_ABS, NR, 0, 0)];
    if arch == Arch::ScmpArchX86_64 {
        program.extend([op(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1), ret(RET_KILL_PROCESS)]);
    }
    let mut calls = calls(seccomp, arch, default)?;
    calls.sort_by_key(|call| call.number);
    program.extend(search(&entries(&calls), default)?);
    if program.len() > 4096 {
        return Err(Error::runtime(format!("the seccomp profile compiles to {} instructions; the kernel takes at most 4096", program.len())));
    }
    Ok(program)
}

/// What the search finds: a run of consecutive call numbers with one action and no
/// conditions (Docker's profile allows dozens in a row: `read`, `write`, `open`, ...), or
/// one call with conditions on its arguments.
enum Entry<'a> {
    Run { first: u32, last: u32, action: u32 },
    Conditional(&'a Call),
}

impl Entry<'_> {
    fn first(&self) -> u32 {
        match self {
            Entry::Run { first, .. } => *first,
            Entry::Conditional(call) => call.number,
        }
    }
}

fn entries(calls: &[Call]) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry> = Vec::new();
    for call in calls {
        match (&call.rules[..], entries.last_mut()) {
            ([(conditions, action)], Some(Entry::Run { last, action: run_action, .. })) if conditions.is_empty() && *action == *run_action && call.number == *last + 1 => *last = call.number,
            ([(conditions, action)], _) if conditions.is_empty() => entries.push(Entry::Run { first: call.number, last: call.number, action: *action }),
            _ => entries.push(Entry::Conditional(call)),
        }
    }
    entries
}

/// The entries (sorted by number) as a binary search on `nr`: a few comparisons lead to a
/// short list of tests, instead of hundreds of them in a row. The kernel runs the filter on
/// every system call, and once per call number when it loads it (to learn which calls it
/// may let through without running the filter at all).
fn search(entries: &[Entry], default: u32) -> Result<Vec<Instruction>> {
    if entries.len() <= 4 {
        let mut code = Vec::new();
        for entry in entries {
            match entry {
                Entry::Run { first, last, action } if first == last => code.extend([op(JMP_JEQ_K, *first, 0, 1), ret(*action)]),
                // `if nr > last: next entry; if nr >= first: the action`.
                Entry::Run { first, last, action } => code.extend([op(JMP_JGT_K, *last, 2, 0), op(JMP_JGE_K, *first, 0, 1), ret(*action)]),
                Entry::Conditional(call) => {
                    let mut block = Vec::new();
                    for (conditions, action) in &call.rules {
                        block.extend(rule(conditions, *action)?);
                    }
                    block.push(ret(default)); // no rule held (the argument registers are loaded now)
                    code.extend([op(JMP_JEQ_K, call.number, 1, 0), op(JMP_JA, block.len() as u32, 0, 0)]);
                    code.extend(block);
                }
            }
        }
        code.push(ret(default));
        return Ok(code);
    }
    // `if nr >= middle goto upper half`; a conditional jump reaches 255 instructions at
    // most, so it jumps to a `goto`, which reaches anywhere.
    let (lower, upper) = entries.split_at(entries.len() / 2);
    let lower = search(lower, default)?;
    let mut code = vec![op(JMP_JGE_K, upper[0].first(), 0, 1), op(JMP_JA, lower.len() as u32, 0, 0)];
    code.extend(lower);
    code.extend(search(upper, default)?);
    Ok(code)
}

fn ret(k: u32) -> Instruction {
    Instruction { code: RET_K, jt: 0, jf: 0, k }
}

fn op(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}
// ANCHOR_END: compile

/// The program as text, one instruction a line, in the style of `bpf_dbg`/`seccomp-tools`.
pub fn disassemble(program: &[Instruction], arch: Arch) -> String {
    let name_of = |number: u32| {
        let table = if arch == Arch::ScmpArchAarch64 { syscalls::AARCH64 } else { syscalls::X86_64 };
        table.iter().find(|(_, n)| *n == number).map(|(name, _)| *name)
    };
    let mut text = String::new();
    let mut loaded = NR;
    for (at, i) in program.iter().enumerate() {
        let target = |skip: u8| at + 1 + skip as usize;
        let line = match i.code {
            LD_W_ABS => {
                loaded = i.k;
                let what = match i.k {
                    NR => "nr".to_string(),
                    ARCH => "arch".to_string(),
                    k => format!("args[{}] {}", (k - 16) / 8, if k % 8 == 0 { "low" } else { "high" }),
                };
                format!("A = {what}")
            }
            ALU_AND_K => format!("A &= {:#x}", i.k),
            JMP_JA => format!("goto {}", at + 1 + i.k as usize),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let test = match i.code {
                    JMP_JEQ_K => "==",
                    JMP_JGT_K => ">",
                    _ => ">=",
                };
                let value = match (loaded, name_of(i.k)) {
                    (NR, Some(name)) => format!("{} ({name})", i.k),
                    _ => format!("{:#x}", i.k),
                };
                format!("if A {test} {value} goto {} else goto {}", target(i.jt), target(i.jf))
            }
            RET_K => {
                loaded = NR; // what follows a return is reached by a jump from where A is nr
                format!("return {}", describe(i.k))
            }
            code => format!("(opcode {code:#x})"),
        };
        text.push_str(&format!("{at:4}: {line}\n"));
    }
    text
}

/// An action value in words.
fn describe(value: u32) -> String {
    match value & 0xffff_0000 {
        RET_ALLOW => "ALLOW".into(),
        RET_ERRNO => format!("ERRNO({})", value & 0xffff),
        RET_KILL_PROCESS => "KILL_PROCESS".into(),
        RET_KILL_THREAD => "KILL_THREAD".into(),
        RET_TRAP => "TRAP".into(),
        RET_TRACE => format!("TRACE({})", value & 0xffff),
        RET_LOG => "LOG".into(),
        _ => format!("{value:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    /// A small interpreter of the instructions the compiler emits: what the kernel does.
    fn run(program: &[Instruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap()),
                ALU_AND_K => a &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                    let holds = match i.code {
                        JMP_JEQ_K => a == i.k,
                        JMP_JGT_K => a > i.k,
                        _ => a >= i.k,
                    };
                    pc += if holds { i.jt } else { i.jf } as usize;
                }
                RET_K => return i.k,
                code => panic!("unexpected opcode {code:#x}"),
            }
        }
    }

    fn profile(op: Op, value: u64, value_two: Option<u64>) -> LinuxSeccomp {
        let mut arg = LinuxSeccompArgBuilder::default().index(1usize).value(value).op(op);
        if let Some(two) = value_two {
            arg = arg.value_two(two);
        }
        let rule = LinuxSyscallBuilder::default().names(vec!["read".to_string()]).action(Action::ScmpActAllow).args(vec![arg.build().unwrap()]).build().unwrap();
        let plain = LinuxSyscallBuilder::default().names(vec!["write".to_string(), "chown32".to_string()]).action(Action::ScmpActAllow).build().unwrap();
        LinuxSeccompBuilder::default().default_action(Action::ScmpActErrno).default_errno_ret(1u32).syscalls(vec![rule, plain]).build().unwrap()
    }

    const X86: u32 = Arch::ScmpArchX86_64 as u32;
    const READ: u32 = 0;
    const WRITE: u32 = 1;
    const EPERM: u32 = RET_ERRNO | 1;

    #[test]
    fn each_comparison_holds_exactly_where_it_should_across_both_halves() {
        let values = [0u64, 1, 5, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0005, u64::MAX];
        type Holds = fn(u64, u64) -> bool;
        let ops: [(Op, Holds); 6] = [
            (Op::ScmpCmpEq, |a, b| a == b),
            (Op::ScmpCmpNe, |a, b| a != b),
            (Op::ScmpCmpGt, |a, b| a > b),
            (Op::ScmpCmpGe, |a, b| a >= b),
            (Op::ScmpCmpLt, |a, b| a < b),
            (Op::ScmpCmpLe, |a, b| a <= b),
        ];
        for (op, holds) in ops {
            for &value in &values {
                let program = compile(&profile(op, value, None), Arch::ScmpArchX86_64).unwrap();
                for &arg in &values {
                    let want = if holds(arg, value) { RET_ALLOW } else { EPERM };
                    assert_eq!(run(&program, X86, READ, [0, arg, 0, 0, 0, 0]), want, "{op:?}: arg {arg:#x} against {value:#x}");
                }
            }
        }
    }

    #[test]
    fn masked_equality_tests_only_the_masked_bits() {
        // Docker's rule for clone: no namespace flag among the arguments.
        let program = compile(&profile(Op::ScmpCmpMaskedEq, 0x7E02_0000, Some(0)), Arch::ScmpArchX86_64).unwrap();
        assert_eq!(run(&program, X86, READ, [0, 0x0001_1200, 0, 0, 0, 0]), RET_ALLOW); // a thread's flags
        assert_eq!(run(&program, X86, READ, [0, 0x1000_0000, 0, 0, 0, 0]), EPERM);
        // CLONE_NEWUSER
    }

    #[test]
    fn unnamed_calls_get_the_default_and_foreign_architectures_are_killed() {
        let program = compile(&profile(Op::ScmpCmpEq, 0, None), Arch::ScmpArchX86_64).unwrap();
        assert_eq!(run(&program, X86, WRITE, [0; 6]), RET_ALLOW);
        assert_eq!(run(&program, X86, 83, [0; 6]), EPERM); // mkdir
        assert_eq!(run(&program, Arch::ScmpArchX86 as u32, WRITE, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&program, X86, X32_SYSCALL_BIT | WRITE, [0; 6]), RET_KILL_PROCESS);
        assert!(disassemble(&program, Arch::ScmpArchX86_64).contains("if A == 1 (write) goto"), "{}", disassemble(&program, Arch::ScmpArchX86_64));
    }

    #[test]
    fn dockers_profile_as_a_search_tree_answers_each_call_as_a_list_would() {
        use crate::seccomp::profile::docker_default;
        let seccomp = docker_default().resolve(crate::capabilities::DOCKER_DEFAULT, Arch::ScmpArchX86_64).unwrap();
        let program = compile(&seccomp, Arch::ScmpArchX86_64).unwrap();
        let nr = |name: &str| syscall_number(Arch::ScmpArchX86_64, name).unwrap();
        // Every call the profile allows without conditions is allowed, wherever it sits in the tree.
        for syscall in seccomp.syscalls().as_deref().unwrap().iter().filter(|s| s.action() == Action::ScmpActAllow && s.args().is_none()) {
            for name in syscall.names().iter().filter(|n| syscall_number(Arch::ScmpArchX86_64, n).is_some()) {
                assert_eq!(run(&program, X86, nr(name), [0; 6]), RET_ALLOW, "{name}");
            }
        }
        for refused in ["mount", "unshare", "keyctl", "kexec_load", "bpf", "add_key", "userfaultfd", "open_by_handle_at"] {
            assert_eq!(run(&program, X86, nr(refused), [0; 6]), EPERM, "{refused}");
        }
        assert_eq!(run(&program, X86, nr("clone3"), [0; 6]), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(run(&program, X86, nr("clone"), [0x0001_1200, 0, 0, 0, 0, 0]), RET_ALLOW, "a thread or a fork");
        assert_eq!(run(&program, X86, nr("clone"), [0x1000_0000, 0, 0, 0, 0, 0]), EPERM, "CLONE_NEWUSER");
        assert_eq!(run(&program, X86, nr("personality"), [0x8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&program, X86, nr("personality"), [0x40_0000, 0, 0, 0, 0, 0]), EPERM, "READ_IMPLIES_EXEC");
        assert_eq!(run(&program, X86, nr("socket"), [40, 0, 0, 0, 0, 0]), EPERM, "AF_VSOCK");
        assert_eq!(run(&program, X86, 1000, [0; 6]), EPERM, "a number no kernel has yet");
    }

    #[test]
    fn the_tables_are_sorted_by_name_for_the_binary_search() {
        for table in [syscalls::X86_64, syscalls::AARCH64] {
            assert!(table.windows(2).all(|pair| pair[0].0 < pair[1].0));
        }
        assert_eq!(syscall_number(Arch::ScmpArchX86_64, "openat"), Some(257));
        assert_eq!(syscall_number(Arch::ScmpArchAarch64, "openat"), Some(56));
        assert_eq!(syscall_number(Arch::ScmpArchAarch64, "open"), None, "aarch64 has only openat");
    }

    #[test]
    fn notify_is_refused_with_a_reason() {
        let error = action_value(Action::ScmpActNotify, 0).unwrap_err();
        assert!(error.message.contains("seccomp agent"), "{}", error.message);
    }
}
