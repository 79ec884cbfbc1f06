//! What the user asks for: Docker's three spellings of a mount, read into one [`Request`].
//!
//! - `-v HOST:CONTAINER[:OPTIONS]`, `-v NAME:CONTAINER`, `-v CONTAINER`: the short form. A
//!   source that is a path (`/srv/site`, `./site`, `.`) is a bind mount, and a missing host
//!   directory is made; a bare name is a named volume; no source at all, an anonymous volume.
//! - `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`: the long form, which
//!   refuses a bind source that does not exist (a typo would otherwise bind an empty directory).
//! - `--tmpfs PATH[:OPTIONS]`: a file system in memory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use step01::mounts::clean;
use step01::{Error, Result};

// ANCHOR: request
/// Where a mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A directory (or file) of the host, as it is.
    Bind(PathBuf),
    /// A volume carton manages: named, or anonymous (`None`: a random name is given).
    Volume(Option<String>),
    /// A new tmpfs, with these options for the kernel (`size=64m,mode=1777`).
    Tmpfs(String),
}

/// One mount asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub source: Source,
    /// Absolute, inside the container.
    pub target: PathBuf,
    pub read_only: bool,
    /// A bind mount's propagation (`rprivate` unless asked).
    pub propagation: Option<String>,
    /// A new, empty volume is not filled with the image's files at the target.
    pub nocopy: bool,
    /// A missing bind source is made (`-v`), not refused (`--mount`).
    pub make_missing_source: bool,
}
// ANCHOR_END: request

/// Propagation modes a bind mount may ask for.
const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

// ANCHOR: parse_volume
/// `-v`'s value. `cwd` resolves a source that starts with `.` (`-v ./site:/www`, `-v .:/x`).
pub fn parse_volume(text: &str, cwd: &Path) -> Result<Request> {
    let bad = |why: &str| Error::runtime(format!("invalid -v {text:?}: {why}"));
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts[..] {
        [target] => ("", target, ""),
        // Docker's rule: options need a source (`-v /cache:ro` is refused, not guessed at).
        [_, options] if options.split(',').all(is_volume_option) => return Err(bad("options need a source: give NAME:TARGET:OPTIONS or HOST-PATH:TARGET:OPTIONS")),
        ["", _] | ["", _, _] => return Err(bad("nothing before the first ':': give a host path or a volume's name there")),
        [source, target] => (source, target, ""),
        [source, target, options] => (source, target, options),
        _ => return Err(bad("give [SOURCE:]TARGET[:OPTIONS], e.g. -v ./site:/www:ro, -v data:/var/lib/data or -v /cache")),
    };
    let target = check_target(target).map_err(|why| bad(&why))?;
    let mut request = Request { source: Source::Volume(None), target, read_only: false, propagation: None, nocopy: false, make_missing_source: true };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => request.read_only = true,
            "rw" => request.read_only = false,
            // SELinux relabelling (no SELinux here, as on Debian), and macOS's file-sharing
            // hints that compose files carry: accepted, nothing to do.
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "nocopy" => request.nocopy = true,
            mode if PROPAGATIONS.contains(&mode) => request.propagation = Some(mode.to_string()),
            other => return Err(bad(&format!("unknown option {other:?} (ro, rw, z, Z, nocopy, or a propagation: {})", PROPAGATIONS.join(", ")))),
        }
    }
    request.source = if source.is_empty() {
        Source::Volume(None)
    } else if source.starts_with('/') || source.starts_with('.') {
        Source::Bind(absolute(source, cwd))
    } else {
        check_volume_name(source)?;
        Source::Volume(Some(source.to_string()))
    };
    if request.propagation.is_some() && !matches!(request.source, Source::Bind(_)) {
        return Err(bad("a propagation mode is for bind mounts (a host path), not volumes"));
    }
    Ok(request)
}
// ANCHOR_END: parse_volume

fn is_volume_option(option: &str) -> bool {
    ["ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated"].contains(&option) || PROPAGATIONS.contains(&option)
}

/// `--mount`'s value: comma-separated KEY=VALUE fields, Docker's keys.
pub fn parse_mount(text: &str, cwd: &Path) -> Result<Request> {
    let bad = |why: String| Error::runtime(format!("invalid --mount {text:?}: {why}"));
    let (mut kind, mut source, mut target) = ("volume", None, None);
    let (mut read_only, mut propagation, mut nocopy, mut tmpfs) = (false, None, false, Vec::new());
    let flag = |key: &str, value: Option<&str>| match value {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(bad(format!("{key}={other}: give true or false"))),
    };
    for field in text.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        let value_of = || value.filter(|v| !v.is_empty()).ok_or_else(|| bad(format!("{key} needs a value ({key}=...)")));
        match key {
            "type" => kind = value_of()?,
            "source" | "src" => source = Some(value_of()?),
            "target" | "destination" | "dst" => target = Some(value_of()?),
            "readonly" | "ro" => read_only = flag(key, value)?,
            "bind-propagation" => {
                let mode = value_of()?;
                if !PROPAGATIONS.contains(&mode) {
                    return Err(bad(format!("bind-propagation={mode}: give one of {}", PROPAGATIONS.join(", "))));
                }
                propagation = Some(mode.to_string());
            }
            "volume-nocopy" => nocopy = flag(key, value)?,
            "tmpfs-size" => tmpfs.push(format!("size={}", parse_size(value_of()?).ok_or_else(|| bad(format!("tmpfs-size={}: give bytes, or a size such as 64m", value.unwrap_or_default())))?)),
            "tmpfs-mode" => {
                let mode = value_of()?;
                u32::from_str_radix(mode, 8).map_err(|_| bad(format!("tmpfs-mode={mode}: give an octal mode such as 1777")))?;
                tmpfs.push(format!("mode={mode}"));
            }
            "consistency" => {} // macOS file sharing: nothing to do on Linux
            "volume-driver" if value == Some("local") => {}
            _ => return Err(bad(format!("unknown key {key:?} (type, source, target, readonly, bind-propagation, volume-nocopy, tmpfs-size, tmpfs-mode)"))),
        }
    }
    let target = target.ok_or_else(|| bad("target is required (target=/path/in/container)".into()))?;
    let target = check_target(target).map_err(bad)?;
    let only = |what: &str, used: bool| if used { Err(bad(format!("{what} is not for type={kind}"))) } else { Ok(()) };
    let source = match kind {
        "bind" => {
            only("volume-nocopy", nocopy)?;
            only("tmpfs-size and tmpfs-mode", !tmpfs.is_empty())?;
            let source = source.ok_or_else(|| bad("a bind mount needs source=/path/on/host".into()))?;
            let path = absolute(source, cwd);
            if !path.exists() {
                return Err(bad(format!("bind source path does not exist: {} (make it first; -v makes a missing directory, --mount does not)", path.display())));
            }
            Source::Bind(path)
        }
        "volume" => {
            only("bind-propagation", propagation.is_some())?;
            only("tmpfs-size and tmpfs-mode", !tmpfs.is_empty())?;
            if let Some(name) = source {
                if name.starts_with('/') || name.starts_with('.') {
                    return Err(bad(format!("source={name} is a path: a host directory is type=bind,source={name}")));
                }
                check_volume_name(name)?;
            }
            Source::Volume(source.map(str::to_string))
        }
        "tmpfs" => {
            only("source", source.is_some())?;
            only("bind-propagation", propagation.is_some())?;
            only("volume-nocopy", nocopy)?;
            Source::Tmpfs(tmpfs.join(","))
        }
        other => return Err(bad(format!("unknown type={other}: give bind, volume or tmpfs"))),
    };
    Ok(Request { source, target, read_only, propagation, nocopy, make_missing_source: false })
}

/// Options a tmpfs takes: the file system's own (KEY=VALUE) and mount flags.
const TMPFS_KEYS: [&str; 7] = ["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"];
const TMPFS_FLAGS: [&str; 15] = ["exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime", "nodiratime", "relatime", "strictatime", "sync", "async", "dirsync"];

/// `--tmpfs PATH[:OPTIONS]`: the options go to the kernel (`size=64m,mode=1777`; `ro` makes
/// it read-only), Docker's list of them only.
pub fn parse_tmpfs(text: &str) -> Result<Request> {
    let bad = |why: String| Error::runtime(format!("invalid --tmpfs {text:?}: {why}"));
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    let target = check_target(target).map_err(bad)?;
    let mut read_only = false;
    let mut kept = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            _ if option == "ro" => read_only = true,
            _ if option == "rw" => read_only = false,
            Some((key, _)) if TMPFS_KEYS.contains(&key) => kept.push(option),
            None if TMPFS_FLAGS.contains(&option) => kept.push(option),
            _ => return Err(bad(format!("unknown option {option:?} (size=, mode=, uid=, gid=, nr_inodes=, ro, exec, ...)"))),
        }
    }
    Ok(Request { source: Source::Tmpfs(kept.join(",")), target, read_only, propagation: None, nocopy: false, make_missing_source: false })
}

/// A target: absolute, cleaned as Go's `filepath.Clean` does (`/www/`, `/www/.` and
/// `/x/../www` are `/www`: one spelling to compare), and not the root itself.
pub fn check_target(target: &str) -> std::result::Result<PathBuf, String> {
    if !target.starts_with('/') {
        return Err(format!("the target {target:?} must be an absolute path inside the container (e.g. /data)"));
    }
    let cleaned = clean(Path::new(target));
    if cleaned == Path::new("/") {
        return Err("the target cannot be / (the container's root is its image)".into());
    }
    Ok(cleaned)
}

// ANCHOR: volume_name
/// Docker's rule for a local volume's name: a letter or digit, then letters, digits, `_`,
/// `.` or `-`; two characters at least.
pub fn check_volume_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.len() >= 2 && first_ok && rest_ok {
        return Ok(());
    }
    Err(Error::runtime(format!(
        "{name:?} is not a volume name: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, two characters at least. If you meant a directory of the host, give its path (/srv/data or ./data)"
    )))
}
// ANCHOR_END: volume_name

/// `path` as an absolute path, relative ones from `cwd` (`.` and `..` resolved by name).
fn absolute(path: &str, cwd: &Path) -> PathBuf {
    clean(&cwd.join(path))
}

/// A size in bytes, with Docker's units (`64m`, `1g`, `512k`, `100`).
fn parse_size(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (number, unit) = match trimmed.char_indices().last()? {
        (at, 'k') => (&trimmed[..at], 1u64 << 10),
        (at, 'm') => (&trimmed[..at], 1 << 20),
        (at, 'g') => (&trimmed[..at], 1 << 30),
        _ => (trimmed, 1),
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/home/me/site")
    }

    #[test]
    fn the_short_form_reads_as_dockers() {
        let bind = parse_volume("/srv/www:/usr/share/www:ro", &cwd()).unwrap();
        assert_eq!((bind.source, bind.target, bind.read_only), (Source::Bind("/srv/www".into()), PathBuf::from("/usr/share/www"), true));
        assert_eq!(parse_volume("./html:/www", &cwd()).unwrap().source, Source::Bind("/home/me/site/html".into()));
        assert_eq!(parse_volume(".:/www", &cwd()).unwrap().source, Source::Bind("/home/me/site".into()));
        assert_eq!(parse_volume("../x:/www", &cwd()).unwrap().source, Source::Bind("/home/me/x".into()));
        let named = parse_volume("pgdata:/var/lib/postgresql:nocopy", &cwd()).unwrap();
        assert_eq!((named.source, named.nocopy), (Source::Volume(Some("pgdata".into())), true));
        let anonymous = parse_volume("/cache", &cwd()).unwrap();
        assert_eq!((anonymous.source, anonymous.target), (Source::Volume(None), PathBuf::from("/cache")));
        assert_eq!(parse_volume("/www/../data/", &cwd()).unwrap().target, PathBuf::from("/data"), "targets are cleaned");
        assert!(parse_volume("/a:/b:ro,Z,cached", &cwd()).unwrap().read_only);
        assert_eq!(parse_volume("/a:/b:rslave,ro", &cwd()).unwrap().propagation.as_deref(), Some("rslave"));
    }

    #[test]
    fn bad_short_forms_say_what_is_wrong() {
        for (bad, why) in [
            ("/a:b", "absolute path"),
            ("/a:/", "cannot be /"),
            ("x1:/a/..", "cannot be /"),
            ("/cache:ro", "options need a source"),
            (":/b", "nothing before the first"),
            ("/a:/b:readonly", "unknown option"),
            ("/a:/b:rx", "unknown option"),
            ("my vol:/b", "not a volume name"),
            ("x:/b", "not a volume name"),
            ("/a:/b:/c:/d", "give [SOURCE:]TARGET"),
            ("data:/b:rshared", "for bind mounts"),
        ] {
            let error = parse_volume(bad, &cwd()).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn the_long_form_refuses_a_missing_bind_source() {
        let dir = tempfile::tempdir().unwrap();
        let given = format!("type=bind,source={},target=/www,readonly", dir.path().display());
        let bind = parse_mount(&given, &cwd()).unwrap();
        assert_eq!((bind.source, bind.read_only, bind.make_missing_source), (Source::Bind(dir.path().into()), true, false));
        let missing = parse_mount("type=bind,src=/no/such/dir,dst=/www", &cwd()).unwrap_err().to_string();
        assert!(missing.contains("bind source path does not exist: /no/such/dir"), "{missing}");
        let volume = parse_mount("source=data,target=/data,volume-nocopy", &cwd()).unwrap();
        assert_eq!((volume.source, volume.nocopy), (Source::Volume(Some("data".into())), true));
        let tmpfs = parse_mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770", &cwd()).unwrap();
        assert_eq!(tmpfs.source, Source::Tmpfs(format!("size={},mode=1770", 64 << 20)));
        for (bad, why) in [
            ("type=bind,target=/x", "needs source"),
            ("source=data", "target is required"),
            ("type=nfs,target=/x", "unknown type"),
            ("type=tmpfs,source=x,target=/x", "source is not for type=tmpfs"),
            ("target=/x,colour=blue", "unknown key"),
            ("target=x", "absolute path"),
            ("source=/srv,target=/x", "type=bind,source=/srv"),
        ] {
            let error = parse_mount(bad, &cwd()).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn tmpfs_options_go_to_the_kernel() {
        let tmpfs = parse_tmpfs("/run:size=1m,mode=1777,ro").unwrap();
        assert_eq!((tmpfs.source, tmpfs.read_only), (Source::Tmpfs("size=1m,mode=1777".into()), true));
        assert!(parse_tmpfs("run").is_err());
        assert!(parse_tmpfs("/run:bind").is_err(), "only a tmpfs's own options");
        assert_eq!(parse_tmpfs("/run:exec,uid=1000").unwrap().source, Source::Tmpfs("exec,uid=1000".into()));
    }
}
