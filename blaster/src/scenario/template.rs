//! Template scanning: `${NAME}` / `${NAME:-default}` load-time variables and the run-time
//! references `${data.SOURCE.FIELD}`, `${vars.NAME}`, `${gen.NAME}` / `${gen.NAME(ARGS)}`.
//! `$${` is a literal `${`.
//!
//! Functions here work on one string and report errors as (byte offset in that string,
//! message); the caller turns the offset into a file line and column.

use super::model::{Generator, JsonPath, PathSegment, Segment, Template};
use crate::cli::units::{parse_bytes, parse_count};

/// An error inside one string: byte offset and message.
pub(crate) type LocalError = (usize, String);

/// One piece of a scanned string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Literal(String),
    /// A run-time reference: the text between `${` and `}` (load-time variables in it
    /// substituted, as in `${gen.string(${SIZE:-1KiB})}`), and its offset.
    Runtime(String, usize),
}

/// Resolves load-time variables: returns the value or `None` when undefined.
pub(crate) trait VarLookup {
    fn var(&self, name: &str) -> Option<String>;
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Index of the `}` closing the `${` at the start of `s`, allowing nested `${…}` (in
/// defaults: `${BASE_URL:-http://${HOST}}`).
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// Splits `text` into literals (with load-time variables substituted) and run-time
/// references.
pub(crate) fn scan(text: &str, vars: &dyn VarLookup) -> Result<Vec<Piece>, LocalError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = r;
            offset += i + 3;
            continue;
        }
        if !after.starts_with("${") {
            lit.push('$');
            rest = &after[1..];
            offset += i + 1;
            continue;
        }
        let start = offset + i;
        let Some(end) = closing_brace(after) else {
            return Err((
                start,
                "unclosed \"${\"; write \"$${\" for a literal \"${\"".into(),
            ));
        };
        let inner = &after[2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if is_var_name(name.trim()) {
            let name = name.trim();
            let value = match (vars.var(name), default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => {
                    let d_at = start + 2 + inner.len() - d.len();
                    Some(expand(d, vars).map_err(|(at, m)| (d_at + at, m))?)
                }
                (None, None) => None,
            };
            match value {
                Some(v) => lit.push_str(&v),
                None => {
                    return Err((
                        start,
                        format!(
                            "undefined variable \"{name}\"; set it with -e {name}=VALUE or in the environment, or give a default: ${{{name}:-VALUE}}"
                        ),
                    ));
                }
            }
        } else {
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            let inner_at = start + 2;
            let inner = expand(inner, vars).map_err(|(at, m)| (inner_at + at, m))?;
            pieces.push(Piece::Runtime(inner.trim().to_owned(), inner_at));
        }
        rest = &after[end + 1..];
        offset = start + end + 1;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

/// Substitutes load-time variables in a value that cannot have run-time parts (durations,
/// rates, names).
pub(crate) fn expand(text: &str, vars: &dyn VarLookup) -> Result<String, LocalError> {
    let mut out = String::new();
    for piece in scan(text, vars)? {
        match piece {
            Piece::Literal(s) => out.push_str(&s),
            Piece::Runtime(inner, at) => {
                return Err((
                    at.saturating_sub(2),
                    format!(
                        "\"${{{inner}}}\" is a run-time value and cannot be used here; only load-time variables like ${{NAME}} or ${{NAME:-default}}"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// What run-time references may name.
pub(crate) trait RefCheck {
    /// `Err(message)` when `source.field` is not a data field.
    fn data(&self, source: &str, field: &str) -> Result<(), String>;
    /// `Err(message)` when no capture sets `name`.
    fn var(&self, name: &str) -> Result<(), String>;
}

/// Parses a template.
pub(crate) fn template(
    text: &str,
    vars: &dyn VarLookup,
    refs: &dyn RefCheck,
) -> Result<Template, LocalError> {
    let mut segments = Vec::new();
    for piece in scan(text, vars)? {
        match piece {
            Piece::Literal(s) => segments.push(Segment::Literal(s)),
            Piece::Runtime(inner, at) => {
                segments.push(runtime_ref(&inner, refs).map_err(|m| (at, m))?)
            }
        }
    }
    Ok(Template { segments })
}

fn runtime_ref(inner: &str, refs: &dyn RefCheck) -> Result<Segment, String> {
    let (ns, rest) = inner.split_once('.').unwrap_or((inner, ""));
    match ns {
        "data" => {
            let Some((source, field)) = rest.split_once('.') else {
                return Err(format!(
                    "\"${{{inner}}}\" needs a source and a field: ${{data.SOURCE.FIELD}}"
                ));
            };
            refs.data(source, field)?;
            Ok(Segment::Data {
                source: source.into(),
                field: field.into(),
            })
        }
        "vars" => {
            if !is_var_name(rest) {
                return Err(format!("\"${{{inner}}}\": expected ${{vars.NAME}}"));
            }
            refs.var(rest)?;
            Ok(Segment::Var(rest.into()))
        }
        "gen" => generator(rest).map(Segment::Gen),
        _ => Err(format!(
            "unknown reference \"${{{inner}}}\" (expected ${{NAME}}, ${{NAME:-default}}, ${{data.SOURCE.FIELD}}, ${{vars.NAME}} or ${{gen.NAME}}){}",
            super::parse::did_you_mean(ns, &["data", "vars", "gen"])
        )),
    }
}

/// Parses `NAME` or `NAME(ARGS)` after `gen.`.
pub(crate) fn generator(s: &str) -> Result<Generator, String> {
    let (name, args) = match s.split_once('(') {
        Some((n, a)) => {
            let Some(a) = a.strip_suffix(')') else {
                return Err(format!("\"gen.{s}\": missing \")\""));
            };
            (n.trim(), Some(a))
        }
        None => (s.trim(), None),
    };
    let args: Vec<&str> = args
        .map(|a| a.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let want = |n: usize, form: &str| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("\"gen.{s}\": expected gen.{form}"))
        }
    };
    let num = |a: &str, form: &str| -> Result<f64, String> {
        a.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("\"gen.{s}\": {a:?} is not a number; expected gen.{form}"))
    };
    let simple = |g: Generator| -> Result<Generator, String> {
        want(0, name)?;
        Ok(g)
    };
    match name {
        "counter" => simple(Generator::Counter),
        "vu" => simple(Generator::Vu),
        "iteration" => simple(Generator::Iteration),
        "uuid" => simple(Generator::Uuid),
        "first_name" => simple(Generator::FirstName),
        "last_name" => simple(Generator::LastName),
        "name" => simple(Generator::Name),
        "email" => simple(Generator::Email),
        "timestamp" => simple(Generator::Timestamp),
        "timestamp_ms" => simple(Generator::TimestampMs),
        "iso8601" => simple(Generator::Iso8601),
        "int" => {
            const FORM: &str = "int(MIN,MAX)";
            want(2, FORM)?;
            let parse = |a: &str| {
                a.parse::<i64>().map_err(|_| {
                    format!("\"gen.{s}\": {a:?} is not an integer; expected gen.{FORM}")
                })
            };
            let (min, max) = (parse(args[0])?, parse(args[1])?);
            if min > max {
                return Err(format!("\"gen.{s}\": MIN is greater than MAX"));
            }
            Ok(Generator::Int { min, max })
        }
        "float" => {
            const FORM: &str = "float(MIN,MAX)";
            want(2, FORM)?;
            let (min, max) = (num(args[0], FORM)?, num(args[1], FORM)?);
            if min > max {
                return Err(format!("\"gen.{s}\": MIN is greater than MAX"));
            }
            Ok(Generator::Float { min, max })
        }
        "string" => {
            want(1, "string(LENGTH), like string(16) or string(1MiB)")?;
            let len = parse_count(args[0])
                .or_else(|_| parse_bytes(args[0]))
                .map_err(|e| format!("\"gen.{s}\": {e}"))?;
            Ok(Generator::String { len })
        }
        _ => Err(format!(
            "unknown generator \"gen.{name}\" (known: {}){}",
            Generator::NAMES.join(", "),
            super::parse::did_you_mean(name, &Generator::NAMES)
        )),
    }
}

/// Parses a JSON path: `$.a.b[0]`, `a.b.0`, `$['key']`, `$` (the whole document).
pub(crate) fn json_path(text: &str) -> Result<JsonPath, String> {
    let form = "expected a JSON path like $.user.id or $.items[0].price";
    let body = text.trim();
    let mut rest = body.strip_prefix('$').unwrap_or(body);
    let mut segments = Vec::new();
    let mut first = !body.starts_with('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Err(format!("{text:?}: missing \"]\"; {form}"));
            };
            let inner = r[..end].trim();
            if let Some(key) = inner
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            {
                segments.push(PathSegment::Key(key.into()));
            } else {
                let i = inner
                    .parse::<usize>()
                    .map_err(|_| format!("{text:?}: [{inner}] is not an index; {form}"))?;
                segments.push(PathSegment::Index(i));
            }
            rest = &r[end + 1..];
        } else {
            let r = if first {
                rest
            } else {
                rest.strip_prefix('.')
                    .ok_or_else(|| format!("{text:?}: {form}"))?
            };
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() {
                return Err(format!("{text:?}: empty key; {form}"));
            }
            segments.push(match key.parse::<usize>() {
                Ok(i) if !first || body.starts_with('$') => PathSegment::Index(i),
                _ => PathSegment::Key(key.into()),
            });
            rest = &r[end..];
        }
        first = false;
    }
    Ok(JsonPath {
        text: body.into(),
        segments,
    })
}
