//! `-u user[:group]`: who the command runs as, by number or by a name from the container's own
//! `/etc/passwd` and `/etc/group`, as Docker's `-u` and an image's `User` accept it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

/// The largest uid or gid runc accepts: the kernel takes 32 bits, but -1 means "unchanged" to
/// the set*id calls and much software stores ids signed.
const MAX_ID: u32 = i32::MAX as u32;

/// A user inside the container: ids, and the home directory `HOME` points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the spec's `additionalGids`).
    pub additional_gids: Vec<u32>,
    pub home: String,
}

impl User {
    /// Parse `user[:group]`, each part a number or a name, with runc's rules. Names mean what the
    /// container's `/etc/passwd` and `/etc/group` say, not the host's: the same name can be
    /// another number there. A number needs no entry (an unlisted uid gets group 0 and `HOME=/`,
    /// as with Docker); a name does, or carton would have to guess who to run as. Without a
    /// group part, the group comes from the user's passwd entry.
    pub fn resolve(spec: &str, rootfs: &Path) -> Result<User> {
        let invalid = |why: String| Error::runtime(format!("invalid user {spec:?}: {why}; give user[:group], each a name or a number, as in -u www-data or -u 1000:1000"));
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (spec, None),
        };
        if user.is_empty() {
            return Err(invalid("the user is empty".into()));
        }
        match group {
            Some("") => return Err(invalid("the group after ':' is empty".into())),
            Some(group) if group.contains(':') => return Err(invalid("it has more than one ':'".into())),
            _ => {}
        }
        let uid = number(user, "uid").map_err(invalid)?;
        // A number is always an id, even where a user is *named* "1000" (as runc).
        let passwd = database(rootfs, "passwd");
        let account = passwd.as_deref().and_then(|text| accounts(text).find(|a| uid.map_or(a.name == user, |uid| a.uid == uid)));
        let (uid, gid, home) = match (account, uid) {
            (Some(account), _) => (account.uid, account.gid, account.home),
            (None, Some(uid)) => (uid, 0, "/"),
            (None, None) => return Err(not_listed("user", user, "passwd", passwd.is_some(), "uid")),
        };
        let gid = match group {
            None => gid,
            Some(group) => match number(group, "gid").map_err(invalid)? {
                Some(gid) => gid,
                None => {
                    let groups = database(rootfs, "group");
                    let found = groups.as_deref().and_then(|text| groups_of(text).find(|(name, _)| *name == group));
                    found.ok_or_else(|| not_listed("group", group, "group", groups.is_some(), "gid"))?.1
                }
            },
        };
        Ok(User { uid, gid, additional_gids: Vec::new(), home: if home.is_empty() { "/" } else { home }.to_string() })
    }

    // ANCHOR: switch
    /// Drop from root to this user: groups first, then the group, then the user
    /// (after setuid, we would no longer be allowed to change the others).
    pub fn switch(&self, explain: &Explain) -> Result<()> {
        let (uid, gid) = (self.uid, self.gid);
        let groups: Vec<Gid> = self.additional_gids.iter().map(|gid| Gid::from_raw(*gid)).collect();
        if groups.is_empty() {
            explain.step(|| Action::new(CHAPTER, "drop the supplementary groups carton had", "setgroups(0, NULL)"));
        } else {
            explain.step(|| Action::new(CHAPTER, "replace carton's supplementary groups with the user's own", format!("setgroups({}, {:?})", groups.len(), self.additional_gids)));
        }
        setgroups(&groups).map_err(|e| Error::syscall("setgroups", e))?;
        // A change of user cancels "die with the parent": ask again after, if it was asked.
        let mut death_signal: libc::c_int = 0;
        // Safety: prctl writes an int to the pointer given.
        unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut death_signal as *mut libc::c_int) };
        explain.step(|| Action::new(CHAPTER, format!("become group {gid}"), format!("setgid({gid})")));
        setgid(Gid::from_raw(gid)).map_err(|e| Error::syscall(format!("setgid({gid})"), e))?;
        explain.step(|| Action::new(CHAPTER, format!("become user {uid}"), format!("setuid({uid})")).shell(format!("setpriv --reuid={uid} --regid={gid} --clear-groups")));
        setuid(Uid::from_raw(uid)).map_err(|e| Error::syscall(format!("setuid({uid})"), e))?;
        if death_signal != 0 {
            // Safety: prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) };
        }
        Ok(())
    }
    // ANCHOR_END: switch
}

/// `Some(id)` when `text` is a number, `None` when it is a name. A number out of range is an
/// error rather than a name: no one names a user "99999999999", so it is a typo.
fn number(text: &str, what: &str) -> std::result::Result<Option<u32>, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(format!("the {what} {text} is out of range (at most {MAX_ID})")),
    }
}

/// The error for a name the container's `etc/<file>` does not list, saying which file was read.
fn not_listed(what: &str, name: &str, file: &str, file_exists: bool, id: &str) -> Error {
    let searched = if file_exists { format!("no matching entry in the container's /etc/{file}") } else { format!("the container has no /etc/{file} (a symbolic link there is not followed)") };
    Error::runtime(format!("unable to find {what} {name:?}: {searched}; give a numeric {id}, or add the {what} to the image"))
}

/// The container's `etc/<file>`, or `None` when it has none carton may read. It is read from
/// outside the container, so a symbolic link (at `etc` or at the file) could point at the
/// host's own file: never followed. Only a regular file counts: a FIFO there would hang the
/// start (hence `O_NONBLOCK` on the open). Bytes that are not UTF-8 (an old GECOS comment)
/// spoil only their own line.
fn database(rootfs: &Path, file: &str) -> Option<String> {
    let etc = rootfs.join("etc");
    if fs::symlink_metadata(&etc).ok()?.file_type().is_symlink() {
        return None;
    }
    let mut opened = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(etc.join(file)).ok()?;
    if !opened.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    opened.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// An entry of `/etc/passwd` (`name:password:uid:gid:comment:home:shell`).
struct Account<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// The well-formed entries of a passwd file. A malformed line is skipped, never read as 0:
/// a garbled uid must not turn a user into root.
fn accounts(text: &str) -> impl Iterator<Item = Account<'_>> {
    text.lines().filter_map(|line| match line.split(':').collect::<Vec<_>>()[..] {
        [name, _, uid, gid, _, home, ..] if !name.is_empty() => Some(Account { name, uid: uid.parse().ok()?, gid: gid.parse().ok()?, home }),
        _ => None,
    })
}

/// The well-formed entries of a group file (`name:password:gid:members`), as (name, gid).
fn groups_of(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| match line.split(':').collect::<Vec<_>>()[..] {
        [name, _, gid, ..] if !name.is_empty() => Some((name, gid.parse().ok()?)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nstaff:x:50:app\n";

    /// A root filesystem with these `etc/passwd` and `etc/group` (`None`: no file).
    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let rootfs = tempfile::tempdir().unwrap();
        fs::create_dir(rootfs.path().join("etc")).unwrap();
        for (file, text) in [("passwd", passwd), ("group", group)] {
            if let Some(text) = text {
                fs::write(rootfs.path().join("etc").join(file), text).unwrap();
            }
        }
        rootfs
    }

    fn user(uid: u32, gid: u32, home: &str) -> User {
        User { uid, gid, additional_gids: Vec::new(), home: home.into() }
    }

    /// The message of resolving `spec`, which must fail with exit code 125.
    fn refused(spec: &str, rootfs: &Path) -> String {
        let error = User::resolve(spec, rootfs).unwrap_err();
        assert_eq!(error.exit_code(), 125, "{spec:?}: {}", error.message);
        error.message
    }

    #[test]
    fn uid_and_gid_come_from_the_spec_or_the_containers_passwd() {
        let rootfs = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(User::resolve("33", rootfs.path()).unwrap(), user(33, 33, "/var/www"));
        assert_eq!(User::resolve("33:7", rootfs.path()).unwrap(), user(33, 7, "/var/www"));
        assert_eq!(User::resolve("1000", rootfs.path()).unwrap(), user(1000, 1000, "/home/app"));
        assert_eq!(User::resolve("4242", rootfs.path()).unwrap(), user(4242, 0, "/"));
        assert_eq!(User::resolve("4242:9", rootfs.path()).unwrap(), user(4242, 9, "/"));
    }

    #[test]
    fn names_are_looked_up_in_the_containers_passwd_and_group() {
        let rootfs = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(User::resolve("www-data", rootfs.path()).unwrap(), user(33, 33, "/var/www"));
        assert_eq!(User::resolve("app:staff", rootfs.path()).unwrap(), user(1000, 50, "/home/app"));
        assert_eq!(User::resolve("app:7", rootfs.path()).unwrap(), user(1000, 7, "/home/app"));
        assert_eq!(User::resolve("33:staff", rootfs.path()).unwrap(), user(33, 50, "/var/www"));
        assert_eq!(User::resolve("4242:staff", rootfs.path()).unwrap(), user(4242, 50, "/"));
    }

    #[test]
    fn a_number_is_always_an_id_even_where_a_user_has_that_name() {
        let rootfs = rootfs(Some("33:x:500:500::/home/n:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\n"), Some("7:x:70:\n"));
        assert_eq!(User::resolve("33:7", rootfs.path()).unwrap(), user(33, 7, "/var/www"));
    }

    #[test]
    fn an_unknown_name_is_refused_saying_which_file_was_searched() {
        let rootfs = rootfs(Some(PASSWD), Some(GROUP));
        let message = refused("nosuch", rootfs.path());
        assert!(message.contains("unable to find user \"nosuch\": no matching entry in the container's /etc/passwd"), "{message}");
        assert!(message.contains("give a numeric uid, or add the user to the image"), "{message}");
        let message = refused("app:nosuch", rootfs.path());
        assert!(message.contains("unable to find group \"nosuch\": no matching entry in the container's /etc/group"), "{message}");
        assert!(message.contains("give a numeric gid"), "{message}");
        // A name without a file to find it in is refused too, saying the file is missing.
        let bare = self::rootfs(None, None);
        assert!(refused("app", bare.path()).contains("the container has no /etc/passwd"));
        assert!(refused("0:staff", bare.path()).contains("the container has no /etc/group"));
        assert_eq!(User::resolve("0:5", bare.path()).unwrap(), user(0, 5, "/"));
    }

    #[test]
    fn malformed_specs_are_refused_with_a_clear_message() {
        let rootfs = rootfs(Some(PASSWD), Some(GROUP));
        for (bad, why) in [
            ("", "the user is empty"),
            (":5", "the user is empty"),
            ("1000:", "the group after ':' is empty"),
            ("app:staff:x", "it has more than one ':'"),
            ("2147483648", "the uid 2147483648 is out of range"),
            ("0:99999999999", "the gid 99999999999 is out of range"),
        ] {
            let message = refused(bad, rootfs.path());
            assert!(message.starts_with(&format!("invalid user {bad:?}: {why}")), "{bad:?}: {message}");
            assert!(message.contains("give user[:group]"), "{bad:?}: {message}");
        }
        assert_eq!(User::resolve("2147483647", rootfs.path()).unwrap(), user(2147483647, 0, "/"));
    }

    #[test]
    fn malformed_lines_are_skipped_not_read_as_root() {
        let passwd = "garbage\n\n# comment\napp:x:notanumber:0:app:/:/bin/sh\napp:x:7\napp:x:1000:x::/bad:/bin/sh\n\
                      :x:3:3::/empty-name:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnohome:x:5:5:\n";
        let group = "staff\nstaff:x:nan:\nstaff:x:\nstaff:x:50:app\n";
        let rootfs = rootfs(Some(passwd), Some(group));
        assert_eq!(User::resolve("app:staff", rootfs.path()).unwrap(), user(1000, 50, "/home/app"));
        assert!(refused("nohome", rootfs.path()).contains("unable to find user \"nohome\""));
        assert_eq!(User::resolve("3", rootfs.path()).unwrap(), user(3, 0, "/"));
        let invalid = self::rootfs(None, None);
        fs::write(invalid.path().join("etc/passwd"), b"old:x:9:9:J\xf6rg:/home/old:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        assert_eq!(User::resolve("app", invalid.path()).unwrap(), user(1000, 1000, "/home/app"));
    }

    #[test]
    fn symbolic_links_to_passwd_or_group_are_not_followed() {
        let host = rootfs(Some(PASSWD), Some(GROUP));
        let rootfs = rootfs(None, None);
        for file in ["passwd", "group"] {
            std::os::unix::fs::symlink(host.path().join("etc").join(file), rootfs.path().join("etc").join(file)).unwrap();
        }
        assert!(refused("app", rootfs.path()).contains("the container has no /etc/passwd"));
        assert!(refused("0:staff", rootfs.path()).contains("the container has no /etc/group"));
        assert_eq!(User::resolve("1000", rootfs.path()).unwrap(), user(1000, 0, "/"));
        // Nor a link at etc itself.
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path().join("etc"), linked.path().join("etc")).unwrap();
        assert!(refused("app", linked.path()).contains("the container has no /etc/passwd"));
    }

    #[test]
    fn a_fifo_at_etc_passwd_does_not_hang_the_start() {
        let rootfs = rootfs(None, None);
        nix::unistd::mkfifo(&rootfs.path().join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let path = rootfs.path().to_path_buf();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(User::resolve("1000", &path)));
        let resolved = receiver.recv_timeout(std::time::Duration::from_secs(5)).expect("resolve hung on a FIFO");
        assert_eq!(resolved.unwrap(), user(1000, 0, "/"));
    }
}
