//! Threshold expressions, as in k6: the selector `metric{tag:value,…}` and the conditions
//! `p(95)<1200`, `avg<200`, `rate<0.01`, `count>100`, `max<=3000`. Time values are
//! milliseconds (like k6); rates are fractions.

use super::model::{Aggregation, CompareOp, Condition, METRICS, MetricKind};
use super::parse::did_you_mean;
use super::template::LocalError;

/// A metric name, its kind and its tag filter.
pub(crate) type Selector = (String, MetricKind, Vec<(String, String)>);

/// Parses `metric` or `metric{k:v,…}`. `extra` are metric names defined by the file (the
/// soak watcher's gauge). Returns the metric name, its kind and the tag filter.
pub(crate) fn selector(text: &str, extra: &[(String, MetricKind)]) -> Result<Selector, LocalError> {
    let (name, tags_text, tags_at) = match text.find('{') {
        Some(i) => {
            let Some(inner) = text[i + 1..].strip_suffix('}') else {
                return Err((
                    i,
                    format!(
                        "{text:?}: the tag filter must end with \"}}\", like http_req_duration{{name:search}}"
                    ),
                ));
            };
            (&text[..i], Some(inner), i + 1)
        }
        None => (text, None, 0),
    };
    let name = name.trim();
    let kind = METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .or_else(|| extra.iter().find(|(n, _)| n == name).map(|(_, k)| *k));
    let Some(kind) = kind else {
        let mut names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
        names.extend(extra.iter().map(|(n, _)| n.as_str()));
        return Err((
            0,
            format!("unknown metric \"{name}\"{}", did_you_mean(name, &names)),
        ));
    };
    let mut tags = Vec::new();
    if let Some(inner) = tags_text {
        let mut at = tags_at;
        for part in inner.split(',') {
            let Some((k, v)) = part.split_once(':') else {
                return Err((
                    at,
                    format!("tag filter {part:?} must be KEY:VALUE, like name:search"),
                ));
            };
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err((
                    at,
                    format!("tag filter {part:?} must be KEY:VALUE, like name:search"),
                ));
            }
            tags.push((k.to_owned(), v.to_owned()));
            at += part.len() + 1;
        }
    }
    Ok((name.to_owned(), kind, tags))
}

/// The aggregations a metric kind allows, for messages.
fn allowed(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Trend => "avg, min, max, med, p(N) or count",
        MetricKind::Rate => "rate",
        MetricKind::Counter => "count or rate",
        MetricKind::Gauge => "value, min or max",
    }
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Trend => "trend",
        MetricKind::Rate => "rate",
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    }
}

fn fits(kind: MetricKind, agg: Aggregation) -> bool {
    use Aggregation as A;
    match kind {
        MetricKind::Trend => matches!(agg, A::Avg | A::Min | A::Max | A::Med | A::P(_) | A::Count),
        MetricKind::Rate => matches!(agg, A::Rate),
        MetricKind::Counter => matches!(agg, A::Count | A::Rate),
        MetricKind::Gauge => matches!(agg, A::Value | A::Min | A::Max),
    }
}

const FORM: &str = "expected AGGREGATION OP NUMBER, like p(95)<1200, avg<200, rate<0.01, count>100";

/// Parses one condition for a metric of `kind`, like `p(95)<1200`.
pub(crate) fn condition(
    text: &str,
    metric: &str,
    kind: MetricKind,
) -> Result<Condition, LocalError> {
    let Some(op_at) = text.find(['<', '>', '=', '!']) else {
        return Err((0, format!("threshold {text:?} has no comparison; {FORM}")));
    };
    let agg_text = text[..op_at].trim();
    let after = &text[op_at..];
    let (op, op_len) = [
        ("<=", CompareOp::Le),
        (">=", CompareOp::Ge),
        ("==", CompareOp::Eq),
        ("!=", CompareOp::Ne),
        ("<", CompareOp::Lt),
        (">", CompareOp::Gt),
        ("=", CompareOp::Eq),
    ]
    .iter()
    .find(|(s, _)| after.starts_with(s))
    .map(|(s, op)| (*op, s.len()))
    .ok_or_else(|| {
        (
            op_at,
            format!("threshold {text:?}: unknown comparison; {FORM}"),
        )
    })?;
    let lead = text.len() - text.trim_start().len();
    let aggregation = match agg_text {
        "avg" => Aggregation::Avg,
        "min" => Aggregation::Min,
        "max" => Aggregation::Max,
        "med" => Aggregation::Med,
        "rate" => Aggregation::Rate,
        "count" => Aggregation::Count,
        "value" => Aggregation::Value,
        p if p.starts_with("p(") && p.ends_with(')') => {
            let n = p[2..p.len() - 1].trim();
            match n.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => Aggregation::P(v),
                _ => {
                    return Err((
                        lead,
                        format!(
                            "percentile {p:?} must be a number in (0, 100], like p(95) or p(99.9)"
                        ),
                    ));
                }
            }
        }
        other => {
            return Err((
                lead,
                format!(
                    "unknown aggregation \"{other}\" ({FORM}){}",
                    did_you_mean(
                        other,
                        &[
                            "avg", "min", "max", "med", "p(95)", "rate", "count", "value"
                        ]
                    )
                ),
            ));
        }
    };
    if !fits(kind, aggregation) {
        return Err((
            lead,
            format!(
                "aggregation \"{aggregation}\" does not apply to {metric} (a {} metric); use {}",
                kind_name(kind),
                allowed(kind)
            ),
        ));
    }
    let value_text = after[op_len..].trim();
    let value = value_text
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            (
                op_at + op_len,
                format!("threshold {text:?}: {value_text:?} is not a number (times are in milliseconds); {FORM}"),
            )
        })?;
    Ok(Condition {
        aggregation,
        op,
        value,
    })
}
