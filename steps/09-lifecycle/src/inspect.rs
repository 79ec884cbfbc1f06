//! `inspect`: a container as `docker inspect` shows it (the fields scripts and course
//! notes use), from its record, its bundle and its layer; and the `-f` templates
//! (`{{.State.Pid}}`, `{{json .Config}}`).

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::logs;
use crate::record::{Container, Status};

// ANCHOR: container_json
/// Container `container`'s details, in Docker's shape.
pub fn container_json(state_root: &Path, container: &Container) -> Value {
    let dir = Container::dir(state_root, &container.id);
    let spec = step07::Bundle::load(&dir).ok().map(|bundle| bundle.spec);
    let process = spec.as_ref().and_then(|s| s.process().clone()).unwrap_or_default();
    let status = container.observed_status();
    let layer = state_root.join("overlay/containers").join(&container.id);
    let mut ports = Map::new();
    for mapping in &container.ports {
        // step 03's words: `0.0.0.0:8080 -> 80/tcp`
        if let Some((host, inside)) = mapping.split_once(" -> ") {
            let (ip, port) = host.rsplit_once(':').unwrap_or((host, ""));
            ports.insert(inside.to_string(), json!([{ "HostIp": ip, "HostPort": port }]));
        }
    }
    let gateway = container.ip_address.as_ref().and_then(|_| step03::subnet_from_env().ok()).map(|subnet| subnet.gateway().to_string()).unwrap_or_default();
    let user = process.user();
    let mut details = json!({
        "Id": container.id,
        "Created": container.created,
        "Path": container.path,
        "Args": container.args,
        "State": {
            "Status": status.to_string(),
            "Running": matches!(status, Status::Running | Status::Paused),
            "Paused": status == Status::Paused,
            "Restarting": status == Status::Restarting,
            "OOMKilled": container.state.oom_killed,
            "Dead": status == Status::Dead,
            "Pid": if matches!(status, Status::Running | Status::Paused) { container.state.pid } else { 0 },
            "ExitCode": container.state.exit_code,
            "Error": container.state.error,
            "StartedAt": container.state.started_at,
            "FinishedAt": container.state.finished_at,
        },
        "Image": container.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": logs::path(&dir, &container.id),
        "Name": format!("/{}", container.name),
        "RestartCount": container.restart_count,
        "Driver": "overlay2",
        "HostConfig": {
            "AutoRemove": container.host_config.auto_remove,
            "RestartPolicy": container.host_config.restart_policy,
            "NetworkMode": container.host_config.network_mode,
            "PortBindings": container.host_config.port_bindings,
            "LogConfig": { "Type": "json-file", "Config": log_config(container) },
        },
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "MergedDir": dir.join("rootfs"),
                "UpperDir": layer.join("upper"),
                "WorkDir": layer.join("work"),
            },
        },
        "Mounts": [],
        "Config": {
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "User": if user.uid() == 0 && user.gid() == 0 { String::new() } else { format!("{}:{}", user.uid(), user.gid()) },
            "Tty": container.tty,
            "OpenStdin": container.interactive,
            "Env": process.env().clone().unwrap_or_default(),
            "Cmd": process.args().clone().unwrap_or_default(),
            "Image": container.image,
            "WorkingDir": process.cwd(),
            "StopSignal": container.stop_signal,
            "StopTimeout": container.stop_timeout,
        },
        "NetworkSettings": {
            "IPAddress": container.ip_address.clone().unwrap_or_default(),
            "Gateway": gateway,
            "MacAddress": container.ip_address.as_deref().and_then(|ip| ip.parse().ok()).map(|ip| step03::MacAddress::for_address(ip).to_string()).unwrap_or_default(),
            "Ports": ports,
        },
    });
    // Docker shows these only for a container with a health check.
    if let Some(health) = &container.state.health {
        details["State"]["Health"] = json!(health);
    }
    if let Some(check) = &container.healthcheck {
        details["Config"]["Healthcheck"] = json!(check);
    }
    details
}
// ANCHOR_END: container_json

fn log_config(container: &Container) -> Value {
    let mut config = Map::new();
    if container.host_config.log_max_size > 0 {
        config.insert("max-size".into(), json!(container.host_config.log_max_size.to_string()));
        config.insert("max-file".into(), json!(container.host_config.log_max_file.to_string()));
    }
    Value::Object(config)
}

// ANCHOR: render
/// A `-f` template: text with `{{.Path.To.Field}}` and `{{json .Path}}` (Go's
/// text/template, the part people use with `inspect`). A string prints as it is, anything
/// else as JSON; a missing field is an error naming it.
pub fn render(template: &str, value: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let close = rest[open..].find("}}").ok_or_else(|| format!("template {template:?}: an unclosed {{{{"))? + open;
        out.push_str(&rest[..open]);
        let action = rest[open + 2..close].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(path) => (true, path.trim()),
            None => (false, action),
        };
        let path = path.strip_prefix('.').ok_or_else(|| format!("template {template:?}: {{{{{action}}}}} is not a field (fields start with a dot: {{{{.State.Pid}}}})"))?;
        let mut field = value;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            field = field.get(part).ok_or_else(|| format!("template {template:?}: there is no field {part} in .{path}"))?;
        }
        match field {
            Value::String(text) if !as_json => out.push_str(text),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
// ANCHOR_END: render

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_reach_into_the_json() {
        let value = json!({"State": {"Pid": 42, "Status": "running"}, "Config": {"Env": ["A=1"]}, "Name": "/web"});
        assert_eq!(render("{{.State.Pid}} {{.State.Status}}{{.Name}}", &value).unwrap(), "42 running/web");
        assert_eq!(render("{{json .Config}}", &value).unwrap(), r#"{"Env":["A=1"]}"#);
        assert!(render("{{.State.Nope}}", &value).unwrap_err().contains("Nope"));
        assert!(render("{{State}}", &value).is_err());
    }
}
