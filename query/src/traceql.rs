//! The TraceQL subset Grafana's Tempo data source sends, parsed into a
//! conjunction of conditions and turned into DataFusion expressions over
//! `spans` — never into SQL text.
//!
//! Supported: one spanset `{ … }` (or `{}`) whose conditions are joined by
//! `&&`; a condition is `field op value` with `field` one of `.attr`,
//! `span.attr`, `resource.attr`, `name`, `status`, `kind`, `duration`
//! (also `span:name`, `span:status`, `span:kind`, `span:duration`), `op` one
//! of `= != > >= < <= =~ !~`, and `value` a string, number, duration (`150ms`),
//! `true`/`false`, a status (`ok`, `error`, `unset`) or a kind (`server`, …).
//! Anything else is refused with what is supported.

use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{Expr, cast, try_cast};
use datafusion::prelude::{col, lit, regexp_like};
use weft_schemas::schema::col as column;

use crate::error::QueryError;

/// Longest query text accepted.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most conditions in one query.
const MAX_CONDITIONS: usize = 32;

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `.attr`: the span's attributes, else its resource's.
    Any,
    Span,
    Resource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Attribute { scope: Scope, key: String },
    Name,
    Status,
    Kind,
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    /// A bare word: a status or kind.
    Word(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

/// A parsed query: every condition must hold for a span to match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanFilter {
    pub conditions: Vec<Condition>,
}

fn unsupported(what: &str) -> QueryError {
    QueryError::Sql(format!(
        "TraceQL: {what}; Weft answers one spanset {{ … }} of conditions joined by && \
         (.attr, span.attr, resource.attr, name, status, kind, duration with = != > >= < <= =~ !~)"
    ))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Op(Op),
    Str(String),
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '{' => {
                out.push(Token::Open);
                i += 1;
            }
            '}' => {
                out.push(Token::Close);
                i += 1;
            }
            '&' if next == Some('&') => {
                out.push(Token::And);
                i += 2;
            }
            '|' => return Err(unsupported("`||` and pipelines (`|`) are not supported")),
            '=' if next == Some('~') => {
                out.push(Token::Op(Op::Match));
                i += 2;
            }
            '!' if next == Some('~') => {
                out.push(Token::Op(Op::NotMatch));
                i += 2;
            }
            '!' if next == Some('=') => {
                out.push(Token::Op(Op::Ne));
                i += 2;
            }
            '>' | '<' => {
                let eq = next == Some('=');
                out.push(Token::Op(match (c, eq) {
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    _ => Op::Le,
                }));
                i += if eq { 2 } else { 1 };
            }
            '=' => {
                out.push(Token::Op(Op::Eq));
                i += 1;
            }
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(unsupported("a string is not closed")),
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') if quote == '"' => {
                            match chars.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&e) => s.push(e),
                                None => return Err(unsupported("a string is not closed")),
                            }
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            c if c.is_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '/') => {
                let start = i;
                while chars.get(i).is_some_and(|c| {
                    c.is_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '/')
                }) {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(unsupported(&format!("unexpected {other:?}"))),
        }
    }
    Ok(out)
}

fn field(word: &str) -> Result<Field, QueryError> {
    let attribute = |scope, key: &str| {
        if key.is_empty() {
            Err(unsupported("an attribute needs a name"))
        } else {
            Ok(Field::Attribute {
                scope,
                key: key.to_owned(),
            })
        }
    };
    match word {
        "name" | "span:name" => Ok(Field::Name),
        "status" | "span:status" => Ok(Field::Status),
        "kind" | "span:kind" => Ok(Field::Kind),
        "duration" | "span:duration" => Ok(Field::Duration),
        w if w.starts_with("span.") => attribute(Scope::Span, &w[5..]),
        w if w.starts_with("resource.") => attribute(Scope::Resource, &w[9..]),
        w if w.starts_with('.') => attribute(Scope::Any, &w[1..]),
        w => Err(unsupported(&format!(
            "{w:?} is not a field this subset knows"
        ))),
    }
}

/// `150ms`, `1.5s`, `2m`, `1h30m` → nanoseconds.
pub fn duration_ns(text: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let n: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * scale;
        rest = tail;
    }
    (total.is_finite() && total >= 0.0 && total < i64::MAX as f64).then_some(total as i64)
}

fn value(token: Token) -> Result<Value, QueryError> {
    Ok(match token {
        Token::Str(s) => Value::Str(s),
        Token::Word(w) if w == "true" || w == "false" => Value::Bool(w == "true"),
        Token::Word(w) if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            if let Ok(n) = w.parse::<f64>() {
                Value::Num(n)
            } else if let Some(ns) = duration_ns(&w) {
                Value::Duration(ns)
            } else {
                return Err(unsupported(&format!(
                    "{w:?} is neither a number nor a duration"
                )));
            }
        }
        Token::Word(w) => Value::Word(w),
        other => {
            let found = match other {
                Token::Open => "{",
                Token::Close => "}",
                Token::And => "&&",
                _ => "an operator",
            };
            return Err(unsupported(&format!("expected a value, found {found}")));
        }
    })
}

/// Parses a query (`{}` or `{ a && b }`); an empty text matches everything.
pub fn parse(text: &str) -> Result<SpanFilter, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::Sql(format!(
            "TraceQL: the query is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let mut tokens = tokens(text)?.into_iter();
    let Some(first) = tokens.next() else {
        return Ok(SpanFilter::default());
    };
    if first != Token::Open {
        return Err(unsupported("a query starts with {"));
    }
    let mut conditions = Vec::new();
    loop {
        match tokens.next() {
            Some(Token::Close) if conditions.is_empty() => break,
            Some(Token::Word(w)) => {
                let field = field(&w)?;
                let op = match tokens.next() {
                    Some(Token::Op(op)) => op,
                    _ => return Err(unsupported(&format!("{w} needs an operator"))),
                };
                let value = value(
                    tokens
                        .next()
                        .ok_or_else(|| unsupported(&format!("{w} needs a value")))?,
                )?;
                conditions.push(Condition { field, op, value });
                if conditions.len() > MAX_CONDITIONS {
                    return Err(unsupported(&format!(
                        "more than {MAX_CONDITIONS} conditions"
                    )));
                }
                match tokens.next() {
                    Some(Token::And) => continue,
                    Some(Token::Close) => break,
                    _ => return Err(unsupported("conditions are joined by && and end with }")),
                }
            }
            _ => return Err(unsupported("expected a condition")),
        }
    }
    if tokens.next().is_some() {
        return Err(unsupported("only one spanset"));
    }
    Ok(SpanFilter { conditions })
}

impl Value {
    fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) | Value::Word(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64)),
            Value::Num(n) => Some(n.to_string()),
            Value::Duration(_) => None,
        }
    }
}

fn compare(left: Expr, op: Op, right: Expr) -> Expr {
    match op {
        Op::Eq => left.eq(right),
        Op::Ne => left.not_eq(right),
        Op::Gt => left.gt(right),
        Op::Ge => left.gt_eq(right),
        Op::Lt => left.lt(right),
        Op::Le => left.lt_eq(right),
        Op::Match => regexp_like(left, right, None),
        Op::NotMatch => std::ops::Not::not(regexp_like(left, right, None)),
    }
}

/// A condition on text-valued attributes: numbers compare as numbers,
/// everything else as text.
fn on_text(value_of: Expr, c: &Condition) -> Result<Expr, QueryError> {
    use arrow::datatypes::DataType;
    Ok(match (&c.value, c.op) {
        (Value::Num(n), Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Eq | Op::Ne) => {
            compare(try_cast(value_of, DataType::Float64), c.op, lit(*n))
        }
        (Value::Duration(_), _) => {
            return Err(unsupported(
                "an attribute is compared with a string or number",
            ));
        }
        (v, op) => compare(value_of, op, lit(v.text().unwrap_or_default())),
    })
}

impl Condition {
    fn to_expr(&self) -> Result<Expr, QueryError> {
        use arrow::datatypes::DataType;
        let word = || match &self.value {
            Value::Word(w) | Value::Str(w) => Ok(w.to_ascii_lowercase()),
            other => Err(unsupported(&format!("{other:?} is not a status or kind"))),
        };
        Ok(match &self.field {
            Field::Name => on_text(col(column::NAME), self)?,
            Field::Status => compare(col(column::STATUS_CODE), self.op, lit(word()?)),
            Field::Kind => compare(col(column::KIND), self.op, lit(word()?)),
            Field::Duration => {
                let ns = match &self.value {
                    Value::Duration(ns) => *ns,
                    Value::Num(n) => *n as i64,
                    _ => return Err(unsupported("duration is compared with a duration (150ms)")),
                };
                compare(
                    cast(col(column::DURATION_NS), DataType::Int64),
                    self.op,
                    lit(ns),
                )
            }
            Field::Attribute { scope, key } => {
                let span = || get_field(col(column::ATTRIBUTES), key.as_str());
                let resource = || {
                    if key == "service.name" {
                        col(column::SERVICE_NAME)
                    } else {
                        get_field(col(column::RESOURCE_ATTRIBUTES), key.as_str())
                    }
                };
                match scope {
                    Scope::Span => on_text(span(), self)?,
                    Scope::Resource => on_text(resource(), self)?,
                    // The span's own value when it has one, else its resource's.
                    Scope::Any => on_text(
                        datafusion::functions::core::expr_fn::coalesce(vec![span(), resource()]),
                        self,
                    )?,
                }
            }
        })
    }
}

impl SpanFilter {
    /// The filter as one expression over `spans`; `None` matches every span.
    pub fn to_expr(&self) -> Result<Option<Expr>, QueryError> {
        let mut all: Option<Expr> = None;
        for c in &self.conditions {
            let e = c.to_expr()?;
            all = Some(match all {
                None => e,
                Some(a) => a.and(e),
            });
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn what_grafana_sends_parses() {
        assert_eq!(parse("").unwrap(), SpanFilter::default());
        assert_eq!(parse("{}").unwrap(), SpanFilter::default());
        let f = parse(r#"{ resource.service.name = "llm-gateway" && span.http.status_code >= 500 && duration > 1.5s && status = error && name =~ "chat.*" }"#).unwrap();
        assert_eq!(f.conditions.len(), 5);
        assert_eq!(
            f.conditions[0],
            Condition {
                field: Field::Attribute {
                    scope: Scope::Resource,
                    key: "service.name".into()
                },
                op: Op::Eq,
                value: Value::Str("llm-gateway".into())
            }
        );
        assert_eq!(f.conditions[1].value, Value::Num(500.0));
        assert_eq!(f.conditions[2].value, Value::Duration(1_500_000_000));
        assert_eq!(f.conditions[3].value, Value::Word("error".into()));
        assert_eq!(f.conditions[4].op, Op::Match);
        assert!(f.to_expr().unwrap().is_some());
        let any = parse(r#"{.gen_ai.request.model="gpt-4o"}"#).unwrap();
        assert!(
            matches!(&any.conditions[0].field, Field::Attribute { scope: Scope::Any, key } if key == "gen_ai.request.model")
        );
    }

    #[test]
    fn what_it_does_not_support_is_refused_clearly() {
        for bad in [
            r#"{ .a = "x" || .b = "y" }"#,
            r#"{ .a = "x" } | count() > 2"#,
            r#"{ .a = "x" } && { .b = "y" }"#,
            r#"{ .a "x" }"#,
            r#"{ .a = "x" "#,
            r#"{ .a = "x }"#,
            r#"{ nonsense = 1 }"#,
            r#"{ duration > "slow" }"#,
            "select * from spans",
            "{ . = 1 }",
        ] {
            let e = parse(bad)
                .and_then(|f| f.to_expr().map(|_| ()))
                .unwrap_err();
            assert!(e.to_string().contains("TraceQL"), "{bad}: {e}");
            assert_eq!(e.kind(), crate::error::ErrorKind::Invalid, "{bad}");
        }
        assert!(parse(&"{ .a = 1 && ".repeat(400)).is_err(), "bounded");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ns("150ms"), Some(150_000_000));
        assert_eq!(duration_ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(duration_ns("2us"), Some(2_000));
        assert_eq!(duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(duration_ns("5"), None);
        assert_eq!(duration_ns("5x"), None);
        assert_eq!(duration_ns(""), None);
    }
}
