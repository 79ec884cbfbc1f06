//! The Dockerfile: parser directives, lines joined at the escape character, comments dropped,
//! one [`Instruction`] per logical line, each checked for its shape. Variables are not
//! replaced here: their values are known only while building (ARG, ENV, `--build-arg`).

use std::fmt;

// ANCHOR: instruction
/// One instruction, as written (`args` without the keyword and the flags), where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword, upper case (`RUN`).
    pub keyword: String,
    /// `--from=build`, `--chown=1000` ...: (name, value).
    pub flags: Vec<(String, String)>,
    /// The rest of the line, continuation lines joined.
    pub args: String,
    /// The exec form (`["sh", "-c", "..."]`) when the arguments are a JSON array.
    pub json: Option<Vec<String>>,
    /// Its first line in the file (from 1).
    pub line: usize,
}
// ANCHOR_END: instruction

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# escape=` (default `\`).
    pub escape: char,
    /// `# syntax=`: recorded, not fetched (a BuildKit frontend image; carton builds itself).
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// Where a Dockerfile went wrong, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Every keyword Docker's classic builder knows.
pub const KEYWORDS: [&str; 18] =
    ["FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "WORKDIR", "COPY", "ADD", "EXPOSE", "VOLUME", "USER", "LABEL", "STOPSIGNAL", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER"];

/// The flags each instruction takes.
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "COPY" => &["from", "chown", "chmod", "link"],
        "ADD" => &["chown", "chmod", "link", "checksum", "keep-git-dir"],
        "RUN" => &["network", "mount", "security"],
        "HEALTHCHECK" => &["interval", "timeout", "start-period", "start-interval", "retries"],
        _ => &[],
    }
}

// ANCHOR: parse
/// Parse `text`, the Dockerfile called `file` (for error messages).
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let error = |line: usize, column: usize, message: String| ParseError { file: file.to_string(), line, column, message };
    let lines: Vec<&str> = text.strip_prefix('\u{feff}').unwrap_or(text).lines().collect();
    // Parser directives: `# key=value` lines at the very top, before anything else.
    let (mut escape, mut syntax, mut first) = ('\\', None, 0);
    for (n, line) in lines.iter().enumerate() {
        let Some((key, value)) = line.trim().strip_prefix('#').and_then(|d| d.split_once('=')) else { break };
        match key.trim().to_ascii_lowercase().as_str() {
            "escape" => {
                escape = match value.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => return Err(error(n + 1, 1, format!("invalid escape directive {other:?}: give \\ or `"))),
                }
            }
            "syntax" => syntax = Some(value.trim().to_string()),
            _ => break, // a comment that looks like one: directives end
        }
        first = n + 1;
    }
    let mut instructions = Vec::new();
    let mut n = first;
    while n < lines.len() {
        let start = n;
        let trimmed = lines[n].trim_start();
        n += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Join continuation lines: a line ending in the escape character goes on; comment
        // lines inside the continuation are dropped.
        let mut logical = String::new();
        let mut current = trimmed.trim_end().to_string();
        while current.ends_with(escape) {
            current.pop();
            logical.push_str(&current);
            logical.push(' ');
            loop {
                let Some(next) = lines.get(n) else {
                    current = String::new();
                    break;
                };
                n += 1;
                // Comment lines and empty lines inside a continuation are skipped.
                if next.trim_start().starts_with('#') || next.trim().is_empty() {
                    continue;
                }
                current = next.trim().to_string();
                break;
            }
        }
        logical.push_str(&current);
        instructions.push(instruction(&logical, start + 1).map_err(|(column, message)| error(start + 1, column, message))?);
    }
    check_order(&instructions).map_err(|(line, message)| error(line, 1, message))?;
    Ok(Dockerfile { escape, syntax, instructions })
}
// ANCHOR_END: parse

/// An ONBUILD trigger (`RUN echo hi`) as an instruction, run at `line` (the FROM's).
pub fn trigger(text: &str, line: usize) -> Result<Instruction, String> {
    let parsed = instruction(text, line).map_err(|(_, message)| message)?;
    if matches!(parsed.keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(format!("{} cannot be a trigger", parsed.keyword));
    }
    Ok(parsed)
}

/// One logical line: keyword, flags, arguments, checked for shape.
fn instruction(text: &str, line: usize) -> Result<Instruction, (usize, String)> {
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        let hint = KEYWORDS.iter().find(|k| close_to(k, &keyword)).map_or(String::new(), |k| format!(" (did you mean {k}?)"));
        return Err((1, format!("unknown instruction {word}{hint}")));
    }
    let mut rest = rest.trim_start();
    let mut column = text.len() - rest.len() + 1;
    let mut flags = Vec::new();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end].split_once('=').unwrap_or((&flag[..end], ""));
        if !allowed_flags(&keyword).contains(&name) {
            return Err((column, format!("{keyword} has no flag --{name}{}", expected_flags(&keyword))));
        }
        flags.push((name.to_string(), value.to_string()));
        rest = flag[end..].trim_start();
        column = text.len() - rest.len() + 1;
    }
    let args = rest.trim_end().to_string();
    let json = if args.starts_with('[') { serde_json::from_str::<Vec<String>>(&args).ok() } else { None };
    let needs_args = !matches!(keyword.as_str(), "HEALTHCHECK");
    if args.is_empty() && needs_args {
        return Err((column, format!("{keyword} needs arguments{}", example(&keyword))));
    }
    let shape = |ok: bool, what: &str| if ok { Ok(()) } else { Err((column, format!("{keyword} {what}{}", example(&keyword)))) };
    let count = args.split_whitespace().count();
    match keyword.as_str() {
        "FROM" => {
            let parts: Vec<&str> = args.split_whitespace().collect();
            shape(parts.len() == 1 || (parts.len() == 3 && parts[1].eq_ignore_ascii_case("as")), "takes an image, then optionally AS and a name")?;
        }
        "ARG" => shape(count == 1, "takes one NAME or NAME=default")?,
        "COPY" | "ADD" => shape(json.as_ref().map_or(count, Vec::len) >= 2, "takes one or more sources and a destination")?,
        "SHELL" => shape(json.as_ref().is_some_and(|shell| !shell.is_empty()), "takes the JSON form only, e.g. SHELL [\"/bin/bash\", \"-c\"]")?,
        "STOPSIGNAL" | "USER" | "WORKDIR" | "MAINTAINER" => {}
        "HEALTHCHECK" => {
            let kind = args.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            shape(kind == "CMD" || (kind == "NONE" && count == 1), "takes CMD and a command, or NONE")?;
        }
        "ONBUILD" => {
            let inner = args.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            shape(!matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER"), "cannot hold ONBUILD, FROM or MAINTAINER")?;
        }
        _ => {}
    }
    Ok(Instruction { keyword, flags, args, json, line })
}

/// Only ARG may come before the first FROM.
fn check_order(instructions: &[Instruction]) -> Result<(), (usize, String)> {
    let first = instructions.iter().find(|i| i.keyword != "ARG");
    match first {
        None => Err((instructions.last().map_or(1, |i| i.line), "the Dockerfile has no FROM: give the base image first (FROM busybox, or FROM scratch)".into())),
        Some(i) if i.keyword != "FROM" => Err((i.line, format!("{} comes before any FROM: a Dockerfile starts with FROM (only ARG may come before it)", i.keyword))),
        Some(_) => Ok(()),
    }
}

fn expected_flags(keyword: &str) -> String {
    match allowed_flags(keyword) {
        [] => format!(" ({keyword} takes no flags)"),
        flags => format!(" (it takes {})", flags.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(", ")),
    }
}

fn example(keyword: &str) -> &'static str {
    match keyword {
        "FROM" => ", e.g. FROM busybox AS build",
        "RUN" => ", e.g. RUN echo hello",
        "COPY" | "ADD" => ", e.g. COPY app.sh /app/",
        "ENV" => ", e.g. ENV PORT=8080",
        "ARG" => ", e.g. ARG VERSION=1.0",
        "HEALTHCHECK" => ", e.g. HEALTHCHECK --interval=30s CMD wget -q -O- localhost",
        _ => "",
    }
}

/// One letter wrong, missing, added or two swapped: a likely typo.
fn close_to(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() == b.len() {
        let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        return differ.len() == 1 || (differ.len() == 2 && differ[1] == differ[0] + 1 && a[differ[0]] == b[differ[1]] && a[differ[1]] == b[differ[0]]);
    }
    let (long, short) = if a.len() > b.len() { (&a, &b) } else { (&b, &a) };
    long.len() == short.len() + 1 && (0..long.len()).any(|skip| long.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, c)| c).eq(short.iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<Instruction> {
        parse("Dockerfile", text).unwrap().instructions
    }

    fn failed(text: &str) -> String {
        parse("Dockerfile", text).unwrap_err().to_string()
    }

    #[test]
    fn the_course_notes_python_app_parses() {
        let file = "\
# A small app
FROM busybox AS base
WORKDIR /app
COPY requirements.txt .
RUN echo installing \\
    # a comment inside a continuation is dropped
    && echo done
EXPOSE 5000
CMD [\"sh\", \"app.sh\"]
";
        let all = parsed(file);
        let keywords: Vec<&str> = all.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(keywords, ["FROM", "WORKDIR", "COPY", "RUN", "EXPOSE", "CMD"]);
        assert_eq!(all[3].args, "echo installing  && echo done");
        assert_eq!(all[3].line, 5);
        assert_eq!(all[5].json.as_deref(), Some(&["sh".to_string(), "app.sh".to_string()][..]));
        assert_eq!(all[4].line, 8, "lines count from the file, continuations included");
    }

    #[test]
    fn directives_flags_and_forms() {
        let file = "# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nCOPY --from=build --chown=1000:1000 /out `\n  /app/\nrun [\"not\", json\n";
        let dockerfile = parse("Dockerfile", file).unwrap();
        assert_eq!((dockerfile.escape, dockerfile.syntax.as_deref()), ('`', Some("docker/dockerfile:1")));
        let copy = &dockerfile.instructions[1];
        assert_eq!(copy.flags, [("from".to_string(), "build".to_string()), ("chown".into(), "1000:1000".into())]);
        assert_eq!(copy.args, "/out  /app/");
        let run = &dockerfile.instructions[2];
        assert_eq!((run.keyword.as_str(), run.json.is_none()), ("RUN", true), "not JSON: the shell form");
    }

    #[test]
    fn each_error_names_its_line_and_column_and_what_was_expected() {
        assert_eq!(failed("FROM busybox\nFORM x\n"), "Dockerfile:2:1: unknown instruction FORM (did you mean FROM?)");
        assert_eq!(failed("FROM busybox\nCOPY --form=a b c\n"), "Dockerfile:2:6: COPY has no flag --form (it takes --from, --chown, --chmod, --link)");
        assert!(failed("FROM busybox\nCOPY onlyone\n").starts_with("Dockerfile:2:6: COPY takes one or more sources and a destination"));
        assert!(failed("FROM\n").starts_with("Dockerfile:1:5: FROM needs arguments, e.g. FROM busybox AS build"));
        assert!(failed("FROM a b\n").contains("takes an image, then optionally AS and a name"));
        assert!(failed("RUN echo\n").starts_with("Dockerfile:1:1: RUN comes before any FROM"));
        assert!(failed("# just a comment\n").contains("has no FROM"));
        assert!(failed("FROM a\nSHELL sh -c\n").contains("JSON form only"));
        assert!(failed("FROM a\nHEALTHCHECK --interval=1s\n").contains("takes CMD and a command, or NONE"));
        assert!(failed("FROM a\nONBUILD FROM b\n").contains("cannot hold ONBUILD, FROM or MAINTAINER"));
        assert!(failed("# escape=x\nFROM a\n").starts_with("Dockerfile:1:1: invalid escape directive"));
        assert!(parse("Dockerfile", "ARG V=1\nFROM busybox:$V\n").is_ok(), "ARG may come first");
        let spaced = parse("Dockerfile", "\u{feff}FROM a\nRUN one && \\\n\n    two\n").unwrap();
        assert_eq!(spaced.instructions[1].args, "one &&  two", "a byte-order mark and an empty line inside a continuation are skipped");
    }
}
