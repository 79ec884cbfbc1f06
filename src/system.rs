//! `carton info` and `carton version`: what this machine and this carton are, in the shape
//! of Docker's. There is no server part: carton has no daemon.

use std::path::Path;

use step09::{Container, Status};

use crate::print_stdout;

/// `carton version`.
pub fn version() -> anyhow::Result<u8> {
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    print_stdout(&format!(
        "Client: carton\n Version:           {}\n OCI runtime spec:  {}\n Built with:        Rust\n OS/Arch:           linux/{}\n Kernel:            {kernel}\n\nServer: none (carton has no daemon: each command does its work, and a monitor process watches each running container)\n",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION,
        step06::image::host_architecture(),
    ));
    Ok(0)
}

/// `carton info`.
pub fn info(state_root: &Path) -> anyhow::Result<u8> {
    let containers: Vec<Container> =
        std::fs::read_dir(state_root.join("containers")).into_iter().flatten().flatten().filter_map(|entry| Container::load(state_root, entry.file_name().to_str()?).ok().flatten()).collect();
    let count = |wanted: &[Status]| containers.iter().filter(|c| wanted.contains(&c.observed_status())).count();
    let images = step06::ImageStore::open(state_root).and_then(|store| step06::image::list(&store)).map(|list| list.len()).unwrap_or(0);
    let layout = step04::Layout::detect();
    let cgroup_version = match layout.version() {
        Some(step04::Version::V2) => "2",
        Some(step04::Version::V1) => "1",
        None => "none",
    };
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| uname.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory = step09::stats::binary_size(step09::stats::host_memory());
    print_stdout(&format!(
        "Client: carton {version}\n\
         \n\
         Server: none (daemonless: each command is a process of its own)\n \
         Containers: {total}\n  Running: {running}\n  Paused: {paused}\n  Stopped: {stopped}\n \
         Images: {images}\n \
         Storage Driver: overlay (chapter 5; vfs where overlayfs cannot be used)\n \
         Logging Driver: json-file\n \
         Cgroup Driver: cgroupfs\n \
         Cgroup Version: {cgroup_version}\n \
         Cgroup Layout: {layout}\n \
         Runtimes: carton (built in), carton-oci (runc's command line)\n \
         Security Options: seccomp (Profile: builtin, Docker's default), capabilities (Docker's 14), masked paths, device rules\n \
         Kernel Version: {kernel}\n \
         Operating System: {os}\n \
         OSType: linux\n \
         Architecture: {machine}\n \
         CPUs: {cpus}\n \
         Total Memory: {memory}\n \
         Name: {hostname}\n \
         Carton Root Dir: {root}\n",
        version = env!("CARGO_PKG_VERSION"),
        total = containers.len(),
        running = count(&[Status::Running, Status::Restarting]),
        paused = count(&[Status::Paused]),
        stopped = count(&[Status::Created, Status::Exited, Status::Dead]),
        kernel = field(|u| u.release()),
        machine = field(|u| u.machine()),
        hostname = field(|u| u.nodename()),
        root = state_root.display(),
    ));
    Ok(0)
}

/// `carton system prune`: stopped containers, (with `--volumes`) anonymous volumes no
/// container uses, then (with `-a`) the names of images no
/// container uses, then every blob and layer nothing needs. carton's one network, the
/// default bridge, stays (as Docker's predefined networks do).
pub fn prune(state_root: &Path, all: bool, volumes: bool, force: bool) -> anyhow::Result<u8> {
    let images = if all { "all images without at least one container associated to them" } else { "all dangling images" };
    let volumes_line = if volumes { "  - all anonymous volumes not used by at least one container\n" } else { "" };
    let warning = format!("WARNING! This will remove:\n  - all stopped containers\n{volumes_line}  - {images}\n  - all build cache\n");
    if !force && !crate::images::confirm("carton system prune", &warning)? {
        return Ok(0);
    }
    let (containers, containers_freed) = crate::containers::remove_stopped(state_root);
    // The build cache goes too (as Docker's): the images only it kept become unneeded.
    let _ = std::fs::remove_dir_all(state_root.join("build-cache"));
    let removed_volumes = if volumes { step10::mounts::prune(state_root, false)? } else { Vec::new() };
    let volumes_freed: u64 = removed_volumes.iter().map(|(_, size)| size).sum();
    let volume_names: Vec<String> = removed_volumes.into_iter().map(|(name, _)| name).collect();
    let (mut images, unused_freed) = if all { crate::images::remove_unused(state_root)? } else { (Vec::new(), 0) };
    let (blobs, unneeded_freed) = crate::images::remove_unneeded(state_root)?;
    images.extend(blobs.into_iter().map(|digest| format!("deleted: {digest}")));
    let images_freed = unused_freed + unneeded_freed;
    print_stdout(&format!(
        "{}{}{}Total reclaimed space: {}\n",
        crate::containers::deleted_list("Deleted Containers", &containers),
        crate::containers::deleted_list("Deleted Volumes", &volume_names),
        crate::containers::deleted_list("Deleted Images", &images),
        step09::stats::decimal_size(containers_freed + volumes_freed + images_freed)
    ));
    Ok(0)
}
