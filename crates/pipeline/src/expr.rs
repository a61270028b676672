//! The `${{ ... }}` expressions of a pipeline: a template is text with expressions in it; an
//! expression is a small language of references (`params.x`, `steps.a.outputs.b`, `item`),
//! literals, comparisons, `&& || !` and a few functions. Parsed once at validation, checked for
//! types there, evaluated by the engine against a run's values.

use serde_json::Value;

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// `params.x`, `steps.a.outputs.b`, `item`, `list[0]`: the segments.
    Ref(Vec<String>),
    Not(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::And => "&&",
            Op::Or => "||",
        }
    }
}

/// What went wrong in an expression: parsing, a type, or a value at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError(msg.into()))
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Expr(Expr),
}

/// Text with `${{ }}` in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                return err(format!("`${{{{` without a closing `}}}}` in `{text}`"));
            };
            parts.push(Part::Expr(parse(&after[..end])?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The template is exactly one expression (its value may be a list or a boolean).
    pub fn single(&self) -> Option<&Expr> {
        match self.parts.as_slice() {
            [Part::Expr(e)] => Some(e),
            _ => None,
        }
    }

    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    pub fn has_exprs(&self) -> bool {
        self.exprs().next().is_some()
    }

    /// The text with each expression's value in its place.
    pub fn render(&self, scope: &dyn Scope) -> Result<String, ExprError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&to_text(&eval(e, scope)?)),
            }
        }
        Ok(out)
    }

    /// A single expression's value as it is; otherwise the rendered text.
    pub fn value(&self, scope: &dyn Scope) -> Result<Value, ExprError> {
        match self.single() {
            Some(e) => eval(e, scope),
            None => Ok(Value::String(self.render(scope)?)),
        }
    }
}

/// A value as text in a command: strings as they are, everything else as JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Where references get their values.
pub trait Scope {
    fn lookup(&self, path: &[String]) -> Result<Value, ExprError>;
}

// ---- parsing ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64, String),
    Str(String),
    Op(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, ExprError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[s..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let s = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e')
            {
                i += 1;
            }
            let text: String = chars[s..i].iter().collect();
            let n: f64 = text
                .parse()
                .map_err(|_| ExprError(format!("`{text}` is not a number")))?;
            toks.push(Tok::Num(n, text));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err(format!("a string is not closed in `{}`", src.trim())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                toks.push(Tok::Op(op));
                i += 2;
            } else if let Some(op) = ["<", ">", "!", "(", ")", ".", ",", "[", "]"]
                .into_iter()
                .find(|o| o.starts_with(c))
            {
                toks.push(Tok::Op(op));
                i += 1;
            } else if c == '"' {
                return err("strings are written in single quotes: 'like this'");
            } else {
                return err(format!("unexpected `{c}` in `{}`", src.trim()));
            }
        }
    }
    Ok(toks)
}

struct P<'a> {
    toks: Vec<Tok>,
    i: usize,
    src: &'a str,
}

/// Parses one expression (the inside of `${{ }}`).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return err("an empty expression `${{ }}`");
    }
    let mut p = P { toks, i: 0, src };
    let e = p.or()?;
    if p.i < p.toks.len() {
        return err(format!(
            "unexpected {} in `{}`",
            describe(&p.toks[p.i]),
            src.trim()
        ));
    }
    Ok(e)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Num(_, s) => format!("`{s}`"),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Op(o) => format!("`{o}`"),
    }
}

impl P<'_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.i), Some(Tok::Op(o)) if *o == op)
    }
    fn eat(&mut self, op: &str) -> bool {
        if self.peek_op(op) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, op: &str) -> Result<(), ExprError> {
        if self.eat(op) {
            Ok(())
        } else {
            err(format!("expected `{op}` in `{}`", self.src.trim()))
        }
    }
    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Bin(Op::Or, Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.cmp()?;
        while self.eat("&&") {
            e = Expr::Bin(Op::And, Box::new(e), Box::new(self.cmp()?));
        }
        Ok(e)
    }
    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let e = self.unary()?;
        for (text, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(text) {
                return Ok(Expr::Bin(op, Box::new(e), Box::new(self.unary()?)));
            }
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Expr, ExprError> {
        let Some(t) = self.toks.get(self.i).cloned() else {
            return err(format!("`{}` ends too early", self.src.trim()));
        };
        self.i += 1;
        match t {
            Tok::Num(n, _) => Ok(Expr::Lit(number(n))),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Op("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ if self.peek_op("(") => {
                    self.i += 1;
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.or()?);
                            if self.eat(")") {
                                break;
                            }
                            self.expect(",")?;
                        }
                    }
                    check_call(&id, args.len())?;
                    Ok(Expr::Call(id, args))
                }
                _ => {
                    let mut path = vec![id];
                    loop {
                        if self.eat(".") {
                            match self.toks.get(self.i).cloned() {
                                Some(Tok::Ident(s)) => {
                                    self.i += 1;
                                    path.push(s);
                                }
                                _ => {
                                    return err(format!(
                                        "a name must follow `.` in `{}`",
                                        self.src.trim()
                                    ));
                                }
                            }
                        } else if self.eat("[") {
                            match self.toks.get(self.i).cloned() {
                                Some(Tok::Num(n, text)) if n >= 0.0 && n.fract() == 0.0 => {
                                    self.i += 1;
                                    path.push(text);
                                }
                                Some(Tok::Str(s)) => {
                                    self.i += 1;
                                    path.push(s);
                                }
                                _ => {
                                    return err(format!(
                                        "`[` takes an index or a 'key' in `{}`",
                                        self.src.trim()
                                    ));
                                }
                            }
                            self.expect("]")?;
                        } else {
                            break;
                        }
                    }
                    Ok(Expr::Ref(path))
                }
            },
            other => err(format!(
                "unexpected {} in `{}`",
                describe(&other),
                self.src.trim()
            )),
        }
    }
}

const FUNCTIONS: &[(&str, usize)] = &[
    ("contains", 2),
    ("startsWith", 2),
    ("endsWith", 2),
    ("fromJSON", 1),
    ("toJSON", 1),
    ("len", 1),
];

fn check_call(name: &str, n: usize) -> Result<(), ExprError> {
    match FUNCTIONS.iter().find(|(f, _)| *f == name) {
        Some((_, want)) if *want == n => Ok(()),
        Some((_, want)) => err(format!("`{name}` takes {want} argument(s), not {n}")),
        None => err(format!(
            "no function `{name}`; there are {}",
            FUNCTIONS
                .iter()
                .map(|(f, _)| *f)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

// ---- types ----

/// A static type, for checking `when:` before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Num,
    Bool,
    List,
    /// Known only at run time (an output value, an item).
    Any,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number",
            Ty::Bool => "a boolean",
            Ty::List => "a list",
            Ty::Any => "a value",
        }
    }
}

/// The type of an expression, given the types of references (`refs` reports unknown ones).
pub fn type_of(
    e: &Expr,
    refs: &mut dyn FnMut(&[String]) -> Result<Ty, ExprError>,
) -> Result<Ty, ExprError> {
    Ok(match e {
        Expr::Lit(v) => match v {
            Value::String(_) => Ty::Str,
            Value::Number(_) => Ty::Num,
            Value::Bool(_) => Ty::Bool,
            Value::Array(_) => Ty::List,
            _ => Ty::Any,
        },
        Expr::Ref(path) => refs(path)?,
        Expr::Not(inner) => {
            let t = type_of(inner, refs)?;
            if !matches!(t, Ty::Bool | Ty::Any) {
                return err(format!("`!` needs a boolean, not {}", t.name()));
            }
            Ty::Bool
        }
        Expr::Bin(op, a, b) => {
            let (ta, tb) = (type_of(a, refs)?, type_of(b, refs)?);
            match op {
                Op::And | Op::Or => {
                    for t in [ta, tb] {
                        if !matches!(t, Ty::Bool | Ty::Any) {
                            return err(format!(
                                "`{}` joins conditions, but one side is {}",
                                op.text(),
                                t.name()
                            ));
                        }
                    }
                }
                _ => {
                    let mixed = matches!((ta, tb), (Ty::Num, Ty::Str) | (Ty::Str, Ty::Num))
                        || (matches!(ta, Ty::Bool) && matches!(tb, Ty::Num | Ty::Str | Ty::List))
                        || (matches!(tb, Ty::Bool) && matches!(ta, Ty::Num | Ty::Str | Ty::List));
                    if mixed {
                        return err(format!(
                            "`{}` compares {} with {}",
                            op.text(),
                            ta.name(),
                            tb.name()
                        ));
                    }
                    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
                        && (matches!(ta, Ty::Bool | Ty::List) || matches!(tb, Ty::Bool | Ty::List))
                    {
                        return err(format!("`{}` orders numbers and strings only", op.text()));
                    }
                }
            }
            Ty::Bool
        }
        Expr::Call(name, args) => {
            for a in args {
                type_of(a, refs)?;
            }
            match name.as_str() {
                "contains" | "startsWith" | "endsWith" => Ty::Bool,
                "len" => Ty::Num,
                "toJSON" => Ty::Str,
                _ => Ty::Any,
            }
        }
    })
}

/// The references an expression makes.
pub fn refs(e: &Expr, out: &mut Vec<Vec<String>>) {
    match e {
        Expr::Lit(_) => {}
        Expr::Ref(p) => out.push(p.clone()),
        Expr::Not(a) => refs(a, out),
        Expr::Bin(_, a, b) => {
            refs(a, out);
            refs(b, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| refs(a, out)),
    }
}

// ---- evaluation ----

pub fn eval(e: &Expr, scope: &dyn Scope) -> Result<Value, ExprError> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Ref(path) => scope.lookup(path)?,
        Expr::Not(a) => Value::Bool(!truth(&eval(a, scope)?)?),
        Expr::Bin(Op::And, a, b) => {
            Value::Bool(truth(&eval(a, scope)?)? && truth(&eval(b, scope)?)?)
        }
        Expr::Bin(Op::Or, a, b) => {
            Value::Bool(truth(&eval(a, scope)?)? || truth(&eval(b, scope)?)?)
        }
        Expr::Bin(op, a, b) => Value::Bool(compare(*op, &eval(a, scope)?, &eval(b, scope)?)?),
        Expr::Call(name, args) => {
            let vals = args
                .iter()
                .map(|a| eval(a, scope))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &vals)?
        }
    })
}

/// A condition's value: a boolean, or the text `true`/`false` (output values are text).
pub fn truth(v: &Value) -> Result<bool, ExprError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim() == "true" => Ok(true),
        Value::String(s) if s.trim() == "false" => Ok(false),
        other => err(format!("a condition must be true or false, not {other}")),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(op: Op, a: &Value, b: &Value) -> Result<bool, ExprError> {
    use std::cmp::Ordering;
    let numeric = matches!(a, Value::Number(_)) || matches!(b, Value::Number(_));
    let ord = if numeric {
        match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ if matches!(op, Op::Eq) => return Ok(false),
            _ if matches!(op, Op::Ne) => return Ok(true),
            _ => return err(format!("cannot compare {a} with {b}: one is not a number")),
        }
    } else {
        match (a, b) {
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ if matches!(op, Op::Eq | Op::Ne) => {
                let same = match (a, b) {
                    (Value::Bool(x), Value::String(_)) => truth(b).ok() == Some(*x),
                    (Value::String(_), Value::Bool(y)) => truth(a).ok() == Some(*y),
                    _ => a == b,
                };
                return Ok(same == matches!(op, Op::Eq));
            }
            _ => return err(format!("cannot order {a} and {b}")),
        }
    };
    let Some(ord) = ord else {
        return Ok(false);
    };
    Ok(match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::And | Op::Or => unreachable!("handled by eval"),
    })
}

fn call(name: &str, v: &[Value]) -> Result<Value, ExprError> {
    Ok(match name {
        "contains" => Value::Bool(match &v[0] {
            Value::Array(items) => items
                .iter()
                .any(|i| i == &v[1] || to_text(i) == to_text(&v[1])),
            other => to_text(other).contains(&to_text(&v[1])),
        }),
        "startsWith" => Value::Bool(to_text(&v[0]).starts_with(&to_text(&v[1]))),
        "endsWith" => Value::Bool(to_text(&v[0]).ends_with(&to_text(&v[1]))),
        "fromJSON" => match &v[0] {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| ExprError(format!("fromJSON: `{s}` is not JSON: {e}")))?,
            other => other.clone(),
        },
        "toJSON" => Value::String(v[0].to_string()),
        "len" => Value::from(match &v[0] {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.chars().count(),
            _ => 0,
        }),
        other => return err(format!("no function `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<String, Value>);
    impl Scope for Vars {
        fn lookup(&self, path: &[String]) -> Result<Value, ExprError> {
            self.0
                .get(&path.join("."))
                .cloned()
                .ok_or_else(|| ExprError(format!("unknown {}", path.join("."))))
        }
    }

    fn vars() -> Vars {
        Vars(HashMap::from([
            ("params.hidden".into(), Value::from(16)),
            ("params.name".into(), Value::from("iris")),
            ("steps.train.outputs.accuracy".into(), Value::from("0.97")),
            ("steps.a.outputs.list".into(), Value::from("[1, 2, 3]")),
        ]))
    }

    #[test]
    fn renders_templates() {
        let t = Template::parse("python train.py --h ${{ params.hidden }} --n ${{params.name}}")
            .unwrap();
        assert_eq!(
            t.render(&vars()).unwrap(),
            "python train.py --h 16 --n iris"
        );
        let t = Template::parse("no expressions").unwrap();
        assert!(!t.has_exprs());
    }

    #[test]
    fn conditions_compare_output_text_as_numbers() {
        let e = parse("steps.train.outputs.accuracy > 0.9 && params.hidden >= 8").unwrap();
        assert_eq!(eval(&e, &vars()).unwrap(), Value::Bool(true));
        let e = parse("!(params.name == 'iris') || contains(params.name, 'ir')").unwrap();
        assert_eq!(eval(&e, &vars()).unwrap(), Value::Bool(true));
        let e = parse("len(fromJSON(steps.a.outputs.list)) == 3").unwrap();
        assert_eq!(eval(&e, &vars()).unwrap(), Value::Bool(true));
    }

    #[test]
    fn type_errors_are_found_before_running() {
        let mut refs = |p: &[String]| -> Result<Ty, ExprError> {
            Ok(match p.join(".").as_str() {
                "params.hidden" => Ty::Num,
                "params.name" => Ty::Str,
                _ => Ty::Any,
            })
        };
        let e = parse("params.hidden == 'big'").unwrap();
        assert!(
            type_of(&e, &mut refs)
                .unwrap_err()
                .0
                .contains("compares a number with a string")
        );
        let e = parse("params.name && true").unwrap();
        assert!(type_of(&e, &mut refs).is_err());
        let e = parse("steps.x.outputs.y > 3").unwrap();
        assert_eq!(type_of(&e, &mut refs).unwrap(), Ty::Bool);
    }

    #[test]
    fn bad_syntax_is_explained() {
        assert!(parse("a ==").is_err());
        assert!(parse("\"double\"").unwrap_err().0.contains("single quotes"));
        assert!(parse("nope(1)").unwrap_err().0.contains("no function"));
        assert!(Template::parse("${{ a ").is_err());
    }
}
