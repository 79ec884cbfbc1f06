//! Pull and push against the same local registry (Debian's `docker-registry` on 127.0.0.1,
//! in the bench's network namespace), carton beside `skopeo copy`; and a fully cached
//! rebuild, carton beside `podman build`.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::lab::{run, which, Lab, Podman};
use crate::timing::{interleaved, Row, Timed};

/// A registry for the bench; dropping it ends it (by its pid).
pub struct Registry {
    pub addr: String,
    pub storage: PathBuf,
    child: Child,
}

impl Registry {
    pub fn start(lab: &Lab) -> Result<Registry> {
        let program = which("docker-registry").context("docker-registry is not installed (apt-get install docker-registry)")?;
        let dir = lab.path("registry");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage)?;
        let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        // No blob descriptor cache: a push after the storage is emptied uploads every byte again.
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n", storage.display()),
        )?;
        // Its messages go to a file: a pipe nobody reads would fill and stop it.
        let log = dir.join("registry.log");
        let child = Command::new(program).arg("serve").arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&log)?).spawn()?;
        let mut registry = Registry { addr, storage, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&registry.addr).is_err() {
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry ended ({status}): {}", fs::read_to_string(&log).unwrap_or_default().trim());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {} within 10 s", registry.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image of `megabytes` of random bytes on busybox (random: gzip cannot shrink it, so the
/// bytes on the wire are the size), made by `carton build`.
fn big_image(lab: &Lab, megabytes: usize) -> Result<String> {
    let context = lab.path("big-context");
    fs::create_dir_all(&context)?;
    let mut random = vec![0u8; megabytes << 20];
    fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    fs::write(context.join("blob"), &random)?;
    fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY blob /blob\n")?;
    let name = "bench/big:1".to_string();
    run(lab.carton().args(["build", "-q", "--network", "none", "-t", &name]).arg(&context)).context("cannot build the image to push")?;
    Ok(name)
}

/// Push and pull of one image, each run starting from an empty registry (push) or an empty
/// store (pull).
pub fn push_and_pull(lab: &Lab, megabytes: usize, runs: usize, progress: &dyn Fn(&str)) -> Result<Timed> {
    let skopeo = which("skopeo").context("skopeo is not installed (apt-get install skopeo)")?.display().to_string();
    let registry = Registry::start(lab)?;
    let image = big_image(lab, megabytes)?;
    let remote = format!("{}/bench/big:1", registry.addr);
    run(lab.carton().args(["tag", &image, &remote]))?;
    let empty_registry = vec!["rm".to_string(), "-rf".into(), registry.storage.join("docker").display().to_string()];
    let oci_source = format!("oci:{}:docker.io/{image}", lab.state.join("images").display());
    let pulled_by_carton = lab.path("pulled-carton");
    let pulled_by_skopeo = lab.path("pulled-skopeo");
    let carton = lab.bin.join("carton").display().to_string();
    let rows = vec![
        Row::new(format!("carton push ({megabytes} MiB)"), lab.carton_argv(&["push", &remote]), true).before_each(empty_registry.clone()),
        Row::new(
            format!("skopeo copy oci: → docker:// ({megabytes} MiB)"),
            vec![skopeo.clone(), "copy".into(), "-q".into(), "--dest-tls-verify=false".into(), oci_source, format!("docker://{remote}")],
            false,
        )
        .before_each(empty_registry),
        Row::new(format!("carton pull ({megabytes} MiB, unpacked too)"), vec![carton, "--root".into(), pulled_by_carton.display().to_string(), "pull".into(), "-q".into(), remote.clone()], true)
            .before_each(vec!["rm".into(), "-rf".into(), pulled_by_carton.display().to_string()]),
        Row::new(
            format!("skopeo copy docker:// → oci: ({megabytes} MiB)"),
            vec![skopeo, "copy".into(), "-q".into(), "--src-tls-verify=false".into(), format!("docker://{remote}"), format!("oci:{}:big", pulled_by_skopeo.display())],
            false,
        )
        .before_each(vec!["rm".into(), "-rf".into(), pulled_by_skopeo.display().to_string()]),
    ];
    // The pulls need the image in the registry: the pushes leave it there (the last one,
    // carton's or skopeo's, whole), and each pull row's check runs after both pushes' checks.
    let (measured, skipped) = interleaved(rows, runs, 1, progress);
    let _ = fs::remove_dir_all(&pulled_by_carton);
    Ok((measured, skipped))
}

/// A fully cached rebuild of a 10-step Dockerfile (bench/build.sh's): carton and podman.
pub fn cached_build(lab: &Lab, podman: Option<&Podman>, runs: usize, progress: &dyn Fn(&str)) -> Result<Timed> {
    let app = lab.path("app");
    fs::create_dir_all(&app)?;
    fs::write(app.join("app.sh"), "echo hello\n")?;
    fs::write(
        app.join("Dockerfile"),
        "FROM busybox\nENV APP=/app\nWORKDIR /app\nCOPY app.sh .\nRUN chmod +x app.sh\nRUN echo built > /app/built\nLABEL lab=bench\nEXPOSE 8080\nUSER 1000\nCMD [\"sh\", \"/app/app.sh\"]\n",
    )?;
    let app_dir = app.display().to_string();
    let mut rows = vec![Row::new("carton build (10 steps, all cached)", lab.carton_argv(&["build", "-q", "--network", "none", "-t", "app", &app_dir]), true)];
    if let Some(podman) = podman {
        rows.push(Row::new("podman build (10 steps, all cached)", podman.argv(&["build", "-q", "--network", "none", "-t", "app", &app_dir]), false));
    }
    // The first check of each row builds it for real; the timed runs are all cache hits.
    Ok(interleaved(rows, runs, 1, progress))
}
