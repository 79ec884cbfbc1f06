//! Step 11 end to end: `carton build` on busybox-based Dockerfiles shaped like the course
//! notes' (an app, a web page, a multi-stage build), the cache, .dockerignore, build
//! arguments, users, errors. Needs root; offline; RUN's containers have no network.

mod common;
#[path = "../steps/06-images/tests/support/registry.rs"]
mod registry;

use std::process::{Output, Stdio};

use common::*;

/// A state root with the busybox image, and a build context.
struct Lab {
    state: tempfile::TempDir,
    context: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab { state: with_busybox_image(), context: tempfile::tempdir().unwrap() }
    }

    fn file(&self, path: &str, text: &str) {
        let path = self.context.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn carton(&self, args: &[&str]) -> Output {
        carton().env("CARTON_ROOT", self.state.path()).current_dir(self.context.path()).args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `carton build --network none ARGS .`, which must succeed: its output.
    fn build(&self, args: &[&str]) -> String {
        let out = self.carton(&[&["build", "--network", "none"], args, &["."]].concat());
        assert!(out.status.success(), "build {args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.carton(args);
        assert!(out.status.success(), "carton {args:?}: {}", stderr(&out));
        stdout(&out)
    }
}

/// Whether step `step` of a build's output came from the cache.
fn cached_step(output: &str, step: usize) -> bool {
    let after = output.split(&format!("Step {step}/")).nth(1).unwrap_or_default();
    after.lines().nth(1).is_some_and(|line| line == " ---> Using cache")
}

#[test]
fn an_app_image_builds_runs_and_rebuilds_from_the_cache() {
    require_root();
    let lab = Lab::new();
    lab.file("app.sh", "#!/bin/sh\necho \"$GREETING from $(cat /app/built.txt)\"\n");
    lab.file("site/index.html", "<h1>hello</h1>\n");
    lab.file(
        "Dockerfile",
        "# the course notes' python app, on busybox\nFROM busybox\nARG FLAVOUR=plain\nENV GREETING=hello APP_HOME=/app\nWORKDIR $APP_HOME\nCOPY app.sh ./\nCOPY site/ /www/\nRUN echo \"a $FLAVOUR build\" > built.txt && chmod +x app.sh\nEXPOSE 8080\nLABEL course=docker\nHEALTHCHECK --interval=1s --retries=1 CMD test -f /app/built.txt\nCMD [\"/app/app.sh\"]\n",
    );
    let first = lab.build(&["-t", "app:1", "--build-arg", "FLAVOUR=tasty"]);
    assert!(first.starts_with("Step 1/11 : FROM busybox\n ---> "), "{first}");
    assert!(first.contains("Step 7/11 : RUN echo \"a $FLAVOUR build\" > built.txt && chmod +x app.sh\n ---> Running in "), "{first}");
    assert!(first.contains("Removing intermediate container ") && first.contains("Successfully built ") && first.ends_with("Successfully tagged app:1\n"), "{first}");
    let out = lab.carton(&["run", "--rm", "--network", "none", "app:1"]);
    assert_eq!(stdout(&out), "hello from a tasty build\n", "{}", stderr(&out));
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "app:1", "cat", "/www/index.html"]), "<h1>hello</h1>\n");
    // The config: what the instructions said.
    let inspect: serde_json::Value = serde_json::from_str(&lab.ok(&["image", "inspect", "app:1"])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["/app/app.sh"]));
    assert_eq!(config["WorkingDir"], "/app");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(config["Labels"]["course"], "docker");
    // The image's HEALTHCHECK runs in a container of it (chapter 9).
    let id = lab.ok(&["run", "-d", "--network", "none", "app:1", "sleep", "60"]).trim().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab.ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]).trim() != "healthy" {
        assert!(std::time::Instant::now() < deadline, "the image's health check did not run");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    lab.ok(&["rm", "-f", &id]);
    // history: one line per instruction, the metadata ones empty.
    let history = lab.ok(&["history", "app:1"]);
    assert!(history.contains("#(nop) EXPOSE 8080") && history.contains("/bin/sh -c echo \"a $FLAVOUR build\""), "{history}");
    // Rebuilt as it is: every step from the cache. A touch does not change that.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let touched = std::process::Command::new("touch").arg(lab.context.path().join("app.sh")).status().unwrap();
    assert!(touched.success());
    let again = lab.build(&["-t", "app:1", "--build-arg", "FLAVOUR=tasty"]);
    assert_eq!(again.matches(" ---> Using cache").count(), 10, "{again}");
    assert!(!again.contains("Running in"));
    // One copied file changed: from its step on, the steps run again.
    lab.file("site/index.html", "<h1>changed</h1>\n");
    let changed = lab.build(&["-t", "app:1", "--build-arg", "FLAVOUR=tasty"]);
    assert!(cached_step(&changed, 5) && !cached_step(&changed, 6) && !cached_step(&changed, 7), "{changed}");
    // Another build argument: the RUN that sees it runs again.
    let other = lab.build(&["-t", "app:2", "--build-arg", "FLAVOUR=plain"]);
    assert!(!cached_step(&other, 7), "{other}");
    // --no-cache: everything runs.
    let fresh = lab.build(&["--no-cache", "-t", "app:1", "--build-arg", "FLAVOUR=tasty"]);
    assert_eq!(fresh.matches("Using cache").count(), 0, "{fresh}");
    // -q: only the id.
    let quiet = lab.build(&["-q"]);
    assert!(quiet.starts_with("sha256:") && quiet.lines().count() == 1, "{quiet}");
    // The store is an OCI layout that skopeo reads.
    let images = lab.state.path().join("images");
    let out = std::process::Command::new("skopeo").args(["inspect", &format!("oci:{}:docker.io/library/app:1", images.display())]).output().unwrap();
    assert!(out.status.success() && stdout(&out).contains("\"Layers\""), "{}", stderr(&out));
}

#[test]
fn multi_stage_users_ignore_files_and_variables() {
    require_root();
    let lab = Lab::new();
    lab.file(".dockerignore", "# keep secrets and build junk out\nsecrets/\n**/*.tmp\n!keep.tmp\n");
    lab.file("secrets/key", "do not copy");
    lab.file("src/a.tmp", "junk");
    lab.file("keep.tmp", "kept");
    lab.file("src/main.txt", "source");
    lab.file(
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE AS build\nWORKDIR /src\nCOPY . .\nRUN find . -type f | sort > /manifest && echo compiled > /out.bin\nFROM busybox\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd\nUSER app\nCOPY --from=build /out.bin /manifest /opt/\nCOPY --chown=app keep.tmp /home/app/\nVOLUME /data\nRUN id -u > /tmp/uid\n",
    );
    lab.build(&["-t", "small"]);
    assert_eq!(
        lab.ok(&["run", "--rm", "--network", "none", "small", "cat", "/opt/manifest"]),
        "./.dockerignore\n./Dockerfile\n./keep.tmp\n./src/main.txt\n",
        "what .dockerignore leaves in (itself too, as with Docker)"
    );
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "small", "sh", "-c", "cat /tmp/uid; id -un; cat /opt/out.bin"]), "1000\napp\ncompiled\n", "USER applies to later RUNs and to the image");
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "small", "stat", "-c", "%u:%g", "/home/app/keep.tmp"]), "1000:1000\n", "--chown by the image's name");
    // VOLUME: each container of the image gets an anonymous volume there (chapter 10).
    let id = lab.ok(&["create", "--network", "none", "small", "true"]).trim().to_string();
    let mounts = lab.ok(&["inspect", "-f", "{{json .Mounts}}", &id]);
    assert!(mounts.contains("\"Destination\":\"/data\"") && mounts.contains("\"Type\":\"volume\""), "{mounts}");
    lab.ok(&["rm", "-v", &id]);
    // --from an image by name.
    lab.file("Dockerfile", "FROM scratch\nCOPY --from=busybox /bin/busybox /bin/\nCMD [\"/bin/busybox\", \"echo\", \"from scratch\"]\n");
    lab.build(&["-t", "tiny"]);
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "tiny"]), "from scratch\n", "FROM scratch and COPY --from an image");
    lab.file("Dockerfile", "ARG BASE=busybox\nFROM $BASE AS build\nWORKDIR /src\nCOPY . .\nRUN find . -type f | sort > /manifest && echo compiled > /out.bin\nFROM busybox\n");
    // --target stops at a stage: the build stage's image has the sources.
    lab.build(&["--target", "build", "-t", "builder"]);
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "builder", "cat", "/src/src/main.txt"]), "source");
}

#[test]
fn a_failing_run_and_a_bad_dockerfile_say_where_and_leave_nothing() {
    require_root();
    let lab = Lab::new();
    lab.file("Dockerfile", "FROM busybox\nRUN echo before\nRUN exit 3\nCMD [\"true\"]\n");
    let out = lab.carton(&["build", "--network", "none", "-t", "broken", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"), "{}", stderr(&out));
    assert!(stdout(&out).contains("Step 3/4 : RUN exit 3") && !stdout(&out).contains("Successfully"), "{}", stdout(&out));
    assert!(!lab.ok(&["images"]).contains("broken"), "nothing is tagged");
    assert_eq!(lab.ok(&["ps", "-aq"]), "", "its container is removed");
    assert!(!host_mounts().iter().any(|m| m.contains(lab.state.path().to_str().unwrap())), "no mount is left");
    for (dockerfile, message) in [
        ("FROM busybox\nFORM x\n", "Dockerfile:2:1: unknown instruction FORM (did you mean FROM?)"),
        ("FROM busybox\nCOPY --form=a b c\n", "Dockerfile:2:6: COPY has no flag --form"),
        ("FROM busybox\nCOPY onlyone\n", "Dockerfile:2:6: COPY takes one or more sources and a destination"),
        ("RUN echo\n", "Dockerfile:1:1: RUN comes before any FROM"),
        ("FROM busybox\nCOPY missing.txt /\n", "missing.txt: no such file in the build context"),
        ("FROM busybox\nADD https://example.com/x /\n", "ADD of a URL is refused"),
        ("FROM busybox\nENV A=\"open\n", "not closed"),
    ] {
        lab.file("Dockerfile", dockerfile);
        let out = lab.carton(&["build", "--network", "none", "."]);
        assert_eq!(out.status.code(), Some(1), "{dockerfile}");
        assert!(stderr(&out).contains(message), "{dockerfile}: expected {message:?} in {}", stderr(&out));
    }
    let out = lab.carton(&["build", "no-such-dir"]);
    assert!(out.status.code() == Some(1) && stderr(&out).contains("is not a directory"), "{}", stderr(&out));
}

#[test]
fn add_unpacks_a_local_archive_and_copy_does_not() {
    require_root();
    let lab = Lab::new();
    lab.file("tree/etc/app.conf", "port=8080\n");
    lab.file("tree/docs/readme", "read me\n");
    let archive = lab.context.path().join("tree.tgz");
    let made = std::process::Command::new("tar").args(["-czf", archive.to_str().unwrap(), "-C", lab.context.path().join("tree").to_str().unwrap(), "."]).status().unwrap();
    assert!(made.success());
    lab.file("Dockerfile", "FROM busybox\nADD tree.tgz /opt/app/\nCOPY tree.tgz /archives/\n");
    lab.build(&["-t", "added"]);
    let listing = lab.ok(&["run", "--rm", "--network", "none", "added", "sh", "-c", "cat /opt/app/etc/app.conf /opt/app/docs/readme; ls /archives"]);
    assert_eq!(listing, "port=8080\nread me\ntree.tgz\n", "ADD unpacks, COPY copies");
}

#[test]
fn copy_keeps_the_images_directories_refuses_links_out_and_honours_exceptions() {
    require_root();
    let lab = Lab::new();
    lab.file("requirements.txt", "flask\n");
    lab.file("note", "a note\n");
    lab.file(".dockerignore", "private/\n!private/public.pem\n");
    lab.file("private/key", "secret");
    lab.file("private/public.pem", "public");
    lab.file(
        "Dockerfile",
        "FROM busybox\nRUN chmod 1777 /tmp\nWORKDIR /app\nCOPY requirements.txt .\nCOPY note /tmp/\nCOPY private /keys/\nRUN stat -c '%a' /tmp > /tmp-mode; ls /app /keys > /listing\n",
    );
    lab.build(&["-t", "kept"]);
    assert_eq!(
        lab.ok(&["run", "--rm", "--network", "none", "kept", "cat", "/tmp-mode", "/listing"]),
        "1777\n/app:\nrequirements.txt\n\n/keys:\npublic.pem\n",
        "COPY f . goes into WORKDIR; /tmp keeps 1777; an exception under an excluded directory comes back"
    );
    std::os::unix::fs::symlink("/etc", lab.context.path().join("host-etc")).unwrap();
    lab.file("Dockerfile", "FROM busybox\nCOPY host-etc/shadow /stolen\n");
    let out = lab.carton(&["build", "--network", "none", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("host-etc is a symbolic link"), "{}", stderr(&out));
    lab.file("Dockerfile", "FROM busybox\nCOPY host-etc /link\nRUN readlink /link\n");
    let out = lab.carton(&["build", "--network", "none", "."]);
    assert!(out.status.success() && stdout(&out).contains("\n/etc\n"), "a link named last is copied as a link: {}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_built_image_is_pushed_read_by_skopeo_and_pulled_by_a_build_elsewhere() {
    require_root();
    let registry = registry::TestRegistry::start();
    let lab = Lab::new();
    lab.file("Dockerfile", "FROM busybox\nRUN echo built here > /built\nCMD [\"cat\", \"/built\"]\n");
    let name = format!("{}/lab/built:1", registry.addr);
    lab.build(&["-t", &name]);
    lab.ok(&["push", &name]);
    let out = std::process::Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{name}")]).output().unwrap();
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(2), "busybox's layer and the RUN's: {}", stderr(&out));
    // Another machine: its build pulls the base from the registry.
    let elsewhere = Lab::new();
    elsewhere.file("Dockerfile", &format!("FROM {name}\nRUN cat /built\n"));
    let built = elsewhere.build(&["-t", "on-top"]);
    assert!(built.contains("\nbuilt here\n"), "{built}");
}

#[test]
fn a_web_page_image_built_with_expose_and_cmd_serves_its_page() {
    require_root();
    let lab = Lab::new();
    lab.file("site/index.html", "built and served\n");
    lab.file("Dockerfile", "FROM busybox\nCOPY site /www\nEXPOSE 80\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n");
    let script = format!(
        "carton build -q --network none -t web {} > /dev/null\n\
         carton run -d --name web -P web > /dev/null\n\
         listening web 80\n\
         port=$(carton port web 80/tcp | sed 's/.*://')\n\
         busybox wget -q -O - http://127.0.0.1:$port/\n\
         carton rm -f web > /dev/null",
        lab.context.path().display()
    );
    let out = in_throwaway_netns(lab.state.path(), &script);
    assert_eq!(stdout(&out), "built and served\n", "{}", stderr(&out));
}

#[test]
fn a_base_images_onbuild_triggers_run_in_the_build_that_uses_it() {
    require_root();
    let lab = Lab::new();
    lab.file("Dockerfile", "FROM busybox\nONBUILD RUN echo triggered > /triggered\nONBUILD COPY app.txt /app/\n");
    lab.build(&["-t", "lab/base"]);
    lab.file("app.txt", "the child's file\n");
    lab.file("Dockerfile", "FROM lab/base\nCMD [\"cat\", \"/triggered\", \"/app/app.txt\"]\n");
    let out = lab.build(&["-t", "child"]);
    assert!(out.contains("# Executing 2 build triggers\n ---> Trigger: RUN echo triggered > /triggered\n"), "{out}");
    assert_eq!(lab.ok(&["run", "--rm", "--network", "none", "child"]), "triggered\nthe child's file\n");
    let inspect: serde_json::Value = serde_json::from_str(&lab.ok(&["image", "inspect", "child"])).unwrap();
    assert!(inspect[0]["Config"]["OnBuild"].as_array().is_none_or(Vec::is_empty), "the triggers are not passed on: {}", inspect[0]["Config"]);
}

#[test]
fn on_a_terminal_run_shows_its_output_under_a_live_status_line() {
    require_root();
    let lab = Lab::new();
    lab.file("Dockerfile", "FROM busybox\nRUN echo first; sleep 0.6; echo second\n");
    // A terminal for carton: `script` runs it in a pseudo-terminal and prints the screen.
    let line = format!("{} build --network none -t shown .", env!("CARGO_BIN_EXE_carton"));
    let out = std::process::Command::new("script").args(["-qfec", &line, "/dev/null"]).env("CARTON_ROOT", lab.state.path()).current_dir(lab.context.path()).stdin(Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("first") && screen.contains("second"), "RUN's output is shown: {screen:?}");
    assert!(screen.contains("[+] RUN /bin/sh -c echo first; sleep 0.6; echo second (0."), "the status line, with the time so far: {screen:?}");
    assert!(screen.contains("\x1b[2KRemoving intermediate container"), "the status line is gone at the end: {screen:?}");
    // Without a terminal (a pipe), the classic lines only.
    lab.file("Dockerfile", "FROM busybox\nRUN echo plain\n");
    let plain = lab.build(&[]);
    assert!(plain.contains("\nplain\n") && !plain.contains("[+]"), "{plain}");
}
