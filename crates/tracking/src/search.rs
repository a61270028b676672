//! MLflow's search grammar for runs and experiments, parsed once and evaluated in memory.
//!
//! The stock MLflow client sends `filter_string`, `order_by`, `max_results` and `page_token` to
//! `runs/search` and `experiments/search`; this module gives them the meaning MLflow's own server
//! gives them (checked against MLflow 3.x: `mlflow/utils/search_utils.py` and the SQL store):
//!
//! - A filter is clauses joined by `AND` (any case). `OR`, parentheses and `;` are refused with
//!   MLflow's messages. A clause is `<entity> <comparator> <value>`:
//!   - `metrics.KEY` (also `metric.`) with `= != < <= > >=` and a number;
//!   - `params.KEY` (also `param.`, `parameter.`, `parameters.`) and `tags.KEY` (also `tag.`) with
//!     `= != LIKE ILIKE` and a quoted string, or `IS NULL` / `IS NOT NULL`;
//!   - `attributes.NAME` (also `attribute.`, `attr.`, `run.`, or the bare name): `run_id`,
//!     `run_name`, `status`, `artifact_uri`, `user_id` with `= != LIKE ILIKE` and a string
//!     (`run_id` also `IN (...)` / `NOT IN (...)`), and `start_time`, `end_time` (aliases
//!     `created`, `Created`) with the numeric comparators;
//!   - `datasets.name|digest|context` (also `dataset.`) with `= != LIKE ILIKE IN NOT IN`; a run
//!     matches when any of its dataset inputs does.
//! - Keys with spaces or dots are quoted: ``metrics."my metric"``, ``tags.`mlflow.runName` ``;
//!   an unquoted dotted key such as `tags.mlflow.runName` also works (the first dot splits).
//!   Values are single- or double-quoted strings (a doubled or backslash-escaped quote stands for
//!   the quote itself) or numbers (`-1`, `.5`, `1e3`).
//! - `LIKE` is case-sensitive, `ILIKE` is not; `%` matches any run of characters and `_` exactly
//!   one. As in MLflow there is no escape character: `%` and `_` are always wildcards.
//! - A clause on a metric, param or tag the run does not have is false (also for `!=`); a NaN
//!   metric satisfies only `!=`.
//! - Order: `["metrics.acc DESC", "params.lr", "attributes.start_time ASC"]`, then MLflow's
//!   tie-breakers (`start_time` descending unless ordered on, then `run_id`). Runs missing the
//!   key sort last in both directions; for metrics a NaN comes after every number and before a
//!   missing value.
//! - Paging: `max_results` between 1 and [`SEARCH_MAX_RESULTS_THRESHOLD`]; `page_token` is
//!   MLflow's own token (base64 of `{"offset": N}`), opaque to the client.
//!
//! Errors are [`SearchError`]s whose messages follow MLflow's wording; the API answers them with
//! MLflow's `INVALID_PARAMETER_VALUE` ([`SearchError::ERROR_CODE`]).
//!
//! ```
//! use petri_tracking::search::{RunFacts, RunFilter, RunOrder};
//!
//! let filter = RunFilter::parse("metrics.acc > 0.9 and params.model = 'LR'").unwrap();
//! let order = RunOrder::parse(&["metrics.acc DESC"]).unwrap();
//! let metrics = [("acc", 0.93)];
//! let params = [("model", "LR")];
//! let mut runs = vec![RunFacts {
//!     run_id: "r1",
//!     start_time: 1_700_000_000_000,
//!     metrics: &metrics,
//!     params: &params,
//!     ..RunFacts::default()
//! }];
//! runs.retain(|r| filter.matches(r));
//! order.sort(&mut runs);
//! assert_eq!(runs.len(), 1);
//! ```

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::ops::Range;

use base64::Engine as _;

/// The `max_results` MLflow uses when a search request leaves it out.
pub const SEARCH_MAX_RESULTS_DEFAULT: usize = 1000;

/// The largest `max_results` a search accepts (MLflow's `SEARCH_MAX_RESULTS_THRESHOLD`).
pub const SEARCH_MAX_RESULTS_THRESHOLD: usize = 50_000;

/// A search request that MLflow would refuse: a filter, an `order_by`, a `max_results` or a
/// `page_token` it cannot accept. The message follows MLflow's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SearchError {
    message: String,
}

impl SearchError {
    /// The MLflow error code every search refusal carries.
    pub const ERROR_CODE: &'static str = "INVALID_PARAMETER_VALUE";

    fn new(message: impl Into<String>) -> Self {
        SearchError {
            message: message.into(),
        }
    }

    /// What went wrong, in MLflow's words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

type Result<T, E = SearchError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// What a search looks at
// ---------------------------------------------------------------------------------------------

/// One run as a search sees it. The tracking store builds one per candidate run, borrowing its
/// strings; `metrics` holds the latest value per key (NaN and ±inf allowed). Keys in `metrics`,
/// `params` and `tags` are unique; their order does not matter.
///
/// `run_name` should be the run's name as MLflow reports it (the `mlflow.runName` tag when the
/// run has one), since MLflow answers `attributes.run_name` from that tag.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFacts<'a> {
    /// The run's id (`run_id` and `run_uuid` on the wire).
    pub run_id: &'a str,
    /// The run's name.
    pub run_name: &'a str,
    /// The experiment the run belongs to (not searchable in MLflow; carried for the caller).
    pub experiment_id: &'a str,
    /// `RUNNING`, `SCHEDULED`, `FINISHED`, `FAILED` or `KILLED`.
    pub status: &'a str,
    /// Milliseconds since the Unix epoch.
    pub start_time: i64,
    /// Milliseconds since the Unix epoch; `None` while the run has not ended.
    pub end_time: Option<i64>,
    /// Where the run's artifacts live.
    pub artifact_uri: &'a str,
    /// Who created the run.
    pub user_id: &'a str,
    /// `active` or `deleted` (the view type filters on it before the search does).
    pub lifecycle_stage: &'a str,
    /// The latest value of each metric.
    pub metrics: &'a [(&'a str, f64)],
    /// The run's params.
    pub params: &'a [(&'a str, &'a str)],
    /// The run's tags.
    pub tags: &'a [(&'a str, &'a str)],
    /// The run's dataset inputs.
    pub datasets: &'a [DatasetFacts<'a>],
}

/// One dataset input of a run: what `datasets.name`, `datasets.digest` and `datasets.context`
/// compare against.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasetFacts<'a> {
    /// The dataset's name.
    pub name: &'a str,
    /// The dataset's digest.
    pub digest: &'a str,
    /// The input's `mlflow.data.context` tag (`train`, `eval`, ...), if it has one.
    pub context: Option<&'a str>,
}

/// One experiment as `experiments/search` sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExperimentFacts<'a> {
    /// The experiment's id (a decimal number in Petri, as in MLflow's SQL store).
    pub experiment_id: &'a str,
    /// The experiment's name.
    pub name: &'a str,
    /// Milliseconds since the Unix epoch.
    pub creation_time: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub last_update_time: Option<i64>,
    /// The experiment's tags (unique keys, any order).
    pub tags: &'a [(&'a str, &'a str)],
}

fn lookup<V: Copy>(pairs: &[(&str, V)], key: &str) -> Option<V> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

// ---------------------------------------------------------------------------------------------
// Lexer: the small part of SQL that MLflow's filters use
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    Like,
    ILike,
    True,
    False,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ws,
    /// A name, possibly dotted, whose parts may be `"quoted"` or `` `quoted` ``.
    Ident,
    /// A complete single-quoted string.
    Str,
    /// A number; `int` when it has no fraction or exponent.
    Num {
        int: bool,
    },
    /// A run of `< > = ! ~`.
    Op,
    Kw(Kw),
    /// A balanced `( ... )`.
    Paren,
    Semi,
    /// Anything else: a stray character, an unterminated quote.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    fn text<'s>(&self, src: &'s str) -> &'s str {
        &src[self.start..self.end]
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The end of a quoted run starting at `start` (which holds `quote`), or `None` if it never
/// closes. Inside, a doubled quote and a backslash-escaped quote do not close it.
fn quoted_end(src: &str, start: usize, quote: u8) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' && i + 1 < b.len() {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if i + 1 < b.len() && b[i + 1] == quote {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The end of a number starting at `start`, if one starts there (`-?(\d+(\.\d*)?|\.\d+)
/// ([eE]-?\d+)?`, not followed by a letter).
fn number_end(src: &str, start: usize) -> Option<(usize, bool)> {
    let b = src.as_bytes();
    let digits = |mut i: usize| {
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i, i > s)
    };
    let mut i = start;
    if i < b.len() && b[i] == b'-' {
        i += 1;
    }
    let (after_int, has_int) = digits(i);
    i = after_int;
    let mut int = true;
    if i < b.len() && b[i] == b'.' {
        let (after_frac, has_frac) = digits(i + 1);
        if !has_int && !has_frac {
            return None;
        }
        int = false;
        i = after_frac;
    } else if !has_int {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && b[j] == b'-' {
            j += 1;
        }
        let (after_exp, has_exp) = digits(j);
        if has_exp {
            int = false;
            i = after_exp;
        }
    }
    match src[i..].chars().next() {
        Some(c) if is_word_char(c) => None,
        _ => Some((i, int)),
    }
}

/// The end of one identifier part (a word or a quoted name) at `i`, if one starts there.
fn ident_part_end(src: &str, i: usize) -> Option<usize> {
    let c = src[i..].chars().next()?;
    match c {
        '"' => quoted_end(src, i, b'"'),
        '`' => quoted_end(src, i, b'`'),
        c if is_word_char(c) => Some(
            src[i..]
                .char_indices()
                .find(|(_, c)| !is_word_char(*c))
                .map_or(src.len(), |(n, _)| i + n),
        ),
        _ => None,
    }
}

fn keyword(word: &str) -> Option<Kw> {
    const KEYWORDS: [(&str, Kw); 10] = [
        ("AND", Kw::And),
        ("OR", Kw::Or),
        ("NOT", Kw::Not),
        ("IN", Kw::In),
        ("IS", Kw::Is),
        ("NULL", Kw::Null),
        ("LIKE", Kw::Like),
        ("ILIKE", Kw::ILike),
        ("TRUE", Kw::True),
        ("FALSE", Kw::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, kw)| *kw)
}

fn lex(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let c = src[i..].chars().next().unwrap_or(' ');
        let start = i;
        let kind;
        if c.is_whitespace() {
            i = src[i..]
                .char_indices()
                .find(|(_, c)| !c.is_whitespace())
                .map_or(src.len(), |(n, _)| i + n);
            kind = Kind::Ws;
        } else if c == '\'' {
            match quoted_end(src, i, b'\'') {
                Some(end) => {
                    i = end;
                    kind = Kind::Str;
                }
                None => {
                    i += 1;
                    kind = Kind::Other;
                }
            }
        } else if let Some((end, int)) = (c.is_ascii_digit() || c == '-' || c == '.')
            .then(|| number_end(src, i))
            .flatten()
        {
            i = end;
            kind = Kind::Num { int };
        } else if let Some(end) = ident_part_end(src, i) {
            // An identifier: parts joined by dots.
            i = end;
            while i < b.len() && b[i] == b'.' {
                match ident_part_end(src, i + 1) {
                    Some(end) => i = end,
                    None => break,
                }
            }
            let word = &src[start..i];
            kind = match keyword(word) {
                Some(kw) => Kind::Kw(kw),
                None => Kind::Ident,
            };
        } else if matches!(c, '<' | '>' | '=' | '!' | '~') {
            while i < b.len() && matches!(b[i], b'<' | b'>' | b'=' | b'!' | b'~') {
                i += 1;
            }
            kind = Kind::Op;
        } else if c == '(' {
            match paren_end(src, i) {
                Some(end) => {
                    i = end;
                    kind = Kind::Paren;
                }
                None => {
                    i += 1;
                    kind = Kind::Other;
                }
            }
        } else if c == ';' {
            i += 1;
            kind = Kind::Semi;
        } else {
            i += c.len_utf8();
            kind = Kind::Other;
        }
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// The end of the balanced parenthesis opening at `start`, skipping quoted strings.
fn paren_end(src: &str, start: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            q @ (b'\'' | b'"' | b'`') => {
                i = quoted_end(src, i, q)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The syntax of a filter: identifier, comparator, value
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawOp<'s> {
    /// A comparison operator or `LIKE`/`ILIKE`, as written.
    Cmp(&'s str),
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, Copy)]
struct RawClause<'s> {
    ident: &'s str,
    op: RawOp<'s>,
    value: Option<Token>,
}

fn invalid_clauses(src: &str, toks: &[Token]) -> SearchError {
    let list: Vec<String> = toks
        .iter()
        .filter(|t| t.kind != Kind::Ws)
        .map(|t| format!("'{}'", t.text(src)))
        .collect();
    SearchError::new(format!(
        "Invalid clause(s) in filter string: {}",
        list.join(", ")
    ))
}

/// Splits a filter into clauses, refusing what MLflow refuses before it looks at names.
fn parse_clauses(src: &str) -> Result<Vec<RawClause<'_>>> {
    if src.is_empty() {
        return Ok(Vec::new());
    }
    if src.trim().is_empty() {
        return Err(SearchError::new(format!(
            "Invalid filter '{src}'. Could not be parsed."
        )));
    }
    let all = lex(src);
    let semi = all.iter().position(|t| t.kind == Kind::Semi);
    if semi.is_some_and(|semi| {
        all[semi + 1..]
            .iter()
            .any(|t| t.kind != Kind::Ws && t.kind != Kind::Semi)
    }) {
        return Err(SearchError::new(format!(
            "Search filter contained multiple expression '{src}'. \
             Provide AND-ed expression list."
        )));
    }
    let toks: Vec<Token> = all.into_iter().filter(|t| t.kind != Kind::Ws).collect();
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        match t.kind {
            Kind::Kw(Kw::And) => i += 1,
            Kind::Ident => {
                let kind_at = |j: usize| toks.get(j).map(|t| t.kind);
                let (op, value, used) = match (kind_at(i + 1), kind_at(i + 2), kind_at(i + 3)) {
                    (
                        Some(Kind::Op | Kind::Kw(Kw::Like | Kw::ILike)),
                        Some(Kind::Str | Kind::Num { .. } | Kind::Ident | Kind::Paren),
                        _,
                    ) => (RawOp::Cmp(toks[i + 1].text(src)), Some(toks[i + 2]), 3),
                    (Some(Kind::Kw(Kw::In)), Some(Kind::Paren), _) => {
                        (RawOp::In, Some(toks[i + 2]), 3)
                    }
                    (Some(Kind::Kw(Kw::Not)), Some(Kind::Kw(Kw::In)), Some(Kind::Paren)) => {
                        (RawOp::NotIn, Some(toks[i + 3]), 4)
                    }
                    (Some(Kind::Kw(Kw::Is)), Some(Kind::Kw(Kw::Null)), _) => {
                        (RawOp::IsNull, None, 3)
                    }
                    (Some(Kind::Kw(Kw::Is)), Some(Kind::Kw(Kw::Not)), Some(Kind::Kw(Kw::Null))) => {
                        (RawOp::IsNotNull, None, 4)
                    }
                    _ => {
                        // Quote the tokens up to the next AND, as MLflow lists what it could
                        // not group into a comparison.
                        let end = toks[i..]
                            .iter()
                            .position(|t| t.kind == Kind::Kw(Kw::And))
                            .map_or(toks.len(), |n| i + n);
                        return Err(invalid_clauses(src, &toks[i..end]));
                    }
                };
                clauses.push(RawClause {
                    ident: t.text(src),
                    op,
                    value,
                });
                i += used;
            }
            Kind::Num { .. } | Kind::Str
                if matches!(toks.get(i + 1).map(|t| t.kind), Some(Kind::Op)) =>
            {
                return Err(SearchError::new(format!(
                    "Invalid comparison clause. Expected 'Identifier' found '{}'",
                    t.text(src)
                )));
            }
            _ => return Err(invalid_clauses(src, &toks[i..=i])),
        }
    }
    Ok(clauses)
}

fn is_quoted(s: &str, q: char) -> bool {
    s.len() >= 2 && s.starts_with(q) && s.ends_with(q)
}

/// Removes one pair of surrounding double or single quotes (MLflow's `_strip_quotes`).
fn strip_quotes(s: &str) -> &str {
    if is_quoted(s, '\'') || is_quoted(s, '"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn trim_backticks(s: &str) -> &str {
    if is_quoted(s, '`') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// The content of a quoted value with its escapes resolved (`''` and `\'` for `'`).
fn unquote_value(raw: &str) -> String {
    let quote = raw.chars().next().unwrap_or('\'');
    let inner = &raw[1..raw.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if (c == quote || c == '\\') && chars.peek() == Some(&quote) {
            chars.next();
            out.push(quote);
        } else {
            out.push(c);
        }
    }
    out
}

/// A string value: a single-quoted string or a double-quoted name; an unquoted name is refused.
fn string_value(src: &str, tok: Token) -> Result<String> {
    let raw = tok.text(src);
    if is_quoted(raw, '\'') || is_quoted(raw, '"') {
        Ok(unquote_value(raw))
    } else {
        Err(SearchError::new(format!(
            "Parameter value is either not quoted or unidentified quote types used for string \
             value {raw}. Use either single or double quotes."
        )))
    }
}

fn number_value(src: &str, tok: Token) -> Option<f64> {
    match tok.kind {
        Kind::Num { .. } => tok.text(src).parse().ok(),
        _ => None,
    }
}

/// A parenthesised list of quoted strings, as MLflow reads it (`('a', "b")`, a trailing comma
/// allowed).
fn string_list(src: &str, tok: Token) -> Result<Vec<String>> {
    let raw = tok.text(src);
    let inner = &raw[1..raw.len() - 1];
    let ill_formed = || {
        SearchError::new(
            "While parsing a list in the query, expected a non-empty list of string values, \
             but got ill-formed list.",
        )
    };
    let toks: Vec<Token> = lex(inner)
        .into_iter()
        .filter(|t| t.kind != Kind::Ws)
        .collect();
    if toks.is_empty() {
        return Err(SearchError::new(
            "While parsing a list in the query, expected a non-empty list of string values, \
             but got empty list",
        ));
    }
    let mut items = Vec::new();
    let mut expect_item = true;
    for t in &toks {
        let text = t.text(inner);
        match (expect_item, t.kind) {
            (true, Kind::Str) => items.push(unquote_value(text)),
            (true, Kind::Ident) if is_quoted(text, '"') => items.push(unquote_value(text)),
            (true, Kind::Num { .. } | Kind::Kw(_)) => {
                return Err(SearchError::new(format!(
                    "While parsing a list in the query, expected string value, punctuation, \
                     or whitespace, but got different type in list: {raw}"
                )));
            }
            (false, Kind::Other) if text == "," => {
                expect_item = true;
                continue;
            }
            _ => return Err(ill_formed()),
        }
        expect_item = false;
    }
    if items.is_empty() {
        return Err(ill_formed());
    }
    Ok(items)
}

/// Formats names the way MLflow's messages print a set of them.
fn name_set(names: &[&str]) -> String {
    let mut out = String::from("{");
    for (n, name) in names.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "'{name}'");
    }
    out.push('}');
    out
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// A numeric comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    fn parse(op: &str) -> Option<NumOp> {
        Some(match op {
            "=" => NumOp::Eq,
            "!=" => NumOp::Ne,
            "<" => NumOp::Lt,
            "<=" => NumOp::Le,
            ">" => NumOp::Gt,
            ">=" => NumOp::Ge,
            _ => return None,
        })
    }

    /// IEEE comparison: NaN on either side satisfies only `!=`.
    fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            NumOp::Eq => lhs == rhs,
            NumOp::Ne => lhs != rhs,
            NumOp::Lt => lhs < rhs,
            NumOp::Le => lhs <= rhs,
            NumOp::Gt => lhs > rhs,
            NumOp::Ge => lhs >= rhs,
        }
    }
}

const NUMERIC_COMPARATORS: &[&str] = &["=", "!=", "<", "<=", ">", ">="];
const KEY_VALUE_COMPARATORS: &[&str] = &["=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"];
const STRING_ATTRIBUTE_COMPARATORS: &[&str] = &["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"];

/// One piece of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    /// `%`: any run of characters, empty included.
    Any,
    /// `_`: exactly one character.
    One,
    Lit(char),
}

/// A `LIKE` / `ILIKE` pattern, compiled once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LikePattern {
    parts: Vec<Pat>,
    fold_case: bool,
}

impl LikePattern {
    fn new(pattern: &str, fold_case: bool) -> Self {
        let parts = pattern
            .chars()
            .map(|c| match c {
                '%' => Pat::Any,
                '_' => Pat::One,
                c => Pat::Lit(c),
            })
            .collect();
        LikePattern { parts, fold_case }
    }

    fn same(&self, a: char, b: char) -> bool {
        a == b || (self.fold_case && a.to_lowercase().eq(b.to_lowercase()))
    }

    /// Wildcard matching with one backtracking point (the last `%`), no allocation.
    fn matches(&self, text: &str) -> bool {
        let pat = &self.parts;
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        loop {
            if p < pat.len() {
                let next = text[t..].chars().next();
                match (pat[p], next) {
                    (Pat::Any, _) => {
                        star = Some((p + 1, t));
                        p += 1;
                        continue;
                    }
                    (Pat::One, Some(c)) => {
                        p += 1;
                        t += c.len_utf8();
                        continue;
                    }
                    (Pat::Lit(pc), Some(c)) if self.same(c, pc) => {
                        p += 1;
                        t += c.len_utf8();
                        continue;
                    }
                    _ => {}
                }
            } else if t == text.len() {
                return true;
            }
            // Mismatch: let the last `%` swallow one more character, if there is one.
            match star {
                Some((sp, st)) => match text[st..].chars().next() {
                    Some(c) => {
                        let st = st + c.len_utf8();
                        star = Some((sp, st));
                        p = sp;
                        t = st;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

/// A comparison against a string (or a missing string).
#[derive(Debug, Clone, PartialEq, Eq)]
enum StrOp {
    Eq(String),
    Ne(String),
    Like(LikePattern),
    In(Vec<String>),
    NotIn(Vec<String>),
    IsNull,
    IsNotNull,
}

impl StrOp {
    /// Builds the comparison for `op` and a single string value.
    fn with_value(op: &str, value: String) -> Option<StrOp> {
        Some(match op.to_ascii_uppercase().as_str() {
            "=" => StrOp::Eq(value),
            "!=" => StrOp::Ne(value),
            "LIKE" => StrOp::Like(LikePattern::new(&value, false)),
            "ILIKE" => StrOp::Like(LikePattern::new(&value, true)),
            _ => return None,
        })
    }

    /// Whether `value` satisfies the comparison; a missing value satisfies only `IS NULL`.
    fn holds(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (StrOp::IsNull, v) => v.is_none(),
            (StrOp::IsNotNull, v) => v.is_some(),
            (_, None) => false,
            (StrOp::Eq(s), Some(v)) => v == s,
            (StrOp::Ne(s), Some(v)) => v != s,
            (StrOp::Like(p), Some(v)) => p.matches(v),
            (StrOp::In(list), Some(v)) => list.iter().any(|s| s == v),
            (StrOp::NotIn(list), Some(v)) => !list.iter().any(|s| s == v),
        }
    }
}

fn invalid_comparator(op: &str, valid: &[&str]) -> SearchError {
    SearchError::new(format!(
        "Invalid comparator '{op}' not one of '{}'",
        name_set(valid)
    ))
}

/// The comparator as MLflow names it in messages.
fn op_name(op: RawOp<'_>) -> String {
    match op {
        RawOp::Cmp(s) => s.to_ascii_uppercase(),
        RawOp::In => "IN".into(),
        RawOp::NotIn => "NOT IN".into(),
        RawOp::IsNull => "IS NULL".into(),
        RawOp::IsNotNull => "IS NOT NULL".into(),
    }
}

/// A string comparison for a param or a tag: a quoted value, or `IS [NOT] NULL`.
fn key_value_op(src: &str, clause: &RawClause<'_>, entity: &str) -> Result<StrOp> {
    match clause.op {
        RawOp::IsNull => return Ok(StrOp::IsNull),
        RawOp::IsNotNull => return Ok(StrOp::IsNotNull),
        _ => {}
    }
    let tok = clause.value.expect("a comparison has a value");
    let value = match tok.kind {
        Kind::Str | Kind::Ident => string_value(src, tok)?,
        _ => {
            return Err(SearchError::new(format!(
                "Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {}",
                tok.text(src)
            )));
        }
    };
    let RawOp::Cmp(op) = clause.op else {
        unreachable!("IN and NOT IN take a list, refused above")
    };
    StrOp::with_value(op, value).ok_or_else(|| invalid_comparator(op, KEY_VALUE_COMPARATORS))
}

/// A comparison of a string attribute: a quoted value, or a list for `IN` / `NOT IN` where
/// `list_ok` allows it (MLflow's `LIST_SUPPORTED_KEYS`).
fn string_attribute_op(
    src: &str,
    clause: &RawClause<'_>,
    list_key: &str,
    list_ok: bool,
    what: &str,
) -> Result<StrOp> {
    let tok = clause.value.expect("a comparison has a value");
    match tok.kind {
        Kind::Str | Kind::Ident => {
            let value = string_value(src, tok)?;
            match clause.op {
                RawOp::Cmp(op) => StrOp::with_value(op, value)
                    .ok_or_else(|| invalid_comparator(op, STRING_ATTRIBUTE_COMPARATORS)),
                _ => Err(invalid_comparator(
                    &op_name(clause.op),
                    STRING_ATTRIBUTE_COMPARATORS,
                )),
            }
        }
        Kind::Paren => {
            if !list_ok {
                return Err(SearchError::new(format!(
                    "Only ['{list_key}'] attributes support comparison with a list of quoted \
                     string values."
                )));
            }
            let list = string_list(src, tok)?;
            match clause.op {
                RawOp::In => Ok(StrOp::In(list)),
                RawOp::NotIn => Ok(StrOp::NotIn(list)),
                op => Err(SearchError::new(format!(
                    "A list of values is compared with IN or NOT IN, not with '{}'",
                    op_name(op)
                ))),
            }
        }
        _ => Err(SearchError::new(format!(
            "Expected a quoted string value for {what}. Got value {}",
            tok.text(src)
        ))),
    }
}

/// A numeric comparison: the value must be a number literal.
fn numeric_op(
    src: &str,
    clause: &RawClause<'_>,
    found_message: impl FnOnce(&str) -> String,
) -> Result<(NumOp, f64)> {
    let tok = clause.value.expect("a comparison has a value");
    let value =
        number_value(src, tok).ok_or_else(|| SearchError::new(found_message(tok.text(src))))?;
    let op = match clause.op {
        RawOp::Cmp(op) => NumOp::parse(op),
        _ => None,
    };
    let op = op.ok_or_else(|| invalid_comparator(&op_name(clause.op), NUMERIC_COMPARATORS))?;
    Ok((op, value))
}

// ---------------------------------------------------------------------------------------------
// Runs: names
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Entity {
    fn name(self) -> &'static str {
        match self {
            Entity::Metric => "metric",
            Entity::Param => "parameter",
            Entity::Tag => "tag",
            Entity::Attribute => "attribute",
            Entity::Dataset => "dataset",
        }
    }
}

/// A string attribute of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunStrAttr {
    RunId,
    RunName,
    Status,
    ArtifactUri,
    UserId,
}

impl RunStrAttr {
    fn get<'a>(self, run: &RunFacts<'a>) -> &'a str {
        match self {
            RunStrAttr::RunId => run.run_id,
            RunStrAttr::RunName => run.run_name,
            RunStrAttr::Status => run.status,
            RunStrAttr::ArtifactUri => run.artifact_uri,
            RunStrAttr::UserId => run.user_id,
        }
    }
}

/// A numeric attribute of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunNumAttr {
    StartTime,
    EndTime,
}

impl RunNumAttr {
    fn get(self, run: &RunFacts<'_>) -> Option<i64> {
        match self {
            RunNumAttr::StartTime => Some(run.start_time),
            RunNumAttr::EndTime => run.end_time,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAttr {
    Str(RunStrAttr),
    Num(RunNumAttr),
}

/// The attribute names a run filter accepts, sorted (aliases included).
const RUN_FILTER_ATTRIBUTES: &[&str] = &[
    "Created",
    "Run Name",
    "Run name",
    "artifact_uri",
    "created",
    "end_time",
    "run name",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
];

/// The attribute names a run `order_by` accepts, sorted.
const RUN_ORDER_ATTRIBUTES: &[&str] = &[
    "Created",
    "artifact_uri",
    "created",
    "end_time",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
];

const DATASET_KEYS: &[&str] = &["context", "digest", "name"];

fn run_attribute(key: &str) -> Option<RunAttr> {
    Some(match key {
        "run_id" => RunAttr::Str(RunStrAttr::RunId),
        "run_name" | "run name" | "Run name" | "Run Name" => RunAttr::Str(RunStrAttr::RunName),
        "status" => RunAttr::Str(RunStrAttr::Status),
        "artifact_uri" => RunAttr::Str(RunStrAttr::ArtifactUri),
        "user_id" => RunAttr::Str(RunStrAttr::UserId),
        "start_time" | "created" | "Created" => RunAttr::Num(RunNumAttr::StartTime),
        "end_time" => RunAttr::Num(RunNumAttr::EndTime),
        _ => return None,
    })
}

/// Splits `entity.key` at the first dot (MLflow's `_get_identifier`): a bare name is an
/// attribute; the key loses one pair of quotes or backticks.
fn split_identifier(ident: &str) -> (Option<&str>, &str) {
    match ident.split_once('.') {
        Some((entity, key)) => (Some(entity), trim_backticks(strip_quotes(key))),
        None => (None, trim_backticks(strip_quotes(ident))),
    }
}

/// Resolves a run identifier to its entity and key. `attributes` is the list of valid attribute
/// names for the message (a filter and an `order_by` accept slightly different ones).
fn run_identifier<'s>(ident: &'s str, attributes: &[&str]) -> Result<(Entity, &'s str)> {
    let (entity, key) = split_identifier(ident);
    let entity = match entity.map(trim_backticks) {
        None => Entity::Attribute,
        Some("metric" | "metrics") => Entity::Metric,
        Some("parameter" | "parameters" | "param" | "params") => Entity::Param,
        Some("tag" | "tags") => Entity::Tag,
        Some("attribute" | "attributes" | "attr" | "run") => Entity::Attribute,
        Some("dataset" | "datasets") => Entity::Dataset,
        Some(other) => {
            return Err(SearchError::new(format!(
                "Invalid entity type '{other}'. Valid values are \
                 ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
            )));
        }
    };
    if entity == Entity::Attribute && !attributes.contains(&key) {
        return Err(SearchError::new(format!(
            "Invalid attribute key '{key}' specified. Valid keys are '{}'",
            name_set(attributes)
        )));
    }
    if entity == Entity::Dataset && !DATASET_KEYS.contains(&key) {
        return Err(SearchError::new(format!(
            "Invalid dataset key '{key}' specified. Valid keys are '{}'",
            name_set(DATASET_KEYS)
        )));
    }
    Ok((entity, key))
}

// ---------------------------------------------------------------------------------------------
// Runs: filter
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatasetField {
    Name,
    Digest,
    Context,
}

#[derive(Debug, Clone, PartialEq)]
enum RunClause {
    Metric {
        key: String,
        op: NumOp,
        value: f64,
    },
    Param {
        key: String,
        op: StrOp,
    },
    Tag {
        key: String,
        op: StrOp,
    },
    StrAttr {
        attr: RunStrAttr,
        op: StrOp,
    },
    NumAttr {
        attr: RunNumAttr,
        op: NumOp,
        value: f64,
    },
    Dataset {
        field: DatasetField,
        op: StrOp,
    },
}

impl RunClause {
    fn matches(&self, run: &RunFacts<'_>) -> bool {
        match self {
            RunClause::Metric { key, op, value } => {
                lookup(run.metrics, key).is_some_and(|m| op.holds(m, *value))
            }
            RunClause::Param { key, op } => op.holds(lookup(run.params, key)),
            RunClause::Tag { key, op } => op.holds(lookup(run.tags, key)),
            RunClause::StrAttr { attr, op } => op.holds(Some(attr.get(run))),
            RunClause::NumAttr { attr, op, value } => {
                attr.get(run).is_some_and(|v| op.holds(v as f64, *value))
            }
            RunClause::Dataset { field, op } => run.datasets.iter().any(|d| match field {
                DatasetField::Name => op.holds(Some(d.name)),
                DatasetField::Digest => op.holds(Some(d.digest)),
                DatasetField::Context => d.context.is_some_and(|c| op.holds(Some(c))),
            }),
        }
    }
}

/// A parsed `filter_string` for `runs/search`: parse once, then ask [`RunFilter::matches`] of
/// each run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    clauses: Vec<RunClause>,
}

impl RunFilter {
    /// Parses MLflow's run filter grammar. The empty string matches every run.
    pub fn parse(filter: &str) -> Result<Self> {
        let raw = parse_clauses(filter)?;
        let clauses = raw
            .iter()
            .map(|c| Self::clause(filter, c))
            .collect::<Result<_>>()?;
        Ok(RunFilter { clauses })
    }

    fn clause(src: &str, c: &RawClause<'_>) -> Result<RunClause> {
        let (entity, key) = run_identifier(c.ident, RUN_FILTER_ATTRIBUTES)?;
        if matches!(c.op, RawOp::IsNull | RawOp::IsNotNull)
            && !matches!(entity, Entity::Param | Entity::Tag)
        {
            return Err(SearchError::new(format!(
                "IS NULL / IS NOT NULL is only supported for tags and params, not for '{}' '{key}'",
                entity.name()
            )));
        }
        Ok(match entity {
            Entity::Metric => {
                let (op, value) = numeric_op(src, c, |found| {
                    format!("Expected numeric value type for metric. Found {found}")
                })?;
                RunClause::Metric {
                    key: key.to_owned(),
                    op,
                    value,
                }
            }
            Entity::Param => RunClause::Param {
                key: key.to_owned(),
                op: key_value_op(src, c, "parameter")?,
            },
            Entity::Tag => RunClause::Tag {
                key: key.to_owned(),
                op: key_value_op(src, c, "tag")?,
            },
            Entity::Attribute => match run_attribute(key) {
                Some(RunAttr::Num(attr)) => {
                    let (op, value) = numeric_op(src, c, |found| {
                        format!(
                            "Expected numeric value type for numeric attribute: {key}. \
                             Found {found}"
                        )
                    })?;
                    RunClause::NumAttr { attr, op, value }
                }
                Some(RunAttr::Str(attr)) => RunClause::StrAttr {
                    attr,
                    op: string_attribute_op(
                        src,
                        c,
                        "run_id",
                        attr == RunStrAttr::RunId,
                        "attributes",
                    )?,
                },
                None => unreachable!("run_identifier checked the attribute name"),
            },
            Entity::Dataset => {
                let field = match key {
                    "name" => DatasetField::Name,
                    "digest" => DatasetField::Digest,
                    _ => DatasetField::Context,
                };
                let op = string_attribute_op(src, c, "name", true, "dataset attributes")?;
                RunClause::Dataset { field, op }
            }
        })
    }

    /// Whether the run satisfies every clause.
    pub fn matches(&self, run: &RunFacts<'_>) -> bool {
        self.clauses.iter().all(|c| c.matches(run))
    }

    /// Whether the filter has no clauses (and so matches every run).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Runs: order
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum RunSortKey {
    Metric(String),
    Param(String),
    Tag(String),
    Attr(RunAttr),
}

/// Where a value falls before its direction applies: present values first, then NaN, then
/// missing ones, whatever the direction (MLflow's NULLS LAST, NaN just before them).
fn presence_rank(present: bool, nan: bool) -> u8 {
    match (present, nan) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    }
}

fn directed(ord: Ordering, ascending: bool) -> Ordering {
    if ascending { ord } else { ord.reverse() }
}

fn compare_opt<T>(
    a: Option<T>,
    b: Option<T>,
    ascending: bool,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => directed(cmp(&a, &b), ascending),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

impl RunSortKey {
    fn compare(&self, a: &RunFacts<'_>, b: &RunFacts<'_>, ascending: bool) -> Ordering {
        match self {
            RunSortKey::Metric(key) => {
                let (x, y) = (lookup(a.metrics, key), lookup(b.metrics, key));
                let rank = |v: Option<f64>| presence_rank(v.is_some(), v.is_some_and(f64::is_nan));
                rank(x).cmp(&rank(y)).then_with(|| match (x, y) {
                    (Some(x), Some(y)) if !x.is_nan() && !y.is_nan() => {
                        directed(x.total_cmp(&y), ascending)
                    }
                    _ => Ordering::Equal,
                })
            }
            RunSortKey::Param(key) => compare_opt(
                lookup(a.params, key),
                lookup(b.params, key),
                ascending,
                Ord::cmp,
            ),
            RunSortKey::Tag(key) => compare_opt(
                lookup(a.tags, key),
                lookup(b.tags, key),
                ascending,
                Ord::cmp,
            ),
            RunSortKey::Attr(RunAttr::Str(attr)) => {
                directed(attr.get(a).cmp(attr.get(b)), ascending)
            }
            RunSortKey::Attr(RunAttr::Num(attr)) => {
                compare_opt(attr.get(a), attr.get(b), ascending, Ord::cmp)
            }
        }
    }
}

/// A parsed `order_by` list for `runs/search`, with MLflow's tie-breakers: `start_time`
/// descending (unless the list orders on it), then `run_id` ascending. The empty list is
/// MLflow's default order, newest run first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOrder {
    keys: Vec<(RunSortKey, bool)>,
}

/// Splits one `order_by` entry into its identifier and direction (ascending unless `DESC`).
fn parse_order_entry(entry: &str) -> Result<(&str, bool)> {
    let unparsable = || {
        SearchError::new(format!(
            "Invalid order_by clause '{entry}'. Could not be parsed."
        ))
    };
    let toks = lex(entry);
    match toks.as_slice() {
        [id] if id.kind == Kind::Ident => Ok((id.text(entry), true)),
        [id, ws, dir] if id.kind == Kind::Ident && ws.kind == Kind::Ws => {
            match dir.kind {
                Kind::Ident | Kind::Kw(_) => {}
                _ => return Err(unparsable()),
            }
            let dir = dir.text(entry);
            if dir.eq_ignore_ascii_case("asc") {
                Ok((id.text(entry), true))
            } else if dir.eq_ignore_ascii_case("desc") {
                Ok((id.text(entry), false))
            } else {
                Err(SearchError::new(format!(
                    "Invalid ordering key in order_by clause '{entry}'."
                )))
            }
        }
        _ => Err(unparsable()),
    }
}

fn python_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{}'", s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

impl RunOrder {
    /// Parses the `order_by` entries of a run search (`"metrics.acc DESC"`, `"params.lr"`,
    /// `"attributes.start_time ASC"`). A field may appear only once.
    pub fn parse<S: AsRef<str>>(order_by: &[S]) -> Result<Self> {
        let mut keys: Vec<(RunSortKey, bool)> = Vec::with_capacity(order_by.len());
        for entry in order_by {
            let (ident, ascending) = parse_order_entry(entry.as_ref())?;
            let (entity, key) = run_identifier(ident, RUN_ORDER_ATTRIBUTES)?;
            let key = match entity {
                Entity::Metric => RunSortKey::Metric(key.to_owned()),
                Entity::Param => RunSortKey::Param(key.to_owned()),
                Entity::Tag => RunSortKey::Tag(key.to_owned()),
                Entity::Attribute => match run_attribute(key) {
                    Some(attr) => RunSortKey::Attr(attr),
                    None => unreachable!("run_identifier checked the attribute name"),
                },
                Entity::Dataset => {
                    return Err(SearchError::new("Invalid order_by entity type 'dataset'"));
                }
            };
            if keys.iter().any(|(k, _)| *k == key) {
                return Err(SearchError::new(format!(
                    "`order_by` contains duplicate fields: {}",
                    python_list(order_by)
                )));
            }
            keys.push((key, ascending));
        }
        Ok(RunOrder { keys })
    }

    /// Compares two runs: the ordered keys, then the tie-breakers.
    pub fn compare(&self, a: &RunFacts<'_>, b: &RunFacts<'_>) -> Ordering {
        let mut by_start_time = false;
        for (key, ascending) in &self.keys {
            by_start_time |= *key == RunSortKey::Attr(RunAttr::Num(RunNumAttr::StartTime));
            let ord = key.compare(a, b, *ascending);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let ord = if by_start_time {
            Ordering::Equal
        } else {
            b.start_time.cmp(&a.start_time)
        };
        ord.then_with(|| a.run_id.cmp(b.run_id))
    }

    /// Sorts runs into this order.
    pub fn sort(&self, runs: &mut [RunFacts<'_>]) {
        runs.sort_by(|a, b| self.compare(a, b));
    }

    /// Sorts anything that carries a run's facts (the store's own rows beside their facts).
    pub fn sort_by_facts<'a, T>(&self, items: &mut [T], facts: impl Fn(&T) -> &RunFacts<'a>) {
        items.sort_by(|a, b| self.compare(facts(a), facts(b)));
    }
}

// ---------------------------------------------------------------------------------------------
// Experiments
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpNumAttr {
    CreationTime,
    LastUpdateTime,
}

impl ExpNumAttr {
    fn get(self, e: &ExperimentFacts<'_>) -> Option<i64> {
        match self {
            ExpNumAttr::CreationTime => e.creation_time,
            ExpNumAttr::LastUpdateTime => e.last_update_time,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ExperimentClause {
    Name(StrOp),
    Id(StrOp),
    Num {
        attr: ExpNumAttr,
        op: NumOp,
        value: f64,
    },
    Tag {
        key: String,
        op: StrOp,
    },
}

const EXPERIMENT_ATTRIBUTES: &[&str] =
    &["creation_time", "experiment_id", "last_update_time", "name"];

/// Resolves an experiment identifier: a bare name or `attribute.NAME` is an attribute,
/// `tag.KEY` / `tags.KEY` a tag. Returns whether it is a tag, and the key.
fn experiment_identifier(ident: &str) -> Result<(bool, &str)> {
    let (entity, key) = split_identifier(ident);
    let is_tag = match entity {
        None | Some("attribute") => false,
        Some("tag" | "tags") => true,
        Some(other) => {
            return Err(SearchError::new(format!(
                "Invalid entity type '{other}'. Valid entity types are ('attribute', 'tag', 'tags')"
            )));
        }
    };
    if !is_tag && !EXPERIMENT_ATTRIBUTES.contains(&key) {
        return Err(SearchError::new(format!(
            "Invalid attribute key '{key}' specified. Valid keys are '{}'",
            name_set(EXPERIMENT_ATTRIBUTES)
        )));
    }
    Ok((is_tag, key))
}

/// Experiment ids are compared as numbers when both are (MLflow's SQL store keeps them as
/// integers), as strings otherwise.
fn compare_experiment_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// A parsed `filter_string` for `experiments/search`: `name`, `experiment_id`,
/// `creation_time`, `last_update_time` (bare or as `attribute.NAME`) and `tags.KEY`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentFilter {
    clauses: Vec<ExperimentClause>,
}

impl ExperimentFilter {
    /// Parses MLflow's experiment filter grammar. The empty string matches every experiment.
    pub fn parse(filter: &str) -> Result<Self> {
        let raw = parse_clauses(filter)?;
        let clauses = raw
            .iter()
            .map(|c| Self::clause(filter, c))
            .collect::<Result<_>>()?;
        Ok(ExperimentFilter { clauses })
    }

    fn clause(src: &str, c: &RawClause<'_>) -> Result<ExperimentClause> {
        let (is_tag, key) = experiment_identifier(c.ident)?;
        if is_tag {
            return Ok(ExperimentClause::Tag {
                key: key.to_owned(),
                op: key_value_op(src, c, "tag")?,
            });
        }
        if matches!(c.op, RawOp::IsNull | RawOp::IsNotNull) {
            return Err(SearchError::new(format!(
                "IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
            )));
        }
        Ok(match key {
            "creation_time" | "last_update_time" => {
                let attr = if key == "creation_time" {
                    ExpNumAttr::CreationTime
                } else {
                    ExpNumAttr::LastUpdateTime
                };
                let (op, value) = numeric_op(src, c, |found| {
                    format!(
                        "Expected numeric value type for numeric attribute: {key}. Found {found}"
                    )
                })?;
                ExperimentClause::Num { attr, op, value }
            }
            "experiment_id" => {
                let op = string_attribute_op(src, c, "experiment_id", true, "attributes")?;
                if matches!(op, StrOp::Like(_)) {
                    return Err(SearchError::new(format!(
                        "Invalid comparator for experiment_id: {}",
                        op_name(c.op)
                    )));
                }
                ExperimentClause::Id(op)
            }
            _ => ExperimentClause::Name(string_attribute_op(
                src,
                c,
                "experiment_id",
                false,
                "attributes",
            )?),
        })
    }

    /// Whether the experiment satisfies every clause.
    pub fn matches(&self, e: &ExperimentFacts<'_>) -> bool {
        self.clauses.iter().all(|c| match c {
            ExperimentClause::Name(op) => op.holds(Some(e.name)),
            ExperimentClause::Id(op) => op.holds(Some(e.experiment_id)),
            ExperimentClause::Num { attr, op, value } => {
                attr.get(e).is_some_and(|v| op.holds(v as f64, *value))
            }
            ExperimentClause::Tag { key, op } => op.holds(lookup(e.tags, key)),
        })
    }

    /// Whether the filter has no clauses.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpSortKey {
    Name,
    Id,
    Num(ExpNumAttr),
}

/// A parsed `order_by` list for `experiments/search`. The empty list is MLflow's default:
/// `creation_time DESC, experiment_id ASC`; otherwise `experiment_id DESC` breaks ties unless
/// the list orders on it. Missing times sort last in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentOrder {
    keys: Vec<(ExpSortKey, bool)>,
}

impl Default for ExperimentOrder {
    fn default() -> Self {
        ExperimentOrder {
            keys: vec![
                (ExpSortKey::Num(ExpNumAttr::CreationTime), false),
                (ExpSortKey::Id, true),
            ],
        }
    }
}

impl ExperimentOrder {
    /// Parses the `order_by` entries of an experiment search (`name`, `experiment_id`,
    /// `creation_time`, `last_update_time`, each with an optional `ASC`/`DESC`).
    pub fn parse<S: AsRef<str>>(order_by: &[S]) -> Result<Self> {
        if order_by.is_empty() {
            return Ok(Self::default());
        }
        let mut keys = Vec::with_capacity(order_by.len() + 1);
        for entry in order_by {
            let (ident, ascending) = parse_order_entry(entry.as_ref())?;
            let (is_tag, key) = experiment_identifier(ident)?;
            if is_tag {
                return Err(SearchError::new("Invalid order_by entity: tag"));
            }
            let key = match key {
                "name" => ExpSortKey::Name,
                "experiment_id" => ExpSortKey::Id,
                "creation_time" => ExpSortKey::Num(ExpNumAttr::CreationTime),
                _ => ExpSortKey::Num(ExpNumAttr::LastUpdateTime),
            };
            keys.push((key, ascending));
        }
        if !keys.iter().any(|(k, _)| *k == ExpSortKey::Id) {
            keys.push((ExpSortKey::Id, false));
        }
        Ok(ExperimentOrder { keys })
    }

    /// Compares two experiments in this order.
    pub fn compare(&self, a: &ExperimentFacts<'_>, b: &ExperimentFacts<'_>) -> Ordering {
        for (key, ascending) in &self.keys {
            let ord = match key {
                ExpSortKey::Name => directed(a.name.cmp(b.name), *ascending),
                ExpSortKey::Id => directed(
                    compare_experiment_ids(a.experiment_id, b.experiment_id),
                    *ascending,
                ),
                ExpSortKey::Num(attr) => {
                    compare_opt(attr.get(a), attr.get(b), *ascending, Ord::cmp)
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    /// Sorts experiments into this order.
    pub fn sort(&self, experiments: &mut [ExperimentFacts<'_>]) {
        experiments.sort_by(|a, b| self.compare(a, b));
    }

    /// Sorts anything that carries an experiment's facts.
    pub fn sort_by_facts<'a, T>(
        &self,
        items: &mut [T],
        facts: impl Fn(&T) -> &ExperimentFacts<'a>,
    ) {
        items.sort_by(|a, b| self.compare(facts(a), facts(b)));
    }
}

// ---------------------------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------------------------

/// Checks a search's `max_results` (MLflow: at least 1, at most
/// [`SEARCH_MAX_RESULTS_THRESHOLD`]); `None` is MLflow's default of
/// [`SEARCH_MAX_RESULTS_DEFAULT`].
pub fn check_max_results(max_results: Option<i64>) -> Result<usize> {
    let Some(n) = max_results else {
        return Ok(SEARCH_MAX_RESULTS_DEFAULT);
    };
    if n < 1 {
        return Err(SearchError::new(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        )));
    }
    if n > SEARCH_MAX_RESULTS_THRESHOLD as i64 {
        return Err(SearchError::new(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most \
             {SEARCH_MAX_RESULTS_THRESHOLD}"
        )));
    }
    Ok(n as usize)
}

/// The page token that resumes a search at `offset`: MLflow's own format, base64 of
/// `{"offset": N}`, so tokens look the same as an MLflow server's.
pub fn encode_page_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

/// The offset a page token resumes at; no token (or an empty one) starts at 0.
pub fn decode_page_token(token: Option<&str>) -> Result<usize> {
    let token = match token {
        None | Some("") => return Ok(0),
        Some(t) => t,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| SearchError::new("Invalid page token, could not base64-decode"))?;
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        SearchError::new(format!(
            "Invalid page token, decoded value={}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    let offset = parsed
        .get("offset")
        .ok_or_else(|| SearchError::new(format!("Invalid page token, parsed value={parsed}")))?;
    let offset = match offset {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    offset.and_then(|o| usize::try_from(o).ok()).ok_or_else(|| {
        SearchError::new(format!(
            "Invalid page token, not stringable {}",
            parsed["offset"]
        ))
    })
}

/// One page of a sorted result: which items to return, and the token for the next page when
/// more remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The indices of the items on this page.
    pub range: Range<usize>,
    /// The token that fetches the next page, when there is one.
    pub next_page_token: Option<String>,
}

/// Cuts a page out of `total` sorted items, resuming at `page_token`, at most `max_results`
/// long (MLflow's `paginate`).
pub fn paginate(total: usize, page_token: Option<&str>, max_results: usize) -> Result<Page> {
    let start = decode_page_token(page_token)?;
    let end = start.saturating_add(max_results);
    Ok(Page {
        range: start.min(total)..end.min(total),
        next_page_token: (end < total).then(|| encode_page_token(end)),
    })
}

#[cfg(test)]
mod tests;
