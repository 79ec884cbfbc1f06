//! The chapter's demo binary, end to end, on the real overlayfs. Needs root.

use std::path::Path;
use std::process::{Command, Output};

fn demo(state: &Path, driver: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_step05-overlay")).env("CARTON_ROOT", state).args(["--storage-driver", driver]).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn with_overlay_containers_write_to_their_own_layer_and_a_commit_holds_just_their_changes() {
    containers_write_to_their_own_layer_and_a_commit_holds_just_their_changes("overlay");
}

#[test]
fn the_vfs_driver_behaves_the_same() {
    containers_write_to_their_own_layer_and_a_commit_holds_just_their_changes("vfs");
}

fn containers_write_to_their_own_layer_and_a_commit_holds_just_their_changes(driver: &str) {
    let demo = |state: &Path, args: &[&str]| demo(state, driver, args);
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (mounts): run it as root");
    let dir = tempfile::tempdir().unwrap();
    let (rootfs, state) = (dir.path().join("rootfs"), dir.path().join("state"));
    step01::busybox::bootstrap(&rootfs).unwrap();
    let rootfs = rootfs.to_str().unwrap();

    // Stored once: the same files make the same digest, and one directory.
    let digest = text(&demo(&state, &["import", rootfs])).trim().to_string();
    assert_eq!(text(&demo(&state, &["import", rootfs])).trim(), digest);
    assert_eq!(std::fs::read_dir(state.join("overlay/layers")).unwrap().count(), 1);

    let out = demo(&state, &["run", "web1", &digest, "--", "sh", "-c", "echo hello > /new && rm /bin/ls && echo extra >> /etc/passwd && cat /new"]);
    assert_eq!(text(&out), "hello\n");
    assert_eq!(text(&demo(&state, &["diff", "web1", &digest])), "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nA /new\n");
    // The image is untouched, and a second container sees the image, not web1's changes.
    assert!(Path::new(rootfs).join("bin/ls").exists() && !Path::new(rootfs).join("new").exists());
    assert_eq!(text(&demo(&state, &["run", "web2", &digest, "--", "sh", "-c", "ls /new /bin/ls 2>&1; true"])), "ls: /new: No such file or directory\n/bin/ls\n");
    // The writable layer survives its container: a later run of web1 finds its file.
    assert_eq!(text(&demo(&state, &["run", "web1", &digest, "--", "cat", "/new"])), "hello\n");

    let layer = dir.path().join("web1.tar.gz");
    let committed = text(&demo(&state, &["commit", "web1", layer.to_str().unwrap(), &digest, "--gzip"]));
    assert!(committed.starts_with("digest sha256:") && committed.contains("\ndiff_id sha256:"), "{committed}");
    let listing = Command::new("tar").arg("-tzf").arg(&layer).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "bin\nbin/.wh.ls\netc\netc/passwd\nnew\n");

    // A renamed directory is in the layer as files (no overlay redirect), and a directory the
    // container turned into a link to a host directory cannot make a commit write there.
    let host_dir = dir.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    let script = format!("mv /usr /usr-moved && ln -s {} /usr", host_dir.display());
    text(&demo(&state, &["run", "mover", &digest, "--", "/bin/sh", "-c", &script]));
    let moved = dir.path().join("mover.tar");
    text(&demo(&state, &["commit", "mover", moved.to_str().unwrap(), &digest]));
    let listing = String::from_utf8_lossy(&Command::new("tar").arg("-tf").arg(&moved).output().unwrap().stdout).into_owned();
    assert!(listing.lines().any(|l| l == "usr-moved/bin"), "the moved directory's contents are in the layer: {listing}");
    assert!(listing.lines().any(|l| l == "usr") && !listing.contains("\nusr/"), "the link replaces /usr whole: {listing}");
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0, "the commit wrote into the host directory");
    text(&demo(&state, &["rm", "mover"]));
    // Names are names, never paths; the store is root's alone.
    for bad in ["../layers", "/tmp", ".."] {
        assert_eq!(demo(&state, &["rm", bad]).status.code(), Some(125), "rm {bad}");
    }
    assert!(state.join("overlay/layers").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(state.join("overlay")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(demo(&state, &["diff", "never-ran", &digest]).status.code(), Some(125));

    // A layer is kept one driver's way: the other driver is refused, not silently empty.
    let other = if driver == "vfs" { "overlay" } else { "vfs" };
    let mixed = self::demo(&state, other, &["diff", "web1", &digest]);
    assert_eq!(mixed.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&mixed.stderr).contains(&format!("made by the {driver} driver; give --storage-driver {driver}")), "{}", String::from_utf8_lossy(&mixed.stderr));

    text(&demo(&state, &["rm", "web1"]));
    text(&demo(&state, &["rm", "web2"]));
    assert_eq!(std::fs::read_dir(state.join("overlay/containers")).unwrap().count(), 0);
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(state.to_str().unwrap()), "a mount leaked to the host");
}
