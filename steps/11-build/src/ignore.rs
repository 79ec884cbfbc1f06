//! `.dockerignore`: which files of the build context a build never sees, as Docker reads
//! it. One pattern a line (`#` comments); `*` and `?` within a name, `**` across directories,
//! `!` for an exception; the last pattern that matches a path decides; a pattern that
//! matches a directory takes everything under it.

// ANCHOR: ignore
/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    /// (exception, the pattern's components).
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Read a `.dockerignore`'s text.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            // Cleaned as Go's filepath.Clean does, without a leading `/`: paths are relative
            // to the context.
            let mut parts: Vec<String> = Vec::new();
            for part in pattern.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    part => parts.push(part.to_string()),
                }
            }
            if !parts.is_empty() {
                patterns.push((exception, parts));
            }
        }
        Ignore { patterns }
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the build.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let mut excluded = false;
        for (exception, pattern) in &self.patterns {
            // A pattern that matches the path, or a directory above it.
            let matches = (1..=parts.len()).any(|n| components_match(pattern, &parts[..n]));
            if matches {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether a directory may hold something an exception brings back (then it must be
    /// walked even though it is excluded).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(exception, _)| *exception)
    }
}
// ANCHOR_END: ignore

/// Pattern components against path components: `**` takes any number of them.
fn components_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| components_match(rest, &path[skip..])),
        Some((first, rest)) => path.split_first().is_some_and(|(name, others)| name_matches(first, name) && components_match(rest, others)),
    }
}

/// One name against one pattern: `*` any run of characters, `?` one, `[a-z]` a class,
/// `\` the next character as it is.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|skip| go(rest, &n[skip..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(close) = rest.iter().position(|&c| c == ']') else { return n.first() == Some(&'[') && go(rest, &n[1..]) };
                let Some(&c) = n.first() else { return false };
                let (negated, class) = match rest[..close].split_first() {
                    Some(('^' | '!', class)) => (true, class),
                    _ => (false, &rest[..close]),
                };
                let mut inside = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        inside |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        inside |= class[i] == c;
                        i += 1;
                    }
                }
                inside != negated && go(&rest[close + 1..], &n[1..])
            }
            Some(('\\', rest)) if !rest.is_empty() => n.first() == Some(&rest[0]) && go(&rest[1..], &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_read_as_dockers() {
        let ignore = Ignore::parse("# build output\n*.log\n/tmp\n**/*.pyc\nsecrets/\n!secrets/public.pem\ndocs/**/draft-?.md\n");
        assert!(ignore.excludes("app.log") && !ignore.excludes("logs/app.log"), "* stays within one name");
        assert!(ignore.excludes("tmp/cache/x"), "a directory takes what is under it");
        assert!(ignore.excludes("a/b/c.pyc") && ignore.excludes("c.pyc"), "** crosses directories, none too");
        assert!(ignore.excludes("secrets/key.pem") && !ignore.excludes("secrets/public.pem"), "the last match decides");
        assert!(ignore.excludes("docs/v1/old/draft-1.md") && !ignore.excludes("docs/draft-10.md"));
        assert!(!ignore.excludes("app.py"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn names_match_with_classes_and_escapes() {
        assert!(name_matches("file[0-9].txt", "file7.txt") && !name_matches("file[0-9].txt", "filex.txt"));
        assert!(name_matches("[!a]*", "bcd") && !name_matches("[!a]*", "abc"));
        assert!(name_matches("a\\*b", "a*b") && !name_matches("a\\*b", "axb"));
        assert!(Ignore::parse("").patterns.is_empty() && !Ignore::parse("").excludes("x"));
    }
}
