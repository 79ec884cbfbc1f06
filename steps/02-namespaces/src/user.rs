//! `-u uid[:gid]`: who the command runs as. Numeric for now; names come with images.

use std::fs;
use std::path::Path;

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use step01::{Action, Error, Explain, Result};

use crate::CHAPTER;

/// A user inside the container: ids, and the home directory `HOME` points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl User {
    /// Parse `uid[:gid]`. A missing gid and the home come from the container's
    /// `/etc/passwd` when the uid is listed there, else gid 0 and `/`, as Docker does.
    pub fn resolve(spec: &str, rootfs: &Path) -> Result<User> {
        let number = |text: &str, what: &str| {
            text.parse::<u32>().map_err(|_| {
                Error::runtime(format!(
                    "invalid user {spec:?}: the {what} {text:?} is not a number; give a numeric uid[:gid] \
                     (user names come with images, chapter 6)"
                ))
            })
        };
        let (uid, gid) = match spec.split_once(':') {
            Some((uid, gid)) => (number(uid, "uid")?, Some(number(gid, "gid")?)),
            None => (number(spec, "uid")?, None),
        };
        let listed = passwd_entry(rootfs, uid);
        Ok(User {
            uid,
            gid: gid.or(listed.as_ref().map(|(gid, _)| *gid)).unwrap_or(0),
            home: listed.map_or("/".to_string(), |(_, home)| home),
        })
    }

    // ANCHOR: switch
    /// Drop from root to this user: groups first, then the group, then the user
    /// (after setuid, we would no longer be allowed to change the others).
    pub fn switch(&self, explain: &Explain) -> Result<()> {
        let (uid, gid) = (self.uid, self.gid);
        explain.step(|| Action::new(CHAPTER, "drop the supplementary groups carton had", "setgroups(0, NULL)"));
        setgroups(&[]).map_err(|e| Error::syscall("setgroups", e))?;
        explain.step(|| Action::new(CHAPTER, format!("become group {gid}"), format!("setgid({gid})")));
        setgid(Gid::from_raw(gid)).map_err(|e| Error::syscall(format!("setgid({gid})"), e))?;
        explain.step(|| Action::new(CHAPTER, format!("become user {uid}"), format!("setuid({uid})")).shell(format!("setpriv --reuid={uid} --regid={gid} --clear-groups")));
        setuid(Uid::from_raw(uid)).map_err(|e| Error::syscall(format!("setuid({uid})"), e))?;
        // A change of user cancels "die with the parent"; ask again (see step 01).
        // Safety: prctl with an integer argument.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        Ok(())
    }
    // ANCHOR_END: switch
}

/// The gid and home of `uid` in `rootfs/etc/passwd`. A symbolic link there is not
/// followed: it could point at a file of the host.
fn passwd_entry(rootfs: &Path, uid: u32) -> Option<(u32, String)> {
    let path = rootfs.join("etc/passwd");
    if fs::symlink_metadata(&path).ok()?.file_type().is_symlink() {
        return None;
    }
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| (fields[3].parse().unwrap_or(0), fields[5].to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_and_gid_come_from_the_spec_or_the_containers_passwd() {
        let rootfs = tempfile::tempdir().unwrap();
        fs::create_dir(rootfs.path().join("etc")).unwrap();
        fs::write(rootfs.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\n").unwrap();
        assert_eq!(User::resolve("33", rootfs.path()).unwrap(), User { uid: 33, gid: 33, home: "/var/www".into() });
        assert_eq!(User::resolve("33:7", rootfs.path()).unwrap(), User { uid: 33, gid: 7, home: "/var/www".into() });
        assert_eq!(User::resolve("1000", rootfs.path()).unwrap(), User { uid: 1000, gid: 0, home: "/".into() });
    }

    #[test]
    fn names_are_refused_with_a_clear_message() {
        let rootfs = tempfile::tempdir().unwrap();
        for bad in ["abc", "1000:abc", "", "1000:"] {
            let error = User::resolve(bad, rootfs.path()).unwrap_err();
            assert_eq!(error.exit_code(), 125);
            assert!(error.message.contains("give a numeric uid[:gid]"), "{bad:?}: {}", error.message);
        }
    }
}
