//! Chapter 10 in the CLI: `run`'s mount flags, and `carton volume ...`, Docker's spelling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use step01::Error;
use step10::{mounts, MountPoint, Request, VolumeStore};

use crate::print_stdout;

/// `run`'s and `create`'s mounts (chapter 10).
#[derive(Args)]
pub struct MountFlags {
    /// Bind a host path or mount a volume: HOST-PATH:TARGET, NAME:TARGET, or TARGET (a new anonymous volume); then :ro
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]TARGET[:OPTIONS]")]
    volume: Vec<String>,
    /// A mount in long form: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long = "mount", value_name = "FIELDS")]
    mount: Vec<String>,
    /// A file system in memory at PATH (e.g. /run:size=64m)
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// The volumes and bind mounts of another container (:ro or :rw to change how)
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    volumes_from: Vec<String>,
}

impl MountFlags {
    /// The mounts asked for, checked (nothing is made yet): a bad one stops the run first.
    pub fn requests(&self) -> step01::Result<Vec<Request>> {
        let cwd = std::env::current_dir().map_err(|e| Error::runtime(format!("cannot read the current directory: {e}")))?;
        let mut requests = Vec::new();
        for text in &self.volume {
            requests.push(step10::spec::parse_volume(text, &cwd)?);
        }
        for text in &self.mount {
            requests.push(step10::spec::parse_mount(text, &cwd)?);
        }
        for text in &self.tmpfs {
            requests.push(step10::spec::parse_tmpfs(text)?);
        }
        Ok(requests)
    }

    /// `--volumes-from`'s containers (their ids) and modes, checked.
    pub fn volumes_from(&self, state_root: &Path) -> step01::Result<Vec<(String, Option<String>)>> {
        let mut sources = Vec::new();
        for given in &self.volumes_from {
            let (container, mode) = match given.rsplit_once(':') {
                Some((container, mode @ ("ro" | "rw"))) => (container, Some(mode.to_string())),
                Some((_, mode)) => return Err(Error::runtime(format!("invalid --volumes-from {given:?}: the mode {mode:?} is ro or rw"))),
                None => (given.as_str(), None),
            };
            sources.push((step09::names::resolve(state_root, container)?, mode));
        }
        Ok(sources)
    }
}

/// The mounts of `--volumes-from`'s containers, read now (under the volumes' lock: a
/// `rm -v` of one of them cannot take a volume away meanwhile).
pub fn inherited(state_root: &Path, sources: &[(String, Option<String>)]) -> step01::Result<Vec<MountPoint>> {
    let mut inherited = Vec::new();
    for (id, mode) in sources {
        inherited.extend(mounts::volumes_from(state_root, id, mode.as_deref())?);
    }
    Ok(inherited)
}

/// An image's `VOLUME`s, from the annotation step 06 writes.
pub fn image_volumes(annotations: &[(String, String)]) -> Vec<PathBuf> {
    annotations.iter().filter(|(key, _)| key == "org.carton.image.volumes").flat_map(|(_, value)| value.split(',').filter(|v| !v.is_empty()).map(PathBuf::from).collect::<Vec<_>>()).collect()
}

/// What a container started with `--rm` leaves when it goes: its mounts, to release its
/// anonymous volumes after it (none for a container that is kept).
pub struct AutoRemoved(Vec<MountPoint>);

impl AutoRemoved {
    /// Read before the container runs (its record of mounts goes with it).
    pub fn of(state_root: &Path, id: &str) -> AutoRemoved {
        let mounts = mounts::of_container(state_root, id);
        // (Most containers have no mounts: then the record is not read at all.)
        let auto_remove = !mounts.is_empty() && step09::Container::load(state_root, id).ok().flatten().is_some_and(|c| c.host_config.auto_remove);
        AutoRemoved(if auto_remove { mounts } else { Vec::new() })
    }

    /// The container is gone: its anonymous volumes too, unless another container uses one.
    pub fn release(&self, state_root: &Path, id: &str) {
        if self.0.is_empty() || step09::Container::dir(state_root, id).exists() {
            return;
        }
        if let Err(error) = mounts::remove_anonymous(state_root, &self.0) {
            eprintln!("carton: the container's anonymous volumes stay: {error}");
        }
    }
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (a random name when none is given)
    Create {
        /// A label KEY=VALUE
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Only the local driver exists
        #[arg(short = 'd', long = "driver", default_value = "local")]
        driver: String,
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only the names
        #[arg(short, long)]
        quiet: bool,
        /// dangling=true (used by no container), name=TEXT, label=KEY[=VALUE]
        #[arg(short, long, value_name = "FILTER")]
        filter: Vec<String>,
    },
    /// Show volumes' details as JSON
    Inspect {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
    },
    /// Remove volumes (not one a container uses)
    #[command(alias = "remove")]
    Rm {
        /// No error for a volume that does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (every unused one with -a)
    Prune {
        /// Named volumes too
        #[arg(short, long)]
        all: bool,
        /// Do not ask first
        #[arg(short, long)]
        force: bool,
    },
}

/// `carton volume ...`.
pub fn run(state_root: &Path, command: VolumeCommand) -> anyhow::Result<u8> {
    let store = VolumeStore::new(state_root);
    match command {
        VolumeCommand::Create { labels, driver, name } => {
            if driver != "local" {
                return Err(Error::runtime(format!("no volume driver {driver:?}: carton has the local one only")).into());
            }
            let labels = labels.iter().map(|label| label.split_once('=').map_or((label.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string()))).collect::<BTreeMap<_, _>>();
            let _lock = store.lock(step06::store::Lock::Shared)?;
            let (volume, _) = store.create(name.as_deref(), labels)?;
            print_stdout(&format!("{}\n", volume.name));
        }
        VolumeCommand::Ls { quiet, filter } => {
            let users = mounts::users(state_root);
            let mut volumes = store.list()?;
            for filter in &filter {
                let (key, value) = filter.split_once('=').ok_or_else(|| Error::runtime(format!("invalid filter {filter:?}: give KEY=VALUE (dangling=true, name=web, label=team)")))?;
                let keep: Box<dyn Fn(&step10::Volume) -> bool> = match (key, value) {
                    ("dangling", "true" | "1") => Box::new(|v| !users.contains_key(&v.name)),
                    ("dangling", "false" | "0") => Box::new(|v| users.contains_key(&v.name)),
                    ("name", text) => Box::new(move |v| v.name.contains(text)),
                    ("label", label) => Box::new(move |v| match label.split_once('=') {
                        Some((k, value)) => v.labels.get(k).is_some_and(|found| found == value),
                        None => v.labels.contains_key(label),
                    }),
                    _ => return Err(Error::runtime(format!("invalid filter {filter:?}: carton's volume ls filters by dangling=true|false, name and label")).into()),
                };
                volumes.retain(|v| keep(v));
            }
            let mut text = if quiet { String::new() } else { "DRIVER    VOLUME NAME\n".to_string() };
            for volume in &volumes {
                text += &if quiet { format!("{}\n", volume.name) } else { format!("{:<9} {}\n", volume.driver, volume.name) };
            }
            print_stdout(&text);
        }
        VolumeCommand::Inspect { volumes } => {
            let mut all = Vec::new();
            for name in &volumes {
                all.push(store.get(name)?.ok_or_else(|| Error::runtime(format!("no such volume: {name}")))?);
            }
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&all)?));
        }
        VolumeCommand::Rm { force, volumes } => {
            let mut failed = false;
            for name in &volumes {
                match mounts::remove_volume(state_root, name) {
                    Ok(()) => print_stdout(&format!("{name}\n")),
                    Err(_) if force && store.get(name).ok().flatten().is_none() => {}
                    Err(error) => {
                        eprintln!("carton: {error}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        VolumeCommand::Prune { all, force } => {
            let what = if all { "all volumes not used by at least one container" } else { "all anonymous volumes not used by at least one container" };
            if !force && !crate::images::confirm("carton volume prune", &format!("WARNING! This will remove {what}."))? {
                return Ok(0);
            }
            let removed = mounts::prune(state_root, all)?;
            let names: Vec<String> = removed.iter().map(|(name, _)| name.clone()).collect();
            let freed = removed.iter().map(|(_, size)| size).sum();
            print_stdout(&format!("{}Total reclaimed space: {}\n", crate::containers::deleted_list("Deleted Volumes", &names), step09::stats::decimal_size(freed)));
        }
    }
    Ok(0)
}
