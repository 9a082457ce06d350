//! The mock file (`blaster serve --mock FILE.toml`): TOML → raw serde structs (unknown keys
//! rejected, spans kept) → a validated [`MockSpec`]. The format is documented in
//! docs/mock.md.
//!
//! Every error names the file, line and column of the offending value and, for unknown keys,
//! placeholders, stocks and parameters, suggests what was probably meant:
//!
//! ```text
//! mock.toml:12:1: unknown key "stauts"; did you mean "status"?
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::latency::Latency;
use super::limit::{KeySource, RateLimitSpec};
use super::pattern::Pattern;
use super::template::{Scope, Template};
use crate::cli::units::{parse_bytes, parse_duration};
use crate::scenario::parse::{content_start, describe_toml_error, did_you_mean, line_col};

type S<T> = Spanned<T>;

/// Default largest request body a mock reads (for `publish`, `body_contains`, `{{body}}`).
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;

/// Methods a route may name.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Response header fields the server writes itself.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "server",
];

/// A mock file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct MockError {
    /// The file as the user named it.
    pub path: String,
    /// 1-based line, 0 when the error has no position (unreadable file).
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    pub message: String,
}

impl MockError {
    fn render(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.path, self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.path, self.line, self.column, self.message
            )
        }
    }
}

/// What answers a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// 404 naming the method and path.
    NotFound,
    /// The built-in routes (`/`, `/delay/{ms}`, `/status/{code}`, ..., `/ws/echo`).
    Builtin,
}

/// A validated mock file.
#[derive(Debug, Clone, PartialEq)]
pub struct MockSpec {
    /// The file as the user named it.
    pub path: String,
    pub fallback: Fallback,
    /// Largest request body read for a route that needs it (larger: 413).
    pub max_body: u64,
    /// Named stock counters and their initial amounts.
    pub stocks: Vec<(String, i64)>,
    /// Routes, tried in file order; the first that matches answers.
    pub routes: Vec<RouteSpec>,
}

impl MockSpec {
    /// Whether some rate limit is keyed by the client's IP address (the server then accepts
    /// connections with their peer address).
    pub fn needs_peer(&self) -> bool {
        self.routes.iter().any(|r| {
            r.rate_limit
                .as_ref()
                .is_some_and(|l| l.key == KeySource::Ip)
        })
    }

    /// Whether some route publishes or subscribes (the server then sets up its broker).
    pub fn uses_pubsub(&self) -> bool {
        self.routes.iter().any(|r| match &r.kind {
            RouteKind::Http(h) => h.publish.is_some(),
            RouteKind::WebSocket(w) => w.mode == WsMode::Pubsub,
        })
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// Line of the route's table in the file (for messages).
    pub line: usize,
    /// Upper-case methods; `None`: any method. A route for GET also answers HEAD.
    pub methods: Option<Vec<String>>,
    /// The path pattern as written.
    pub path: String,
    pub pattern: Pattern,
    /// Matches only requests whose body contains these bytes.
    pub body_contains: Option<Vec<u8>>,
    pub latency: Option<Latency>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Index into [`MockSpec::stocks`].
    pub stock: Option<usize>,
    pub kind: RouteKind,
}

impl RouteSpec {
    /// Whether answering needs the request body.
    pub fn needs_body(&self) -> bool {
        self.body_contains.is_some()
            || match &self.kind {
                RouteKind::Http(h) => h.publish.is_some() || h.body.uses_body(),
                RouteKind::WebSocket(_) => false,
            }
    }

    /// Whether the route answers `method`.
    #[inline]
    pub fn allows(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods
                .iter()
                .any(|m| m == method || (method == "HEAD" && m == "GET")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    Http(HttpRoute),
    WebSocket(WsRoute),
}

/// An HTTP route's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    pub status: u16,
    pub headers: Vec<(String, Template)>,
    pub body: Template,
    /// Publish the request body to this topic.
    pub publish: Option<Template>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMode {
    /// Every message comes back to its sender.
    Echo,
    /// Every message goes to every subscriber of the connection's topic (the sender too).
    Pubsub,
}

/// Where a pub/sub connection's topic comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Topic {
    /// Rendered from the upgrade request (`"{{param.room}}"`).
    Template(Template),
    /// The string (or number) in this field of the first JSON message that has it
    /// (`"json:channel"`); that message subscribes and is not published.
    JsonField(String),
}

/// A WebSocket route.
#[derive(Debug, Clone, PartialEq)]
pub struct WsRoute {
    pub mode: WsMode,
    /// Pub/sub only.
    pub topic: Option<Topic>,
    /// A text message sent right after the upgrade.
    pub welcome: Option<Template>,
    /// The subprotocol to accept when the client offers it.
    pub protocol: Option<String>,
    /// `(contains, reply)`: a message containing `contains` (any message when empty) is
    /// answered with `reply` instead of being echoed or published.
    pub replies: Vec<(Vec<u8>, Template)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    mock: Option<RawMock>,
    #[serde(default)]
    stocks: BTreeMap<String, S<i64>>,
    #[serde(default)]
    routes: Vec<S<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMock {
    fallback: Option<S<String>>,
    max_body: Option<S<toml::Value>>,
    #[serde(default)]
    headers: BTreeMap<String, S<String>>,
    latency: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: Option<S<toml::Value>>,
    path: S<String>,
    status: Option<S<i64>>,
    headers: Option<S<BTreeMap<String, S<String>>>>,
    body: Option<S<String>>,
    latency: Option<S<toml::Value>>,
    body_contains: Option<S<String>>,
    stock: Option<S<String>>,
    publish: Option<S<String>>,
    rate_limit: Option<S<RawRateLimit>>,
    websocket: Option<S<String>>,
    topic: Option<S<String>>,
    welcome: Option<S<String>>,
    protocol: Option<S<String>>,
    replies: Option<S<Vec<S<RawReply>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    key: S<String>,
    limit: Option<S<i64>>,
    window: S<String>,
    #[serde(default)]
    limits: BTreeMap<String, S<i64>>,
    retry_after: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReply {
    contains: Option<S<String>>,
    send: S<String>,
}

/// Reads and validates a mock file.
pub fn load(path: &Path) -> Result<MockSpec, MockError> {
    let source = std::fs::read_to_string(path).map_err(|e| MockError {
        path: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read the mock file: {e}"),
    })?;
    parse_str(&source, &path.display().to_string())
}

/// Validates mock file `source`; `path` names it in errors.
pub fn parse_str(source: &str, path: &str) -> Result<MockSpec, MockError> {
    let cx = Cx { src: source, path };
    let raw: RawFile = toml::from_str(source).map_err(|e| cx.toml_error(&e))?;
    cx.build(raw)
}

struct Cx<'a> {
    src: &'a str,
    path: &'a str,
}

impl Cx<'_> {
    fn error_at(&self, offset: usize, message: impl Into<String>) -> MockError {
        let (line, column) = line_col(self.src, offset);
        MockError {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn err<T>(&self, span: &Range<usize>, message: impl Into<String>) -> Result<T, MockError> {
        Err(self.error_at(span.start, message))
    }

    fn toml_error(&self, e: &toml::de::Error) -> MockError {
        let offset = e.span().map_or(0, |s| s.start);
        let message = describe_toml_error(e.message());
        self.error_at(offset, message)
    }

    /// A template in a string value, with errors placed inside the string.
    fn template(
        &self,
        s: &S<String>,
        params: &[String],
        scope: Scope,
    ) -> Result<Template, MockError> {
        Template::parse(s.get_ref(), params, scope)
            .map_err(|(at, msg)| self.error_at(content_start(self.src, &s.span()) + at, msg))
    }

    fn latency(&self, v: &S<toml::Value>) -> Result<Latency, MockError> {
        let result = match v.get_ref() {
            toml::Value::String(text) => Latency::parse(text),
            toml::Value::Table(table) => {
                let mut points = Vec::new();
                for (key, value) in table {
                    let Some(text) = value.as_str() else {
                        return self.err(
                            &v.span(),
                            format!(
                                "percentile {key}: expected a duration in quotes, like \"20ms\""
                            ),
                        );
                    };
                    points.push((key.as_str(), text));
                }
                Latency::percentiles(points)
            }
            _ => Latency::parse(""),
        };
        result.or_else(|e| self.err(&v.span(), e))
    }

    fn build(&self, raw: RawFile) -> Result<MockSpec, MockError> {
        let mut fallback = Fallback::NotFound;
        let mut max_body = DEFAULT_MAX_BODY;
        let mut default_headers = Vec::new();
        let mut default_latency = None;
        if let Some(mock) = &raw.mock {
            if let Some(f) = &mock.fallback {
                fallback = match f.get_ref().as_str() {
                    "404" | "not-found" => Fallback::NotFound,
                    "builtin" => Fallback::Builtin,
                    other => {
                        return self.err(
                            &f.span(),
                            format!(
                                "unknown fallback \"{other}\": use \"404\" (answer 404) or \"builtin\" (the built-in routes of blaster serve){}",
                                did_you_mean(other, &["builtin"])
                            ),
                        );
                    }
                };
            }
            if let Some(m) = &mock.max_body {
                max_body = match m.get_ref() {
                    toml::Value::Integer(n) if *n >= 0 => *n as u64,
                    toml::Value::String(s) => {
                        parse_bytes(s).or_else(|e| self.err(&m.span(), e.to_string()))?
                    }
                    _ => {
                        return self.err(
                            &m.span(),
                            "max_body: expected a byte size like \"16MiB\" or a number of bytes",
                        );
                    }
                };
            }
            for (name, value) in &mock.headers {
                default_headers.push((name.clone(), value));
            }
            if let Some(l) = &mock.latency {
                default_latency = Some(self.latency(l)?);
            }
        }
        let stocks: Vec<(String, i64)> = raw
            .stocks
            .iter()
            .map(|(name, n)| {
                if *n.get_ref() < 0 {
                    return self.err(
                        &n.span(),
                        format!("stock \"{name}\" must start at 0 or more"),
                    );
                }
                Ok((name.clone(), *n.get_ref()))
            })
            .collect::<Result<_, _>>()?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        for r in &raw.routes {
            routes.push(self.route(r, &stocks, &default_headers, &default_latency)?);
        }
        if routes.is_empty() && fallback == Fallback::NotFound {
            return Err(self.error_at(
                self.src.len(),
                "the mock has no routes: add [[routes]] tables (see docs/mock.md), or set fallback = \"builtin\" under [mock]",
            ));
        }
        Ok(MockSpec {
            path: self.path.to_owned(),
            fallback,
            max_body,
            stocks,
            routes,
        })
    }

    fn route(
        &self,
        r: &S<RawRoute>,
        stocks: &[(String, i64)],
        default_headers: &[(String, &S<String>)],
        default_latency: &Option<Latency>,
    ) -> Result<RouteSpec, MockError> {
        let line = self.error_at(r.span().start, "").line;
        let raw = r.get_ref();
        let pattern = Pattern::parse(raw.path.get_ref()).map_err(|(at, msg)| {
            self.error_at(content_start(self.src, &raw.path.span()) + at, msg)
        })?;
        let params = pattern.names().to_vec();
        let methods = match &raw.method {
            None => None,
            Some(m) => self.methods(m)?,
        };
        let body_contains = match &raw.body_contains {
            Some(b) if b.get_ref().is_empty() => {
                return self.err(
                    &b.span(),
                    "body_contains is empty: give the text a body must contain",
                );
            }
            Some(b) => Some(b.get_ref().as_bytes().to_vec()),
            None => None,
        };
        let stock = match &raw.stock {
            None => None,
            Some(name) => {
                let Some(i) = stocks.iter().position(|(n, _)| n == name.get_ref()) else {
                    let names: Vec<&str> = stocks.iter().map(|(n, _)| n.as_str()).collect();
                    let listed = if names.is_empty() {
                        "there is no [stocks] table".to_owned()
                    } else {
                        format!("stocks: {}", names.join(", "))
                    };
                    return self.err(
                        &name.span(),
                        format!(
                            "unknown stock \"{}\" ({listed}){}; declare it under [stocks], like {} = 100",
                            name.get_ref(),
                            did_you_mean(name.get_ref(), &names),
                            name.get_ref()
                        ),
                    );
                };
                Some(i)
            }
        };
        let rate_limit = match &raw.rate_limit {
            None => None,
            Some(l) => Some(self.rate_limit(l, &params)?),
        };
        let kind = match &raw.websocket {
            Some(mode) => self.websocket(raw, mode, &params, &methods)?,
            None => self.http(raw, &params, default_headers)?,
        };
        let latency = match &raw.latency {
            Some(l) => Some(self.latency(l)?),
            None if matches!(kind, RouteKind::Http(_)) => default_latency.clone(),
            None => None,
        };
        Ok(RouteSpec {
            line,
            methods,
            path: raw.path.get_ref().clone(),
            pattern,
            body_contains,
            latency,
            rate_limit,
            stock,
            kind,
        })
    }

    fn methods(&self, m: &S<toml::Value>) -> Result<Option<Vec<String>>, MockError> {
        let names: Vec<&str> = match m.get_ref() {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_str).collect(),
            _ => vec![],
        };
        let array_len = m.get_ref().as_array().map_or(1, Vec::len);
        if names.is_empty() || names.len() != array_len {
            return self.err(
                &m.span(),
                "method: expected a method like \"GET\", a list like [\"GET\", \"POST\"], or \"*\" for any",
            );
        }
        if names.contains(&"*") {
            return Ok(None);
        }
        let mut out = Vec::new();
        for name in names {
            let upper = name.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return self.err(
                    &m.span(),
                    format!(
                        "unknown method \"{name}\"{} (methods: {}, or \"*\" for any)",
                        did_you_mean(&upper, METHODS),
                        METHODS.join(", ")
                    ),
                );
            }
            out.push(upper);
        }
        Ok(Some(out))
    }

    fn rate_limit(
        &self,
        l: &S<RawRateLimit>,
        params: &[String],
    ) -> Result<RateLimitSpec, MockError> {
        let raw = l.get_ref();
        let key_text = raw.key.get_ref().as_str();
        const KEY_FORM: &str = "expected \"header:NAME\" (e.g. header:Authorization), \"ip\", \"param:NAME\" or \"query:NAME\"";
        let key = match key_text.split_once(':') {
            _ if key_text == "ip" => KeySource::Ip,
            Some(("header", name)) if !name.is_empty() => KeySource::Header(name.to_owned()),
            Some(("query", name)) if !name.is_empty() => KeySource::Query(name.to_owned()),
            Some(("param", name)) => match params.iter().position(|p| p == name) {
                Some(i) => KeySource::Param(i),
                None => {
                    let names: Vec<&str> = params.iter().map(String::as_str).collect();
                    return self.err(
                        &raw.key.span(),
                        format!(
                            "rate limit key {key_text:?}: the route's path has no parameter \"{name}\"{}",
                            did_you_mean(name, &names)
                        ),
                    );
                }
            },
            _ => {
                return self.err(
                    &raw.key.span(),
                    format!("unknown rate limit key {key_text:?}: {KEY_FORM}"),
                );
            }
        };
        let count = |v: &S<i64>| -> Result<u64, MockError> {
            u64::try_from(*v.get_ref())
                .or_else(|_| self.err(&v.span(), "a request count must be 0 or more"))
        };
        let limit = raw.limit.as_ref().map(count).transpose()?;
        let limits = raw
            .limits
            .iter()
            .map(|(k, v)| Ok((k.as_bytes().to_vec(), count(v)?)))
            .collect::<Result<Vec<_>, MockError>>()?;
        if limit.is_none() && limits.is_empty() {
            return self.err(
                &l.span(),
                "a rate limit needs `limit` (requests per window for every key) or `limits` (for particular key values), or both",
            );
        }
        let window = parse_duration(raw.window.get_ref())
            .or_else(|e| self.err(&raw.window.span(), e.to_string()))?;
        if window.is_zero() {
            return self.err(
                &raw.window.span(),
                "the window must be longer than 0, like \"1m\"",
            );
        }
        let retry_after = match &raw.retry_after {
            Some(v) if *v.get_ref() < 0 => {
                return self.err(
                    &v.span(),
                    "retry_after is the seconds to advertise in Retry-After: 0 or more",
                );
            }
            Some(v) => Some(*v.get_ref() as u64),
            None => None,
        };
        Ok(RateLimitSpec {
            key,
            limit,
            limits,
            window,
            retry_after,
        })
    }

    fn http(
        &self,
        raw: &RawRoute,
        params: &[String],
        default_headers: &[(String, &S<String>)],
    ) -> Result<RouteKind, MockError> {
        for (key, span) in [
            ("topic", raw.topic.as_ref().map(|t| t.span())),
            ("welcome", raw.welcome.as_ref().map(|t| t.span())),
            ("protocol", raw.protocol.as_ref().map(|t| t.span())),
            ("replies", raw.replies.as_ref().map(|t| t.span())),
        ] {
            if let Some(span) = span {
                return self.err(
                    &span,
                    format!("\"{key}\" belongs to WebSocket routes: add websocket = \"echo\" or \"pubsub\""),
                );
            }
        }
        let status = match &raw.status {
            None => 200,
            Some(s) => match u16::try_from(*s.get_ref()) {
                Ok(code @ 200..=599) => code,
                _ => return self.err(&s.span(), "status: expected a status code from 200 to 599"),
            },
        };
        let mut headers: Vec<(String, Template)> = Vec::new();
        let route_headers = raw.headers.as_ref().map(|h| h.get_ref());
        let named: Vec<(&String, &S<String>)> = route_headers
            .into_iter()
            .flatten()
            .chain(
                default_headers
                    .iter()
                    .filter(|(name, _)| {
                        !route_headers
                            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)))
                    })
                    .map(|(name, value)| (name, *value)),
            )
            .collect();
        for (name, value) in named {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return self.err(&value.span(), format!("invalid header name {name:?}"));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return self.err(
                    &value.span(),
                    format!("header {name} is written by the server itself; leave it out"),
                );
            }
            if value.get_ref().contains(['\r', '\n']) {
                return self.err(
                    &value.span(),
                    format!("header {name}: a value cannot hold a line break"),
                );
            }
            let t = self.template(value, params, Scope::Response)?;
            if t.uses_body() {
                return self.err(
                    &value.span(),
                    "{{body}} cannot go into a header (it may hold line breaks)",
                );
            }
            headers.push((name.clone(), t));
        }
        let body = match &raw.body {
            Some(b) => self.template(b, params, Scope::Response)?,
            None => Template::default(),
        };
        let publish = match &raw.publish {
            Some(p) if p.get_ref().is_empty() => {
                return self.err(
                    &p.span(),
                    "publish: give the topic to publish the request body to",
                );
            }
            Some(p) => Some(self.template(p, params, Scope::Welcome)?),
            None => None,
        };
        Ok(RouteKind::Http(HttpRoute {
            status,
            headers,
            body,
            publish,
        }))
    }

    fn websocket(
        &self,
        raw: &RawRoute,
        mode: &S<String>,
        params: &[String],
        methods: &Option<Vec<String>>,
    ) -> Result<RouteKind, MockError> {
        let mode_value = match mode.get_ref().as_str() {
            "echo" => WsMode::Echo,
            "pubsub" => WsMode::Pubsub,
            other => {
                return self.err(
                    &mode.span(),
                    format!(
                        "unknown websocket mode \"{other}\": use \"echo\" or \"pubsub\"{}",
                        did_you_mean(other, &["echo", "pubsub"])
                    ),
                );
            }
        };
        for (key, span) in [
            ("status", raw.status.as_ref().map(|t| t.span())),
            ("headers", raw.headers.as_ref().map(|t| t.span())),
            ("body", raw.body.as_ref().map(|t| t.span())),
            ("publish", raw.publish.as_ref().map(|t| t.span())),
            ("latency", raw.latency.as_ref().map(|t| t.span())),
            (
                "body_contains",
                raw.body_contains.as_ref().map(|t| t.span()),
            ),
        ] {
            if let Some(span) = span {
                return self.err(
                    &span,
                    format!(
                        "\"{key}\" does not apply to a WebSocket route (answers there are messages: see welcome and replies; delays: the delay_ms query knob)"
                    ),
                );
            }
        }
        if methods
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m != "GET"))
        {
            let span = raw.method.as_ref().map(|m| m.span()).unwrap_or_default();
            return self.err(
                &span,
                "a WebSocket upgrade is a GET request: use method = \"GET\" or leave it out",
            );
        }
        let topic = match (&raw.topic, mode_value) {
            (None, WsMode::Pubsub) => {
                return self.err(
                    &mode.span(),
                    "a pubsub route needs a topic: topic = \"{{param.NAME}}\" (from the path) or \"json:FIELD\" (from the first message that has FIELD)",
                );
            }
            (Some(t), WsMode::Echo) => {
                return self.err(
                    &t.span(),
                    "an echo route has no topic: use websocket = \"pubsub\"",
                );
            }
            (None, WsMode::Echo) => None,
            (Some(t), WsMode::Pubsub) => Some(match t.get_ref().strip_prefix("json:") {
                Some("") => {
                    return self.err(&t.span(), "json: needs a field name, like json:channel");
                }
                Some(field) => Topic::JsonField(field.to_owned()),
                None if t.get_ref().is_empty() => {
                    return self.err(&t.span(), "the topic is empty");
                }
                None => Topic::Template(self.template(t, params, Scope::Welcome)?),
            }),
        };
        let welcome = raw
            .welcome
            .as_ref()
            .map(|w| self.template(w, params, Scope::Welcome))
            .transpose()?;
        let mut replies = Vec::new();
        for reply in raw.replies.iter().flat_map(|r| r.get_ref()) {
            let r = reply.get_ref();
            let contains = r
                .contains
                .as_ref()
                .map(|c| c.get_ref().as_bytes().to_vec())
                .unwrap_or_default();
            replies.push((contains, self.template(&r.send, params, Scope::Message)?));
        }
        let protocol = match &raw.protocol {
            Some(p) if p.get_ref().is_empty() || p.get_ref().contains([',', ' ']) => {
                return self.err(
                    &p.span(),
                    "protocol: one subprotocol name, like \"graphql-transport-ws\"",
                );
            }
            Some(p) => Some(p.get_ref().clone()),
            None => None,
        };
        Ok(RouteKind::WebSocket(WsRoute {
            mode: mode_value,
            topic,
            welcome,
            protocol,
            replies,
        }))
    }
}
