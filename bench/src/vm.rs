//! A small virtual machine's boot, timed the way the other benchmarks time a container's start.
//!
//! The course claims "a container starts in milliseconds, a VM in seconds". A container is a
//! process the host kernel already runs; a VM must boot a kernel of its own first: decompress
//! it, probe (emulated) hardware, unpack an initramfs, and only then run a first program. To make
//! the comparison fair to the VM, the guest here is the smallest useful one: the host
//! distribution's kernel, an initramfs that holds nothing but a static busybox, and an `/init`
//! that prints one line and powers the machine off. No disk, no network, no systemd.
//!
//! Where KVM works the guest runs on the real CPU; where it does not (no `/dev/kvm`, or a nested
//! PVM host that boots only PVM guest kernels) QEMU emulates the CPU in software (TCG), which is
//! several times slower. [`VmBoot::accel`] says which one gave the numbers, and why.

use anyhow::{anyhow, bail, Context, Result};
use std::cmp::Ordering;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The line `/init` prints: a run counts only if this reached the serial console.
const MARKER: &str = "carton-bench-vm: hello from a VM";
const GUEST_MEMORY_MIB: u64 = 128;
const INSTALL: &str = "install qemu-system-x86, linux-image-amd64 and busybox-static";

pub struct VmBoot {
    /// "KVM", or "software emulation (QEMU TCG): " + why not KVM (no /dev/kvm; /dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels; KVM boot failed: ...).
    pub accel: String,
    pub kernel: PathBuf,
    /// Wall time of each run: qemu started -> kernel boots -> /init runs a command -> power off -> qemu exited.
    pub runs: Vec<Duration>,
    /// The guest's memory size given to qemu (-m), MiB.
    pub guest_memory_mib: u64,
    /// The largest peak RSS (KiB) of a qemu process over the runs (from wait4's rusage of that child, ru_maxrss).
    pub qemu_max_rss_kib: u64,
    pub kernel_bytes: u64,
    pub initramfs_bytes: u64,
    /// Size of /lib/modules/<the kernel's version> (what a real VM disk carries beside the kernel), 0 if absent.
    pub modules_bytes: u64,
}

/// Boot a busybox VM `runs` times in `work` (a directory the caller owns and removes). An Err means "skipped" and its message says why and what to install (qemu-system-x86, linux-image-amd64, busybox-static).
pub fn measure(work: &Path, runs: usize, progress: &dyn Fn(&str)) -> Result<VmBoot> {
    let qemu = crate::lab::which("qemu-system-x86_64").ok_or_else(|| anyhow!("qemu-system-x86_64 is not on PATH ({INSTALL})"))?;
    let kernel = find_kernel()?;
    // Distributions install the kernel 0600 (root only): say so here rather than in qemu's words.
    File::open(&kernel).with_context(|| format!("cannot read the kernel {} (run as root, or set CARTON_BENCH_KERNEL)", kernel.display()))?;
    let busybox = find_static_busybox()?;
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let initramfs = work.join("initramfs.cpio");
    let file = File::create(&initramfs).with_context(|| format!("cannot create {}", initramfs.display()))?;
    write_initramfs(BufWriter::new(file), &busybox)?.flush()?;

    let mut tcg_reason = kvm_unusable();
    let modules_bytes = kernel_version(&kernel).map_or(0, |v| tree_bytes(&Path::new("/lib/modules").join(v)));
    let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
    let mut boot = VmBoot {
        accel: String::new(),
        kernel_bytes: size(&kernel),
        initramfs_bytes: size(&initramfs),
        modules_bytes,
        kernel,
        runs: Vec::with_capacity(runs),
        guest_memory_mib: GUEST_MEMORY_MIB,
        qemu_max_rss_kib: 0,
    };
    while boot.runs.len() < runs {
        let kvm = tcg_reason.is_none();
        progress(&format!("VM boot {}/{runs} ({})", boot.runs.len() + 1, if kvm { "KVM" } else { "software emulation" }));
        match boot_once(&qemu, &boot.kernel, &initramfs, kvm) {
            Ok((wall, rss_kib)) => {
                boot.runs.push(wall);
                boot.qemu_max_rss_kib = boot.qemu_max_rss_kib.max(rss_kib);
            }
            // KVM is only tried on the first run; if that fails, every run (this one again
            // included) uses software emulation, so that all the numbers are comparable.
            Err(e) if kvm && boot.runs.is_empty() => {
                // The short reason is the error's first clause, without the console output.
                let reason = format!("{e:#}");
                let short: String = reason.split(';').next().unwrap_or("").chars().take(160).collect();
                tcg_reason = Some(format!("KVM boot failed: {short}"));
            }
            Err(e) => return Err(e.context(format!("VM boot {} failed", boot.runs.len() + 1))),
        }
    }
    boot.accel = match tcg_reason {
        None => "KVM".to_string(),
        Some(why) => format!("software emulation (QEMU TCG): {why}"),
    };
    Ok(boot)
}

/// Why KVM cannot be used here, or None if it is worth a try.
fn kvm_unusable() -> Option<String> {
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        return Some("no /dev/kvm".into());
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open(dev) {
        return Some(format!("/dev/kvm cannot be opened ({e})"));
    }
    // PVM is a KVM for nested clouds: its guests must be built for it, a stock kernel just hangs
    // (until the timeout), so it is not even tried.
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Some("/dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels".into());
    }
    None
}

/// One boot: returns its wall time and qemu's peak RSS in KiB.
///
/// qemu is reaped with `wait4` rather than std's `Child::wait`, because only `wait4` also hands
/// back the child's resource usage (its peak RSS is the memory cost of this VM on the host). The
/// `Child` is therefore never waited on: after `wait4` reaped the pid, a `wait` or `kill` through
/// it could hit another process that got the same pid.
fn boot_once(qemu: &Path, kernel: &Path, initramfs: &Path, kvm: bool) -> Result<(Duration, u64)> {
    let timeout = Duration::from_secs(if kvm { 20 } else { 60 });
    let mut cmd = Command::new(qemu);
    // -nodefaults: no VGA, NIC, floppy or CD-ROM to emulate; -no-reboot: the guest's reboot
    // (panic=-1 turns a panic into one) ends qemu instead of booting again; -serial stdio: the
    // guest's console (ttyS0) is our pipe.
    cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-m", &GUEST_MEMORY_MIB.to_string(), "-smp", "1"])
        .args(["-accel", if kvm { "kvm" } else { "tcg" }])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1 rdinit=/init", "-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", qemu.display()))?;
    let pid = child.id() as libc::pid_t;
    // Read both pipes in threads, so that a chatty qemu never blocks on a full pipe.
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));

    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Poll with WNOHANG so that the same thread that reaps also kills on timeout (the pid cannot
    // be reused before it is reaped). The 1 ms sleep bounds the error of the wall time.
    let wall = loop {
        // SAFETY: plain syscall on our own child, with valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break start.elapsed();
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e).context("wait4 on qemu");
            }
        }
        if start.elapsed() > timeout {
            // SAFETY: the child is not reaped yet, so `pid` is still our qemu.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            let out = stdout.join().unwrap_or_default();
            bail!("qemu did not power off within {} s and was killed; serial console: {}", timeout.as_secs(), tail(&out));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("qemu failed (wait status {status:#x}): {}", tail(&err));
    }
    // A guest whose /init failed panics, and panic=-1 with -no-reboot also exits 0: the marker is
    // what tells a real boot from that. It is searched anywhere in a line, because the firmware's
    // terminal reset escapes (ESC c ...) come just before it, with no newline between.
    if !String::from_utf8_lossy(&out).lines().any(|l| l.contains(MARKER)) {
        bail!("the guest did not print {MARKER:?}; serial console: {} {}", tail(&out), tail(&err));
    }
    // ru_maxrss is in KiB on Linux.
    Ok((wall, usage.ru_maxrss.max(0) as u64))
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The last few hundred characters of some output, on one line and without the terminal's escape
/// sequences (SeaBIOS clears the screen with them), for an error message.
fn tail(bytes: &[u8]) -> String {
    let mut text = String::new();
    let mut chars = String::from_utf8_lossy(bytes).chars().collect::<Vec<_>>().into_iter().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-byte, or ESC and one character.
            if chars.next_if_eq(&'[').is_some() {
                while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
            } else {
                chars.next();
            }
        } else {
            text.push(if c.is_control() { ' ' } else { c });
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let skip = text.chars().count().saturating_sub(400);
    text.chars().skip(skip).collect()
}

/// CARTON_BENCH_KERNEL, or the newest /boot/vmlinuz-<version>.
fn find_kernel() -> Result<PathBuf> {
    if let Some(k) = std::env::var_os("CARTON_BENCH_KERNEL") {
        let k = PathBuf::from(k);
        return if k.is_file() { Ok(k) } else { Err(anyhow!("CARTON_BENCH_KERNEL={} is not a file", k.display())) };
    }
    let mut newest: Option<(String, PathBuf)> = None;
    for entry in fs::read_dir("/boot").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("vmlinuz-") {
            if newest.as_ref().is_none_or(|(best, _)| version_cmp(version, best) == Ordering::Greater) {
                newest = Some((version.to_string(), entry.path()));
            }
        }
    }
    newest.map(|(_, path)| path).ok_or_else(|| anyhow!("no kernel /boot/vmlinuz-* ({INSTALL}, or set CARTON_BENCH_KERNEL)"))
}

/// Compares versions the way `sort -V` does: runs of digits as numbers, so "6.1.0-9" < "6.1.0-57".
fn version_cmp(mut a: &str, mut b: &str) -> Ordering {
    fn chunk(s: &str) -> (&str, &str) {
        let digits = s.starts_with(|c: char| c.is_ascii_digit());
        s.split_at(s.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(s.len()))
    }
    while !a.is_empty() && !b.is_empty() {
        let ((x, rest_a), (y, rest_b)) = (chunk(a), chunk(b));
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
    a.len().cmp(&b.len())
}

fn kernel_version(kernel: &Path) -> Option<String> {
    Some(kernel.file_name()?.to_str()?.strip_prefix("vmlinuz-")?.to_string())
}

/// Total size of the files under `dir`, symlinks not followed (0 if it does not exist).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match fs::symlink_metadata(e.path()) {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// The busybox binary, checked to be a statically linked x86-64 program: the initramfs has no
/// libc and no dynamic loader, so a dynamically linked busybox would fail to exec as /init.
fn find_static_busybox() -> Result<Vec<u8>> {
    let path = Some(PathBuf::from("/bin/busybox")).filter(|p| p.is_file()).or_else(|| crate::lab::which("busybox")).ok_or_else(|| anyhow!("no busybox ({INSTALL})"))?;
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    check_static_elf(&bytes).with_context(|| format!("{} cannot be the guest's only program ({INSTALL})", path.display()))?;
    Ok(bytes)
}

fn check_static_elf(elf: &[u8]) -> Result<()> {
    const PT_INTERP: u32 = 3;
    const EM_X86_64: u16 = 62;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if !elf.starts_with(b"\x7fELF") || elf.len() < 64 {
        bail!("not an ELF executable");
    }
    if elf[4] != 2 || elf[5] != 1 || u16_at(0x12) != Some(EM_X86_64) {
        bail!("not a 64-bit x86-64 ELF executable");
    }
    // The program headers (e_phoff, e_phentsize, e_phnum): a PT_INTERP one names the dynamic loader.
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, count) = (u16_at(0x36).unwrap_or(0) as usize, u16_at(0x38).unwrap_or(0) as usize);
    for i in 0..count {
        let at = phoff.saturating_add(i * entsize);
        let Some(kind) = elf.get(at..at.saturating_add(4)) else { bail!("truncated ELF program headers") };
        if u32::from_le_bytes(kind.try_into().unwrap()) == PT_INTERP {
            bail!("it is dynamically linked (it has a PT_INTERP program header)");
        }
    }
    Ok(())
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes the initramfs: the whole root filesystem of the guest.
///
/// /dev/console is there because the kernel opens it for /init's stdin, stdout and stderr before
/// anything could mount a devtmpfs; without it the marker would go nowhere.
fn write_initramfs<W: Write>(out: W, busybox: &[u8]) -> io::Result<W> {
    let init = format!("#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo '{MARKER}'\n/bin/busybox poweroff -f\n");
    let mut cpio = Newc { out, written: 0, ino: 0 };
    for dir in [".", "bin", "proc", "sys", "dev"] {
        cpio.entry(dir, S_IFDIR | 0o755, (0, 0), b"")?;
    }
    cpio.entry("dev/console", S_IFCHR | 0o600, (5, 1), b"")?;
    cpio.entry("bin/busybox", S_IFREG | 0o755, (0, 0), busybox)?;
    cpio.entry("bin/sh", S_IFLNK | 0o777, (0, 0), b"busybox")?;
    cpio.entry("init", S_IFREG | 0o755, (0, 0), init.as_bytes())?;
    cpio.entry("TRAILER!!!", 0, (0, 0), b"")?;
    Ok(cpio.out)
}

/// The "new ASCII" cpio format (magic 070701), the only one the kernel unpacks an initramfs from.
/// Each entry is a 110-byte header of hexadecimal fields, the NUL-terminated name, then the data
/// (a symlink's data is its target); header+name and data are each padded to 4 bytes.
struct Newc<W: Write> {
    out: W,
    written: usize,
    ino: u32,
}

impl<W: Write> Newc<W> {
    fn entry(&mut self, name: &str, mode: u32, (rdev_major, rdev_minor): (u32, u32), data: &[u8]) -> io::Result<()> {
        self.ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
        let fields = [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev_major, rdev_minor, name.len() as u32 + 1, 0];
        let header: String = fields.iter().map(|f| format!("{f:08X}")).collect();
        self.write(b"070701")?;
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(b"\0")?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written += bytes.len();
        self.out.write_all(bytes)
    }

    fn pad(&mut self) -> io::Result<()> {
        let zeros = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..zeros])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// name, mode, (rdev major, rdev minor), data
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Parses a newc archive back: each entry before the trailer.
    fn parse(mut a: &[u8]) -> Vec<Entry> {
        let total = a.len();
        let mut entries = Vec::new();
        loop {
            assert_eq!(&a[..6], b"070701", "magic at offset {}", total - a.len());
            let field = |i: usize| u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (mode, size, rdev, namesize) = (field(1), field(6) as usize, (field(9), field(10)), field(11) as usize);
            assert_eq!(a[110 + namesize - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(a[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = a[data_at..data_at + size].to_vec();
            a = &a[(data_at + size).next_multiple_of(4)..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty() && total.is_multiple_of(4));
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn initramfs_is_a_valid_newc_archive() {
        let archive = write_initramfs(Vec::new(), b"\x7fELF fake busybox").unwrap();
        let entries = parse(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, [".", "bin", "proc", "sys", "dev", "dev/console", "bin/busybox", "bin/sh", "init"]);
        let find = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(find("dev/console").1, S_IFCHR | 0o600);
        assert_eq!(find("dev/console").2, (5, 1));
        assert_eq!(find("bin/busybox").3, b"\x7fELF fake busybox");
        assert_eq!((find("bin/sh").1, find("bin/sh").3.as_slice()), (S_IFLNK | 0o777, &b"busybox"[..]));
        let init = String::from_utf8(find("init").3.clone()).unwrap();
        assert!(init.starts_with("#!/bin/busybox sh\n") && init.contains(MARKER) && init.contains("poweroff -f"));
        assert_eq!(find("init").1, S_IFREG | 0o755);

        // And the reference implementation agrees, where it is installed.
        if let Some(cpio) = crate::lab::which("cpio") {
            let mut child = Command::new(cpio).args(["-t", "--quiet"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(&archive).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            assert_eq!(String::from_utf8(out.stdout).unwrap().lines().collect::<Vec<_>>(), names);
        }
    }

    #[test]
    fn newest_kernel_sorts_versions_numerically() {
        assert_eq!(version_cmp("6.1.0-9-amd64", "6.1.0-57-amd64"), Ordering::Less);
        assert_eq!(version_cmp("6.10.0-1-amd64", "6.9.0-1-amd64"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0-57-amd64", "6.1.0-57-amd64"), Ordering::Equal);
        assert_eq!(version_cmp("6.1.0", "6.1.0-1"), Ordering::Less);
        assert_eq!(kernel_version(Path::new("/boot/vmlinuz-6.1.0-57-amd64")).as_deref(), Some("6.1.0-57-amd64"));
    }

    #[test]
    fn static_elf_check() {
        assert!(check_static_elf(b"#!/bin/sh\n").is_err());
        assert_eq!(tail(b"\x1bc\x1b[?7l\x1b[2JBooting from ROM..\r\n\x1b[0mhello\r\n"), "Booting from ROM.. hello");
        // A dynamically linked program has a PT_INTERP header.
        if let Ok(ls) = fs::read("/bin/ls") {
            assert!(check_static_elf(&ls).unwrap_err().to_string().contains("dynamically linked"));
        }
    }

    /// Boots for real (needs qemu, a kernel, busybox-static, and root to read the kernel):
    /// `cargo test -p carton-bench vm -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn boots_a_vm() {
        let work = tempfile::tempdir().unwrap();
        let boot = measure(work.path(), 2, &|m| eprintln!("{m}")).unwrap();
        println!("accel: {}\nkernel: {} ({} bytes)", boot.accel, boot.kernel.display(), boot.kernel_bytes);
        println!("runs: {:?}\nguest memory: {} MiB, qemu peak RSS: {} KiB", boot.runs, boot.guest_memory_mib, boot.qemu_max_rss_kib);
        println!("initramfs: {} bytes, modules: {} bytes", boot.initramfs_bytes, boot.modules_bytes);
    }
}
