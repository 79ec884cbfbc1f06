//! `carton run IMAGE`, offline: the busybox image carton makes itself, run on an overlay
//! of its layers. Needs root.

mod common;

use std::fs;

use common::*;

#[test]
fn an_image_runs_its_default_command_or_the_one_given() {
    require_root();
    let state = with_busybox_image();
    let out = carton_run_image(state.path()).args(["--rm", "busybox", "echo", "hello"]).output().unwrap();
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "hello\n"), "{}", stderr(&out));
    // The image's Cmd is `sh`: with stdin attached it reads the script from it.
    let mut child = carton_run_image(state.path()).args(["-i", "busybox"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"echo from the default sh\n").unwrap();
    drop(child.stdin.take());
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "from the default sh\n");
    let out = carton_run_image(state.path()).args(["--entrypoint", "echo", "docker.io/library/busybox:latest", "replaced"]).output().unwrap();
    assert_eq!(stdout(&out), "replaced\n", "{}", stderr(&out));
}

#[test]
fn what_a_container_writes_is_gone_with_it_and_the_image_is_untouched() {
    require_root();
    let state = with_busybox_image();
    let out = carton_run_image(state.path()).args(["busybox", "sh", "-c", "echo mine > /new && rm /bin/ls && cat /new"]).output().unwrap();
    assert_eq!(stdout(&out), "mine\n", "{}", stderr(&out));
    let out = carton_run_image(state.path()).args(["busybox", "sh", "-c", "ls /new 2>&1; ls /bin/ls"]).output().unwrap();
    assert_eq!(stdout(&out), "ls: /new: No such file or directory\n/bin/ls\n");
    // The layer is unpacked once; no container's writable layer is left, nothing mounted.
    assert_eq!(fs::read_dir(state.path().join("overlay/layers")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(state.path().join("overlay/containers")).unwrap().count(), 0);
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(state.path().to_str().unwrap()));
}

#[test]
fn a_tampered_layer_is_refused_before_it_runs() {
    require_root();
    let state = with_busybox_image();
    // Change one byte of the layer blob on disk (the largest blob is the layer).
    let blobs = state.path().join("images/blobs/sha256");
    let layer = fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().path()).max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(&layer).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let out = carton_run_image(state.path()).args(["busybox", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("has been changed"), "{}", stderr(&out));
    assert!(
        !state.path().join("overlay/layers").exists()
            || fs::read_dir(state.path().join("overlay/layers")).unwrap().filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).count() == 0,
        "nothing was unpacked"
    );
}

#[test]
fn images_are_listed_tagged_inspected_and_removed() {
    require_root();
    let state = with_busybox_image();
    let carton_in = |args: &[&str]| carton().env("CARTON_ROOT", state.path()).args(args).output().unwrap();
    let listed = stdout(&carton_in(&["images"]));
    assert!(listed.starts_with("REPOSITORY") && listed.lines().nth(1).is_some_and(|l| l.starts_with("busybox ") && l.contains(" latest ")), "{listed}");
    assert!(carton_in(&["tag", "busybox", "localhost:5000/team/app:1"]).status.success());
    let inspected: serde_json::Value = serde_json::from_str(&stdout(&carton_in(&["image", "inspect", "localhost:5000/team/app:1"]))).unwrap();
    let image = &inspected[0];
    assert_eq!(image["RepoTags"], serde_json::json!(["busybox:latest", "localhost:5000/team/app:1"]));
    assert_eq!(image["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(image["Id"].as_str().unwrap().starts_with("sha256:"));
    // The image stays while one name is left, and goes with the last.
    let out = carton_in(&["rmi", "busybox"]);
    assert_eq!(stdout(&out), "Untagged: busybox:latest\n");
    assert!(carton_in(&["run", "--rm", "--network", "none", "localhost:5000/team/app:1", "true"]).status.success());
    let out = carton_in(&["image", "rm", "localhost:5000/team/app:1"]);
    assert_eq!(stdout(&out).lines().filter(|l| l.starts_with("Deleted: sha256:")).count(), 3, "manifest, config and layer: {}", stdout(&out));
    assert_eq!(fs::read_dir(state.path().join("images/blobs/sha256")).unwrap().count(), 0);
    let out = carton_in(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no image busybox:latest here"), "{}", stderr(&out));
}

#[test]
fn a_root_filesystem_tarball_is_imported_as_an_image() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let tarball = dir.path().join("rootfs.tgz");
    assert!(std::process::Command::new("tar").arg("-C").arg(&rootfs).arg("-czf").arg(&tarball).arg(".").status().unwrap().success());
    let out = carton().env("CARTON_ROOT", &state).arg("import").arg(&tarball).arg("mine:1").output().unwrap();
    let id = stdout(&out);
    let inspected: serde_json::Value = serde_json::from_str(&stdout(&carton().env("CARTON_ROOT", &state).args(["image", "inspect", "mine:1"]).output().unwrap())).unwrap();
    assert_eq!(id, format!("{}\n", inspected[0]["Id"].as_str().unwrap()), "import prints the image ID, as docker import does: {}", stderr(&out));
    let out = carton_run_image(&state).args(["mine:1", "echo", "imported"]).output().unwrap();
    assert_eq!(stdout(&out), "imported\n", "{}", stderr(&out));
    // An import has no default command, as with Docker: one must be given.
    let out = carton_run_image(&state).arg("mine:1").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("the image names no command"), "{}", stderr(&out));
    let junk = dir.path().join("junk");
    fs::write(&junk, "not a tar").unwrap();
    let out = carton().env("CARTON_ROOT", &state).arg("import").arg(&junk).arg("junk").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not a tar archive"), "{}", stderr(&out));
}

/// A tar archive holding one entry, made by hand: `kind` is the tar type flag.
fn one_entry_tar(name: &str, kind: tar::EntryType, link: Option<&str>, device: Option<(u32, u32)>) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).ok(); // set_path refuses `..`: written raw below instead
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    if let Some((major, minor)) = device {
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
    }
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append(&header, std::io::empty()).unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn import_refuses_at_once_what_run_would_refuse_and_says_why_in_words() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (name, tar, says) in [
        ("dotdot", one_entry_tar("../escape", tar::EntryType::Regular, None, None), "../escape climbs out of the layer with .."),
        ("device", one_entry_tar("dev/sda", tar::EntryType::Block, None, Some((8, 0))), "dev/sda is a device node"),
        ("hardlink", one_entry_tar("passwd", tar::EntryType::Link, Some("../../etc/passwd"), None), "passwd is a hard link to ../../etc/passwd, outside the layer"),
    ] {
        let file = dir.path().join(format!("{name}.tar"));
        fs::write(&file, tar).unwrap();
        let out = carton().env("CARTON_ROOT", &state).arg("import").arg(&file).arg(format!("bad:{name}")).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
        let images = carton().env("CARTON_ROOT", &state).args(["images", "-q"]).output().unwrap();
        assert_eq!(stdout(&images), "", "{name}: nothing was stored");
    }
    // Random bytes: a message in words, not the bytes the tar reader quotes.
    let random: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let file = dir.path().join("random.tar");
    fs::write(&file, random).unwrap();
    let out = carton().env("CARTON_ROOT", &state).arg("import").arg(&file).arg("random").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stderr(&out), "carton: not a tar archive (plain or gzip), or a damaged one\n");
    // An archive whose manifest lists no image says so.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "manifest.json", &b"[]\n"[..]).unwrap();
    let file = dir.path().join("empty.tar");
    fs::write(&file, tar.into_inner().unwrap()).unwrap();
    let out = carton().env("CARTON_ROOT", &state).args(["load", "-i"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("nothing to load: the archive lists no image"), "{}", stderr(&out));
}

#[test]
fn an_image_a_running_container_uses_keeps_its_last_name_unless_forced() {
    require_root();
    let state = with_busybox_image();
    let mut running = carton_run_image(state.path()).args(["busybox", "sh", "-c", "echo up; exec sleep 30"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(running.stdout.take().unwrap()), &mut line).unwrap();
    let carton_in = |args: &[&str]| carton().env("CARTON_ROOT", state.path()).args(args).output().unwrap();
    let out = carton_in(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("is in use by the running container"), "{}", stderr(&out));
    // Forced, the name goes but the running container's blobs stay.
    let out = carton_in(&["rmi", "-f", "busybox"]);
    assert_eq!(stdout(&out), "Untagged: busybox:latest\n", "{}", stderr(&out));
    assert_eq!(fs::read_dir(state.path().join("images/blobs/sha256")).unwrap().count(), 3);
    nix::sys::signal::kill(container_init(&running), nix::sys::signal::Signal::SIGKILL).unwrap();
    running.wait().unwrap();
}
