//! Running a Dockerfile: each instruction a new image on top of the last one (the classic
//! builder's way), with a cache of the steps already done.
//!
//! - RUN: a carton container on the current image; its writable layer, committed, is the
//!   step's layer (chapter 9's `commit`);
//! - COPY and ADD: a layer made from the build context's files;
//! - everything else: a change to the image's config only (an "empty layer" in its history).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use step01::{Error, Explain, Process, Result};

use crate::dockerfile::{Dockerfile, Instruction};
use crate::ignore::Ignore;
use crate::words::words;

/// What `carton build` was asked.
pub struct Options {
    /// The build context: the directory COPY reads from.
    pub context: PathBuf,
    pub dockerfile: Dockerfile,
    /// `-t`: the names the result gets.
    pub tags: Vec<step06::Reference>,
    /// `--build-arg KEY=VALUE` (a value of `None`: the environment's).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to stop at.
    pub target: Option<String>,
    pub no_cache: bool,
    /// The network RUN's containers get (`bridge`, `none`, `host`).
    pub network: step03::Mode,
    /// `-q`: RUN's output goes nowhere.
    pub quiet: bool,
    /// `--pull`: FROM's images are pulled again, even when the store has them.
    pub pull: bool,
    /// On a terminal: RUN's output as it comes, under a line that says how long it has run.
    pub progress: bool,
}

/// A stage's state between steps.
struct Stage {
    name: Option<String>,
    /// The image so far: a manifest digest (`None`: scratch, nothing yet).
    image: Option<String>,
    /// Its config's `config` object (Env, Cmd, WorkingDir, User, ...).
    config: Value,
    /// The image's id (its config's digest), `scratch` before anything is added.
    id: String,
    /// ARGs declared in this stage, with their values.
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    /// A CMD was given in this stage (a later ENTRYPOINT keeps it).
    cmd_set: bool,
}

/// The step cache: `build-cache/KEY/manifest` names the image a step made.
fn cache_dir(state_root: &Path) -> PathBuf {
    state_root.join("build-cache")
}

// ANCHOR: build
/// Build `options.dockerfile`; progress goes to `out` in the classic builder's words.
/// Returns the image id (its config's digest) and the manifest digest.
pub fn build(state_root: &Path, options: &Options, out: &mut dyn Write) -> Result<(String, String)> {
    let store = step06::ImageStore::open(state_root)?;
    // Held (shared) for the whole build: a prune waits, and cannot collect the images of
    // the steps between their making and their tag.
    let _held = store.lock(step06::store::Lock::Shared)?;
    let ignore = match std::fs::read_to_string(options.context.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        // Unreadable, it would send what it lists (secrets, often): stop instead.
        Err(e) => return Err(Error::runtime(format!("cannot read {}: {e}", options.context.join(".dockerignore").display()))),
    };
    let instructions = &options.dockerfile.instructions;
    let escape = options.dockerfile.escape;
    // ARGs before the first FROM: for the FROM lines only.
    let mut global_args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let total = instructions.len();
    // The steps to run: the Dockerfile's (numbered), and a base image's ONBUILD triggers,
    // run right after its FROM (not numbered).
    let mut queue: std::collections::VecDeque<(Option<usize>, Instruction)> = instructions.iter().cloned().enumerate().map(|(n, i)| (Some(n), i)).collect();
    let mut triggers_left = 0;
    while let Some((n, instruction)) = queue.pop_front() {
        let instruction = &instruction;
        let say = |out: &mut dyn Write, text: String| {
            let _ = writeln!(out, "{text}");
        };
        match n {
            Some(n) => say(out, format!("Step {}/{} : {}", n + 1, total, shown(instruction))),
            None => say(out, format!(" ---> Trigger: {}", shown(instruction))),
        }
        if instruction.keyword == "ARG" && stages.is_empty() {
            let (name, value) = arg(instruction, escape, &global_args, &options.build_args)?;
            global_args.insert(name, value);
            continue;
        }
        if instruction.keyword == "FROM" {
            if options.target.is_some() && stages.last().is_some_and(|s| s.name.is_some() && s.name == options.target) {
                break; // --target: the stage asked for is done
            }
            let stage = from(state_root, &store, instruction, escape, &global_args, &stages, options.pull)?;
            say(out, format!(" ---> {}", short_id(&stage.id)));
            let triggers = onbuild_triggers(&stage, instruction)?;
            if !triggers.is_empty() {
                say(out, format!("# Executing {} build trigger{}", triggers.len(), if triggers.len() == 1 { "" } else { "s" }));
                triggers_left = triggers.len();
                for trigger in triggers.into_iter().rev() {
                    queue.push_front((None, trigger));
                }
            }
            stages.push(stage);
            continue;
        }
        let earlier = stages_images(&stages);
        let stage = stages.last_mut().ok_or_else(|| Error::runtime("an instruction before FROM"))?;
        let vars = variables(stage);
        let expanded = |text: &str| words(text, escape, &vars).map_err(|e| at(instruction, e.message));
        let mut extra = String::new(); // what else the cache key depends on (files copied, ARG values)
        let change = match instruction.keyword.as_str() {
            "RUN" | "COPY" | "ADD" => None,
            "ARG" => {
                let (name, mut value) = arg(instruction, escape, &vars, &options.build_args)?;
                if value.is_empty() && !instruction.args.contains('=') {
                    // `ARG V` in a stage takes the value an ARG before FROM gave it.
                    value = global_args.get(&name).cloned().unwrap_or_default();
                }
                stage.args.insert(name.clone(), value.clone());
                Some(Box::new(|_: &mut Value| {}) as ConfigEdit)
            }
            _ => Some(config_change(instruction, &expanded, stage)?),
        };
        if instruction.keyword == "RUN" {
            extra = stage.args.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        }
        let copied = if matches!(instruction.keyword.as_str(), "COPY" | "ADD") {
            // The image's layers, for the owners and modes of the directories it has.
            let layers = match &stage.image {
                Some(manifest) => step06::prepare_manifest(state_root, manifest, &Explain::off())?.lowers.iter().rev().map(|l| l.dir.clone()).collect(),
                None => Vec::new(),
            };
            let sources = crate::copy::Sources { context: &options.context, ignore: &ignore, state_root };
            let copy = crate::copy::plan(&sources, instruction, &expanded, &stage.config, &earlier, layers)?;
            extra = copy.fingerprint.clone();
            Some(copy)
        } else {
            None
        };
        let stage = stages.last_mut().expect("a stage");
        let key = cache_key(stage.image.as_deref(), instruction, &variables(stage), &extra);
        let cached = if options.no_cache { None } else { cached(state_root, &store, &key) };
        let manifest = match cached {
            Some(manifest) => {
                say(out, " ---> Using cache".into());
                manifest
            }
            None => {
                let history = json!({"created": step07::state::now_rfc3339(), "created_by": created_by(instruction, &stage.shell)});
                let made = match (instruction.keyword.as_str(), change, copied) {
                    (_, Some(change), _) => step06::add_layer(&store, stage.image.as_deref(), None, change, history, None)?.0,
                    (_, None, Some(copy)) => {
                        let layer = copy.write_layer(&store.root)?;
                        step06::add_layer(&store, stage.image.as_deref(), Some((layer.path.path(), &layer.diff_id)), |_| {}, history, None)?.0
                    }
                    _ => run(state_root, stage, instruction, options, history, out)?,
                };
                remember(state_root, &store, &key, &made)?;
                made
            }
        };
        (stage.id, stage.config) = image_config(&store, &manifest)?;
        stage.image = Some(manifest);
        if n.is_none() {
            triggers_left -= 1;
            if triggers_left == 0 {
                // The triggers ran: they are the base's, not passed on to this image.
                let history = json!({"created": step07::state::now_rfc3339(), "created_by": "#(nop) ONBUILD triggers run"});
                let cleared = step06::add_layer(&store, stage.image.as_deref(), None, |config| config["OnBuild"] = Value::Null, history, None)?.0;
                (stage.id, stage.config) = image_config(&store, &cleared)?;
                stage.image = Some(cleared);
            }
        }
        say(out, format!(" ---> {}", short_id(&stage.id)));
    }
    let last = match &options.target {
        Some(target) => stages.iter().find(|s| s.name.as_deref() == Some(target)).ok_or_else(|| Error::runtime(format!("no stage is called {target:?} (FROM image AS {target} names one)")))?,
        None => stages.last().ok_or_else(|| Error::runtime("the Dockerfile has no FROM"))?,
    };
    let manifest = last.image.clone().ok_or_else(|| Error::runtime("the image is empty: FROM scratch and nothing added"))?;
    let image_id = last.id.clone();
    let _ = writeln!(out, "Successfully built {}", short_id(&image_id));
    let size = store.read_blob(&manifest)?.len() as u64;
    for tag in &options.tags {
        store.tag(&tag.to_string(), &manifest, size, step06::MANIFEST_TYPE)?;
        let _ = writeln!(out, "Successfully tagged {}", tag.familiar());
    }
    Ok((image_id, manifest))
}
// ANCHOR_END: build

/// How a step is shown: as written, its flags first.
fn shown(instruction: &Instruction) -> String {
    let flags: String = instruction.flags.iter().map(|(k, v)| format!("--{k}={v} ")).collect();
    format!("{} {flags}{}", instruction.keyword, instruction.args)
}

/// `created_by` in the image's history, as Docker's classic builder writes it.
fn created_by(instruction: &Instruction, shell: &[String]) -> String {
    match instruction.keyword.as_str() {
        "RUN" => match &instruction.json {
            Some(args) => format!("RUN {}", args.join(" ")),
            None => format!("{} {}", shell.join(" "), instruction.args),
        },
        _ => format!("{} #(nop) {}", shell.join(" "), shown(instruction)),
    }
}

/// An ARG: its name and value (a `--build-arg` wins over the default).
fn arg(instruction: &Instruction, escape: char, vars: &BTreeMap<String, String>, build_args: &BTreeMap<String, String>) -> Result<(String, String)> {
    let word = words(&instruction.args, escape, vars).map_err(|e| at(instruction, e.message))?.join(" ");
    let (name, default) = word.split_once('=').map_or((word.as_str(), None), |(n, d)| (n, Some(d)));
    let value = build_args.get(name).cloned().or(default.map(str::to_string)).unwrap_or_default();
    Ok((name.to_string(), value))
}

/// A FROM: an image of the store, a stage before, or scratch.
fn from(state_root: &Path, store: &step06::ImageStore, instruction: &Instruction, escape: char, args: &BTreeMap<String, String>, stages: &[Stage], pull: bool) -> Result<Stage> {
    let parts = words(&instruction.args, escape, args).map_err(|e| at(instruction, e.message))?;
    if let Some((_, platform)) = instruction.flags.iter().find(|(k, _)| k == "platform") {
        if *platform != step06::image::host_platform() {
            return Err(at(instruction, format!("--platform={platform}: carton builds for this machine only ({})", step06::image::host_platform())));
        }
    }
    let name = parts.get(2).map(|name| name.to_ascii_lowercase()); // stage names are not case-sensitive
    let source = &parts[0];
    let image = if source == "scratch" {
        None
    } else if let Some(stage) = stages.iter().find(|s| s.name.as_deref() == Some(source.to_ascii_lowercase().as_str())) {
        stage.image.clone()
    } else {
        let reference = step06::Reference::parse(source).map_err(|e| at(instruction, e.message))?;
        let manifest = if pull { None } else { store.lookup(&reference)? };
        Some(match manifest {
            Some(manifest) => manifest,
            None => {
                // With the login `carton login` stored for its registry, as `carton pull`.
                let credentials = step06::registry::Logins::new(state_root).get(&reference.registry);
                step06::pull::pull(state_root, &reference, credentials, &step06::progress::Progress::quiet(), &Explain::off())?.manifest_digest
            }
        })
    };
    let (id, config) = image.as_deref().map(|m| image_config(store, m)).transpose()?.unwrap_or_else(|| ("scratch".into(), json!({})));
    let shell = config["Shell"].as_array().map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    Ok(Stage { name, image, config, id, args: BTreeMap::new(), shell, cmd_set: false })
}

/// A base image's ONBUILD triggers, as instructions of this Dockerfile's FROM line.
fn onbuild_triggers(stage: &Stage, from: &Instruction) -> Result<Vec<Instruction>> {
    let texts = stage.config["OnBuild"].as_array().cloned().unwrap_or_default();
    texts.iter().filter_map(Value::as_str).map(|text| crate::dockerfile::trigger(text, from.line).map_err(|message| at(from, format!("the base image's ONBUILD {text:?}: {message}")))).collect()
}

/// The variables an instruction sees: the stage's ARGs, then its ENV (which wins).
fn variables(stage: &Stage) -> BTreeMap<String, String> {
    let mut vars = stage.args.clone();
    for entry in stage.config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if let Some((k, v)) = entry.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    vars
}

/// A change to an image's config (its `config` object).
type ConfigEdit = Box<dyn FnOnce(&mut Value)>;

// ANCHOR: config_change
/// The instructions that change only the config: what each does to it.
fn config_change(instruction: &Instruction, expanded: &dyn Fn(&str) -> Result<Vec<String>>, stage: &mut Stage) -> Result<ConfigEdit> {
    let command = |stage: &Stage| -> Value {
        match &instruction.json {
            Some(args) => json!(args),
            None => json!(stage.shell.iter().cloned().chain([instruction.args.clone()]).collect::<Vec<_>>()),
        }
    };
    let pairs = |text: &str| -> Result<Vec<(String, String)>> {
        let words = expanded(text)?;
        match words.first() {
            // The old form: `ENV KEY the rest of the line`.
            Some(first) if !first.contains('=') => Ok(vec![(first.clone(), words[1..].join(" "))]),
            _ => words
                .iter()
                .map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).filter(|(k, _)| !k.is_empty()).ok_or_else(|| at(instruction, format!("{w:?} is not KEY=VALUE"))))
                .collect(),
        }
    };
    Ok(match instruction.keyword.as_str() {
        "ENV" => {
            let pairs = pairs(&instruction.args)?;
            Box::new(move |config: &mut Value| {
                let mut env: Vec<Value> = config["Env"].as_array().cloned().unwrap_or_default();
                for (key, value) in pairs {
                    env.retain(|e| e.as_str().is_none_or(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str())));
                    env.push(json!(format!("{key}={value}")));
                }
                config["Env"] = Value::Array(env);
            })
        }
        "LABEL" => {
            let pairs = pairs(&instruction.args)?;
            Box::new(move |config: &mut Value| {
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                pairs.into_iter().for_each(|(k, v)| config["Labels"][k] = json!(v));
            })
        }
        "MAINTAINER" => {
            let who = instruction.args.clone();
            Box::new(move |config: &mut Value| {
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                config["Labels"]["maintainer"] = json!(who);
            })
        }
        "CMD" => {
            let cmd = command(stage);
            stage.cmd_set = true;
            Box::new(move |config: &mut Value| config["Cmd"] = cmd)
        }
        "ENTRYPOINT" => {
            let entrypoint = command(stage);
            // A new ENTRYPOINT drops the Cmd the base image had, not one this stage set
            // (Docker's rule).
            let keep_cmd = stage.cmd_set;
            Box::new(move |config: &mut Value| {
                config["Entrypoint"] = entrypoint;
                if !keep_cmd {
                    config["Cmd"] = Value::Null;
                }
            })
        }
        "WORKDIR" => {
            let dir = expanded(&instruction.args)?.join(" ");
            let current = stage.config["WorkingDir"].as_str().unwrap_or("/").to_string();
            let dir = step01::mounts::clean(&Path::new(&current).join(dir)).display().to_string();
            Box::new(move |config: &mut Value| config["WorkingDir"] = json!(dir))
        }
        "USER" => {
            let user = expanded(&instruction.args)?.join(" ");
            Box::new(move |config: &mut Value| config["User"] = json!(user))
        }
        "STOPSIGNAL" => {
            let signal = expanded(&instruction.args)?.join(" ");
            step07::parse_signal(&signal).map_err(|e| at(instruction, e.message))?;
            Box::new(move |config: &mut Value| config["StopSignal"] = json!(signal))
        }
        "EXPOSE" => {
            let mut ports = Vec::new();
            for port in expanded(&instruction.args)? {
                let port = if port.contains('/') { port } else { format!("{port}/tcp") };
                step03::ports::PortMapping::parse(&format!("1:{port}")).map_err(|_| at(instruction, format!("{port} is not a port (80, 53/udp)")))?;
                ports.push(port);
            }
            Box::new(move |config: &mut Value| {
                if !config["ExposedPorts"].is_object() {
                    config["ExposedPorts"] = json!({});
                }
                ports.into_iter().for_each(|p| config["ExposedPorts"][p] = json!({}));
            })
        }
        "VOLUME" => {
            let paths = match &instruction.json {
                Some(paths) => paths.clone(),
                None => expanded(&instruction.args)?,
            };
            Box::new(move |config: &mut Value| {
                if !config["Volumes"].is_object() {
                    config["Volumes"] = json!({});
                }
                paths.into_iter().for_each(|p| config["Volumes"][p] = json!({}));
            })
        }
        "SHELL" => {
            let shell = instruction.json.clone().unwrap_or_default();
            stage.shell = shell.clone();
            Box::new(move |config: &mut Value| config["Shell"] = json!(shell))
        }
        "HEALTHCHECK" => {
            let check = healthcheck(instruction, stage)?;
            Box::new(move |config: &mut Value| config["Healthcheck"] = check)
        }
        "ONBUILD" => {
            let trigger = instruction.args.clone();
            Box::new(move |config: &mut Value| {
                let mut all = config["OnBuild"].as_array().cloned().unwrap_or_default();
                all.push(json!(trigger));
                config["OnBuild"] = Value::Array(all);
            })
        }
        other => return Err(at(instruction, format!("{other} is not a config instruction"))),
    })
}
// ANCHOR_END: config_change

/// HEALTHCHECK's config, in Docker's shape (durations in nanoseconds).
fn healthcheck(instruction: &Instruction, stage: &Stage) -> Result<Value> {
    let (kind, rest) = instruction.args.split_once(char::is_whitespace).unwrap_or((&instruction.args, ""));
    if kind.eq_ignore_ascii_case("NONE") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let rest = rest.trim();
    let test = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(args) => std::iter::once("CMD".to_string()).chain(args).collect::<Vec<_>>(),
        Err(_) => vec!["CMD-SHELL".to_string(), rest.to_string()],
    };
    let _ = stage;
    let mut check = json!({"Test": test});
    for (flag, value) in &instruction.flags {
        let field = match flag.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                check["Retries"] = json!(value.parse::<u32>().map_err(|_| at(instruction, format!("--retries={value}: give a number")))?);
                continue;
            }
            _ => continue,
        };
        let duration = step09::health::parse_go_duration(value).ok_or_else(|| at(instruction, format!("--{flag}={value}: give a duration such as 30s")))?;
        check[field] = json!(duration.as_nanos() as u64);
    }
    Ok(check)
}

// ANCHOR: run
/// A RUN: a container from the stage's image (its env, workdir, user; the build's network),
/// the command run by the stage's shell, its writable layer committed as the new image.
fn run(state_root: &Path, stage: &Stage, instruction: &Instruction, options: &Options, history: Value, out: &mut dyn Write) -> Result<String> {
    let base = stage.image.clone().ok_or_else(|| at(instruction, "RUN needs an image to run in: FROM scratch has no shell or programs".into()))?;
    let mut network = options.network;
    for (flag, value) in &instruction.flags {
        match flag.as_str() {
            "network" if value == "default" => {}
            "network" => network = value.parse().map_err(|e: Error| at(instruction, e.message))?,
            other => return Err(at(instruction, format!("RUN --{other} is not supported by carton yet"))),
        }
    }
    let args = match &instruction.json {
        Some(args) => args.clone(),
        None => stage.shell.iter().cloned().chain([instruction.args.clone()]).collect(),
    };
    let mut process = Process::new(args.clone());
    for entry in stage.config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        process.set_env(entry)?;
    }
    for (key, value) in &stage.args {
        // Build args are in RUN's environment, under the image's own ENV.
        if !stage.config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str).any(|e| e.starts_with(&format!("{key}="))) {
            process.set_env(&format!("{key}={value}"))?;
        }
    }
    if let Some(dir) = stage.config["WorkingDir"].as_str().filter(|d| !d.is_empty()) {
        process.cwd = dir.into();
    }
    let explain = Explain::off();
    let prepared = step06::prepare_manifest(state_root, &base, &explain)?;
    let user = stage.config["User"].as_str().filter(|u| !u.is_empty()).map(|u| step02::User::resolve(u, prepared.passwd_root())).transpose()?;
    if let Some(user) = &user {
        process.set_env(&format!("HOME={}", user.home))?;
    }
    let id = step02::ContainerId::random()?;
    let _ = writeln!(out, " ---> Running in {}", &id.as_str()[..12]);
    let mut spec = step01::container::base_spec(&process, Path::new("rootfs"))?;
    step02::oci::write(&step02::Options { user, ..step02::Options::new(id.clone()) }, &mut spec)?;
    step03::NetworkOptions { mode: network, ..step03::NetworkOptions::new() }.write_oci(&mut spec);
    step04::oci::write(&mut spec, id.as_str(), &step04::Limits::default())?;
    step08::docker::write(&step08::docker::SecurityOptions::default(), &mut spec)?;
    let image_id = prepared.image.id();
    step07::engine::prepare(state_root, id.as_str(), step07::engine::Root::Image(Box::new(prepared)), spec, &explain)?;
    let network_mode = match network {
        step03::Mode::Bridge => "bridge",
        step03::Mode::None => "none",
        step03::Mode::Host => "host",
    };
    // Removed once its layer is committed (and its output goes straight to ours: no log).
    let host_config = step09::HostConfig { network_mode: network_mode.into(), auto_remove: true, ..Default::default() };
    let record = step09::Container::new(id.as_str(), &id.as_str()[..12], "(build)", &image_id, &args, host_config);
    let made = (|| {
        record.save(state_root)?;
        let runtime = step07::Runtime::new(state_root, explain);
        let run_it =
            |started: &mut dyn FnMut()| step09::monitor::run_once(&runtime, id.as_str(), step09::monitor::Stdio::Inherited { tty: false, interactive: false }, Some(Vec::new()), |_| started());
        let ended = if options.quiet {
            // -q: the container's output goes nowhere either.
            let null = std::fs::OpenOptions::new().write(true).open("/dev/null").map_err(|e| Error::runtime(format!("cannot open /dev/null: {e}")))?;
            step09::monitor::with_stdio([None, Some(null.as_raw_fd()), Some(null.as_raw_fd())], || run_it(&mut || {}))
        } else if options.progress {
            crate::progress::while_running(&args.join(" "), |started| run_it(started))?
        } else {
            run_it(&mut || {})
        }?;
        if ended.exit_code != 0 {
            return Err(Error { failure: step01::error::Failure::Runtime, message: format!("The command '{}' returned a non-zero code: {}", args.join(" "), ended.exit_code) });
        }
        let lowers = step07::engine::lowers(state_root, id.as_str())?.unwrap_or_default();
        let layer = tempfile::Builder::new().prefix(".build-").tempfile_in(state_root).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", state_root.display())))?;
        let committed = step05::commit_container(&step05::LayerStore::new(state_root), step05::Driver::Overlay, id.as_str(), &lowers, layer.path(), true)?;
        let store = step06::ImageStore::open(state_root)?;
        Ok(step06::add_layer(&store, Some(&base), Some((layer.path(), &committed.diff_id)), |_| {}, history, None)?.0)
    })();
    let _ = writeln!(out, "Removing intermediate container {}", &id.as_str()[..12]);
    if step09::lifecycle::finish(state_root, id.as_str()).is_err() {
        let _ = step07::engine::teardown(state_root, id.as_str());
    }
    made
}
// ANCHOR_END: run

// ANCHOR: cache
/// A step's cache key: the image it starts from, the instruction as it reads with its
/// variables, and what else it depends on (the files a COPY copies, the ARG values a RUN
/// sees). Not the files' times: a `touch` does not make a step run again.
fn cache_key(base: Option<&str>, instruction: &Instruction, vars: &BTreeMap<String, String>, extra: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(base.unwrap_or("scratch"));
    hash.update(b"\n");
    hash.update(shown(instruction));
    hash.update(b"\n");
    if !matches!(instruction.keyword.as_str(), "RUN" | "CMD" | "ENTRYPOINT") {
        // What the variables made of it (RUN's are expanded by its shell, from its env).
        for (k, v) in vars {
            hash.update(format!("{k}={v}\n"));
        }
    }
    hash.update(extra);
    step05::store::hex(&hash.finalize())
}
// ANCHOR_END: cache

/// The image a step with this key made before, if it is still in the store.
fn cached(state_root: &Path, store: &step06::ImageStore, key: &str) -> Option<String> {
    let manifest = std::fs::read_to_string(cache_dir(state_root).join(key).join("manifest")).ok()?;
    store.read_blob(manifest.trim()).ok().map(|_| manifest.trim().to_string())
}

/// Remember the image a step made; it is marked in use by the cache entry, so a prune
/// keeps it while the entry exists (`carton system prune` removes the entries).
fn remember(state_root: &Path, store: &step06::ImageStore, key: &str, manifest: &str) -> Result<()> {
    let dir = cache_dir(state_root).join(key);
    std::fs::create_dir_all(&dir).map_err(|e| Error::runtime(format!("cannot write the build cache {}: {e}", dir.display())))?;
    step06::store::write_atomically(&dir.join("manifest"), manifest.as_bytes(), step06::store::Durable::No)?;
    store.mark_in_use(&format!("build-{}", &key[..32]), manifest, &dir)?;
    Ok(())
}

/// The images of the stages so far, by name and by number (for COPY --from).
fn stages_images(stages: &[Stage]) -> Vec<(Option<String>, Option<String>)> {
    stages.iter().map(|s| (s.name.clone(), s.image.clone())).collect()
}

/// An image's id (its config's digest) and config (the config's `config` object), the
/// manifest and the config each read once.
fn image_config(store: &step06::ImageStore, manifest: &str) -> Result<(String, Value)> {
    let id = config_digest(store, manifest)?;
    let mut config: Value = serde_json::from_slice(&store.read_blob(&id)?).map_err(|e| Error::runtime(format!("an image config is damaged: {e}")))?;
    let config = if config["config"].is_object() { config["config"].take() } else { json!({}) };
    Ok((id, config))
}

/// The config digest (the image id) of a manifest.
fn config_digest(store: &step06::ImageStore, manifest: &str) -> Result<String> {
    let manifest: Value = serde_json::from_slice(&store.read_blob(manifest)?).map_err(|e| Error::runtime(format!("a manifest is damaged: {e}")))?;
    manifest["config"]["digest"].as_str().map(str::to_string).ok_or_else(|| Error::runtime("a manifest names no config"))
}

/// `sha256:2dba64288a74...` as Docker shows it: 12 hex digits.
fn short_id(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

/// An error at `instruction`'s line.
pub(crate) fn at(instruction: &Instruction, message: String) -> Error {
    Error::runtime(format!("line {}: {} {}: {message}", instruction.line, instruction.keyword, instruction.args))
}
