//! TOML → raw serde structs (unknown keys rejected, spans kept) → the validated
//! [`model`](super::model).
//!
//! Every error carries the file, line and column of the offending value and, for unknown
//! keys, executors, metrics, generators and references, a did-you-mean.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::model::*;
use super::template::{self, LocalError, RefCheck, VarLookup};
use super::threshold;
use crate::cli::units::{parse_bytes, parse_count, parse_duration, parse_rate};

type S<T> = Spanned<T>;

/// A scenario file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ScenarioError {
    /// The file as the user named it.
    pub path: String,
    /// 1-based line, 0 when the error has no position (unreadable file).
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    pub message: String,
}

impl ScenarioError {
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

/// `; did you mean "x"?` when a candidate is close to `word`, else an empty string.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d > 0 && d <= (word.chars().count() / 3).max(2) => {
            format!("; did you mean \"{c}\"?")
        }
        _ => String::new(),
    }
}

/// A number or a string (which may hold `${VAR}` and units), for values like `vus = 10` or
/// `vus = "${VUS:-10}"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    options: Option<RawOptions>,
    #[serde(default)]
    variables: BTreeMap<String, S<String>>,
    #[serde(default)]
    data: BTreeMap<String, S<RawData>>,
    #[serde(default)]
    scenarios: BTreeMap<String, S<RawScenario>>,
    #[serde(default)]
    thresholds: BTreeMap<S<String>, S<toml::Value>>,
    #[serde(default)]
    special: Option<RawSpecial>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    timeout: Option<S<String>>,
    #[serde(default)]
    headers: BTreeMap<String, S<String>>,
    #[serde(default)]
    tags: BTreeMap<String, S<String>>,
    threads: Option<S<NumOrStr>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    kind: Option<S<String>>,
    file: Option<S<String>>,
    mode: Option<S<String>>,
    lat: Option<f64>,
    lon: Option<f64>,
    radius_m: Option<f64>,
    step_m: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    executor: S<String>,
    start_time: Option<S<String>>,
    graceful_stop: Option<S<String>>,
    error_backoff: Option<S<String>>,
    #[serde(default)]
    tags: BTreeMap<String, S<String>>,
    vus: Option<S<NumOrStr>>,
    duration: Option<S<String>>,
    start_vus: Option<S<NumOrStr>>,
    stages: Option<Vec<S<RawStage>>>,
    rate: Option<S<NumOrStr>>,
    start_rate: Option<S<NumOrStr>>,
    pre_allocated_vus: Option<S<NumOrStr>>,
    max_vus: Option<S<NumOrStr>>,
    iterations: Option<S<NumOrStr>>,
    max_duration: Option<S<String>>,
    flows: Option<Vec<S<RawFlow>>>,
    steps: Option<Vec<S<RawStep>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    duration: S<String>,
    target: S<NumOrStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Option<S<String>>,
    weight: Option<S<f64>>,
    steps: Vec<S<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    request: Option<S<String>>,
    ws_connect: Option<S<String>>,
    ws_send: Option<S<String>>,
    ws_expect: Option<S<String>>,
    ws_subscribe: Option<S<String>>,
    ws_close: Option<S<toml::Value>>,
    sleep: Option<S<String>>,
    group: Option<S<String>>,
    #[serde(rename = "loop")]
    repeat: Option<S<NumOrStr>>,
    name: Option<S<String>>,
    headers: Option<S<BTreeMap<String, S<String>>>>,
    body: Option<S<String>>,
    timeout: Option<S<String>>,
    duration: Option<S<String>>,
    checks: Option<S<Vec<S<RawCheck>>>>,
    capture: Option<S<BTreeMap<String, S<String>>>>,
    expect: Option<S<Vec<u16>>>,
    retry: Option<S<RawRetry>>,
    probability: Option<S<f64>>,
    max_frame: Option<S<NumOrStr>>,
    max_message: Option<S<NumOrStr>>,
    steps: Option<S<Vec<S<RawStep>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    on: S<Vec<u16>>,
    max: Option<S<NumOrStr>>,
    max_wait: Option<S<String>>,
    backoff: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Option<String>,
    status: Option<S<Vec<u16>>>,
    body_contains: Option<S<String>>,
    json: Option<S<String>>,
    header: Option<S<String>>,
    equals: Option<S<toml::Value>>,
    latency_below: Option<S<String>>,
    retry_after_honoured: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpecial {
    breakpoint: Option<S<RawBreakpoint>>,
    spike: Option<S<RawSpike>>,
    soak: Option<S<RawSoak>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakpoint {
    scenario: S<String>,
    start_rate: S<NumOrStr>,
    step_rate: S<NumOrStr>,
    step_duration: S<String>,
    max_rate: S<NumOrStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpike {
    scenario: S<String>,
    recovery: S<String>,
    tolerance: Option<S<NumOrStr>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoak {
    watch: S<String>,
    interval: S<String>,
    json: S<String>,
    metric: S<String>,
    max_growth_per_hour: Option<S<NumOrStr>>,
}

/// Reads and validates a scenario file. Load-time variables (`${NAME}`, `${NAME:-default}`)
/// are looked up in `vars` (from `-e NAME=VALUE`), then in the process environment, then in
/// the file's `[variables]` table, then the inline default.
pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> Result<ScenarioFile, ScenarioError> {
    let source = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        path: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_str(&source, path, vars, true)
}

/// Validates scenario `source`; `path` names it in errors and is the base of relative data
/// file paths. With `use_env` false only `vars` and `[variables]` resolve variables
/// (deterministic, for tests).
pub fn parse_str(
    source: &str,
    path: &Path,
    vars: &BTreeMap<String, String>,
    use_env: bool,
) -> Result<ScenarioFile, ScenarioError> {
    let mut cx = Cx {
        src: source,
        path: path.display().to_string(),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        vars: Vars {
            cli: vars,
            use_env,
            file: BTreeMap::new(),
        },
        data: BTreeMap::new(),
        captures: BTreeSet::new(),
    };
    let raw: RawFile = toml::from_str(source).map_err(|e| cx.toml_error(&e))?;
    cx.build(raw)
}

struct Vars<'a> {
    cli: &'a BTreeMap<String, String>,
    use_env: bool,
    file: BTreeMap<String, String>,
}

impl VarLookup for Vars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.cli
            .get(name)
            .cloned()
            .or_else(|| self.use_env.then(|| std::env::var(name).ok()).flatten())
            .or_else(|| self.file.get(name).cloned())
    }
}

struct Cx<'a> {
    src: &'a str,
    path: String,
    base: PathBuf,
    vars: Vars<'a>,
    data: BTreeMap<String, DataSource>,
    /// Every variable some capture sets.
    captures: BTreeSet<String>,
}

impl RefCheck for Cx<'_> {
    fn data(&self, source: &str, field: &str) -> Result<(), String> {
        let Some(ds) = self.data.get(source) else {
            let names: Vec<&str> = self.data.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown data source \"{source}\"{}",
                did_you_mean(source, &names)
            ));
        };
        let fields = ds.fields();
        if fields.contains(&field) {
            Ok(())
        } else {
            Err(format!(
                "data source \"{source}\" has no field \"{field}\" (fields: {}){}",
                fields.join(", "),
                did_you_mean(field, &fields)
            ))
        }
    }

    fn var(&self, name: &str) -> Result<(), String> {
        if self.captures.contains(name) {
            return Ok(());
        }
        let names: Vec<&str> = self.captures.iter().map(String::as_str).collect();
        Err(format!(
            "no capture sets \"vars.{name}\"{}",
            did_you_mean(name, &names)
        ))
    }
}

fn has_ws_connect(steps: &[Step]) -> bool {
    steps.iter().any(|s| match &s.kind {
        StepKind::WsConnect { .. } => true,
        StepKind::Group { steps, .. } | StepKind::Loop { steps, .. } => has_ws_connect(steps),
        _ => false,
    })
}

/// Offset of the first character of a string value's content (also used by the mock
/// file's parser, target/mock/spec.rs).
pub(crate) fn content_start(src: &str, span: &Range<usize>) -> usize {
    let s = src.get(span.start..).unwrap_or("");
    if s.starts_with("\"\"\"") || s.starts_with("'''") {
        let nl = usize::from(s[3..].starts_with('\n'));
        span.start + 3 + nl
    } else if s.starts_with('"') || s.starts_with('\'') {
        span.start + 1
    } else {
        span.start
    }
}

/// 1-based line and column (in characters) of byte `offset` of `src`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A toml/serde error message reworded for users: unknown keys with a did-you-mean (or the
/// expected list), missing keys, and serde's type names in plain words. Shared with the mock
/// file's parser.
pub(crate) fn describe_toml_error(msg: &str) -> String {
    let msg = msg.trim();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let hint = did_you_mean(name, &expected);
        if hint.is_empty() && !expected.is_empty() {
            format!(
                "unknown key \"{name}\"; expected one of: {}",
                expected.join(", ")
            )
        } else {
            format!("unknown key \"{name}\"{hint}")
        }
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        format!("missing key \"{}\"", rest.split('`').next().unwrap_or(""))
    } else {
        msg.replace("expected f64", "expected a number")
            .replace("expected u16", "expected a whole number like 200")
            .replace("expected u64", "expected a whole number")
            .replace("expected i64", "expected a whole number")
            .replace("expected a sequence", "expected an array")
            .replace("expected a map", "expected a table")
            .replace("expected a string", "expected a string in quotes")
    }
}

impl Cx<'_> {
    fn error_at(&self, offset: usize, message: impl Into<String>) -> ScenarioError {
        let (line, column) = line_col(self.src, offset);
        ScenarioError {
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    fn err<T>(&self, span: &Range<usize>, message: impl Into<String>) -> Result<T, ScenarioError> {
        Err(self.error_at(span.start, message))
    }

    /// An error inside a string value at `local` bytes into its content.
    fn local<T>(&self, span: &Range<usize>, (at, msg): LocalError) -> Result<T, ScenarioError> {
        Err(self.error_at(content_start(self.src, span) + at, msg))
    }

    fn toml_error(&self, e: &toml::de::Error) -> ScenarioError {
        let msg = e.message().trim();
        let offset = e.span().map_or(0, |s| s.start);
        let message = if msg.contains("untagged enum NumOrStr") {
            "expected a number, or a string like \"10k\" or \"${VUS:-10}\"".to_owned()
        } else {
            describe_toml_error(msg)
        };
        self.error_at(offset, message)
    }

    /// Expands load-time variables in a plain string value.
    fn expand(&self, s: &S<String>) -> Result<String, ScenarioError> {
        template::expand(s.get_ref(), &self.vars).or_else(|e| self.local(&s.span(), e))
    }

    fn template(&self, s: &S<String>) -> Result<Template, ScenarioError> {
        template::template(s.get_ref(), &self.vars, self).or_else(|e| self.local(&s.span(), e))
    }

    fn duration(&self, s: &S<String>) -> Result<Duration, ScenarioError> {
        let text = self.expand(s)?;
        parse_duration(&text).or_else(|e| self.err(&s.span(), e.to_string()))
    }

    fn opt_duration(
        &self,
        s: &Option<S<String>>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        s.as_ref().map_or(Ok(default), |s| self.duration(s))
    }

    fn num_text(&self, v: &S<NumOrStr>) -> Result<String, ScenarioError> {
        Ok(match v.get_ref() {
            NumOrStr::Int(i) => i.to_string(),
            NumOrStr::Float(f) => f.to_string(),
            NumOrStr::Str(s) => {
                template::expand(s, &self.vars).or_else(|e| self.local(&v.span(), e))?
            }
        })
    }

    fn count(&self, v: &S<NumOrStr>) -> Result<u64, ScenarioError> {
        let text = self.num_text(v)?;
        parse_count(&text).or_else(|e| self.err(&v.span(), e.to_string()))
    }

    /// A plain number (`1.2`, `"${TOLERANCE:-1.2}"`).
    fn number(&self, v: &S<NumOrStr>) -> Result<f64, ScenarioError> {
        let text = self.num_text(v)?;
        match text.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => self.err(
                &v.span(),
                format!("expected a number like 1.5, not {text:?}"),
            ),
        }
    }

    /// A WebSocket size limit (`16MiB`, `1000000`): at least one byte.
    fn size_limit(&self, v: &Option<S<NumOrStr>>) -> Result<Option<u64>, ScenarioError> {
        let Some(v) = v else {
            return Ok(None);
        };
        let text = self.num_text(v)?;
        match parse_bytes(&text) {
            Ok(0) => self.err(
                &v.span(),
                format!("size limit \"{text}\" must be at least 1 byte, e.g. 1MiB"),
            ),
            Ok(n) => Ok(Some(n)),
            Err(e) => self.err(&v.span(), e.to_string()),
        }
    }

    fn rate(&self, v: &S<NumOrStr>) -> Result<f64, ScenarioError> {
        let text = self.num_text(v)?;
        if text.trim().parse::<f64>() == Ok(0.0) {
            return Ok(0.0);
        }
        parse_rate(&text).or_else(|e| self.err(&v.span(), e.to_string()))
    }

    fn build(&mut self, raw: RawFile) -> Result<ScenarioFile, ScenarioError> {
        // Variables first: everything else may use them.
        let mut file_vars = BTreeMap::new();
        for (name, value) in &raw.variables {
            let v = self.expand(value)?;
            file_vars.insert(name.clone(), v);
        }
        self.vars.file = file_vars;
        let variables = raw
            .variables
            .keys()
            .filter_map(|k| self.vars.var(k).map(|v| (k.clone(), v)))
            .collect();

        for (name, d) in &raw.data {
            let ds = self.data_source(name, d)?;
            self.data.insert(name.clone(), ds);
        }

        // Captures are collected over the whole file so any step may use any `${vars.X}`.
        let mut captures = BTreeSet::new();
        for sc in raw.scenarios.values() {
            let sc = sc.get_ref();
            for steps in sc
                .steps
                .iter()
                .chain(sc.flows.iter().flatten().map(|f| &f.get_ref().steps))
            {
                collect_captures(steps, &mut captures);
            }
        }
        self.captures = captures;

        let options = match &raw.options {
            Some(o) => self.options(o)?,
            None => Options::default(),
        };

        let mut raw_scenarios: Vec<(&String, &S<RawScenario>)> = raw.scenarios.iter().collect();
        raw_scenarios.sort_by_key(|(_, s)| s.span().start);
        let mut scenarios = Vec::new();
        for (name, sc) in raw_scenarios {
            scenarios.push(self.scenario(name, sc)?);
        }
        if scenarios.is_empty() {
            return Err(self.error_at(
                self.src.len(),
                "no scenarios; add one, like [scenarios.main] with executor = \"constant-vus\"",
            ));
        }

        self.check_ws_option_headers(&raw, &scenarios)?;
        self.check_unique_rows(&raw, &options, &scenarios)?;

        let special = match &raw.special {
            Some(sp) => self.special(sp, &scenarios)?,
            None => None,
        };
        let mut extra = Vec::new();
        if let Some(Special::Soak(w)) = &special {
            extra.push((w.metric.clone(), MetricKind::Gauge));
        }

        let mut thresholds = Vec::new();
        let mut raw_thresholds: Vec<_> = raw.thresholds.iter().collect();
        raw_thresholds.sort_by_key(|(k, _)| k.span().start);
        let known = KnownTags::of(&scenarios, &options);
        for (key, value) in raw_thresholds {
            let t = self.threshold(key, value, &extra)?;
            self.check_tags(key, &t, &known)?;
            thresholds.push(t);
        }

        Ok(ScenarioFile {
            options,
            variables,
            data: std::mem::take(&mut self.data),
            scenarios,
            thresholds,
            special,
        })
    }

    /// `[options] headers` go on every WebSocket handshake too: refuse the ones the handshake
    /// sets itself when the file has a ws_connect step (at check time, not per connect).
    fn check_ws_option_headers(
        &self,
        raw: &RawFile,
        scenarios: &[ScenarioSpec],
    ) -> Result<(), ScenarioError> {
        let Some(o) = &raw.options else {
            return Ok(());
        };
        if !scenarios
            .iter()
            .flat_map(|s| &s.flows)
            .any(|f| has_ws_connect(&f.steps))
        {
            return Ok(());
        }
        for (name, value) in &o.headers {
            if crate::proto::ws::is_reserved_header(name) {
                return self.err(
                    &value.span(),
                    format!(
                        "header \"{name}\" in [options] headers would go on every WebSocket handshake, and the handshake sets it itself; move it to the request steps that need it"
                    ),
                );
            }
        }
        Ok(())
    }

    /// A `unique-per-vu` data source must have a row for every VU number of the scenarios that
    /// read it (VU numbers count on across scenarios in file order, as at run time).
    fn check_unique_rows(
        &self,
        raw: &RawFile,
        options: &Options,
        scenarios: &[ScenarioSpec],
    ) -> Result<(), ScenarioError> {
        let mut first_vu = 1u64;
        for sc in scenarios {
            let max_vus = sc.executor.max_vus();
            let last_vu = first_vu + max_vus.saturating_sub(1);
            let mut reads: Vec<String> = Vec::new();
            let mut on_template = |t: &Template| {
                for seg in &t.segments {
                    if let Segment::Data { source, .. } = seg
                        && !reads.contains(source)
                    {
                        reads.push(source.clone());
                    }
                }
            };
            for (_, t) in &options.headers {
                on_template(t);
            }
            for f in &sc.flows {
                super::runtime::walk(&f.steps, &mut on_template, &mut |_| {});
            }
            for source in &reads {
                let Some(ds) = self.data.get(source) else {
                    continue;
                };
                let DataKind::Table { path, rows, .. } = &ds.kind else {
                    continue;
                };
                if ds.mode != PickMode::UniquePerVu || (rows.len() as u64) >= last_vu {
                    continue;
                }
                let raw_ds = raw.data.get(source).expect("parsed from it");
                let at = raw_ds
                    .get_ref()
                    .mode
                    .as_ref()
                    .map_or(raw_ds.span(), |m| m.span());
                let numbers = if first_vu == 1 {
                    String::new()
                } else {
                    format!(
                        " (VU numbers {first_vu} to {last_vu}: they count on across the scenarios before it)"
                    )
                };
                let fit = (rows.len() as u64).saturating_sub(first_vu - 1);
                return self.err(
                    &at,
                    format!(
                        "data source \"{source}\" ({}) has {} row(s) and mode = \"unique-per-vu\", but scenario \"{}\" can run {max_vus} VU(s){numbers}, each needing a row of its own; add rows to the file, let the scenario run at most {fit} VU(s), or use mode = \"sequential\"",
                        path.display(),
                        rows.len(),
                        sc.name,
                    ),
                );
            }
            first_vu += max_vus;
        }
        Ok(())
    }

    fn options(&self, o: &RawOptions) -> Result<Options, ScenarioError> {
        let timeout = self.opt_duration(&o.timeout, Options::default().timeout)?;
        if timeout.is_zero() {
            return self.err(
                &o.timeout.as_ref().map(|t| t.span()).unwrap_or_default(),
                "timeout must be greater than zero",
            );
        }
        let threads = match &o.threads {
            Some(t) => {
                let n = self.count(t)?;
                if n == 0 {
                    return self.err(&t.span(), "threads must be at least 1");
                }
                Some(n as usize)
            }
            None => None,
        };
        Ok(Options {
            timeout,
            headers: self.headers(&o.headers)?,
            tags: self.tags(&o.tags)?,
            threads,
        })
    }

    fn tags(
        &self,
        t: &BTreeMap<String, S<String>>,
    ) -> Result<BTreeMap<String, String>, ScenarioError> {
        t.iter()
            .map(|(k, v)| Ok((k.clone(), self.expand(v)?)))
            .collect()
    }

    fn headers(
        &self,
        h: &BTreeMap<String, S<String>>,
    ) -> Result<Vec<(String, Template)>, ScenarioError> {
        h.iter()
            .map(|(k, v)| Ok((k.clone(), self.template(v)?)))
            .collect()
    }

    fn data_source(&self, name: &str, d: &S<RawData>) -> Result<DataSource, ScenarioError> {
        let span = d.span();
        let d = d.get_ref();
        let mode = match &d.mode {
            None => PickMode::Sequential,
            Some(m) => match self.expand(m)?.as_str() {
                "sequential" => PickMode::Sequential,
                "random" => PickMode::Random,
                "unique-per-vu" | "unique" => PickMode::UniquePerVu,
                other => {
                    return self.err(
                        &m.span(),
                        format!(
                            "unknown mode \"{other}\" (expected sequential, random or unique-per-vu){}",
                            did_you_mean(other, &["sequential", "random", "unique-per-vu"])
                        ),
                    );
                }
            },
        };
        let kind_text = match &d.kind {
            Some(k) => Some((self.expand(k)?, k.span())),
            None => None,
        };
        let file = match &d.file {
            Some(f) => Some((self.expand(f)?, f.span())),
            None => None,
        };
        let kind = match (&kind_text, &file) {
            (Some((k, _)), _) => k.clone(),
            (None, Some((f, _))) if f.ends_with(".csv") => "csv".into(),
            (None, Some((f, _))) if f.ends_with(".json") => "json".into(),
            _ => {
                return self.err(
                    &span,
                    format!("data source \"{name}\" needs kind = \"csv\", \"json\" or \"geo-walk\" (or a file ending in .csv or .json)"),
                );
            }
        };
        let kind = match kind.as_str() {
            "csv" | "json" => {
                let Some((f, fspan)) = file else {
                    return self.err(
                        &span,
                        format!("data source \"{name}\" of kind {kind} needs file = \"PATH\""),
                    );
                };
                let path = self.base.join(&f);
                let text = std::fs::read_to_string(&path).or_else(|e| {
                    self.err(
                        &fspan,
                        format!("cannot read data file {}: {e}", path.display()),
                    )
                })?;
                let (columns, rows) = if kind == "csv" {
                    parse_csv(&text)
                } else {
                    parse_json_rows(&text)
                }
                .or_else(|e| self.err(&fspan, format!("data file {}: {e}", path.display())))?;
                if rows.is_empty() {
                    return self.err(&fspan, format!("data file {} has no rows", path.display()));
                }
                DataKind::Table {
                    path,
                    columns,
                    rows,
                }
            }
            "geo-walk" => {
                let (Some(lat), Some(lon)) = (d.lat, d.lon) else {
                    return self.err(
                        &span,
                        format!("geo-walk data source \"{name}\" needs lat and lon (the centre)"),
                    );
                };
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return self.err(&span, format!("data source \"{name}\": lat must be in [-90, 90] and lon in [-180, 180]"));
                }
                DataKind::GeoWalk(GeoWalk {
                    lat,
                    lon,
                    radius_m: d.radius_m.unwrap_or(1_000.0),
                    step_m: d.step_m.unwrap_or(10.0),
                })
            }
            other => {
                let kspan = kind_text.map(|(_, s)| s).unwrap_or(span);
                return self.err(
                    &kspan,
                    format!(
                        "unknown data kind \"{other}\" (expected csv, json or geo-walk){}",
                        did_you_mean(other, &["csv", "json", "geo-walk"])
                    ),
                );
            }
        };
        Ok(DataSource {
            name: name.into(),
            kind,
            mode,
        })
    }

    fn scenario(&self, name: &str, s: &S<RawScenario>) -> Result<ScenarioSpec, ScenarioError> {
        let span = s.span();
        let s = s.get_ref();
        let exec_name = self.expand(&s.executor)?;
        let exec_span = s.executor.span();
        // Keys each executor takes, besides the common ones.
        let (takes, needs): (&[&str], &[&str]) = match exec_name.as_str() {
            "constant-vus" => (&["vus", "duration"], &["vus", "duration"]),
            "ramping-vus" => (&["start_vus", "stages"], &["stages"]),
            "constant-arrival-rate" => (
                &["rate", "duration", "pre_allocated_vus", "max_vus"],
                &["rate", "duration", "pre_allocated_vus"],
            ),
            "ramping-arrival-rate" => (
                &["start_rate", "stages", "pre_allocated_vus", "max_vus"],
                &["stages", "pre_allocated_vus"],
            ),
            "per-vu-iterations" | "shared-iterations" => (
                &["vus", "iterations", "max_duration"],
                &["vus", "iterations"],
            ),
            other => {
                return self.err(
                    &exec_span,
                    format!(
                        "unknown executor \"{other}\"{}",
                        did_you_mean(other, &Executor::NAMES)
                    ),
                );
            }
        };
        let present: [(&str, Option<Range<usize>>); 10] = [
            ("vus", s.vus.as_ref().map(|v| v.span())),
            ("duration", s.duration.as_ref().map(|v| v.span())),
            ("start_vus", s.start_vus.as_ref().map(|v| v.span())),
            (
                "stages",
                s.stages.as_ref().and_then(|v| v.first()).map(|v| v.span()),
            ),
            ("rate", s.rate.as_ref().map(|v| v.span())),
            ("start_rate", s.start_rate.as_ref().map(|v| v.span())),
            (
                "pre_allocated_vus",
                s.pre_allocated_vus.as_ref().map(|v| v.span()),
            ),
            ("max_vus", s.max_vus.as_ref().map(|v| v.span())),
            ("iterations", s.iterations.as_ref().map(|v| v.span())),
            ("max_duration", s.max_duration.as_ref().map(|v| v.span())),
        ];
        for (key, at) in &present {
            if let Some(at) = at
                && !takes.contains(key)
            {
                return self.err(
                    at,
                    format!(
                        "key \"{key}\" does not apply to executor {exec_name}; it takes {}",
                        takes.join(", ")
                    ),
                );
            }
        }
        for key in needs {
            if present.iter().any(|(k, at)| k == key && at.is_none()) {
                return self.err(
                    &exec_span,
                    format!("executor {exec_name} in scenario \"{name}\" needs \"{key}\""),
                );
            }
        }
        let req_count = |v: &Option<S<NumOrStr>>, what: &str| -> Result<u64, ScenarioError> {
            let v = v.as_ref().expect("checked above");
            let n = self.count(v)?;
            if n == 0 {
                return self.err(&v.span(), format!("{what} must be at least 1"));
            }
            Ok(n)
        };
        let stages = |vus: bool| -> Result<Vec<Stage>, ScenarioError> {
            let mut out = Vec::new();
            for st in s.stages.iter().flatten() {
                let st = st.get_ref();
                let target = if vus {
                    self.count(&st.target)? as f64
                } else {
                    self.rate(&st.target)?
                };
                out.push(Stage {
                    duration: self.duration(&st.duration)?,
                    target,
                });
            }
            if out.is_empty() {
                return self.err(&exec_span, "stages must not be empty");
            }
            Ok(out)
        };
        let max_duration = || self.opt_duration(&s.max_duration, Duration::from_secs(600));
        let pre_alloc = || req_count(&s.pre_allocated_vus, "pre_allocated_vus");
        let max_vus = |pre: u64| -> Result<u64, ScenarioError> {
            match &s.max_vus {
                Some(m) => {
                    let n = self.count(m)?;
                    if n < pre {
                        return self.err(
                            &m.span(),
                            format!("max_vus ({n}) is less than pre_allocated_vus ({pre})"),
                        );
                    }
                    Ok(n)
                }
                None => Ok(pre),
            }
        };
        let executor = match exec_name.as_str() {
            "constant-vus" => Executor::ConstantVus {
                vus: req_count(&s.vus, "vus")?,
                duration: self.duration(s.duration.as_ref().expect("checked"))?,
            },
            "ramping-vus" => Executor::RampingVus {
                start_vus: s.start_vus.as_ref().map_or(Ok(0), |v| self.count(v))?,
                stages: stages(true)?,
            },
            "constant-arrival-rate" => {
                let rate_v = s.rate.as_ref().expect("checked");
                let rate = self.rate(rate_v)?;
                if rate <= 0.0 {
                    return self.err(&rate_v.span(), "rate must be greater than zero");
                }
                let pre = pre_alloc()?;
                Executor::ConstantArrivalRate {
                    rate,
                    duration: self.duration(s.duration.as_ref().expect("checked"))?,
                    pre_allocated_vus: pre,
                    max_vus: max_vus(pre)?,
                }
            }
            "ramping-arrival-rate" => {
                let pre = pre_alloc()?;
                Executor::RampingArrivalRate {
                    start_rate: s.start_rate.as_ref().map_or(Ok(0.0), |v| self.rate(v))?,
                    stages: stages(false)?,
                    pre_allocated_vus: pre,
                    max_vus: max_vus(pre)?,
                }
            }
            "per-vu-iterations" => Executor::PerVuIterations {
                vus: req_count(&s.vus, "vus")?,
                iterations: req_count(&s.iterations, "iterations")?,
                max_duration: max_duration()?,
            },
            _ => Executor::SharedIterations {
                vus: req_count(&s.vus, "vus")?,
                iterations: req_count(&s.iterations, "iterations")?,
                max_duration: max_duration()?,
            },
        };

        let mut flows = Vec::new();
        match (&s.flows, &s.steps) {
            (Some(_), Some(steps)) => {
                let at = steps.first().map(|s| s.span()).unwrap_or(span);
                return self.err(
                    &at,
                    format!(
                        "scenario \"{name}\" has both flows and steps; put the steps in a flow"
                    ),
                );
            }
            (None, None) => {
                return self.err(&span, format!("scenario \"{name}\" has no steps; add [[scenarios.{name}.steps]] or [[scenarios.{name}.flows]]"));
            }
            (None, Some(steps)) => flows.push(Flow {
                name: "default".into(),
                weight: 1.0,
                steps: self.steps(steps, &span)?,
            }),
            (Some(raw_flows), None) => {
                for (i, f) in raw_flows.iter().enumerate() {
                    let fspan = f.span();
                    let f = f.get_ref();
                    let weight = match &f.weight {
                        Some(w) => {
                            let v = *w.get_ref();
                            if !(v.is_finite() && v > 0.0) {
                                return self
                                    .err(&w.span(), "weight must be a number greater than zero");
                            }
                            v
                        }
                        None => 1.0,
                    };
                    let fname = match &f.name {
                        Some(n) => self.expand(n)?,
                        None => format!("flow{}", i + 1),
                    };
                    if flows.iter().any(|x: &Flow| x.name == fname) {
                        return self.err(
                            &f.name.as_ref().map_or(fspan.clone(), |n| n.span()),
                            format!("duplicate flow name \"{fname}\""),
                        );
                    }
                    flows.push(Flow {
                        name: fname,
                        weight,
                        steps: self.steps(&f.steps, &fspan)?,
                    });
                }
                if flows.is_empty() {
                    return self.err(&span, format!("scenario \"{name}\" has no flows"));
                }
            }
        }

        let arrival = matches!(
            executor,
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
        );
        let error_backoff = match &s.error_backoff {
            Some(b) if arrival => {
                return self.err(
                    &b.span(),
                    format!(
                        "error_backoff does not apply to executor {exec_name}: its arrivals already pace the iterations; remove it (it is for VU-based executors)"
                    ),
                );
            }
            Some(b) => {
                let text = self.expand(b)?;
                crate::cli::vu::parse_backoff(text.trim())
                    .or_else(|e| self.err(&b.span(), format!("error_backoff: {e}")))?
            }
            None if arrival => Backoff::None,
            None => Backoff::DEFAULT_ERROR,
        };

        Ok(ScenarioSpec {
            name: name.into(),
            executor,
            start_time: self.opt_duration(&s.start_time, Duration::ZERO)?,
            graceful_stop: self.opt_duration(&s.graceful_stop, Duration::from_secs(30))?,
            error_backoff,
            tags: self.tags(&s.tags)?,
            flows,
        })
    }

    fn steps(&self, raw: &[S<RawStep>], parent: &Range<usize>) -> Result<Vec<Step>, ScenarioError> {
        if raw.is_empty() {
            return self.err(parent, "steps must not be empty");
        }
        raw.iter().map(|s| self.step(s)).collect()
    }

    fn step(&self, st: &S<RawStep>) -> Result<Step, ScenarioError> {
        let span = st.span();
        let r = st.get_ref();
        let kinds: [(&str, Option<Range<usize>>); 9] = [
            ("request", r.request.as_ref().map(|v| v.span())),
            ("ws_connect", r.ws_connect.as_ref().map(|v| v.span())),
            ("ws_send", r.ws_send.as_ref().map(|v| v.span())),
            ("ws_expect", r.ws_expect.as_ref().map(|v| v.span())),
            ("ws_subscribe", r.ws_subscribe.as_ref().map(|v| v.span())),
            ("ws_close", r.ws_close.as_ref().map(|v| v.span())),
            ("sleep", r.sleep.as_ref().map(|v| v.span())),
            ("group", r.group.as_ref().map(|v| v.span())),
            ("loop", r.repeat.as_ref().map(|v| v.span())),
        ];
        let set: Vec<&(&str, Option<Range<usize>>)> =
            kinds.iter().filter(|(_, s)| s.is_some()).collect();
        let kind = match set.as_slice() {
            [one] => one.0,
            [] => {
                return self.err(
                    &span,
                    "a step needs one of: request, ws_connect, ws_send, ws_expect, ws_subscribe, ws_close, sleep, group, loop",
                );
            }
            [a, b, ..] => {
                return self.err(
                    b.1.as_ref().expect("set"),
                    format!("a step has one kind; this one has both {} and {}", a.0, b.0),
                );
            }
        };
        let allowed: &[&str] = match kind {
            "request" => &[
                "name",
                "headers",
                "body",
                "timeout",
                "checks",
                "capture",
                "expect",
                "retry",
                "probability",
            ],
            "ws_connect" => &["name", "headers", "max_frame", "max_message", "probability"],
            "ws_send" => &["name", "probability"],
            "ws_expect" => &["name", "timeout", "capture", "probability"],
            "ws_subscribe" => &["name", "duration", "probability"],
            "ws_close" | "sleep" => &["probability"],
            "group" => &["steps", "probability"],
            _ => &["steps", "probability"],
        };
        let extras: [(&str, Option<Range<usize>>); 12] = [
            ("retry", r.retry.as_ref().map(|v| v.span())),
            ("name", r.name.as_ref().map(|v| v.span())),
            ("headers", r.headers.as_ref().map(|v| v.span())),
            ("body", r.body.as_ref().map(|v| v.span())),
            ("timeout", r.timeout.as_ref().map(|v| v.span())),
            ("duration", r.duration.as_ref().map(|v| v.span())),
            ("checks", r.checks.as_ref().map(|v| v.span())),
            ("capture", r.capture.as_ref().map(|v| v.span())),
            ("expect", r.expect.as_ref().map(|v| v.span())),
            ("steps", r.steps.as_ref().map(|v| v.span())),
            ("max_frame", r.max_frame.as_ref().map(|v| v.span())),
            ("max_message", r.max_message.as_ref().map(|v| v.span())),
        ];
        for (key, at) in &extras {
            if let Some(at) = at
                && !allowed.contains(key)
            {
                return self.err(
                    at,
                    format!(
                        "key \"{key}\" does not apply to a {kind} step; it takes {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let probability = match &r.probability {
            Some(p) => {
                let v = *p.get_ref();
                if !(v > 0.0 && v <= 1.0) {
                    return self.err(&p.span(), "probability must be in (0, 1]");
                }
                v
            }
            None => 1.0,
        };
        let name = |default: String| -> Result<String, ScenarioError> {
            r.name.as_ref().map_or(Ok(default), |n| self.expand(n))
        };
        let headers = || -> Result<Vec<(String, Template)>, ScenarioError> {
            r.headers
                .as_ref()
                .map_or(Ok(Vec::new()), |h| self.headers(h.get_ref()))
        };
        let captures = || -> Result<Vec<Capture>, ScenarioError> {
            let mut out = Vec::new();
            for (var, src) in r.capture.iter().flat_map(|c| c.get_ref().iter()) {
                out.push(self.capture(var, src)?);
            }
            Ok(out)
        };
        let kind = match kind {
            "request" => {
                let req = r.request.as_ref().expect("kind");
                let text = req.get_ref();
                let (method, url) = text
                    .trim_start()
                    .split_once(char::is_whitespace)
                    .unwrap_or(("", text));
                const METHODS: [&str; 7] =
                    ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
                if !METHODS.contains(&method) {
                    return self.err(
                        &req.span(),
                        format!(
                            "request must be \"METHOD URL\" with METHOD one of {}, like \"GET ${{BASE_URL}}/api/search\"{}",
                            METHODS.join(", "),
                            did_you_mean(&method.to_uppercase(), &METHODS)
                        ),
                    );
                }
                let url_offset = text.len() - url.len();
                let url_t = template::template(url.trim(), &self.vars, self)
                    .or_else(|(at, m)| self.local(&req.span(), (at + url_offset, m)))?;
                check_url(&url_t).or_else(|m| self.err(&req.span(), m))?;
                let retry = r.retry.as_ref().map(|x| self.retry(x)).transpose()?;
                let mut checks = Vec::new();
                for (i, c) in r.checks.iter().flat_map(|c| c.get_ref().iter()).enumerate() {
                    let check = self.check(c, i)?;
                    if retry.is_none()
                        && check
                            .conditions
                            .contains(&CheckCondition::RetryAfterHonoured)
                    {
                        return self.err(
                            &c.span(),
                            "retry_after_honoured needs the step to retry: add retry = { on = [429], max = 1, max_wait = \"2m\" } (a max_wait above the server's window)",
                        );
                    }
                    checks.push(check);
                }
                StepKind::Http(HttpStep {
                    name: name(format!("{method} {}", url_t.source_text()))?,
                    method: method.into(),
                    url: url_t,
                    headers: headers()?,
                    body: r.body.as_ref().map(|b| self.template(b)).transpose()?,
                    timeout: r.timeout.as_ref().map(|t| self.duration(t)).transpose()?,
                    checks,
                    captures: captures()?,
                    expect: r
                        .expect
                        .as_ref()
                        .map(|e| e.get_ref().clone())
                        .unwrap_or_default(),
                    retry,
                })
            }
            "ws_connect" => {
                let u = r.ws_connect.as_ref().expect("kind");
                let url = self.template(u)?;
                if let Some(Segment::Literal(l)) = url.segments.first()
                    && !(l.starts_with("ws://") || l.starts_with("wss://"))
                {
                    return self.err(&u.span(), "ws_connect URL must start with ws:// or wss://");
                }
                if let Some(h) = &r.headers
                    && let Some((header, value)) = h
                        .get_ref()
                        .iter()
                        .find(|(n, _)| crate::proto::ws::is_reserved_header(n))
                {
                    return self.err(
                        &value.span(),
                        format!(
                            "header \"{header}\" is set by the WebSocket handshake itself; remove it from the ws_connect step's headers (offer subprotocols with Sec-WebSocket-Protocol; extensions are not supported)"
                        ),
                    );
                }
                StepKind::WsConnect {
                    name: name(url.source_text())?,
                    url,
                    headers: headers()?,
                    max_frame: self.size_limit(&r.max_frame)?,
                    max_message: self.size_limit(&r.max_message)?,
                }
            }
            "ws_send" => {
                let b = r.ws_send.as_ref().expect("kind");
                let body = self.template(b)?;
                StepKind::WsSend {
                    name: name("ws_send".into())?,
                    body,
                }
            }
            "ws_expect" => {
                let c = r.ws_expect.as_ref().expect("kind");
                let contains = self.template(c)?;
                let contains = (contains.as_literal() != Some("")).then_some(contains);
                StepKind::WsExpect {
                    name: name("ws_expect".into())?,
                    contains,
                    timeout: self.opt_duration(&r.timeout, Duration::from_secs(10))?,
                    captures: captures()?,
                }
            }
            "ws_subscribe" => StepKind::WsSubscribe {
                name: name("ws_subscribe".into())?,
                body: self.template(r.ws_subscribe.as_ref().expect("kind"))?,
                duration: r.duration.as_ref().map(|d| self.duration(d)).transpose()?,
            },
            "ws_close" => {
                let v = r.ws_close.as_ref().expect("kind");
                let code = match v.get_ref() {
                    toml::Value::Boolean(true) => 1000,
                    toml::Value::Integer(c) if (1000..=4999).contains(c) => *c as u16,
                    _ => {
                        return self.err(
                            &v.span(),
                            "ws_close must be true or a close code in 1000..=4999",
                        );
                    }
                };
                StepKind::WsClose { code }
            }
            "sleep" => {
                let s = r.sleep.as_ref().expect("kind");
                // Run-time references (`${vars.retry_after}s`): rendered per VU.
                let t = self.template(s)?;
                if t.as_literal().is_some() {
                    StepKind::Sleep(self.think_time(s)?)
                } else {
                    StepKind::SleepFor(t)
                }
            }
            "group" => {
                let g = r.group.as_ref().expect("kind");
                let Some(steps) = &r.steps else {
                    return self.err(&g.span(), "a group needs steps: [[...steps.steps]]");
                };
                StepKind::Group {
                    name: self.expand(g)?,
                    steps: self.steps(steps.get_ref(), &steps.span())?,
                }
            }
            _ => {
                let l = r.repeat.as_ref().expect("kind");
                let text = self.num_text(l)?;
                let repeat = match parse_count(&text) {
                    Ok(0) => return self.err(&l.span(), "loop count must be at least 1"),
                    Ok(n) => Repeat::Count(n),
                    Err(_) => match parse_duration(&text) {
                        Ok(d) if !d.is_zero() => Repeat::For(d),
                        _ => {
                            return self.err(
                                &l.span(),
                                format!("loop must be a count (like 10) or a duration (like \"30s\"), not {text:?}"),
                            );
                        }
                    },
                };
                let Some(steps) = &r.steps else {
                    return self.err(&l.span(), "a loop needs steps: [[...steps.steps]]");
                };
                StepKind::Loop {
                    repeat,
                    steps: self.steps(steps.get_ref(), &steps.span())?,
                }
            }
        };
        Ok(Step { probability, kind })
    }

    fn retry(&self, r: &S<RawRetry>) -> Result<Retry, ScenarioError> {
        let raw = r.get_ref();
        let on = raw.on.get_ref().clone();
        if on.is_empty() {
            return self.err(
                &raw.on.span(),
                "retry.on needs at least one status, like on = [429, 503]",
            );
        }
        if let Some(bad) = on.iter().find(|s| !(100..=599).contains(*s)) {
            return self.err(
                &raw.on.span(),
                format!("retry.on: {bad} is not an HTTP status (100 to 599)"),
            );
        }
        let max = match &raw.max {
            Some(m) => {
                let n = self.count(m)?;
                if n == 0 || n > 100 {
                    return self.err(
                        &m.span(),
                        format!("retry.max must be 1 to 100 retries, not {n}"),
                    );
                }
                n as u32
            }
            None => 3,
        };
        let max_wait = self.opt_duration(&raw.max_wait, Duration::from_secs(60))?;
        let backoff = self.opt_duration(&raw.backoff, Duration::from_secs(1))?;
        if max_wait.is_zero() {
            return self.err(
                &raw.max_wait
                    .as_ref()
                    .map(|m| m.span())
                    .unwrap_or_else(|| r.span()),
                "retry.max_wait must be longer than 0, like \"30s\"",
            );
        }
        Ok(Retry {
            on,
            max,
            max_wait,
            backoff,
        })
    }

    fn think_time(&self, s: &S<String>) -> Result<ThinkTime, ScenarioError> {
        let text = self.expand(s)?;
        let text = text.trim();
        const FORM: &str = "expected a duration (\"1s\"), uniform(1s, 5s), normal(MEAN, STDDEV) or exponential(MEAN)";
        let Some((f, args)) = text.split_once('(') else {
            return parse_duration(text)
                .map(ThinkTime::Constant)
                .or_else(|e| self.err(&s.span(), format!("{e}; sleep: {FORM}")));
        };
        let Some(args) = args.strip_suffix(')') else {
            return self.err(&s.span(), format!("sleep {text:?}: missing \")\"; {FORM}"));
        };
        let args: Vec<Duration> = args
            .split(',')
            .map(|a| parse_duration(a.trim()))
            .collect::<Result<_, _>>()
            .or_else(|e| self.err(&s.span(), format!("{e}; sleep: {FORM}")))?;
        let f = f.trim();
        match (f, args.as_slice()) {
            ("uniform", [min, max]) if min <= max => Ok(ThinkTime::Uniform {
                min: *min,
                max: *max,
            }),
            ("uniform", [_, _]) => {
                self.err(&s.span(), "uniform(MIN, MAX): MIN is greater than MAX")
            }
            ("normal", [mean, stddev]) => Ok(ThinkTime::Normal {
                mean: *mean,
                stddev: *stddev,
            }),
            ("exponential", [mean]) => Ok(ThinkTime::Exponential { mean: *mean }),
            ("uniform" | "normal" | "exponential", _) => self.err(
                &s.span(),
                format!("sleep {text:?}: wrong number of arguments; {FORM}"),
            ),
            _ => self.err(
                &s.span(),
                format!(
                    "unknown distribution \"{f}\" ({FORM}){}",
                    did_you_mean(f, &["uniform", "normal", "exponential"])
                ),
            ),
        }
    }

    fn capture(&self, var: &str, src: &S<String>) -> Result<Capture, ScenarioError> {
        let text = self.expand(src)?;
        let source = if let Some(p) = text.strip_prefix("json:") {
            CaptureSource::Json(template::json_path(p).or_else(|m| self.err(&src.span(), m))?)
        } else if let Some(h) = text.strip_prefix("header:") {
            CaptureSource::Header(h.trim().to_owned())
        } else if let Some(r) = text.strip_prefix("regex:") {
            if r.is_empty() {
                return self.err(&src.span(), "empty regex");
            }
            // Compiled again at run time (scenario::runtime); here for the line and column.
            if let Err(e) = regex::bytes::Regex::new(r) {
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                return self.err(
                    &src.span(),
                    format!("capture {var:?}: invalid regex {r:?}: {why} (regex crate syntax, no look-around)"),
                );
            }
            CaptureSource::Regex(r.to_owned())
        } else {
            let kind = text.split(':').next().unwrap_or("");
            return self.err(
                &src.span(),
                format!(
                    "capture {var:?} must be \"json:PATH\", \"header:NAME\" or \"regex:PATTERN\"{}",
                    did_you_mean(kind, &["json", "header", "regex"])
                ),
            );
        };
        Ok(Capture {
            var: var.into(),
            source,
        })
    }

    fn check(&self, c: &S<RawCheck>, index: usize) -> Result<Check, ScenarioError> {
        let span = c.span();
        let c = c.get_ref();
        let mut conditions = Vec::new();
        if let Some(s) = &c.status {
            if s.get_ref().is_empty() {
                return self.err(&s.span(), "status needs at least one code");
            }
            conditions.push(CheckCondition::StatusIn(s.get_ref().clone()));
        }
        if let Some(b) = &c.body_contains {
            conditions.push(CheckCondition::BodyContains(self.template(b)?));
        }
        let equals = |what: &str| -> Result<Template, ScenarioError> {
            let Some(e) = &c.equals else {
                return self.err(&span, format!("a {what} check needs equals = VALUE"));
            };
            let text = match e.get_ref() {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            template::template(&text, &self.vars, self).or_else(|err| self.local(&e.span(), err))
        };
        match (&c.json, &c.header) {
            (Some(_), Some(h)) => {
                return self.err(&h.span(), "a check has json or header, not both");
            }
            (Some(j), None) => {
                let path =
                    template::json_path(&self.expand(j)?).or_else(|m| self.err(&j.span(), m))?;
                conditions.push(CheckCondition::JsonEquals {
                    path,
                    value: equals("json")?,
                });
            }
            (None, Some(h)) => conditions.push(CheckCondition::HeaderEquals {
                name: self.expand(h)?,
                value: equals("header")?,
            }),
            (None, None) => {
                if let Some(e) = &c.equals {
                    return self.err(
                        &e.span(),
                        "equals needs json = PATH or header = NAME beside it",
                    );
                }
            }
        }
        if let Some(l) = &c.latency_below {
            conditions.push(CheckCondition::LatencyBelow(self.duration(l)?));
        }
        match c
            .retry_after_honoured
            .as_ref()
            .map(|b| (*b.get_ref(), b.span()))
        {
            Some((true, _)) => conditions.push(CheckCondition::RetryAfterHonoured),
            Some((false, at)) => {
                return self.err(
                    &at,
                    "retry_after_honoured can only be true (leave it out for no such condition)",
                );
            }
            None => {}
        }
        if conditions.is_empty() {
            return self.err(&span, "a check needs status, body_contains, json + equals, header + equals, latency_below or retry_after_honoured");
        }
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| format!("check{}", index + 1));
        Ok(Check { name, conditions })
    }

    fn threshold(
        &self,
        key: &S<String>,
        value: &S<toml::Value>,
        extra: &[(String, MetricKind)],
    ) -> Result<Threshold, ScenarioError> {
        let kspan = key.span();
        // A quoted key's content starts one byte in.
        let (metric, kind, tags) =
            threshold::selector(key.get_ref(), extra).or_else(|e| self.local(&kspan, e))?;
        let vspan = value.span();
        let mut abort_on_fail = false;
        let mut delay_abort_eval = Duration::ZERO;
        let list: Vec<toml::Value> = match value.get_ref() {
            toml::Value::String(_) => vec![value.get_ref().clone()],
            toml::Value::Array(a) => a.clone(),
            toml::Value::Table(t) => {
                for k in t.keys() {
                    if !["conditions", "abort_on_fail", "delay_abort_eval"].contains(&k.as_str()) {
                        let at = self.find_in(&vspan, k);
                        return Err(self.error_at(
                            at,
                            format!(
                                "unknown key \"{k}\"{}",
                                did_you_mean(
                                    k,
                                    &["conditions", "abort_on_fail", "delay_abort_eval"]
                                )
                            ),
                        ));
                    }
                }
                match t.get("abort_on_fail") {
                    None => {}
                    Some(toml::Value::Boolean(b)) => abort_on_fail = *b,
                    Some(_) => return self.err(&vspan, "abort_on_fail must be true or false"),
                }
                match t.get("delay_abort_eval") {
                    None => {}
                    Some(toml::Value::String(d)) => {
                        delay_abort_eval = parse_duration(d).map_err(|e| {
                            let at = self.find_in(&vspan, d);
                            self.error_at(at, e.to_string())
                        })?;
                    }
                    Some(_) => {
                        return self
                            .err(&vspan, "delay_abort_eval must be a duration like \"10s\"");
                    }
                }
                match t.get("conditions") {
                    Some(toml::Value::Array(a)) => a.clone(),
                    Some(s @ toml::Value::String(_)) => vec![s.clone()],
                    _ => {
                        return self.err(
                            &vspan,
                            "a threshold table needs conditions = [\"p(95)<500\", …]",
                        );
                    }
                }
            }
            _ => {
                return self.err(
                    &vspan,
                    "a threshold is a condition string, a list of them, or a table with conditions",
                );
            }
        };
        let mut conditions = Vec::new();
        for c in &list {
            let toml::Value::String(text) = c else {
                return self.err(
                    &vspan,
                    "threshold conditions must be strings like \"p(95)<500\"",
                );
            };
            let at = self.find_in(&vspan, text);
            let expanded =
                template::expand(text, &self.vars).map_err(|(o, m)| self.error_at(at + o, m))?;
            conditions.push(
                threshold::condition(&expanded, &metric, kind)
                    .map_err(|(o, m)| self.error_at(at + o, m))?,
            );
        }
        if conditions.is_empty() {
            return self.err(&vspan, "a threshold needs at least one condition");
        }
        Ok(Threshold {
            metric,
            tags,
            conditions,
            abort_on_fail,
            delay_abort_eval,
        })
    }

    /// A tag filter that can match nothing is a typo: `{name:serach}` would pass silently.
    fn check_tags(
        &self,
        key: &S<String>,
        t: &Threshold,
        known: &KnownTags,
    ) -> Result<(), ScenarioError> {
        let text = key.get_ref();
        let brace = text.find('{').unwrap_or(0);
        let at = |needle: &str| {
            content_start(self.src, &key.span()) + brace + text[brace..].find(needle).unwrap_or(0)
        };
        for (k, v) in &t.tags {
            let values: Option<&BTreeSet<String>> = match k.as_str() {
                "name" => Some(&known.names),
                "check" => Some(&known.checks),
                "scenario" => Some(&known.scenarios),
                "flow" => Some(&known.flows),
                "group" => Some(&known.groups),
                "status" => {
                    if !v.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s)) {
                        return Err(self
                            .error_at(at(v), format!("status {v:?} is not an HTTP status code")));
                    }
                    None
                }
                "method" | "url" | "error" => None,
                custom => match known.custom.get(custom) {
                    Some(values) => Some(values),
                    None => {
                        let mut keys: Vec<&str> = KnownTags::BUILT_IN.to_vec();
                        keys.extend(known.custom.keys().map(String::as_str));
                        return Err(self.error_at(
                            at(k),
                            format!(
                                "unknown tag \"{k}\" (built in: {}; others come from tags = {{…}} in [options] or a scenario){}",
                                KnownTags::BUILT_IN.join(", "),
                                did_you_mean(k, &keys)
                            ),
                        ));
                    }
                },
            };
            if let Some(values) = values
                && !values.contains(v)
            {
                let list: Vec<&str> = values.iter().map(String::as_str).collect();
                return Err(self.error_at(
                    at(v),
                    format!(
                        "no {k} is \"{v}\", so {} would match nothing{}",
                        t.selector(),
                        did_you_mean(v, &list)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Offset of `needle` inside the source text of `span` (the span start when absent).
    fn find_in(&self, span: &Range<usize>, needle: &str) -> usize {
        self.src
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map_or(span.start, |i| span.start + i)
    }

    fn special(
        &self,
        sp: &RawSpecial,
        scenarios: &[ScenarioSpec],
    ) -> Result<Option<Special>, ScenarioError> {
        let spans: Vec<Range<usize>> = [
            sp.breakpoint.as_ref().map(|s| s.span()),
            sp.spike.as_ref().map(|s| s.span()),
            sp.soak.as_ref().map(|s| s.span()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if spans.len() > 1 {
            return self.err(
                &spans[1],
                "only one of [special.breakpoint], [special.spike], [special.soak] per file",
            );
        }
        let scenario_ref = |s: &S<String>| -> Result<String, ScenarioError> {
            let name = self.expand(s)?;
            if scenarios.iter().any(|x| x.name == name) {
                return Ok(name);
            }
            let names: Vec<&str> = scenarios.iter().map(|x| x.name.as_str()).collect();
            self.err(
                &s.span(),
                format!("unknown scenario \"{name}\"{}", did_you_mean(&name, &names)),
            )
        };
        if let Some(b) = &sp.breakpoint {
            let r = b.get_ref();
            let start_rate = self.rate(&r.start_rate)?;
            let step_rate = self.rate(&r.step_rate)?;
            let max_rate = self.rate(&r.max_rate)?;
            if step_rate <= 0.0 {
                return self.err(&r.step_rate.span(), "step_rate must be greater than zero");
            }
            if max_rate <= start_rate {
                return self.err(
                    &r.max_rate.span(),
                    "max_rate must be greater than start_rate",
                );
            }
            let step_duration = self.duration(&r.step_duration)?;
            if step_duration.is_zero() {
                return self.err(
                    &r.step_duration.span(),
                    "step_duration must be greater than zero",
                );
            }
            return Ok(Some(Special::Breakpoint {
                scenario: scenario_ref(&r.scenario)?,
                start_rate,
                step_rate,
                step_duration,
                max_rate,
            }));
        }
        if let Some(s) = &sp.spike {
            let r = s.get_ref();
            let tolerance = match &r.tolerance {
                Some(t) => {
                    let v = self.number(t)?;
                    if v < 1.0 {
                        return self.err(
                            &t.span(),
                            "tolerance is a factor of the baseline p99 and must be at least 1.0",
                        );
                    }
                    v
                }
                None => 1.5,
            };
            return Ok(Some(Special::Spike {
                scenario: scenario_ref(&r.scenario)?,
                recovery: self.duration(&r.recovery)?,
                tolerance,
            }));
        }
        if let Some(s) = &sp.soak {
            let r = s.get_ref();
            let metric = self.expand(&r.metric)?;
            let ok = metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !metric.is_empty();
            if !ok || METRICS.iter().any(|(n, _)| *n == metric) {
                return self.err(
                    &r.metric.span(),
                    format!("metric {metric:?} must be a new name of letters, digits and _"),
                );
            }
            let interval = self.duration(&r.interval)?;
            if interval.is_zero() {
                return self.err(&r.interval.span(), "interval must be greater than zero");
            }
            return Ok(Some(Special::Soak(Watch {
                url: self.template(&r.watch)?,
                interval,
                json: template::json_path(&self.expand(&r.json)?)
                    .or_else(|m| self.err(&r.json.span(), m))?,
                metric,
                max_growth_per_hour: r
                    .max_growth_per_hour
                    .as_ref()
                    .map(|m| self.number(m))
                    .transpose()?,
            })));
        }
        Ok(None)
    }
}

/// The values threshold tag filters may name.
#[derive(Default)]
struct KnownTags {
    names: BTreeSet<String>,
    checks: BTreeSet<String>,
    scenarios: BTreeSet<String>,
    flows: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// Tags from `tags = {…}` in [options] and scenarios, with their values.
    custom: BTreeMap<String, BTreeSet<String>>,
}

impl KnownTags {
    const BUILT_IN: [&'static str; 9] = [
        "name", "check", "scenario", "flow", "group", "status", "method", "url", "error",
    ];

    fn of(scenarios: &[ScenarioSpec], options: &Options) -> KnownTags {
        let mut k = KnownTags::default();
        let add_tags = |tags: &BTreeMap<String, String>, k: &mut KnownTags| {
            for (key, v) in tags {
                k.custom.entry(key.clone()).or_default().insert(v.clone());
            }
        };
        add_tags(&options.tags, &mut k);
        for sc in scenarios {
            k.scenarios.insert(sc.name.clone());
            add_tags(&sc.tags, &mut k);
            for f in &sc.flows {
                k.flows.insert(f.name.clone());
                k.add_steps(&f.steps);
            }
        }
        k
    }

    fn add_steps(&mut self, steps: &[Step]) {
        for s in steps {
            match &s.kind {
                StepKind::Http(h) => {
                    self.names.insert(h.name.clone());
                    self.checks.extend(h.checks.iter().map(|c| c.name.clone()));
                }
                StepKind::WsConnect { name, .. }
                | StepKind::WsSend { name, .. }
                | StepKind::WsExpect { name, .. }
                | StepKind::WsSubscribe { name, .. } => {
                    self.names.insert(name.clone());
                }
                StepKind::Group { name, steps } => {
                    self.groups.insert(name.clone());
                    self.add_steps(steps);
                }
                StepKind::Loop { steps, .. } => self.add_steps(steps),
                StepKind::WsClose { .. } | StepKind::Sleep(_) | StepKind::SleepFor(_) => {}
            }
        }
    }
}

/// A URL template must start with http:// or https:// (after variables are substituted).
fn check_url(url: &Template) -> Result<(), String> {
    match url.segments.first() {
        Some(Segment::Literal(l)) if l.starts_with("http://") || l.starts_with("https://") => {
            Ok(())
        }
        _ => Err(format!(
            "the URL {:?} must start with http:// or https://, like \"GET ${{BASE_URL:-http://127.0.0.1:8080}}/path\"",
            url.source_text()
        )),
    }
}

fn collect_captures(steps: &[S<RawStep>], out: &mut BTreeSet<String>) {
    for s in steps {
        let s = s.get_ref();
        if let Some(c) = &s.capture {
            out.extend(c.get_ref().keys().cloned());
        }
        if let Some(inner) = &s.steps {
            collect_captures(inner.get_ref(), out);
        }
    }
}

/// A minimal CSV reader: header line, comma-separated, `"quoted, fields"` with `""` escapes.
fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("empty file (expected a header line)")?;
    let columns = split_csv_line(header);
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = split_csv_line(line);
        if row.len() != columns.len() {
            return Err(format!(
                "line {}: {} fields, the header has {}",
                i + 2,
                row.len(),
                columns.len()
            ));
        }
        rows.push(row);
    }
    Ok((columns, rows))
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field).trim().to_owned()),
            _ => field.push(c),
        }
    }
    out.push(field.trim().to_owned());
    out
}

/// A JSON array of objects: columns are the first object's keys.
fn parse_json_rows(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("expected a JSON array of objects")?;
    let first = arr
        .first()
        .and_then(|o| o.as_object())
        .ok_or("expected a JSON array of objects")?;
    let columns: Vec<String> = first.keys().cloned().collect();
    let mut rows = Vec::new();
    for (i, o) in arr.iter().enumerate() {
        let o = o
            .as_object()
            .ok_or_else(|| format!("element {i} is not an object"))?;
        rows.push(
            columns
                .iter()
                .map(|c| match o.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect(),
        );
    }
    Ok((columns, rows))
}
