//! Step 02's part of the OCI runtime spec: `linux.namespaces`, `hostname`, `process.user`
//! and `process.terminal`, plus carton's `--init` as an annotation (the spec has no field
//! for it; crun keeps its own extras as `run.oci.*` annotations the same way).

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Spec, UserBuilder};
use step01::container::JoinedNamespace;
use step01::{ContainerSpec, Error, Result};

use crate::isolation::{Isolation, Stdin};
use crate::user::User;
use crate::Options;

/// `"true"` when the container runs carton's small init as PID 1 (`--init`).
pub const INIT_ANNOTATION: &str = "org.carton.init";

// ANCHOR: read_namespaces
/// The spec's namespaces: a type alone is created new by the clone; a type with a `path`
/// is an existing namespace the child joins. (`cgroup` is step 04's: it is made after
/// the child is in its cgroup.)
pub fn read_namespaces(spec: &Spec, container: &mut ContainerSpec) -> Result<()> {
    // No list at all means what an empty one does: every namespace is the runtime's own.
    container.namespaces = CloneFlags::empty();
    let Some(namespaces) = spec.linux().as_ref().and_then(|linux| linux.namespaces().as_ref()) else { return Ok(()) };
    for namespace in namespaces {
        let kind = match namespace.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => continue,
            LinuxNamespaceType::User => {
                return Err(Error::runtime("config.json asks for a user namespace, which comes with rootless containers (planned); remove {\"type\": \"user\"} from linux.namespaces"))
            }
            LinuxNamespaceType::Time => return Err(Error::runtime("config.json asks for a time namespace, which carton does not make; remove {\"type\": \"time\"} from linux.namespaces")),
        };
        match namespace.path() {
            None => container.namespaces |= kind,
            Some(path) => container.join.push(JoinedNamespace { kind, path: path.clone() }),
        }
    }
    Ok(())
}
// ANCHOR_END: read_namespaces

// ANCHOR: isolation_from_oci
/// This step's hooks for the spec: its hostname, its user, its init. `stdin` says how
/// the caller wired the container's input (a terminal needs a console from the caller).
pub fn isolation_from_oci(spec: &Spec, stdin: Stdin) -> Result<Isolation> {
    let process = spec.process().as_ref().ok_or_else(|| Error::runtime("config.json has no \"process\""))?;
    if process.terminal() == Some(true) && !matches!(stdin, Stdin::Terminal { .. }) {
        return Err(Error::runtime("config.json asks for a terminal (process.terminal), and no console was given to put it on; run it attached (carton run -t), or set \"terminal\": false"));
    }
    let user = user_from_oci(process);
    let init = spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).is_some_and(|value| value == "true");
    Ok(Isolation { hostname: spec.hostname().clone(), init, user, stdin })
}
// ANCHOR_END: isolation_from_oci

/// `user` as the spec's `process.user` (what [`user_from_oci`] reads back).
pub fn user_to_oci(user: &User) -> Result<oci_spec::runtime::User> {
    UserBuilder::default().uid(user.uid).gid(user.gid).additional_gids(user.additional_gids.clone()).build().map_err(|e| Error::runtime(format!("cannot write the user: {e}")))
}

/// The user `process` runs as; `None` for root with no extra groups, who the child is
/// already (nothing to switch).
pub fn user_from_oci(process: &oci_spec::runtime::Process) -> Option<User> {
    let home = process.env().iter().flatten().rev().find_map(|entry| entry.strip_prefix("HOME=")).unwrap_or("/");
    let oci_user = process.user();
    let user = User { uid: oci_user.uid(), gid: oci_user.gid(), additional_gids: oci_user.additional_gids().clone().unwrap_or_default(), home: home.to_string() };
    Some(user).filter(|u| u.uid != 0 || u.gid != 0 || !u.additional_gids.is_empty())
}

// ANCHOR: write
/// Write what `docker run`'s options of this step mean into `spec`: the namespaces this
/// step creates (added to step 01's mount namespace), the hostname, the user, the
/// terminal, `--init`, and the variables Docker adds (`HOSTNAME`, and `TERM` with a
/// terminal, unless set).
pub fn write(options: &Options, spec: &mut Spec) -> Result<()> {
    let hostname = options.effective_hostname();
    crate::validate_hostname(&hostname)?;
    spec.set_hostname(Some(hostname.clone()));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for typ in crate::NAMESPACES.into_iter().chain([LinuxNamespaceType::Mount]) {
        add_namespace(&mut namespaces, typ, None);
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let mut process = spec.process().clone().ok_or_else(|| Error::runtime("the spec has no process to run"))?;
    if let Some(user) = &options.user {
        process.set_user(user_to_oci(user)?);
    }
    process.set_terminal(Some(options.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for (key, value, wanted) in [("HOSTNAME", hostname.as_str(), true), ("TERM", "xterm", options.tty)] {
        if wanted && !env.iter().any(|entry| entry.split_once('=').is_some_and(|(name, _)| name == key)) {
            env.push(format!("{key}={value}"));
        }
    }
    process.set_env(Some(env));
    spec.set_process(Some(process));
    if options.init {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(INIT_ANNOTATION.to_string(), "true".to_string());
        spec.set_annotations(Some(annotations));
    }
    Ok(())
}
// ANCHOR_END: write

/// Add a namespace of type `typ` (replacing one of the same type), for this step and later ones.
pub fn add_namespace(namespaces: &mut Vec<LinuxNamespace>, typ: LinuxNamespaceType, path: Option<std::path::PathBuf>) {
    namespaces.retain(|existing| existing.typ() != typ);
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        builder = builder.path(path);
    }
    namespaces.push(builder.build().expect("a namespace with a type is complete"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn namespaces_are_made_or_joined_by_path() {
        let spec = spec(r#"{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/x"}, {"type": "cgroup"}]}}"#);
        let mut container = ContainerSpec::new("/r".into(), step01::Process::new(vec!["sh".into()]));
        read_namespaces(&spec, &mut container).unwrap();
        assert_eq!(container.namespaces, CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS);
        assert_eq!(container.join, [JoinedNamespace { kind: CloneFlags::CLONE_NEWNET, path: "/run/netns/x".into() }]);
        let user = r#"{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "user"}]}}"#;
        assert!(read_namespaces(&self::spec(user), &mut container).unwrap_err().message.contains("rootless"));
    }

    #[test]
    fn options_written_then_read_give_the_same_container() {
        let mut options = Options::new(crate::ContainerId::random().unwrap());
        options.init = true;
        options.hostname = Some("web".into());
        options.user = Some(User { uid: 33, gid: 33, additional_gids: vec![4], home: "/var/www".into() });
        let mut spec = Spec::default();
        write(&options, &mut spec).unwrap();
        let isolation = isolation_from_oci(&spec, Stdin::Null).unwrap();
        assert_eq!(isolation.hostname.as_deref(), Some("web"));
        assert!(isolation.init);
        let user = isolation.user.unwrap();
        assert_eq!((user.uid, user.gid, user.additional_gids), (33, 33, vec![4]));
    }
}
