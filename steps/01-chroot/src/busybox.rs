//! The base root filesystem, made offline from the host's static busybox.
//!
//! One static executable that is ~300 programs (`ls`, `sh`, `httpd`, ...) plus a few
//! files is enough for every chapter. The material is a plain list of [`Entry`]s, so
//! it can be written to a directory now and into an image layer (a tar) in step 06.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Where Debian and Ubuntu's `busybox-static` package puts the program.
pub const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// One file-system entry of the base root filesystem. Paths are relative to its `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { path: PathBuf, mode: u32 },
    File { path: PathBuf, mode: u32, contents: Contents },
    Symlink { path: PathBuf, target: PathBuf },
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    Bytes(Vec<u8>),
    /// A file of the host, copied as it is.
    HostFile(PathBuf),
}

/// The material of the base root filesystem.
#[derive(Debug, Clone)]
pub struct BaseRootfs {
    pub entries: Vec<Entry>,
    /// What `busybox` prints as its version, e.g. `BusyBox v1.35.0 (Debian 1:1.35.0-4+b3)`.
    pub busybox_version: String,
    pub applets: usize,
}

// ANCHOR: passwd
const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
";

const GROUP: &str = "\
root:x:0:
daemon:x:1:
tty:x:5:
www-data:x:33:
nobody:x:65534:
";
// ANCHOR_END: passwd

/// Find the host's busybox: `CARTON_BUSYBOX` if set, else the package's place.
/// It must be statically linked, since the root filesystem has no C library.
pub fn find_static_busybox() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CARTON_BUSYBOX") {
        Some(path) => vec![PathBuf::from(path)],
        None => BUSYBOX_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        return Err(Error::runtime(format!(
            "no busybox found at {}; install it with `apt-get install busybox-static` (or set CARTON_BUSYBOX to a static busybox)",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
        )));
    };
    match elf_interpreter(found) {
        Ok(None) => Ok(found.clone()),
        Ok(Some(interp)) => Err(Error::runtime(format!(
            "{} is dynamically linked (it needs {interp}), so it cannot run in a root filesystem without a C library; \
             install the static build with `apt-get install busybox-static`",
            found.display()
        ))),
        Err(why) => Err(Error::runtime(format!("{} is not a usable busybox: {why}", found.display()))),
    }
}

// ANCHOR: static_check
/// The dynamic loader an ELF program asks for (its `PT_INTERP` header), or `None` for a
/// static program. Reads the ELF headers by hand: 64-bit little-endian only.
pub fn elf_interpreter(path: &Path) -> std::result::Result<Option<String>, String> {
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_end(&mut bytes)).map_err(|e| e.to_string())?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF program".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF program".into());
    }
    // Every offset comes from the file itself: read through `field`, which never
    // overflows or reads past the end.
    let field = |at: usize, len: usize| at.checked_add(len).and_then(|end| bytes.get(at..end));
    let u64_at = |at: usize| field(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize; // inside the 64-byte header
    let truncated = || "truncated or malformed program headers".to_string();
    let (table, entry_size, count) = (u64_at(0x20).ok_or_else(truncated)?, u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..count {
        let header = i.checked_mul(entry_size).and_then(|at| at.checked_add(table)).ok_or_else(truncated)?;
        let kind = field(header, 4).ok_or_else(truncated)?;
        if u32::from_le_bytes(kind.try_into().unwrap()) == PT_INTERP {
            let offset = header.checked_add(0x08).and_then(u64_at).ok_or_else(truncated)?;
            let size = header.checked_add(0x20).and_then(u64_at).ok_or_else(truncated)?;
            let name = field(offset, size).ok_or("truncated interpreter name")?;
            return Ok(Some(String::from_utf8_lossy(name).trim_end_matches('\0').to_string()));
        }
    }
    Ok(None)
}
// ANCHOR_END: static_check

// ANCHOR: material
/// The entries of a busybox root filesystem: the program at `/bin/busybox`, a link per
/// applet next to it, the account files, and the empty directories a system expects.
pub fn busybox_rootfs(busybox: &Path) -> Result<BaseRootfs> {
    let list = busybox_output(busybox, "--list")?;
    let applets: Vec<&str> = list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox").collect();
    let help = busybox_output(busybox, "--help")?;
    let version = help.lines().next().unwrap_or("BusyBox").trim_end_matches(" multi-call binary.").to_string();

    let dir = |path: &str, mode| Entry::Dir { path: path.into(), mode };
    let mut entries = vec![
        dir("bin", 0o755),
        dir("dev", 0o755),
        dir("etc", 0o755),
        dir("home", 0o755),
        dir("proc", 0o555),
        dir("root", 0o700),
        dir("sys", 0o555),
        dir("tmp", 0o1777),
        dir("usr", 0o755),
        dir("usr/bin", 0o755),
        dir("var", 0o755),
        dir("var/www", 0o755),
        Entry::File { path: "bin/busybox".into(), mode: 0o755, contents: Contents::HostFile(busybox.to_path_buf()) },
        Entry::File { path: "etc/passwd".into(), mode: 0o644, contents: Contents::Bytes(PASSWD.into()) },
        Entry::File { path: "etc/group".into(), mode: 0o644, contents: Contents::Bytes(GROUP.into()) },
    ];
    for applet in &applets {
        entries.push(Entry::Symlink { path: Path::new("bin").join(applet), target: "busybox".into() });
    }
    Ok(BaseRootfs { entries, busybox_version: version, applets: applets.len() })
}
// ANCHOR_END: material

fn busybox_output(busybox: &Path, arg: &str) -> Result<String> {
    let output = Command::new(busybox).arg(arg).output().map_err(|e| Error::runtime(format!("cannot run {} {arg}: {e}", busybox.display())))?;
    // `busybox --help` exits 0 on some builds and 1 on others; only the text matters.
    if output.stdout.is_empty() {
        return Err(Error::runtime(format!("{} {arg} printed nothing; is it really busybox?", busybox.display())));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Make a busybox root filesystem in `dir` from the host's static busybox: what
/// `carton bootstrap busybox DIR` and `step01-chroot rootfs DIR` do.
pub fn bootstrap(dir: &Path) -> Result<BaseRootfs> {
    let base = busybox_rootfs(&find_static_busybox()?)?;
    write_rootfs(&base.entries, dir)?;
    Ok(base)
}

/// Write `entries` into a new directory `target`, all or nothing: they go into a
/// staging directory beside it that is renamed into place at the end. Staging
/// directories that an interrupted run left behind are removed first.
pub fn write_rootfs(entries: &[Entry], target: &Path) -> Result<()> {
    if let Ok(mut existing) = fs::read_dir(target) {
        if existing.next().is_some() {
            return Err(Error::runtime(format!("{} already exists and is not empty; choose a new directory, or remove it first", target.display())));
        }
    } else if target.exists() {
        return Err(Error::runtime(format!("{} exists and is not a directory", target.display())));
    }
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::runtime(format!("cannot make {}: its parent directory {} does not exist", target.display(), parent.display())));
    }
    let name = target.file_name().ok_or_else(|| Error::runtime(format!("{} names no directory", target.display())))?;
    let staging_prefix = format!(".{}.partial-", name.to_string_lossy());
    remove_abandoned_staging(parent, &staging_prefix);
    let staging = parent.join(format!("{staging_prefix}{}", std::process::id()));
    let result = write_entries(entries, &staging).and_then(|()| fs::rename(&staging, target).map_err(|e| e.to_string()));
    if let Err(why) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::runtime(format!("cannot make {}: {why}", target.display())));
    }
    Ok(())
}

/// Remove `PREFIX<pid>` directories whose process no longer runs (a killed bootstrap).
fn remove_abandoned_staging(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|p| p.parse::<i32>().ok()) else { continue };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn write_entries(entries: &[Entry], root: &Path) -> std::result::Result<(), String> {
    fs::DirBuilder::new().mode(0o755).create(root).map_err(|e| e.to_string())?;
    for entry in entries {
        let (path, result) = match entry {
            Entry::Dir { path, mode } => (path, write_dir(&root.join(path), *mode)),
            Entry::File { path, mode, contents } => (path, write_file(&root.join(path), *mode, contents)),
            Entry::Symlink { path, target } => (path, symlink(target, root.join(path))),
        };
        result.map_err(|e| format!("cannot write /{}: {e}", path.display()))?;
    }
    Ok(())
}

fn write_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::create_dir_all(path)?;
    // Set the mode exactly: create_dir's is filtered through the umask (and /tmp needs its sticky bit).
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn write_file(path: &Path, mode: u32, contents: &Contents) -> std::io::Result<()> {
    match contents {
        Contents::Bytes(bytes) => fs::write(path, bytes)?,
        Contents::HostFile(source) => {
            fs::copy(source, path)?;
        }
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_check_tells_static_from_dynamic() {
        // This test program itself is dynamically linked (the default for Rust on Linux).
        let me = std::env::current_exe().unwrap();
        let interp = elf_interpreter(&me).unwrap().expect("a test binary has a dynamic loader");
        assert!(interp.contains("ld-linux"), "{interp}");
        let text = tempfile::NamedTempFile::new().unwrap();
        fs::write(text.path(), "#!/bin/sh\n").unwrap();
        assert_eq!(elf_interpreter(text.path()).unwrap_err(), "not an ELF program");
    }

    #[test]
    fn elf_check_survives_hostile_headers() {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // program headers at the end of memory
        bytes[0x36] = 0x38;
        bytes[0x38] = 5;
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), &bytes).unwrap();
        assert!(elf_interpreter(file.path()).unwrap_err().contains("malformed"));
    }

    #[test]
    fn write_rootfs_is_all_or_nothing_and_refuses_a_non_empty_target() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![Entry::Dir { path: "tmp".into(), mode: 0o1777 }, Entry::File { path: "etc/passwd".into(), mode: 0o644, contents: Contents::Bytes(b"x".to_vec()) }];
        // etc/ is missing, so the file cannot be written: nothing may be left behind.
        let target = dir.path().join("rootfs");
        let error = write_rootfs(&entries, &target).unwrap_err();
        assert!(error.message.starts_with(&format!("cannot make {}: cannot write /etc/passwd", target.display())), "{}", error.message);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "a failed write left files");

        // A staging directory of a killed run (no such process) is cleaned up.
        let abandoned = dir.path().join(format!(".rootfs.partial-{}", i32::MAX));
        fs::create_dir(&abandoned).unwrap();

        let entries = [vec![Entry::Dir { path: "etc".into(), mode: 0o755 }], entries].concat();
        write_rootfs(&entries, &target).unwrap();
        assert_eq!(fs::metadata(target.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
        assert_eq!(fs::read(target.join("etc/passwd")).unwrap(), b"x");
        assert!(!abandoned.exists(), "an abandoned staging directory was left");
        let again = write_rootfs(&entries, &target).unwrap_err();
        assert!(again.message.contains("not empty"), "{}", again.message);
        let orphan = write_rootfs(&entries, &dir.path().join("no/such/parent")).unwrap_err();
        assert!(orphan.message.contains("parent directory"), "{}", orphan.message);
    }
}
