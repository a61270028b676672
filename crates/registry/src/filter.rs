//! The filters of MLflow's registry searches, kept simple: clauses joined by `AND`, each
//! `<key> <op> <value>` where the key is `name`, `tags.<key>` (or ``tags.`a key` ``), `run_id`,
//! `source_path` or `version_number`; the operators are `=`, `!=`, `LIKE`, `ILIKE` and `IN`
//! (`run_id IN ('a', 'b')`). Evaluated against each candidate by [`Filter::matches`].

use std::collections::HashMap;

/// One parsed clause.
#[derive(Clone, Debug, PartialEq)]
struct Clause {
    key: Key,
    op: Op,
    values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Key {
    Name,
    Tag(String),
    RunId,
    Source,
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Like,
    ILike,
    In,
}

/// A parsed filter; the empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

/// What a filter looks at in one registered model or version.
pub struct Subject<'a> {
    pub name: &'a str,
    pub tags: &'a HashMap<String, String>,
    pub run_id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub version: Option<i64>,
}

impl Filter {
    /// Parses `filter`; `versions` allows the keys only versions have (`run_id`,
    /// `source_path`, `version_number`). Errors are MLflow-like sentences.
    pub fn parse(filter: &str, versions: bool) -> Result<Filter, String> {
        let tokens = tokenize(filter)?;
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if !clauses.is_empty() {
                match &tokens[i] {
                    Tok::Word(w) if w.eq_ignore_ascii_case("and") => i += 1,
                    t => {
                        return Err(format!(
                            "Invalid filter '{filter}': expected AND, found {t}"
                        ));
                    }
                }
            }
            let key = match tokens.get(i) {
                Some(Tok::Word(w)) => parse_key(w, versions)
                    .ok_or_else(|| format!("Invalid attribute key '{w}' in filter '{filter}'"))?,
                _ => return Err(format!("Invalid filter '{filter}': expected a key")),
            };
            let op = match tokens.get(i + 1) {
                Some(Tok::Op(o)) if o == "=" || o == "==" => Op::Eq,
                Some(Tok::Op(o)) if o == "!=" => Op::Ne,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ilike") => Op::ILike,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Op::In,
                _ => return Err(format!("Invalid filter '{filter}': expected a comparator")),
            };
            let values = match (op, tokens.get(i + 2)) {
                (Op::In, Some(Tok::List(v))) => v.clone(),
                (Op::In, _) => {
                    return Err(format!(
                        "Invalid filter '{filter}': IN takes a list ('a', 'b')"
                    ));
                }
                (_, Some(Tok::Str(s))) => vec![s.clone()],
                (_, Some(Tok::Word(n))) if key == Key::Version => vec![n.clone()],
                _ => {
                    return Err(format!(
                        "Invalid filter '{filter}': the value must be a quoted string"
                    ));
                }
            };
            clauses.push(Clause { key, op, values });
            i += 3;
        }
        Ok(Filter { clauses })
    }

    /// Whether `s` passes every clause.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.clauses.iter().all(|c| {
            let got: Option<String> = match &c.key {
                Key::Name => Some(s.name.to_string()),
                Key::Tag(k) => s.tags.get(k).cloned(),
                Key::RunId => s.run_id.map(str::to_string),
                Key::Source => s.source.map(str::to_string),
                Key::Version => s.version.map(|v| v.to_string()),
            };
            // A missing tag differs from every value (MLflow's client filters prompts out with
            // `tag.mlflow.prompt.is_prompt != 'true'`, which keeps models without the tag).
            let Some(got) = got else {
                return c.op == Op::Ne;
            };
            let want = &c.values[0];
            match c.op {
                Op::Eq => &got == want,
                Op::Ne => &got != want,
                Op::Like => like(&got, want),
                Op::ILike => like(&got.to_lowercase(), &want.to_lowercase()),
                Op::In => c.values.contains(&got),
            }
        })
    }
}

fn parse_key(w: &str, versions: bool) -> Option<Key> {
    let bare = w.trim_matches('`');
    if let Some(tag) = w.strip_prefix("tags.").or_else(|| w.strip_prefix("tag.")) {
        return Some(Key::Tag(
            tag.trim_matches('`').trim_matches('"').to_string(),
        ));
    }
    let bare = bare.strip_prefix("attributes.").unwrap_or(bare);
    match bare {
        "name" => Some(Key::Name),
        "run_id" if versions => Some(Key::RunId),
        "source_path" if versions => Some(Key::Source),
        "version_number" if versions => Some(Key::Version),
        _ => None,
    }
}

/// SQL's LIKE: `%` any run of characters, `_` one character, case-sensitive.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    List(Vec<String>),
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Word(w) | Tok::Op(w) => write!(f, "'{w}'"),
            Tok::Str(s) => write!(f, "the string '{s}'"),
            Tok::List(_) => write!(f, "a list"),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize| -> Result<String, String> {
        let q = chars[*i];
        let mut v = String::new();
        *i += 1;
        while *i < chars.len() && chars[*i] != q {
            v.push(chars[*i]);
            *i += 1;
        }
        if *i >= chars.len() {
            return Err(format!("Invalid filter '{s}': a quote is not closed"));
        }
        *i += 1;
        Ok(v)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            out.push(Tok::Str(quoted(&mut i)?));
        } else if c == '(' {
            i += 1;
            let mut items = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    Some(')') => {
                        i += 1;
                        break;
                    }
                    Some('\'' | '"') => items.push(quoted(&mut i)?),
                    _ => return Err(format!("Invalid filter '{s}': a list holds quoted strings")),
                }
            }
            out.push(Tok::List(items));
        } else if "=!<>".contains(c) {
            let mut op = String::new();
            while i < chars.len() && "=!<>".contains(chars[i]) {
                op.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Op(op));
        } else {
            let mut w = String::new();
            let mut tick = false;
            while i < chars.len() {
                let ch = chars[i];
                if ch == '`' {
                    tick = !tick;
                } else if !tick && (ch.is_whitespace() || "=!<>('\"".contains(ch)) {
                    break;
                }
                w.push(ch);
                i += 1;
            }
            out.push(Tok::Word(w));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(name: &'a str, tags: &'a HashMap<String, String>) -> Subject<'a> {
        Subject {
            name,
            tags,
            run_id: Some("r1"),
            source: None,
            version: Some(2),
        }
    }

    #[test]
    fn names_tags_and_runs_filter_as_mlflow_does() {
        let tags = HashMap::from([("team".to_string(), "vision".to_string())]);
        let s = subject("iris-clf", &tags);
        let yes = |f: &str| Filter::parse(f, true).unwrap().matches(&s);
        assert!(yes(""));
        assert!(yes("name = 'iris-clf'"));
        assert!(!yes("name = 'iris'"));
        assert!(yes("name LIKE 'iris%'"));
        assert!(!yes("name LIKE 'IRIS%'"));
        assert!(yes("name ILIKE 'IRIS%'"));
        assert!(yes("tags.team = 'vision' and name like '%clf'"));
        assert!(yes("tags.`team` = \"vision\""));
        assert!(!yes("tags.owner = 'x'"));
        assert!(yes("tag.`mlflow.prompt.is_prompt` != 'true'"));
        assert!(yes("run_id IN ('r0', 'r1')"));
        assert!(yes("run_id = 'r1' AND version_number = 2"));
        assert!(Filter::parse("run_id = 'x'", false).is_err());
        assert!(Filter::parse("name = ", true).is_err());
        assert!(Filter::parse("name = 'x' or name = 'y'", true).is_err());
    }
}
