//! A Dockerfile's words: quotes, the escape character and `$VARIABLE` substitution, as
//! Docker's shell lexer does them for the instructions that take variables (FROM, COPY, ADD,
//! ENV, ARG, LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL). RUN, CMD and ENTRYPOINT are
//! left to the shell in the container.

use std::collections::BTreeMap;

/// Where a word went wrong: the column (from 1, in the instruction's text) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordError {
    pub column: usize,
    pub message: String,
}

// ANCHOR: expand
/// Split `text` into words at unquoted whitespace, removing quotes, and replacing `$NAME`,
/// `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}` with `vars` (an unknown name is
/// empty). Inside single quotes nothing is replaced; `escape` (`\` unless the Dockerfile says
/// otherwise) keeps the next character as it is.
pub fn words(text: &str, escape: char, vars: &BTreeMap<String, String>) -> Result<Vec<String>, WordError> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                i += 1;
            }
            '\'' => {
                let end = chars[i + 1..].iter().position(|&c| c == '\'').ok_or(WordError { column: i + 1, message: "a quote (') is not closed".into() })?;
                word.extend(&chars[i + 1..i + 1 + end]);
                in_word = true;
                i += end + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(WordError { column: i, message: "a quote (\") is not closed".into() }),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&e) if e == escape && chars.get(i + 1).is_some_and(|&next| next == '"' || next == '$' || next == escape) => {
                            word.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = variable(&chars, i, escape, vars, &mut word)?,
                        Some(&other) => {
                            word.push(other);
                            i += 1;
                        }
                    }
                }
            }
            '$' => {
                in_word = true;
                i = variable(&chars, i, escape, vars, &mut word)?;
            }
            c if c == escape => {
                in_word = true;
                if let Some(&next) = chars.get(i + 1) {
                    word.push(next);
                }
                i += 2;
            }
            other => {
                in_word = true;
                word.push(other);
                i += 1;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}
// ANCHOR_END: expand

/// One `$NAME` or `${...}` at `chars[at]`, its value pushed onto `word`; returns the index
/// after it.
fn variable(chars: &[char], at: usize, escape: char, vars: &BTreeMap<String, String>, word: &mut String) -> Result<usize, WordError> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(at + 1) {
        Some('{') => {
            let close = chars[at..].iter().position(|&c| c == '}').ok_or(WordError { column: at + 1, message: "a ${ is not closed with }".into() })? + at;
            let inside: String = chars[at + 2..close].iter().collect();
            let (name, modifier) = match inside.find(|c: char| !is_name(c)) {
                Some(split) => (&inside[..split], Some(&inside[split..])),
                None => (inside.as_str(), None),
            };
            if name.is_empty() {
                return Err(WordError { column: at + 1, message: format!("${{{inside}}} names no variable") });
            }
            let value = vars.get(name).filter(|v| !v.is_empty());
            let chosen = match modifier {
                None => value.cloned().unwrap_or_default(),
                Some(m) if m.starts_with(":-") => match value {
                    Some(v) => v.clone(),
                    None => words(&m[2..], escape, vars)?.join(" "),
                },
                Some(m) if m.starts_with(":+") => match value {
                    Some(_) => words(&m[2..], escape, vars)?.join(" "),
                    None => String::new(),
                },
                Some(m) => return Err(WordError { column: at + 1, message: format!("unsupported modifier {m:?} in ${{{inside}}} (give :- or :+)") }),
            };
            word.push_str(&chosen);
            Ok(close + 1)
        }
        Some(&c) if is_name(c) => {
            let end = chars[at + 1..].iter().position(|&c| !is_name(c)).map_or(chars.len(), |p| p + at + 1);
            let name: String = chars[at + 1..end].iter().collect();
            word.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            Ok(end)
        }
        _ => {
            word.push('$');
            Ok(at + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("NAME".into(), "web".into()), ("EMPTY".into(), String::new()), ("SPACED".into(), "a b".into())])
    }

    fn split(text: &str) -> Vec<String> {
        words(text, '\\', &vars()).unwrap()
    }

    #[test]
    fn quotes_and_escapes_make_words_as_dockers_lexer() {
        assert_eq!(split("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(split(r#""hello world" 'it''s' x\ y"#), ["hello world", "its", "x y"]);
        assert_eq!(split(r#""say \"hi\"""#), [r#"say "hi""#]);
        assert_eq!(words("a` b", '`', &vars()).unwrap(), ["a b"], "a Dockerfile with # escape=`");
        assert!(words("'open", '\\', &vars()).unwrap_err().message.contains("not closed"));
        assert!(words("\"open", '\\', &vars()).is_err());
    }

    #[test]
    fn variables_are_replaced_outside_single_quotes() {
        assert_eq!(split("$NAME ${NAME}.conf '$NAME' \"$NAME\" \\$NAME"), ["web", "web.conf", "$NAME", "web", "$NAME"]);
        assert_eq!(split("${MISSING:-fallback} ${NAME:-fallback} ${NAME:+set} ${EMPTY:+set}x"), ["fallback", "web", "set", "x"]);
        assert_eq!(split("$SPACED"), ["a b"], "a value's spaces do not split the word");
        assert_eq!(split("cost$ 5$"), ["cost$", "5$"]);
        assert!(words("${NAME", '\\', &vars()).is_err());
        assert!(words("${NAME?}", '\\', &vars()).unwrap_err().message.contains("unsupported modifier"));
    }
}
