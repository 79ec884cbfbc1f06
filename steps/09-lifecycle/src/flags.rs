//! Docker's `run` flags of this chapter that become parts of the spec: `--ulimit` (within
//! this machine's hard limits), `--sysctl`, `--env-file`.

use std::path::Path;

use step01::{Error, Result};

/// Docker's `--ulimit` names and the spec's.
const ULIMITS: [(&str, &str, libc::__rlimit_resource_t); 15] = [
    ("core", "RLIMIT_CORE", libc::RLIMIT_CORE),
    ("cpu", "RLIMIT_CPU", libc::RLIMIT_CPU),
    ("data", "RLIMIT_DATA", libc::RLIMIT_DATA),
    ("fsize", "RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("locks", "RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("memlock", "RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("msgqueue", "RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("nice", "RLIMIT_NICE", libc::RLIMIT_NICE),
    ("nofile", "RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("nproc", "RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("rss", "RLIMIT_RSS", libc::RLIMIT_RSS),
    ("rtprio", "RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("rttime", "RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ("sigpending", "RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("stack", "RLIMIT_STACK", libc::RLIMIT_STACK),
];

// ANCHOR: ulimit
/// `--ulimit nofile=1024:2048` (or one number for both) as the spec's rlimit. A hard limit
/// above this machine's own is refused now: raising it needs `CAP_SYS_RESOURCE`, which a
/// lab machine's root may not have (this book's has not).
pub fn parse_ulimit(text: &str) -> Result<oci_spec::runtime::PosixRlimit> {
    let bad = |why: &str| Error::runtime(format!("invalid --ulimit {text:?}: {why}"));
    let (name, values) = text.split_once('=').ok_or_else(|| bad("give NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    let (_, spec_name, resource) = ULIMITS.iter().find(|(docker, _, _)| *docker == name).ok_or_else(|| bad(&format!("no limit is called {name} ({})", ULIMITS.map(|(n, _, _)| n).join(", "))))?;
    let number = |n: &str| if n == "-1" || n == "unlimited" { Ok(u64::MAX) } else { n.parse::<u64>().map_err(|_| bad("the limits are numbers")) };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => (number(values)?, number(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    // Safety: getrlimit fills the struct given.
    let mut own = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(*resource, &mut own) } == 0 && hard > own.rlim_max && !has_sys_resource() {
        return Err(bad(&format!("this machine's hard limit for {name} is {}, and raising it needs CAP_SYS_RESOURCE; ask for {} at most", own.rlim_max, own.rlim_max)));
    }
    // Open files have a ceiling of the kernel's own, whatever the capabilities.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|n| n.trim().parse::<u64>().ok());
    if let Some(nr_open) = nr_open.filter(|most| *resource == libc::RLIMIT_NOFILE && hard > *most) {
        return Err(bad(&format!("the kernel allows at most {nr_open} open files (fs.nr_open); ask for that at most")));
    }
    let typ: oci_spec::runtime::PosixRlimitType = serde_json::from_value(serde_json::json!(spec_name)).map_err(|_| bad("unknown limit"))?;
    Ok(oci_spec::runtime::PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build().expect("an rlimit with its three fields is complete"))
}
// ANCHOR_END: ulimit

/// Whether this process may raise hard limits (`CAP_SYS_RESOURCE` in its effective set).
fn has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok()).unwrap_or(0);
    const CAP_SYS_RESOURCE: u32 = 24; // <linux/capability.h>
    effective & (1 << CAP_SYS_RESOURCE) != 0
}

/// `--sysctl KEY=VALUE`, checked for its shape (whether the container may set it is chapter
/// 8's question, asked when it starts).
pub fn parse_sysctl(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) => Ok((key.replace('/', "."), value.to_string())),
        _ => Err(Error::runtime(format!("invalid --sysctl {text:?}: give KEY=VALUE, e.g. net.ipv4.ip_unprivileged_port_start=0"))),
    }
}

/// `--env-file FILE`: one `KEY=VALUE` a line (a bare `KEY` passes the host's value, as with
/// `-e`); blank lines and `#` comments are skipped. Returns the lines as `-e` would take them.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::runtime(format!("cannot read the --env-file {}: {e}", path.display())))?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.split('=').next().is_none_or(|key| key.is_empty() || key.contains(char::is_whitespace)) {
            return Err(Error::runtime(format!("{}:{}: {line:?} is not KEY=VALUE", path.display(), number + 1)));
        }
        entries.push(line.to_string());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_sysctls_and_env_files_read_as_dockers() {
        let limit = parse_ulimit("nofile=512:1024").unwrap();
        assert_eq!((limit.soft(), limit.hard()), (512, 1024));
        assert_eq!(parse_ulimit("core=0").unwrap().hard(), 0);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=a"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
        let error = parse_ulimit("nofile=1:18446744073709551614").map(|_| ()).unwrap_err().to_string();
        if !has_sys_resource() {
            assert!(error.contains("hard limit for nofile is"), "{error}");
        }
        assert_eq!(parse_sysctl("net/ipv4/ip_forward=1").unwrap(), ("net.ipv4.ip_forward".into(), "1".into()));
        assert!(parse_sysctl("=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env"), "# a comment\n\nA=1\nHOME\n").unwrap();
        assert_eq!(read_env_file(&dir.path().join("env")).unwrap(), ["A=1", "HOME"]);
        std::fs::write(dir.path().join("bad"), "A B=1\n").unwrap();
        assert!(read_env_file(&dir.path().join("bad")).unwrap_err().to_string().contains("bad:1"));
    }
}
