//! The image commands that talk to a registry, through the real `carton` binary, against
//! Debian's docker-registry started on 127.0.0.1 by each test: pull, push, login, logout,
//! `run` pulling what is missing, save and load. Needs root, docker-registry and skopeo.

mod common;
#[path = "../steps/06-images/tests/support/registry.rs"]
mod registry;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::*;
use registry::TestRegistry;

/// `carton ARGS` with its own state root.
fn carton_in(state: &Path, args: &[&str]) -> Output {
    carton().env("CARTON_ROOT", state).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// A state root with busybox:latest, tagged `name` too.
fn busybox_as(name: &str) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    ok(carton_in(state.path(), &["bootstrap", "busybox"]));
    ok(carton_in(state.path(), &["tag", "busybox", name]));
    state
}

#[test]
fn push_then_pull_says_what_docker_says_and_run_pulls_a_missing_image() {
    require_root();
    let registry = TestRegistry::start();
    let name = format!("{}/lab/busybox:1", registry.addr);
    let source = busybox_as(&name);
    let pushed = ok(carton_in(source.path(), &["push", &name]));
    let lines: Vec<&str> = pushed.lines().collect();
    assert_eq!(lines[0], format!("The push refers to repository [{}/lab/busybox]", registry.addr));
    assert!(lines[1..].iter().filter(|l| l.ends_with(": Pushed")).count() == 1, "busybox's one layer (the config goes quietly): {pushed}");
    assert!(lines.last().unwrap().starts_with("1: digest: sha256:") && lines.last().unwrap().contains(" size: "), "{pushed}");
    let again = ok(carton_in(source.path(), &["push", &name]));
    assert_eq!(again.lines().filter(|l| l.ends_with(": Layer already exists")).count(), 1, "{again}");

    // A fresh machine: `run` finds no image, pulls it (saying so on stderr), and runs it.
    let target = tempfile::tempdir().unwrap();
    let out = carton_in(target.path(), &["run", "--rm", "--network", "none", &name, "echo", "pulled and running"]);
    assert_eq!(stdout(&out), "pulled and running\n", "{}", stderr(&out));
    assert!(stderr(&out).starts_with(&format!("Unable to find image '{name}' locally\n1: Pulling from lab/busybox\n")), "{}", stderr(&out));
    assert!(stderr(&out).contains("Status: Downloaded newer image for"), "{}", stderr(&out));
    let out = carton_in(target.path(), &["run", "--rm", "--network", "none", "--pull", "always", &name, "true"]);
    assert!(stderr(&out).starts_with("1: Pulling from lab/busybox\n") && stderr(&out).contains("Status: Image is up to date for"), "{}", stderr(&out));
    let out = carton_in(target.path(), &["run", "--rm", "--network", "none", &name, "true"]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "an image that is here is not pulled again");

    // The same image under another tag: its layer is here already.
    ok(carton_in(source.path(), &["tag", &name, &format!("{}/lab/busybox:2", registry.addr)]));
    ok(carton_in(source.path(), &["push", &format!("{}/lab/busybox:2", registry.addr)]));
    let pulled = ok(carton_in(target.path(), &["pull", &format!("{}/lab/busybox:2", registry.addr)]));
    assert!(pulled.contains(": Already exists\n") && !pulled.contains("Pull complete"), "{pulled}");
    assert!(pulled.ends_with(&format!("{}/lab/busybox:2\n", registry.addr)), "{pulled}");
    let up_to_date = ok(carton_in(target.path(), &["image", "pull", &name]));
    assert!(up_to_date.contains(&format!("Status: Image is up to date for {name}")), "{up_to_date}");
    let inspected: serde_json::Value = serde_json::from_str(&ok(carton_in(target.path(), &["image", "inspect", &name]))).unwrap();
    let digest = pushed.lines().last().unwrap().split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(inspected[0]["RepoDigests"], serde_json::json!([format!("{}/lab/busybox@{digest}", registry.addr)]));

    // By digest: no tag (Docker's <none>), and it runs by that name.
    let by_digest = format!("{}/lab/busybox@{digest}", registry.addr);
    let fresh = tempfile::tempdir().unwrap();
    let pulled = ok(carton_in(fresh.path(), &["pull", &by_digest]));
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let listed = ok(carton_in(fresh.path(), &["images"]));
    let row = listed.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with(&format!("{}/lab/busybox ", registry.addr)) && row.contains(" <none> "), "{listed}");
    let out = carton_in(fresh.path(), &["run", "--rm", "--network", "none", "--pull", "never", &by_digest, "echo", "by digest"]);
    assert_eq!(stdout(&out), "by digest\n", "{}", stderr(&out));
}

#[test]
fn explain_shows_every_request_of_a_pull_with_its_curl() {
    require_root();
    let registry = TestRegistry::start();
    let name = format!("{}/explained:1", registry.addr);
    let source = busybox_as(&name);
    ok(carton_in(source.path(), &["push", "-q", &name]));
    let out = carton_in(tempfile::tempdir().unwrap().path(), &["pull", "--explain", &name]);
    let explained = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{explained}");
    for expected in [
        format!("resolve the name {}/explained:1: registry {}, repository explained, 1", registry.addr, registry.addr),
        format!("request: GET http://{}/v2/explained/manifests/1", registry.addr),
        "-H 'Accept: application/vnd.oci.image.index.v1+json".to_string(),
        format!("curl -sL 'http://{}/v2/explained/blobs/sha256:", registry.addr),
        "store layer sha256:".to_string(),
    ] {
        assert!(explained.contains(&expected), "missing {expected:?} in:\n{explained}");
    }
}

#[test]
fn login_checks_the_password_saves_it_for_root_only_and_logout_forgets_it() {
    require_root();
    let registry = TestRegistry::with_token_auth("alice", "wonderland");
    let name = format!("{}/private/busybox:1", registry.addr);
    let state = busybox_as(&name);
    let login = |password: &str| {
        let mut child = carton()
            .env("CARTON_ROOT", state.path())
            .args(["login", "-u", "alice", "--password-stdin", &registry.addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let refused = carton_in(state.path(), &["push", &name]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(stderr(&refused).contains(&format!("run `carton login {}` first", registry.addr)), "{}", stderr(&refused));

    let wrong = login("guess");
    assert_eq!(wrong.status.code(), Some(125), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("refused the user name \"alice\""), "{}", stderr(&wrong));
    assert!(!state.path().join("auth.json").exists(), "a refused login is not saved");

    assert_eq!(ok(login("wonderland")), "Login Succeeded\n");
    let auth = state.path().join("auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&auth).unwrap()).unwrap();
    assert_eq!(saved["auths"][registry.addr.as_str()]["auth"], "YWxpY2U6d29uZGVybGFuZA==", "Docker's format: base64(user:password)");
    ok(carton_in(state.path(), &["push", "-q", &name]));
    assert!(registry.token_requests() >= 2, "the login and the push each asked for a token");

    assert_eq!(ok(carton_in(state.path(), &["logout", &registry.addr])), format!("Removing login credentials for {}\n", registry.addr));
    assert_eq!(ok(carton_in(state.path(), &["logout", &registry.addr])), format!("Not logged in to {}\n", registry.addr));
    assert_eq!(carton_in(state.path(), &["push", &name]).status.code(), Some(125));
}

#[test]
fn saved_images_load_back_and_run_and_rmi_takes_their_unpacked_layers() {
    require_root();
    let state = busybox_as("lab/app:1");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("images.tar");
    ok(carton_in(state.path(), &["save", "-o", archive.to_str().unwrap(), "busybox", "lab/app:1"]));
    // skopeo reads it as Docker's archive.
    let out = std::process::Command::new("skopeo").args(["inspect", &format!("docker-archive:{}:lab/app:1", archive.display())]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let fresh = tempfile::tempdir().unwrap();
    let loaded = ok(carton_in(fresh.path(), &["load", "-i", archive.to_str().unwrap()]));
    assert_eq!(loaded, "Loaded image: busybox:latest\nLoaded image: lab/app:1\n");
    let out = carton_in(fresh.path(), &["run", "--rm", "--network", "none", "lab/app:1", "echo", "loaded"]);
    assert_eq!(stdout(&out), "loaded\n", "{}", stderr(&out));
    assert_eq!(fs::read_dir(fresh.path().join("overlay/layers")).unwrap().count(), 1);

    // One name goes: the image stays. The last name goes: its blobs and unpacked layer go.
    assert_eq!(ok(carton_in(fresh.path(), &["rmi", "busybox"])), "Untagged: busybox:latest\n");
    let removed = ok(carton_in(fresh.path(), &["image", "rm", "lab/app:1"]));
    assert_eq!(removed.lines().filter(|l| l.starts_with("Deleted: sha256:")).count(), 3, "manifest, config, layer: {removed}");
    assert_eq!(fs::read_dir(fresh.path().join("overlay/layers")).unwrap().flatten().count(), 0, "the unpacked layer went with its image");
    assert_eq!(fs::read_dir(fresh.path().join("images/blobs/sha256")).unwrap().count(), 0);

    let from_stdin = carton().env("CARTON_ROOT", fresh.path()).args(["load", "-q"]).stdin(fs::File::open(&archive).unwrap()).output().unwrap();
    assert_eq!((from_stdin.status.code(), stdout(&from_stdin).as_str()), (Some(0), ""), "{}", stderr(&from_stdin));
    let history = ok(carton_in(fresh.path(), &["history", "lab/app:1"]));
    let rows: Vec<&str> = history.lines().collect();
    assert!(rows[0].starts_with("IMAGE") && rows.len() == 2 && rows[1].contains("carton: ADD rootfs /"), "{history}");
}

#[test]
fn bad_names_and_unreachable_registries_are_clear_errors_with_exit_125() {
    let state = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("127.0.0.1:{port}/app:1");
    for (args, message) in [
        (vec!["pull", "UPPER:case"], "invalid reference format \"UPPER:case\": repository names must be lowercase"),
        (vec!["pull", "a::b"], "invalid reference format \"a::b\""),
        (vec!["push", "busybox@sha256:0000"], "invalid reference format"),
        (vec!["pull", unreachable.as_str()], "cannot reach the registry"),
        (vec!["push", "not-here:1"], "no image not-here:1 here"),
        (vec!["login", "localhost:5000"], "give a user name with -u"),
        (vec!["load", "-i", "/nonexistent/archive.tar"], "cannot open /nonexistent/archive.tar"),
        (vec!["history", "nothing"], "no image nothing:latest here"),
    ] {
        let out = carton_in(state.path(), &args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let garbage = state.path().join("garbage.tar");
    fs::write(&garbage, b"this is not a tar archive at all").unwrap();
    let out = carton_in(state.path(), &["load", "-i", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(fs::read_dir(state.path().join("images/blobs/sha256")).unwrap().count() == 0);
}

#[test]
fn an_app_image_built_by_umoci_on_carton_s_busybox_is_pulled_and_runs_as_its_user() {
    require_root();
    let registry = TestRegistry::start();
    let state = busybox_as("busybox:latest");
    let work = tempfile::tempdir().unwrap();
    let tool = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program).args(args).env("HOME", work.path()).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    };
    // carton's store is an OCI layout: skopeo copies busybox out of it, umoci adds a layer.
    let layout = work.path().join("layout");
    let store = state.path().join("images");
    tool("skopeo", &["--insecure-policy", "copy", &format!("oci:{}:docker.io/library/busybox:latest", store.display()), &format!("oci:{}:app", layout.display())]);
    let bundle = work.path().join("bundle");
    tool("umoci", &["unpack", "--image", &format!("{}:app", layout.display()), bundle.to_str().unwrap()]);
    fs::write(bundle.join("rootfs/app.sh"), "echo \"app running as $(id -un) in $(pwd)\"\n").unwrap();
    tool("umoci", &["repack", "--image", &format!("{}:app", layout.display()), bundle.to_str().unwrap()]);
    tool("umoci", &["config", "--image", &format!("{}:app", layout.display()), "--config.entrypoint", "sh", "--config.cmd", "/app.sh", "--config.user", "www-data", "--config.workingdir", "/tmp"]);
    let name = format!("{}/lab/app:1", registry.addr);
    tool("skopeo", &["--insecure-policy", "copy", "--dest-tls-verify=false", &format!("oci:{}:app", layout.display()), &format!("docker://{name}")]);

    // busybox's layer is here already; only the app's layer comes down.
    let pulled = ok(carton_in(state.path(), &["pull", &name]));
    assert_eq!(pulled.lines().filter(|l| l.ends_with(": Already exists")).count(), 1, "{pulled}");
    assert_eq!(pulled.lines().filter(|l| l.ends_with(": Pull complete")).count(), 1, "{pulled}");
    let out = carton_in(state.path(), &["run", "--rm", "--network", "none", &name]);
    assert_eq!(stdout(&out), "app running as www-data in /tmp\n", "{}", stderr(&out));
    let history = ok(carton_in(state.path(), &["history", "--no-trunc", &name]));
    let steps: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(steps.len(), 3, "umoci's config, umoci's layer, busybox's layer: {history}");
    assert!(steps[0].contains("umoci config") && steps[0].contains(" 0B "), "{history}");
    assert!(steps[1].starts_with("<missing>") && steps[1].contains("umoci repack"), "{history}");
    assert!(steps[2].contains("carton: ADD rootfs /") && steps[2].contains("MB"), "{history}");
}

#[test]
fn a_tag_that_moves_leaves_its_old_image_behind_until_image_prune() {
    require_root();
    let registry = TestRegistry::start();
    let name = format!("{}/moving:latest", registry.addr);
    let source = busybox_as(&name);
    ok(carton_in(source.path(), &["push", "-q", &name]));
    let target = tempfile::tempdir().unwrap();
    ok(carton_in(target.path(), &["pull", "-q", &name]));

    // The tag moves to another image: an imported tarball of one file.
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("only-file"), "v2\n").unwrap();
    let tarball = work.path().join("v2.tar");
    assert!(std::process::Command::new("tar").arg("-C").arg(work.path()).arg("-cf").arg(&tarball).arg("only-file").status().unwrap().success());
    ok(carton_in(source.path(), &["import", tarball.to_str().unwrap(), &name]));
    ok(carton_in(source.path(), &["push", "-q", &name]));
    ok(carton_in(target.path(), &["pull", "-q", &name]));
    let layers = || fs::read_dir(target.path().join("overlay/layers")).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count();
    assert_eq!(layers(), 2, "busybox's layer is still unpacked, with no name");

    // rmi deletes its own image's blobs only, as Docker's does: the dangling ones stay.
    fs::write(work.path().join("only-file"), "extra\n").unwrap();
    let extra = work.path().join("extra.tar");
    assert!(std::process::Command::new("tar").arg("-C").arg(work.path()).arg("-cf").arg(&extra).arg("only-file").status().unwrap().success());
    ok(carton_in(target.path(), &["import", extra.to_str().unwrap(), "extra:1"]));
    let removed = ok(carton_in(target.path(), &["rmi", "extra:1"]));
    assert_eq!(removed.lines().filter(|l| l.starts_with("Deleted: sha256:")).count(), 3, "extra's manifest, config and layer only: {removed}");
    assert_eq!(layers(), 2);

    let refused = carton_in(target.path(), &["image", "prune"]);
    assert_eq!(refused.status.code(), Some(125), "no terminal to ask on, and no -f");
    assert!(stderr(&refused).contains("give -f"), "{}", stderr(&refused));
    let pruned = ok(carton_in(target.path(), &["image", "prune", "-f"]));
    assert_eq!(pruned.lines().filter(|l| l.starts_with("Deleted: sha256:")).count(), 3, "the old manifest, config and layer: {pruned}");
    assert!(pruned.ends_with("MB\n") && pruned.contains("Total reclaimed space: "), "{pruned}");
    assert_eq!(layers(), 1, "the old image's unpacked layer went too");
    let out = carton_in(target.path(), &["run", "--rm", "--network", "none", "--pull", "never", "--entrypoint", "/only-file", &name]);
    assert_eq!(out.status.code(), Some(126), "the new image is whole (its one file is not a program): {}", stderr(&out));
    assert_eq!(ok(carton_in(target.path(), &["image", "prune", "-f"])), "Total reclaimed space: 0B\n");
}

#[test]
fn registries_elsewhere_speak_https_checked_against_the_system_roots() {
    require_root();
    let registry = TestRegistry::with_tls();
    let name = format!("{}/secure:1", registry.addr);
    let source = busybox_as(&name);
    // The CA is not one of this machine's: the certificate is refused, and nothing is sent.
    let untrusted = carton_in(source.path(), &["push", &name]);
    assert_eq!(untrusted.status.code(), Some(125));
    assert!(stderr(&untrusted).contains(&format!("cannot reach the registry {name_host} at https://{name_host}", name_host = registry.addr)), "{}", stderr(&untrusted));
    assert!(stderr(&untrusted).contains("this machine does not trust the registry's certificate"), "{}", stderr(&untrusted));
    // Trusted (SSL_CERT_FILE replaces the system's roots, as with OpenSSL), the same push works.
    let with_ca = |args: &[&str]| carton().env("CARTON_ROOT", source.path()).env("SSL_CERT_FILE", registry.ca_certificate()).args(args).output().unwrap();
    ok(with_ca(&["push", "-q", &name]));
    ok(with_ca(&["rmi", &name]));
    ok(with_ca(&["pull", "-q", &name]));
}
