//! The book is part of the product: it must build, every `{{#include file:anchor}}`
//! must point at real code, every internal link must land, and every `console` example
//! must print what the book says it prints.
//!
//! Console blocks are run as root (the examples create containers), in one fresh
//! directory per page, with the workspace's binaries on PATH. See book/src/book-tests.md.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn book_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book")
}

/// Every page: book/src/*.md and one level of directories below (the appendix's
/// `how-fast/`, whose page sits beside the report and charts carton-bench writes).
fn pages() -> Vec<PathBuf> {
    let entries = |dir: &Path| fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    let top = entries(&book_dir().join("src"));
    let mut pages: Vec<PathBuf> = top.iter().filter(|p| p.is_dir()).flat_map(|dir| entries(dir)).chain(top.iter().cloned()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    pages.sort();
    pages
}

#[test]
fn the_book_builds_with_mdbook() {
    let out = tempfile::tempdir().unwrap();
    let mut book = mdbook_driver::MDBook::load(book_dir()).expect("book/book.toml and SUMMARY.md load");
    book.config.build.build_dir = out.path().to_path_buf();
    book.build().expect("mdbook build");
    let chapter = fs::read_to_string(out.path().join("ch01-filesystem.html")).unwrap();
    assert!(chapter.contains("pivot_root"), "chapter 1 rendered without its code");
    assert!(!chapter.contains("{{#include"), "an include was left unexpanded");
}

#[test]
fn every_include_names_an_existing_file_and_anchor() {
    let mut problems = Vec::new();
    let mut includes = 0;
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        for directive in directives(&text) {
            includes += 1;
            let (file, anchor) = match directive.split_once(':') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (directive.as_str(), None),
            };
            let path = page.parent().unwrap().join(file);
            let Ok(source) = fs::read_to_string(&path) else {
                problems.push(format!("{}: {{{{#include {directive}}}}}: no file {}", name(&page), path.display()));
                continue;
            };
            if let Some(anchor) = anchor.filter(|a| !a.chars().next().unwrap().is_ascii_digit()) {
                let has = |marker: &str| source.lines().any(|l| l.trim_end().ends_with(&format!("{marker}: {anchor}")));
                if !has("ANCHOR") || !has("ANCHOR_END") {
                    problems.push(format!("{}: no ANCHOR/ANCHOR_END {anchor:?} in {file}", name(&page)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "broken includes:\n{}", problems.join("\n"));
    assert!(includes > 0, "the book includes no code at all");
}

#[test]
fn every_internal_link_lands() {
    let src = book_dir().join("src");
    let mut problems = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
            let linked = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            if !linked.exists() {
                problems.push(format!("{}: link to missing {target}", name(&page)));
                continue;
            }
            if let Some(fragment) = fragment {
                let ids = heading_ids(&fs::read_to_string(&linked).unwrap_or_default());
                if !ids.contains(fragment) {
                    problems.push(format!("{}: no heading #{fragment} in {file} (has: {ids:?})", name(&page)));
                }
            }
        }
    }
    // Every written chapter in SUMMARY.md exists (drafts have an empty target).
    for target in links(&fs::read_to_string(src.join("SUMMARY.md")).unwrap()) {
        if !target.is_empty() && !src.join(&target).exists() {
            problems.push(format!("SUMMARY.md lists missing {target}"));
        }
    }
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn console_examples_print_what_the_book_says() {
    require_root();
    let (failures, commands) = run_console_examples(&pages_to_run(), None);
    assert!(failures.is_empty(), "console examples that do not match:\n\n{}", failures.join("\n\n"));
    assert!(commands > 0, "the book has no console examples");
}

/// A new network namespace inherits the host's IPv4 settings, so on a host that already
/// forwards IPv4 (any machine running Docker) chapter 3 would find forwarding on before carton
/// switches it on, and its `carton network prune` example would print something else. Each
/// page's namespace starts from a fresh machine's settings instead; this imitates such a host
/// (the namespace starts with forwarding on) and runs chapter 3 there.
#[test]
fn chapter_3_prints_what_it_says_on_a_host_that_already_forwards() {
    require_root();
    let page = book_dir().join("src/ch03-network.md");
    let (failures, commands) = run_console_examples(&[page], Some("echo 1 > /proc/sys/net/ipv4/ip_forward"));
    assert!(failures.is_empty(), "chapter 3 on a host that forwards:\n\n{}", failures.join("\n\n"));
    assert!(commands > 0);
}

/// The pages whose examples this run checks: all of them, or those named (file names, comma
/// separated) in CARTON_BOOK_PAGES. The cgroup v2 VM (tests/vm/) runs only the pages whose
/// output depends on the cgroup mode.
fn pages_to_run() -> Vec<PathBuf> {
    let Ok(names) = std::env::var("CARTON_BOOK_PAGES") else { return pages() };
    let names: Vec<&str> = names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let chosen: Vec<PathBuf> = pages().into_iter().filter(|page| names.contains(&name(page).as_str())).collect();
    assert_eq!(chosen.len(), names.len(), "CARTON_BOOK_PAGES names a page that book/src does not have: {names:?}");
    chosen
}

/// Run the `console` examples of `pages`, each page in a fresh directory and a throwaway
/// network namespace, as root, with the workspace's binaries on PATH. `inherited` is a shell
/// line run in each namespace first, to imitate what it inherited from a host unlike ours.
/// Returns the failures (the first of each page: later commands build on it) and how many
/// commands ran.
fn run_console_examples(pages: &[PathBuf], inherited: Option<&str>) -> (Vec<String>, usize) {
    // One run at a time: the examples start containers in the background and give them a
    // moment (`sleep 0.5`) before they look, which a second run beside them could stretch.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    ensure_step_binaries();
    let mode = cgroup_version();
    let mut failures = Vec::new();
    let mut commands = 0;
    for page in pages {
        let blocks: Vec<Block> = console_blocks(&fs::read_to_string(page).unwrap()).into_iter().filter(|block| block.cgroup.is_none_or(|only| Some(only) == mode)).collect();
        if blocks.is_empty() {
            continue;
        }
        let workdir = tempfile::tempdir().unwrap();
        let network = ThrowawayNetwork::new();
        for line in inherited.into_iter().chain([FRESH_NETNS_SETUP]) {
            let set = network.command().args(["sh", "-c", line]).status().unwrap();
            assert!(set.success(), "cannot prepare the page's network namespace: {line}");
        }
        'page: for block in blocks {
            for example in block.examples {
                commands += 1;
                let out = network
                    .command()
                    .args(["sh", "-c"])
                    .arg(format!("exec 2>&1\n{}", example.command))
                    .current_dir(workdir.path())
                    .env("PATH", &path)
                    .env("CARTON_ROOT", workdir.path().join(".carton-state"))
                    .output()
                    .unwrap();
                let actual = String::from_utf8_lossy(&out.stdout).into_owned();
                let actual_lines: Vec<&str> = actual.lines().collect();
                let expected: Vec<&str> = example.expected.iter().map(String::as_str).collect();
                if !out.status.success() || !lines_match(&expected, &actual_lines) {
                    failures.push(format!(
                        "{}: $ {}\n  exit status: {:?}\n  expected:\n{}\n  actual:\n{}",
                        name(page),
                        example.command,
                        out.status.code(),
                        indent(&example.expected.join("\n")),
                        indent(&actual)
                    ));
                    break 'page; // later commands of this page build on this one
                }
            }
        }
        // A page removes what it made: a container it leaves keeps its mounts (and its
        // monitor) after the page's directory is gone. Said, then removed.
        let state = workdir.path().join(".carton-state");
        let left = network.command().args(["carton", "ps", "-aq", "--no-trunc"]).env("PATH", &path).env("CARTON_ROOT", &state).output().unwrap();
        let left = String::from_utf8_lossy(&left.stdout).into_owned();
        if !left.trim().is_empty() {
            failures.push(format!(
                "{}: the page leaves containers behind (its last example should remove them): {}",
                name(page),
                left.split_whitespace().map(|id| &id[..12]).collect::<Vec<_>>().join(" ")
            ));
            for id in left.split_whitespace() {
                let _ = network.command().args(["carton", "rm", "-f", "-v", id]).env("PATH", &path).env("CARTON_ROOT", &state).output();
            }
        }
    }
    (failures, commands)
}

/// A network namespace for one page's examples, kept alive by a `sleep` this test
/// starts and ends: whatever an example does to the network (a bridge, NAT rules,
/// published ports) happens there, never on the host.
struct ThrowawayNetwork {
    holder: std::process::Child,
}

impl ThrowawayNetwork {
    /// A new namespace as `unshare --net` makes it: only `lo`, down, and the IPv4 settings
    /// it inherited from the host.
    fn new() -> ThrowawayNetwork {
        let holder = Command::new("unshare").args(["--net", "sleep", "900"]).spawn().expect("unshare (util-linux)");
        let network = ThrowawayNetwork { holder };
        let ours = fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = format!("/proc/{}/ns/net", network.holder.id());
        // unshare has its own namespace once the link differs from ours.
        while fs::read_link(&theirs).map_or(true, |ns| ns == ours) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        network
    }

    /// A command that runs inside the namespace.
    fn command(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["--net", "--target", &self.holder.id().to_string(), "--"]);
        command
    }
}

impl Drop for ThrowawayNetwork {
    fn drop(&mut self) {
        // An example may leave a process running in the namespace (a registry started in
        // the background, when a page fails before the example that stops it). Only this
        // test's examples run there, so every process whose network namespace is the
        // holder's is one of ours: end each with SIGKILL, then the holder.
        if let Ok(namespace) = fs::read_link(format!("/proc/{}/ns/net", self.holder.id())) {
            for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
                if pid as u32 != self.holder.id() && fs::read_link(entry.path().join("ns/net")).is_ok_and(|ns| ns == namespace) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        // carton keeps the bridge network's records per network namespace, under /run.
        if let Ok(namespace) = fs::metadata(format!("/proc/{}/ns/net", self.holder.id())) {
            use std::os::unix::fs::MetadataExt;
            let _ = fs::remove_dir_all(format!("/run/carton/networks/netns-{}-{}", namespace.dev(), namespace.ino()));
            let _ = fs::remove_dir("/run/carton/networks").and_then(|()| fs::remove_dir("/run/carton"));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The step demos live in their own packages; `cargo test --workspace` builds them, a
/// narrower `cargo test` may not have.
/// Each `steps/NN-topic` directory is the package `stepNN-topic` with a demo of that name.
fn ensure_step_binaries() {
    let steps = Path::new(env!("CARGO_MANIFEST_DIR")).join("steps");
    let mut packages: Vec<String> = fs::read_dir(&steps).unwrap().map(|entry| format!("step{}", entry.unwrap().file_name().to_string_lossy())).collect();
    packages.sort();
    assert!(packages.len() >= 11, "the step packages under {}", steps.display());
    for step in &packages {
        let step = step.as_str();
        if bin_dir().join(step).exists() {
            continue;
        }
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", step, "--bin", step]);
        if bin_dir().ends_with("release") {
            cargo.arg("--release");
        }
        assert!(cargo.status().unwrap().success(), "cannot build {step} for the book's examples");
    }
}

fn name(page: &Path) -> String {
    page.file_name().unwrap().to_string_lossy().into_owned()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

/// The argument of each `{{#include ARG}}` (also `rustdoc_include`); mdBook leaves
/// an escaped `\{{#include ...}}` alone, and so does this.
fn directives(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for opener in ["{{#include ", "{{#rustdoc_include "] {
        for (at, _) in text.match_indices(opener) {
            if text[..at].ends_with('\\') {
                continue;
            }
            let rest = &text[at + opener.len()..];
            if let Some(end) = rest.find("}}") {
                found.push(rest[..end].trim().to_string());
            }
        }
    }
    found
}

/// Targets of `[text](target)` links outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let line = strip_inline_code(line);
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].split_whitespace().next().unwrap_or("").to_string());
            }
        }
    }
    found
}

fn strip_inline_code(line: &str) -> String {
    line.split('`').enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, part)| part).collect::<Vec<_>>().join("")
}

/// Heading ids as mdBook makes them: lower case, spaces to `-`, other punctuation dropped.
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim().replace('`', "").to_lowercase();
        let id: String = title
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        ids.insert(id);
    }
    ids
}

struct Example {
    command: String,
    expected: Vec<String>,
}

/// One ```console block. A block marked ```console,cgroup-v1 or ```console,cgroup-v2 shows
/// output of that cgroup mode only (hybrid hosts count as v1, as carton drives them) and is
/// run only there; unmarked blocks run everywhere.
struct Block {
    cgroup: Option<step04::Version>,
    examples: Vec<Example>,
}

/// The examples of every ```console block: `$ command` lines (a trailing `\`
/// continues the command) followed by the output they print.
fn console_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut continuing = false;
    for line in text.lines() {
        let fence = line.trim_start();
        match &mut current {
            None => {
                let cgroup = match fence {
                    "```console" => None,
                    "```console,cgroup-v1" => Some(step04::Version::V1),
                    "```console,cgroup-v2" => Some(step04::Version::V2),
                    _ => continue,
                };
                current = Some(Block { cgroup, examples: Vec::new() });
            }
            Some(_) if fence == "```" => blocks.push(current.take().unwrap()),
            Some(Block { examples, .. }) => {
                if continuing {
                    let last = examples.last_mut().unwrap();
                    last.command.push('\n');
                    last.command.push_str(line);
                    continuing = line.ends_with('\\');
                } else if let Some(command) = line.strip_prefix("$ ") {
                    examples.push(Example { command: command.to_string(), expected: Vec::new() });
                    continuing = line.ends_with('\\');
                } else if let Some(last) = examples.last_mut() {
                    last.expected.push(line.to_string());
                }
            }
        }
    }
    blocks
}

/// `expected` against `actual`, line by line: a line `...` matches any number of lines,
/// `[..]` inside a line matches any text.
fn lines_match(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((line, rest)) => actual.split_first().is_some_and(|(first, others)| line_matches(line, first) && lines_match(rest, others)),
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn the_matcher_understands_its_wildcards() {
    assert!(line_matches("made [..] (BusyBox [..], [..] applets)", "made x (BusyBox v1, 268 applets)"));
    assert!(!line_matches("a[..]b", "ab-c"));
    assert!(line_matches("a[..]", "a"));
    assert!(lines_match(&["one", "...", "four"], &["one", "two", "three", "four"]));
    assert!(lines_match(&["one", "..."], &["one"]));
    assert!(!lines_match(&["one"], &["one", "two"]));
    let blocks = console_blocks("text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n```sh\n$ not run\n```\n```console,cgroup-v2\n$ cat x\n```\n");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].cgroup, None);
    assert_eq!(blocks[0].examples[0].command, "echo a \\\n  b");
    assert_eq!(blocks[0].examples[0].expected, ["a b"]);
    assert!(blocks[0].examples[1].expected.is_empty());
    assert_eq!(blocks[1].cgroup, Some(step04::Version::V2));
    assert_eq!(blocks[1].examples[0].command, "cat x");
}
