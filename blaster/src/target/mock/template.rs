//! Body and header templates of mock routes: literal text with `{{placeholders}}`.
//!
//! A template is parsed once when the mock file loads into literal pieces and placeholders
//! (parameter names resolved to indexes), so rendering a response is a loop of appends with
//! no parsing, hashing or formatting machinery. Values are inserted as they are (no JSON or
//! HTML escaping; path and query values are not percent-decoded).

use std::fmt::Write as _;

use crate::scenario::parse::did_you_mean;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<[u8]>),
    /// A path parameter, by its index in the route's pattern.
    Param(usize),
    Query(Box<str>),
    Header(Box<str>),
    /// The route's request number (1, 2, ...), the same everywhere in one response.
    Counter,
    BodyLen,
    Body,
    Method,
    Path,
    /// What is left of the route's stock after this request.
    Stock,
    RssBytes,
    RssMb,
    NowMs,
}

/// Which placeholders a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An HTTP response: everything.
    Response,
    /// A WebSocket welcome message: the upgrade request, but no body.
    Welcome,
    /// A WebSocket reply or a topic computed later: no request context.
    Message,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    segs: Vec<Seg>,
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The route's parameters in pattern order.
    pub params: &'a [&'a str],
    /// The query string (without `?`).
    pub query: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub body: &'a [u8],
    pub body_len: u64,
    pub counter: u64,
    pub stock: Option<i64>,
}

const NAMES: &[&str] = &[
    "counter",
    "body_len",
    "body",
    "method",
    "path",
    "stock",
    "rss_bytes",
    "rss_mb",
    "now_ms",
    "param.NAME",
    "query.NAME",
    "header.NAME",
];

impl Template {
    /// Parses `text`; `params` are the route's parameter names. An error gives the byte
    /// offset in `text` and what is wrong.
    pub fn parse(text: &str, params: &[String], scope: Scope) -> Result<Template, (usize, String)> {
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            lit.extend_from_slice(&rest.as_bytes()[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err((
                    offset + start,
                    "\"{{\" opens a placeholder that is never closed with \"}}\"".into(),
                ));
            };
            let name = after[..end].trim();
            let seg = placeholder(name, params, scope).map_err(|m| (offset + start, m))?;
            if !lit.is_empty() {
                segs.push(Seg::Lit(std::mem::take(&mut lit).into()));
            }
            segs.push(seg);
            let used = start + 2 + end + 2;
            rest = &rest[used..];
            offset += used;
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit.into()));
        }
        Ok(Template { segs })
    }

    /// A template of literal text only.
    pub fn literal(text: &str) -> Template {
        Template {
            segs: if text.is_empty() {
                Vec::new()
            } else {
                vec![Seg::Lit(text.as_bytes().into())]
            },
        }
    }

    /// Whether rendering needs the request body (`{{body}}`).
    pub fn uses_body(&self) -> bool {
        self.segs.contains(&Seg::Body)
    }

    /// Whether the template has no placeholders.
    pub fn is_literal(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    /// Appends the rendered text to `out`.
    pub fn render(&self, vars: &Vars<'_>, out: &mut Vec<u8>) {
        let mut rss = None;
        for seg in &self.segs {
            match seg {
                Seg::Lit(text) => out.extend_from_slice(text),
                Seg::Param(i) => {
                    out.extend_from_slice(vars.params.get(*i).copied().unwrap_or("").as_bytes())
                }
                Seg::Query(name) => {
                    out.extend_from_slice(query_value(vars.query, name).unwrap_or("").as_bytes())
                }
                Seg::Header(name) => {
                    if let Some(h) = vars
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                    {
                        out.extend_from_slice(h.value);
                    }
                }
                Seg::Counter => decimal(out, vars.counter),
                Seg::BodyLen => decimal(out, vars.body_len),
                Seg::Body => out.extend_from_slice(vars.body),
                Seg::Method => out.extend_from_slice(vars.method.as_bytes()),
                Seg::Path => out.extend_from_slice(vars.path.as_bytes()),
                Seg::Stock => decimal(out, vars.stock.unwrap_or(0).max(0) as u64),
                Seg::RssBytes => decimal(out, *rss.get_or_insert_with(crate::engine::rss_bytes)),
                Seg::RssMb => {
                    let bytes = *rss.get_or_insert_with(crate::engine::rss_bytes);
                    let mut text = String::new();
                    let _ = write!(text, "{:.1}", bytes as f64 / (1024.0 * 1024.0));
                    out.extend_from_slice(text.as_bytes());
                }
                Seg::NowMs => {
                    let ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    decimal(out, ms);
                }
            }
        }
    }
}

fn placeholder(name: &str, params: &[String], scope: Scope) -> Result<Seg, String> {
    let request_only = |what: &str| -> Result<(), String> {
        if scope == Scope::Message {
            return Err(format!(
                "{{{{{what}}}}} is not known here: a WebSocket reply has no request context (use {{{{counter}}}}, {{{{now_ms}}}}, {{{{rss_bytes}}}} or {{{{rss_mb}}}})"
            ));
        }
        Ok(())
    };
    if let Some(p) = name.strip_prefix("param.") {
        request_only(name)?;
        return match params.iter().position(|n| n == p) {
            Some(i) => Ok(Seg::Param(i)),
            None if params.is_empty() => Err(format!(
                "{{{{{name}}}}}: the route's path has no parameters (a parameter is a segment like {{{p}}})"
            )),
            None => {
                let names: Vec<&str> = params.iter().map(String::as_str).collect();
                Err(format!(
                    "{{{{{name}}}}}: the route's path has no parameter \"{p}\" (it has: {}){}",
                    names.join(", "),
                    did_you_mean(p, &names)
                ))
            }
        };
    }
    if let Some(q) = name.strip_prefix("query.") {
        request_only(name)?;
        if q.is_empty() {
            return Err("{{query.NAME}} needs a parameter name".into());
        }
        return Ok(Seg::Query(q.into()));
    }
    if let Some(h) = name.strip_prefix("header.") {
        request_only(name)?;
        if h.is_empty() {
            return Err("{{header.NAME}} needs a header name".into());
        }
        return Ok(Seg::Header(h.into()));
    }
    let seg = match name {
        "counter" => Seg::Counter,
        "rss_bytes" => Seg::RssBytes,
        "rss_mb" => Seg::RssMb,
        "now_ms" => Seg::NowMs,
        "body_len" | "body" | "method" | "path" | "stock" => {
            request_only(name)?;
            match name {
                "body_len" => Seg::BodyLen,
                "body" if scope == Scope::Welcome => {
                    return Err(
                        "{{body}} is not known in a welcome message (an upgrade has no body)"
                            .into(),
                    );
                }
                "body" => Seg::Body,
                "method" => Seg::Method,
                "path" => Seg::Path,
                _ => Seg::Stock,
            }
        }
        _ => {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}{}; placeholders: {}",
                did_you_mean(name, NAMES),
                NAMES.join(", ")
            ));
        }
    };
    Ok(seg)
}

/// The raw value of `name` in a query string (`a=1&b=2`); a key without `=` has the value "".
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn decimal(out: &mut Vec<u8>, n: u64) {
    super::super::respond::put_decimal(out, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, params: &[&str], vars: Vars<'_>) -> String {
        let names: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        let t = Template::parse(t, &names, Scope::Response).expect("template");
        let mut out = Vec::new();
        t.render(&vars, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn renders_every_placeholder() {
        let headers = [httparse::Header {
            name: "Authorization",
            value: b"Bearer t",
        }];
        let vars = Vars {
            method: "POST",
            path: "/api/s/42",
            params: &["42"],
            query: "page=3&x",
            headers: &headers,
            body: b"hello",
            body_len: 5,
            counter: 7,
            stock: Some(-3),
        };
        let out = render(
            r#"{"id": "{{param.id}}", "p": "{{ query.page }}", "x": "{{query.x}}", "none": "{{query.y}}", "a": "{{header.authorization}}", "n": {{counter}}, "len": {{body_len}}, "b": "{{body}}", "m": "{{method}} {{path}}", "s": {{stock}}}"#,
            &["id"],
            vars,
        );
        assert_eq!(
            out,
            r#"{"id": "42", "p": "3", "x": "", "none": "", "a": "Bearer t", "n": 7, "len": 5, "b": "hello", "m": "POST /api/s/42", "s": 0}"#
        );
        let out = render("{{rss_bytes}} {{rss_mb}} {{now_ms}}", &[], Vars::default());
        let nums: Vec<f64> = out.split(' ').map(|n| n.parse().expect("number")).collect();
        assert!(nums[0] > 1e5, "rss {out}");
        assert!((nums[1] - nums[0] / 1048576.0).abs() < 1.0, "{out}");
        assert!(nums[2] > 1.6e12, "{out}");
    }

    #[test]
    fn literal_text_and_lone_braces() {
        let out = render(r#"{"a": {"b": 1}} }} {"#, &[], Vars::default());
        assert_eq!(out, r#"{"a": {"b": 1}} }} {"#);
        let t = Template::parse("plain", &[], Scope::Response).unwrap();
        assert!(t.is_literal() && !t.uses_body());
        let t = Template::parse("{{body}}", &[], Scope::Response).unwrap();
        assert!(t.uses_body());
    }

    #[test]
    fn errors_say_where_and_what() {
        let (at, msg) = Template::parse("ab {{countr}}", &[], Scope::Response).unwrap_err();
        assert_eq!(at, 3);
        assert!(msg.contains("did you mean \"counter\""), "{msg}");
        let (at, msg) = Template::parse("x {{counter", &[], Scope::Response).unwrap_err();
        assert_eq!(at, 2);
        assert!(msg.contains("never closed"), "{msg}");
        let names = vec!["id".to_string()];
        let (_, msg) = Template::parse("{{param.idd}}", &names, Scope::Response).unwrap_err();
        assert!(msg.contains("did you mean \"id\""), "{msg}");
        let (_, msg) = Template::parse("{{param.id}}", &[], Scope::Response).unwrap_err();
        assert!(msg.contains("no parameters"), "{msg}");
        let (_, msg) = Template::parse("{{path}}", &[], Scope::Message).unwrap_err();
        assert!(msg.contains("no request context"), "{msg}");
        let (_, msg) = Template::parse("{{body}}", &[], Scope::Welcome).unwrap_err();
        assert!(msg.contains("welcome"), "{msg}");
        assert!(Template::parse("{{counter}}", &[], Scope::Message).is_ok());
    }

    #[test]
    fn query_values() {
        assert_eq!(query_value("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_value("a&b=2", "a"), Some(""));
        assert_eq!(query_value("", "a"), None);
        assert_eq!(query_value("ab=1", "a"), None);
    }
}
