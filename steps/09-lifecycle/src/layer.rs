//! `diff` and `commit`: what a container changed, read from its writable layer (chapter 5),
//! and that layer made the top of a new image (chapter 6).

use std::path::Path;

use serde_json::{json, Value};
use step01::{Error, Result};

use crate::record::Container;

/// The image layers under container `id`; an error for a container whose root is a
/// directory of its own (`--rootfs`): it has no layer to read.
fn lowers(state_root: &Path, id: &str, command: &str) -> Result<Vec<step05::Layer>> {
    step07::engine::lowers(state_root, id)?
        .ok_or_else(|| Error::runtime(format!("{command} reads a container's writable layer, and this container runs on a directory of its own (--rootfs): its changes are in that directory")))
}

// ANCHOR: diff
/// `diff`: what container `id` added (A), changed (C) and deleted (D), from its upper
/// directory against the image's layers.
pub fn diff(state_root: &Path, id: &str) -> Result<Vec<step05::diff::Change>> {
    let lowers = lowers(state_root, id, "diff")?;
    step05::changes(&step05::LayerStore::new(state_root), step05::Driver::Overlay, id, &lowers)
}
// ANCHOR_END: diff

/// What `commit` records besides the layer.
pub struct CommitOptions<'a> {
    pub author: Option<&'a str>,
    pub message: Option<&'a str>,
    /// `-c`: Dockerfile instructions applied to the new image's config.
    pub changes: &'a [String],
    /// Freeze a running container while its layer is read (Docker's default).
    pub pause: bool,
}

// ANCHOR: commit
/// `commit`: container `id`'s writable layer as a new layer over its image, tagged
/// `reference`. Returns the new image's id.
pub fn commit(state_root: &Path, id: &str, reference: &step06::Reference, options: &CommitOptions) -> Result<String> {
    let lowers = lowers(state_root, id, "commit")?;
    let store = step06::ImageStore::open(state_root)?;
    let base = store
        .in_use()?
        .into_iter()
        .find(|(holder, _)| holder == id)
        .map(|(_, manifest)| manifest)
        .ok_or_else(|| Error::runtime(format!("container {id}'s image is not recorded in the image store")))?;
    let mut edits = Vec::new();
    for change in options.changes {
        edits.push(parse_change(change)?);
    }
    let layer = tempfile::Builder::new().prefix(".commit-").tempfile_in(store.root.as_path()).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", store.root.display())))?;
    let running = Container::load(state_root, id)?.is_some_and(|c| c.is_running());
    // A running container's files could change while they are read: frozen meanwhile.
    let runtime = step07::Runtime::new(state_root, step01::Explain::off());
    let frozen = options.pause && running && !runtime.state(id).is_ok_and(|state| state["status"] == "paused") && runtime.set_paused(id, true).is_ok();
    let committed = step05::commit_container(&step05::LayerStore::new(state_root), step05::Driver::Overlay, id, &lowers, layer.path(), true);
    if frozen {
        let _ = runtime.set_paused(id, false);
    }
    let committed = committed?;
    let mut history = json!({"created": step07::state::now_rfc3339(), "created_by": "carton commit"});
    if let Some(author) = options.author {
        history["author"] = json!(author);
    }
    if let Some(message) = options.message {
        history["comment"] = json!(message);
    }
    let (_, image_id) = step06::add_layer(&store, Some(&base), Some((layer.path(), &committed.diff_id)), |config| edits.into_iter().for_each(|edit| edit(config)), history, Some(reference))?;
    Ok(image_id)
}
// ANCHOR_END: commit

type Edit = Box<dyn FnOnce(&mut Value)>;

/// One `-c` change, in a Dockerfile's words: `CMD ["httpd", "-f"]`, `CMD httpd -f`,
/// `ENTRYPOINT ...`, `ENV KEY=VALUE`, `EXPOSE 80[/tcp]`, `WORKDIR /www`, `USER nobody`,
/// `LABEL KEY=VALUE`, `STOPSIGNAL SIGINT`.
fn parse_change(text: &str) -> Result<Edit> {
    let (instruction, rest) = text.trim().split_once(char::is_whitespace).map(|(i, r)| (i.to_ascii_uppercase(), r.trim().to_string())).unwrap_or((text.trim().to_ascii_uppercase(), String::new()));
    let bad = |what: &str| Error::runtime(format!("invalid -c {text:?}: {what}"));
    if rest.is_empty() {
        return Err(bad("give the instruction's value too, e.g. CMD [\"sh\"]"));
    }
    // The exec form (a JSON array), or the shell form (run by /bin/sh -c).
    let command = |rest: &str| -> Result<Value> {
        if rest.starts_with('[') {
            let list: Vec<String> = serde_json::from_str(rest).map_err(|_| bad("the exec form is a JSON array of strings"))?;
            Ok(json!(list))
        } else {
            Ok(json!(["/bin/sh", "-c", rest]))
        }
    };
    let key_value = |rest: &str| -> Result<(String, String)> {
        match rest.split_once('=').or_else(|| rest.split_once(' ')) {
            Some((key, value)) if !key.is_empty() => Ok((key.trim().to_string(), value.trim().trim_matches('"').to_string())),
            _ => Err(bad("give KEY=VALUE")),
        }
    };
    Ok(match instruction.as_str() {
        "CMD" => {
            let cmd = command(&rest)?;
            Box::new(move |config: &mut Value| config["Cmd"] = cmd)
        }
        "ENTRYPOINT" => {
            let entrypoint = command(&rest)?;
            Box::new(move |config: &mut Value| config["Entrypoint"] = entrypoint)
        }
        "ENV" => {
            let (key, value) = key_value(&rest)?;
            Box::new(move |config: &mut Value| {
                let mut env: Vec<Value> = config["Env"].as_array().cloned().unwrap_or_default();
                env.retain(|entry| entry.as_str().is_none_or(|e| !e.starts_with(&format!("{key}="))));
                env.push(json!(format!("{key}={value}")));
                config["Env"] = Value::Array(env);
            })
        }
        "EXPOSE" => {
            let port = if rest.contains('/') { rest.clone() } else { format!("{rest}/tcp") };
            step03::ports::PortMapping::parse(&format!("1:{port}")).map_err(|_| bad("give a port, e.g. 80 or 53/udp"))?;
            Box::new(move |config: &mut Value| {
                if !config["ExposedPorts"].is_object() {
                    config["ExposedPorts"] = json!({});
                }
                config["ExposedPorts"][port] = json!({});
            })
        }
        "WORKDIR" if rest.starts_with('/') => Box::new(move |config: &mut Value| config["WorkingDir"] = json!(rest)),
        "WORKDIR" => return Err(bad("WORKDIR takes an absolute path")),
        "USER" => Box::new(move |config: &mut Value| config["User"] = json!(rest)),
        "STOPSIGNAL" => {
            step07::parse_signal(&rest)?;
            Box::new(move |config: &mut Value| config["StopSignal"] = json!(rest))
        }
        "LABEL" => {
            let (key, value) = key_value(&rest)?;
            Box::new(move |config: &mut Value| {
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                config["Labels"][key] = json!(value);
            })
        }
        "VOLUME" => {
            let paths: Vec<String> =
                if rest.starts_with('[') { serde_json::from_str(&rest).map_err(|_| bad("the JSON form is an array of paths"))? } else { rest.split_whitespace().map(str::to_string).collect() };
            if let Some(relative) = paths.iter().find(|p| !p.starts_with('/')) {
                return Err(bad(&format!("VOLUME takes absolute paths, not {relative:?}")));
            }
            Box::new(move |config: &mut Value| {
                if !config["Volumes"].is_object() {
                    config["Volumes"] = json!({});
                }
                paths.into_iter().for_each(|path| config["Volumes"][path] = json!({}));
            })
        }
        _ => return Err(bad("carton's commit applies CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL, STOPSIGNAL and VOLUME")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config_as_a_dockerfile_would() {
        let mut config = json!({"Env": ["PATH=/bin", "A=1"]});
        for change in ["CMD [\"httpd\", \"-f\"]", "ENV A=2", "expose 80", "WORKDIR /www", "LABEL lab=web", "ENTRYPOINT echo hi", "VOLUME /data /logs"] {
            parse_change(change).unwrap()(&mut config);
        }
        assert_eq!(config["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(config["Env"], json!(["PATH=/bin", "A=2"]));
        assert_eq!(config["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(config["WorkingDir"], "/www");
        assert_eq!(config["Labels"]["lab"], "web");
        assert_eq!(config["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(config["Volumes"], json!({"/data": {}, "/logs": {}}));
        for bad in ["RUN make", "CMD", "WORKDIR www", "EXPOSE http", "CMD [1, 2", "VOLUME data"] {
            assert!(parse_change(bad).is_err(), "{bad}");
        }
    }
}
