//! Layers in and out, diff, and the real overlayfs. Needs root (whiteouts are device
//! nodes, opaque markers are trusted.* attributes, owners are set with chown).

#[path = "support/raw_tar.rs"]
mod raw_tar;

use raw_tar::{finish, raw_entry};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use step05::archive::{self, Target};
use step05::diff;

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root: run the tests as root");
}

/// Everything below `dir`, relative, with what each is: the tree as a list to compare.
fn describe(dir: &Path) -> Vec<String> {
    archive::walk_tree(dir)
        .unwrap()
        .into_iter()
        .map(|relative| {
            let full = dir.join(&relative);
            let meta = fs::symlink_metadata(&full).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&full).unwrap().display())
            } else if meta.file_type().is_char_device() {
                format!("char {}", meta.rdev())
            } else if meta.is_dir() {
                format!("dir opaque={:?}", archive::get_xattr(&full, archive::OPAQUE_XATTR).map(|v| String::from_utf8_lossy(&v).into_owned()))
            } else {
                format!(
                    "file {:?} links={} user.note={:?}",
                    fs::read_to_string(&full).unwrap_or_default(),
                    meta.nlink(),
                    archive::get_xattr(&full, "user.note").map(|v| String::from_utf8_lossy(&v).into_owned())
                )
            };
            // A link's and a whiteout's permission bits mean nothing.
            let mode = if meta.file_type().is_symlink() || meta.file_type().is_char_device() { 0 } else { meta.mode() & 0o7777 };
            format!("{} {what} mode={mode:o} owner={}:{}", relative.display(), meta.uid(), meta.gid())
        })
        .collect()
}

#[test]
fn a_hostile_layer_never_writes_outside_the_target() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (target, outside) = (dir.path().join("target"), dir.path().join("outside"));
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let outside_name = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("../ in a name", {
            let mut t = Vec::new();
            raw_entry(&mut t, "../outside/escaped", tar::EntryType::Regular, "", b"x");
            t
        }),
        ("a symlink, then a file through it", {
            let mut t = Vec::new();
            raw_entry(&mut t, "door", tar::EntryType::Symlink, &outside_name, b"");
            raw_entry(&mut t, "door/escaped", tar::EntryType::Regular, "", b"x");
            t
        }),
        ("a relative symlink up, then a directory through it", {
            let mut t = Vec::new();
            raw_entry(&mut t, "up", tar::EntryType::Symlink, "../outside", b"");
            raw_entry(&mut t, "up/sub/escaped", tar::EntryType::Regular, "", b"x");
            t
        }),
        ("a hard link out of the tree", {
            let mut t = Vec::new();
            raw_entry(&mut t, "passwd", tar::EntryType::Link, "../../../../etc/passwd", b"");
            t
        }),
        ("a device node", {
            let mut t = Vec::new();
            raw_entry(&mut t, "sda", tar::EntryType::Block, "", b"");
            t
        }),
        ("a whiteout of ..", {
            let mut t = Vec::new();
            raw_entry(&mut t, ".wh..", tar::EntryType::Regular, "", b"");
            t
        }),
        ("a whiteout of .", {
            let mut t = Vec::new();
            raw_entry(&mut t, "sub/.wh..", tar::EntryType::Regular, "", b"");
            t
        }),
    ];
    fs::write(dir.path().join("beside-the-target"), "kept").unwrap();
    for (what, tar) in cases {
        for how in [Target::OverlayLower, Target::Merged] {
            let error = archive::apply(finish(tar.clone()).as_slice(), &target, how).unwrap_err();
            assert!(error.message.starts_with("refusing the layer:"), "{what}: {}", error.message);
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{what} wrote outside");
            assert!(target.exists() && dir.path().join("beside-the-target").exists(), "{what} deleted outside the target");
        }
    }
    // An absolute name is read as relative to the layer: it lands inside.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "/etc/inside", tar::EntryType::Regular, "", b"inside");
    archive::apply(finish(tar).as_slice(), &target, Target::OverlayLower).unwrap();
    assert_eq!(fs::read_to_string(target.join("etc/inside")).unwrap(), "inside");
    assert!(!Path::new("/etc/inside").exists());
    // An absolute symlink is stored as it is, never followed while unpacking.
    assert_eq!(fs::read_link(target.join("door")).unwrap(), outside);
}

fn set_xattr(path: &Path, key: &str, value: &str) {
    use std::os::unix::ffi::OsStrExt;
    let (path, key) = (std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap(), std::ffi::CString::new(key).unwrap());
    // Safety: NUL-terminated strings and a value of the given length.
    let done = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(done, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// An upper directory with one of everything a layer can hold.
fn make_upper(upper: &Path) {
    fs::create_dir_all(upper.join("etc/app")).unwrap();
    fs::write(upper.join("etc/app/config"), "port=80\n").unwrap();
    fs::set_permissions(upper.join("etc/app/config"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(upper.join("etc/app/config"), Some(33), Some(33)).unwrap();
    fs::write(upper.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(upper.join("run.sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(upper.join("run.sh"), upper.join("etc/run-too.sh")).unwrap();
    std::os::unix::fs::symlink("/etc/app/config", upper.join("config-link")).unwrap();
    set_xattr(&upper.join("etc/app/config"), "user.note", "kept");
    // A whiteout and an opaque directory, as overlayfs writes them.
    assert!(Command::new("mknod").arg(upper.join("gone")).args(["c", "0", "0"]).status().unwrap().success());
    fs::create_dir(upper.join("fresh")).unwrap();
    fs::write(upper.join("fresh/only"), "new").unwrap();
    set_xattr(&upper.join("fresh"), archive::OPAQUE_XATTR, "y");
}

#[test]
fn an_exported_layer_applies_back_to_the_same_tree() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (upper, copy) = (dir.path().join("upper"), dir.path().join("copy"));
    make_upper(&upper);
    fs::create_dir(&copy).unwrap();
    let mut layer = Vec::new();
    archive::export(&upper, &mut layer).unwrap();
    let names: Vec<String> = tar::Archive::new(layer.as_slice()).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.contains(&".wh.gone".to_string()) && names.contains(&"fresh/.wh..wh..opq".to_string()), "OCI whiteouts in the tar: {names:?}");
    archive::apply(layer.as_slice(), &copy, Target::OverlayLower).unwrap();
    let (before, after) = (describe(&upper), describe(&copy));
    assert_eq!(after, before);
    assert!(before.iter().any(|l| l.starts_with("etc/run-too.sh file \"#!/bin/sh\\n\" links=2")), "{before:?}");
}

#[test]
fn applied_to_a_merged_tree_whiteouts_delete_and_opaque_directories_empty() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged");
    fs::create_dir_all(merged.join("www/old")).unwrap();
    fs::write(merged.join("www/index.html"), "old").unwrap();
    fs::write(merged.join("notes"), "old").unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "www/", tar::EntryType::Directory, "", b"");
    raw_entry(&mut tar, "www/.wh..wh..opq", tar::EntryType::Regular, "", b"");
    raw_entry(&mut tar, "www/index.html", tar::EntryType::Regular, "", b"new");
    raw_entry(&mut tar, ".wh.notes", tar::EntryType::Regular, "", b"");
    archive::apply(finish(tar).as_slice(), &merged, Target::Merged).unwrap();
    let names: Vec<String> = archive::walk_tree(&merged).unwrap().iter().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["www", "www/index.html"]);
    assert_eq!(fs::read_to_string(merged.join("www/index.html")).unwrap(), "new");
}

/// Run `script` in a mount namespace of its own with `lower`, `upper`, `work` and
/// `merged` in the environment and the overlay mounted: nothing is left mounted after.
fn with_overlay(dir: &Path, lowers: &[PathBuf], script: &str) -> String {
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let lowerdir = lowers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":");
    let mount = format!(
        "mount --make-rprivate / && mount -t overlay overlay -o lowerdir={lowerdir},upperdir={},workdir={} {} && cd {} && {script}",
        upper.display(),
        work.display(),
        merged.display(),
        merged.display()
    );
    let out = Command::new("unshare").args(["--mount", "sh", "-c", &mount]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn writes_land_in_the_upper_layer_and_diff_lists_them() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
    fs::create_dir_all(lower.join("var/cache")).unwrap();
    fs::write(lower.join("etc/hostname"), "image\n").unwrap();
    fs::write(lower.join("etc/conf.d/a"), "a").unwrap();
    fs::write(lower.join("etc/conf.d/b"), "b").unwrap();
    fs::write(lower.join("var/cache/big"), "cached").unwrap();
    let before = describe(&lower);
    // Add, change, delete, and replace a directory whole (rm -r, then mkdir: opaque).
    let seen = with_overlay(
        dir.path(),
        std::slice::from_ref(&lower),
        "echo added > new-file && echo container > etc/hostname && rm var/cache/big && rm -r etc/conf.d && mkdir etc/conf.d && echo c > etc/conf.d/c && cat etc/hostname && ls etc/conf.d",
    );
    assert_eq!(seen, "container\nc\n");
    assert_eq!(describe(&lower), before, "the lower layer was written to");
    let upper = dir.path().join("upper");
    assert_eq!(fs::read_to_string(upper.join("etc/hostname")).unwrap(), "container\n", "copied up, then written");
    assert!(fs::symlink_metadata(upper.join("var/cache/big")).unwrap().file_type().is_char_device(), "a whiteout");
    let listed: Vec<String> = diff::changes(&upper, &[lower]).unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(listed, ["C /etc", "C /etc/conf.d", "D /etc/conf.d/a", "D /etc/conf.d/b", "A /etc/conf.d/c", "C /etc/hostname", "A /new-file", "C /var", "C /var/cache", "D /var/cache/big"]);
}

#[test]
fn two_containers_on_the_same_lower_do_not_see_each_others_writes() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    fs::create_dir_all(&lower).unwrap();
    fs::write(lower.join("shared"), "from the image").unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    assert_eq!(with_overlay(&one, std::slice::from_ref(&lower), "echo one > mine && cat shared"), "from the image");
    assert_eq!(with_overlay(&two, std::slice::from_ref(&lower), "ls"), "shared\n", "the second container saw the first one's file");
    assert!(one.join("upper/mine").exists() && !lower.join("mine").exists());
}
