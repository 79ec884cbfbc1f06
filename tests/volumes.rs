//! Step 10 end to end: bind mounts edited live, volumes that outlive their containers,
//! anonymous volumes, tmpfs, and the errors. Needs root. Networks only in throwaway
//! namespaces; every test removes what it made.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

/// A state root with the busybox image, removed on drop (its containers first).
struct State(tempfile::TempDir);

impl State {
    fn new() -> State {
        State(with_busybox_image())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// `carton ARGS` in this state root, from directory `cwd`.
    fn carton_in(&self, cwd: &Path, args: &[&str]) -> Output {
        carton().env("CARTON_ROOT", self.path()).current_dir(cwd).args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn carton(&self, args: &[&str]) -> Output {
        self.carton_in(self.path(), args)
    }

    /// `carton ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.carton(args);
        assert!(out.status.success(), "carton {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// `carton run --rm --network none ARGS`: its stdout, stderr and exit code.
    fn run(&self, args: &[&str]) -> Output {
        self.carton(&[&["run", "--rm", "--network", "none"], args].concat())
    }

    fn volumes(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"]).lines().map(str::to_string).collect()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        for id in stdout(&self.carton(&["ps", "-aq", "--no-trunc"])).lines() {
            let _ = self.carton(&["rm", "-f", "-v", id]);
        }
    }
}

#[test]
fn a_bind_mount_serves_a_host_edit_at_once_and_ro_refuses_writes() {
    require_root();
    let state = State::new();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "first version\n").unwrap();
    // The course's live edit: a web server on a host directory, edited on the host.
    let script = format!(
        "carton run -d --name web -v {site}:/www -p 8088:80 busybox httpd -f -p 80 -h /www > /dev/null\n\
         listening web 80\n\
         busybox wget -q -O - http://127.0.0.1:8088/\n\
         echo second version > {site}/index.html\n\
         busybox wget -q -O - http://127.0.0.1:8088/\n\
         carton inspect -f '{{{{.RestartCount}}}} {{{{.State.StartedAt}}}}' web | cut -c1-2\n\
         carton rm -f web > /dev/null",
        site = site.path().display()
    );
    let out = in_throwaway_netns(state.path(), &script);
    assert_eq!(stdout(&out), "first version\nsecond version\n0 \n", "{}", stderr(&out));
    // :ro: the container reads, and its writes fail with EROFS.
    let out = state.run(&["-v", &format!("{}:/www:ro", site.path().display()), "busybox", "sh", "-c", "cat /www/index.html; echo x > /www/new"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "second version\n");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert!(!site.path().join("new").exists());
    // A relative path, from where carton runs (Docker 23+): ./site and . both work.
    let parent = site.path().parent().unwrap();
    let name = site.path().file_name().unwrap().to_str().unwrap();
    let out = state.carton_in(parent, &["run", "--rm", "--network", "none", "-v", &format!("./{name}:/www"), "busybox", "cat", "/www/index.html"]);
    assert_eq!(stdout(&out), "second version\n", "{}", stderr(&out));
    let out = state.carton_in(site.path(), &["run", "--rm", "--network", "none", "-v", ".:/www", "busybox", "ls", "/www"]);
    assert_eq!(stdout(&out), "index.html\n", "{}", stderr(&out));
    // -v makes a missing host directory; --mount refuses it, and nothing is made.
    let missing = site.path().join("made/by/carton");
    let out = state.run(&["-v", &format!("{}:/data", missing.display()), "busybox", "true"]);
    assert!(out.status.success() && missing.is_dir(), "{}", stderr(&out));
    let before = std::fs::read_dir(state.path().join("containers")).map(|d| d.count()).unwrap_or(0);
    let out = state.carton(&["run", "--name", "never", "--mount", "type=bind,source=/no/such/dir,target=/data", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("bind source path does not exist: /no/such/dir"), "{}", stderr(&out));
    let out = state.carton(&["run", "--name", "never", "-v", "data:relative", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("must be an absolute path"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(state.path().join("containers")).map(|d| d.count()).unwrap_or(0), before, "no container was made");
    assert!(state.volumes().is_empty(), "no volume was made");
    assert!(!state.path().join("names/never").exists(), "the name is free");
}

#[test]
fn a_named_volume_keeps_its_files_across_containers_and_is_filled_from_the_image() {
    require_root();
    let state = State::new();
    let out = state.run(&["-v", "notes:/notes", "busybox", "sh", "-c", "echo kept > /notes/today"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&state.run(&["-v", "notes:/notes", "busybox", "cat", "/notes/today"])), "kept\n", "a new container sees the file");
    assert_eq!(state.volumes(), ["notes"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(state.path().join("volumes")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "volumes/ is root's alone: a setuid file a container leaves there is out of the host users' reach");
    // Copy-up: a new volume at a path the image has gets the image's files; nocopy does not.
    assert_eq!(stdout(&state.run(&["-v", "config:/etc", "busybox", "cat", "/etc/passwd"])).lines().next(), Some("root:x:0:0:root:/root:/bin/sh"));
    let data = state.path().join("volumes/config/_data");
    assert!(data.join("passwd").is_file(), "the image's /etc is in the volume");
    let out = state.run(&["--mount", "source=bare,target=/etc,volume-nocopy", "busybox", "ls", "/etc"]);
    assert!(!stdout(&out).contains("passwd"), "{}", stdout(&out));
    // inspect shows the mounts as Docker does.
    let id = state.ok(&["create", "--network", "none", "-v", "notes:/notes:ro", "--tmpfs", "/run", "busybox", "true"]).trim().to_string();
    let mounts: serde_json::Value = serde_json::from_str(&state.ok(&["inspect", "-f", "{{json .Mounts}}", &id])).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!((mounts[0]["Name"].as_str(), mounts[0]["Destination"].as_str(), mounts[0]["RW"].as_bool(), mounts[0]["Driver"].as_str()), (Some("notes"), Some("/notes"), Some(false), Some("local")));
    assert_eq!(mounts[0]["Source"].as_str().unwrap(), state.path().join("volumes/notes/_data").to_str().unwrap());
    assert_eq!((mounts[1]["Type"].as_str(), mounts[1]["Destination"].as_str()), (Some("tmpfs"), Some("/run")));
    // In use (even by a container that is not running): refused; after rm, removed.
    let out = state.carton(&["volume", "rm", "notes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("volume notes is in use by container"), "{}", stderr(&out));
    state.ok(&["rm", &id]);
    assert_eq!(state.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]).lines().count(), 3);
    let inspected: serde_json::Value = serde_json::from_str(&state.ok(&["volume", "inspect", "notes"])).unwrap();
    assert_eq!((inspected[0]["Name"].as_str(), inspected[0]["Driver"].as_str(), inspected[0]["Scope"].as_str()), (Some("notes"), Some("local"), Some("local")));
    assert_eq!(state.ok(&["volume", "rm", "notes"]), "notes\n");
    assert!(!state.path().join("volumes/notes").exists());
    // create, labels, prune: only anonymous volumes unless -a.
    assert_eq!(state.ok(&["volume", "create", "--label", "team=db", "pgdata"]), "pgdata\n");
    assert_eq!(state.ok(&["volume", "ls", "-q", "--filter", "label=team=db"]), "pgdata\n");
    assert!(state.ok(&["volume", "prune", "-f"]).contains("Total reclaimed space"));
    assert_eq!(state.volumes().len(), 3, "named volumes stay");
    state.ok(&["volume", "prune", "-af"]);
    assert!(state.volumes().is_empty());
    let out = state.carton(&["volume", "create", "no/good"]);
    assert!(out.status.code() == Some(1) && stderr(&out).contains("not a volume name"), "{}", stderr(&out));
}

#[test]
fn anonymous_volumes_come_from_the_image_and_go_with_rm_v() {
    require_root();
    let state = State::new();
    // An image that says VOLUME /data, and has a file there.
    let base = state.ok(&["run", "--network", "none", "busybox", "sh", "-c", "mkdir /data && echo from the image > /data/seed"]).trim().to_string();
    assert!(base.is_empty());
    let made = state.ok(&["ps", "-lq"]).trim().to_string();
    state.ok(&["commit", "-c", "VOLUME /data", &made, "lab/db:1"]);
    state.ok(&["rm", &made]);
    let db = state.ok(&["run", "-d", "--network", "none", "--name", "db", "lab/db:1", "sleep", "300"]).trim().to_string();
    let volumes = state.volumes();
    assert_eq!(volumes.len(), 1, "one anonymous volume for the image's /data");
    assert_eq!(volumes[0].len(), 64);
    assert_eq!(state.ok(&["exec", "db", "cat", "/data/seed"]), "from the image\n", "copied up");
    // --volumes-from: another container sees the same volume.
    let out = state.run(&["--volumes-from", "db", "busybox", "sh", "-c", "echo shared > /data/note"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(state.ok(&["exec", "db", "cat", "/data/note"]), "shared\n");
    let out = state.run(&["--volumes-from", "db:ro", "busybox", "sh", "-c", "echo no > /data/note"]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // Plain rm keeps it (dangling); rm -v removes it.
    state.ok(&["rm", "-f", &db]);
    assert_eq!(state.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]).trim(), volumes[0]);
    let again = state.ok(&["run", "-d", "--network", "none", "-v", "/cache", "lab/db:1", "sleep", "300"]).trim().to_string();
    assert_eq!(state.volumes().len(), 3, "two new anonymous volumes, and the old one");
    state.ok(&["rm", "-f", "-v", &again]);
    assert_eq!(state.volumes(), volumes, "rm -v took its two, not the other's");
    // --rm takes its anonymous volumes too.
    assert!(state.run(&["-v", "/scratch", "busybox", "true"]).status.success());
    assert_eq!(state.volumes(), volumes);
    state.ok(&["volume", "rm", &volumes[0]]);
    assert!(!host_mounts().iter().any(|m| m.contains(state.path().to_str().unwrap())), "no mount is left");
    assert_eq!(std::fs::read_dir(state.path().join("volumes")).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count(), 0, "no volume directory is left");
}

#[test]
fn tmpfs_is_in_memory_and_a_linked_target_stays_inside_the_container() {
    require_root();
    let state = State::new();
    let out = state.run(&["--tmpfs", "/run:size=1m", "busybox", "sh", "-c", "ls -A /run | wc -l; grep ' /run ' /proc/mounts"]);
    let text = stdout(&out);
    assert!(text.starts_with("0\ntmpfs /run tmpfs rw,nosuid,nodev,noexec"), "{text}{}", stderr(&out));
    assert!(text.contains("size=1024k"), "{text}");
    let out = state.run(&["--mount", "type=tmpfs,target=/scratch,tmpfs-size=2m", "busybox", "grep", " /scratch ", "/proc/mounts"]);
    assert!(stdout(&out).contains("size=2048k"), "{}", stdout(&out));
    // An image whose /www is a link to /etc: -v lands on the container's /etc, never the host's.
    let base = state.ok(&["run", "--network", "none", "busybox", "ln", "-s", "../../../../etc", "/www"]);
    assert!(base.is_empty());
    let made = state.ok(&["ps", "-lq"]).trim().to_string();
    state.ok(&["commit", &made, "lab/linked:1"]);
    state.ok(&["rm", &made]);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("planted"), "x").unwrap();
    let host_etc_before: Vec<_> = std::fs::read_dir("/etc").unwrap().flatten().map(|e| e.file_name()).collect();
    let out = state.run(&["-v", &format!("{}:/www", site.path().display()), "lab/linked:1", "sh", "-c", "ls /etc/planted; ls /etc/passwd"]);
    assert_eq!(stdout(&out), "/etc/planted\n", "the container's /etc is covered (its passwd hidden): {}", stderr(&out));
    assert!(!Path::new("/etc/planted").exists(), "the host's /etc is untouched");
    assert_eq!(std::fs::read_dir("/etc").unwrap().flatten().count(), host_etc_before.len());
    assert!(!host_mounts().iter().any(|m| m.contains(" /etc ")), "nothing is mounted on the host's /etc");
}

#[test]
fn cp_reaches_into_a_volume_and_diff_leaves_it_out() {
    require_root();
    let state = State::new();
    let id = state.ok(&["run", "-d", "--network", "none", "-v", "site:/www", "busybox", "sleep", "300"]).trim().to_string();
    let page = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(page.path(), "copied\n").unwrap();
    state.ok(&["cp", page.path().to_str().unwrap(), &format!("{id}:/www/page.html")]);
    assert_eq!(state.ok(&["exec", &id, "cat", "/www/page.html"]), "copied\n", "the container sees what cp put in its volume");
    assert!(state.path().join("volumes/site/_data/page.html").is_file());
    state.ok(&["cp", page.path().to_str().unwrap(), &format!("{id}:/etc/../www/./other.html")]);
    assert!(state.path().join("volumes/site/_data/other.html").is_file(), "the path is cleaned before it is matched with the mounts");
    state.ok(&["exec", &id, "sh", "-c", "echo inside > /www/made; echo layer > /layer"]);
    let out_dir = tempfile::tempdir().unwrap();
    state.ok(&["cp", &format!("{id}:/www/made"), out_dir.path().to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out_dir.path().join("made")).unwrap(), "inside\n");
    let diff = state.ok(&["diff", &id]);
    assert!(diff.contains("A /layer") && !diff.contains("/www/"), "what lives in the volume is not in the layer: {diff}");
    let out = state.carton(&["run", "-d", "--network", "none", "-v", "site:/www:ro", "busybox", "sleep", "300"]);
    let ro = stdout(&out).trim().to_string();
    let refused = state.carton(&["cp", page.path().to_str().unwrap(), &format!("{ro}:/www/")]);
    assert!(refused.status.code() == Some(1) && stderr(&refused).contains("read-only"), "{}", stderr(&refused));
}

/// A tmpfs of the test's own, shared (as `/` is on systemd hosts), unmounted on drop with
/// whatever was mounted under it.
struct SharedMount(tempfile::TempDir);

impl SharedMount {
    fn new() -> SharedMount {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| assert!(std::process::Command::new("mount").args(args).status().unwrap().success(), "mount {args:?}");
        run(&["-t", "tmpfs", "tmpfs", dir.path().to_str().unwrap()]);
        run(&["--make-shared", dir.path().to_str().unwrap()]);
        SharedMount(dir)
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").args(["-R", self.0.path().to_str().unwrap()]).status();
    }
}

#[test]
fn rslave_lets_a_container_see_what_the_host_mounts_later_and_the_default_does_not() {
    require_root();
    let state = State::new();
    let shared = SharedMount::new();
    let base = shared.0.path();
    std::fs::create_dir(base.join("later")).unwrap();
    let follows = state.ok(&["run", "-d", "--network", "none", "-v", &format!("{}:/mnt:rslave", base.display()), "busybox", "sleep", "300"]).trim().to_string();
    let private = state.ok(&["run", "-d", "--network", "none", "-v", &format!("{}:/mnt", base.display()), "busybox", "sleep", "300"]).trim().to_string();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs", base.join("later").to_str().unwrap()]).status().unwrap().success());
    let sees = |id: &str| state.ok(&["exec", id, "sh", "-c", "grep -c ' /mnt/later ' /proc/mounts || true"]).trim().to_string();
    assert_eq!(sees(&follows), "1", "rslave: the host's new mount reached the container");
    assert_eq!(sees(&private), "0", "rprivate (the default): it did not");
    state.ok(&["rm", "-f", &follows, &private]);
}
