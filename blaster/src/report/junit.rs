//! `--junit` renderer: the run's pass/fail verdicts as JUnit XML, which CI systems (GitLab,
//! Jenkins, GitHub test reporters) show as test results.
//!
//! One `<testsuite name="blaster">` inside `<testsuites>`, one `<testcase>` per [`Verdict`]:
//! the built-in ones ([`builtin_verdicts`]: "no errors", "not generator-bound", "not
//! interrupted"), then, in scenario runs, one per threshold condition (classname
//! `thresholds`) and one per check (classname `checks`) ([`scenario_verdicts`]); a failure
//! carries the measured value. `blaster compare`
//! ([`super::compare::Comparison::verdicts`]) builds its own list and calls
//! [`render_verdicts`]. The text summary goes into `<system-out>`.

use std::fmt::Write as _;

use super::Report;
use super::flow::ScenarioReport;
use crate::cli::units::{format_duration_us, format_thousands};

/// One pass/fail outcome of a run: a JUnit test case, a row of the markdown verdict table.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What produced it: "blaster" for the built-in verdicts, later e.g. "thresholds",
    /// "checks", "compare". The JUnit `classname`.
    pub group: String,
    /// What was checked, phrased so that passing makes it true: "no errors".
    pub name: String,
    /// `None` when it passed; otherwise the one-line reason it failed.
    pub failure: Option<String>,
    /// Supporting detail, possibly several lines (counts, reasons); may be empty.
    pub details: String,
}

impl Verdict {
    /// A passed verdict.
    pub fn pass(
        group: impl Into<String>,
        name: impl Into<String>,
        details: impl Into<String>,
    ) -> Verdict {
        Verdict {
            group: group.into(),
            name: name.into(),
            failure: None,
            details: details.into(),
        }
    }

    /// A failed verdict with its one-line `message`.
    pub fn fail(
        group: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
        details: impl Into<String>,
    ) -> Verdict {
        Verdict {
            group: group.into(),
            name: name.into(),
            failure: Some(message.into()),
            details: details.into(),
        }
    }

    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The verdicts every run has: "no errors" (fails when `errors.total > 0`), "not
/// generator-bound" (fails with the reasons), "not interrupted".
pub fn builtin_verdicts(report: &Report) -> Vec<Verdict> {
    let r = report;
    let mut verdicts = Vec::with_capacity(3);

    if r.errors.total == 0 {
        verdicts.push(Verdict::pass(
            "blaster",
            "no errors",
            format!(
                "0 errors in {} requests",
                format_thousands(r.requests.max(r.responses))
            ),
        ));
    } else {
        // Largest first, then by name, as in the text summary.
        let mut kinds: Vec<(&String, &u64)> = r.errors.by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{k} {}", format_thousands(**n)))
            .collect();
        let message = format!(
            "{} error{}: {}",
            format_thousands(r.errors.total),
            if r.errors.total == 1 { "" } else { "s" },
            kinds.join(", ")
        );
        let details = format!(
            "{message}\n{} requests sent, {} responses",
            format_thousands(r.requests),
            format_thousands(r.responses)
        );
        verdicts.push(Verdict::fail("blaster", "no errors", message, details));
    }

    let g = &r.generator;
    if r.generator_bound {
        let reasons = if g.reasons.is_empty() {
            "the generator limited the run".to_owned()
        } else {
            g.reasons.join("; ")
        };
        verdicts.push(Verdict::fail(
            "blaster",
            "not generator-bound",
            reasons,
            g.reasons.join("\n"),
        ));
    } else {
        verdicts.push(Verdict::pass(
            "blaster",
            "not generator-bound",
            format!(
                "client CPU {:.0}% of {} thread{}, loop lag p99 {}",
                g.cpu_utilization * 100.0,
                r.threads,
                if r.threads == 1 { "" } else { "s" },
                format_duration_us(g.loop_lag_p99_us),
            ),
        ));
    }

    if r.interrupted {
        let message = format!(
            "the run was interrupted (Ctrl-C / SIGTERM) after {:.2}s: results are partial",
            r.duration_s
        );
        verdicts.push(Verdict::fail(
            "blaster",
            "not interrupted",
            message.clone(),
            message,
        ));
    } else {
        verdicts.push(Verdict::pass(
            "blaster",
            "not interrupted",
            format!("ran to completion ({:.2}s)", r.duration_s),
        ));
    }
    verdicts
}

/// One verdict per threshold condition (group `thresholds`, named `metric: condition`) and
/// one per check (group `checks`, named `check (request)`); a failed one says what was
/// measured.
pub fn scenario_verdicts(sc: &ScenarioReport) -> Vec<Verdict> {
    let mut verdicts = Vec::with_capacity(sc.thresholds.len() + sc.checks.len());
    for t in &sc.thresholds {
        let name = format!("{}: {}", t.metric, t.condition);
        let measured = t.observed_text();
        let mut details = format!("{} {}: measured {measured}", t.metric, t.condition);
        if t.abort_on_fail {
            details.push_str("\nabort_on_fail: a failure stops the run");
        }
        if t.passed {
            verdicts.push(Verdict::pass("thresholds", name, details));
        } else {
            let mut message = match t.observed {
                Some(_) => format!("measured {measured}, wanted {}", t.condition),
                None => format!(
                    "no samples of {}: the condition {} cannot hold",
                    t.metric, t.condition
                ),
            };
            if sc.aborted_by.as_deref() == Some(t.metric.as_str()) {
                message.push_str("; it stopped the run (abort_on_fail)");
            }
            verdicts.push(Verdict::fail("thresholds", name, message, details));
        }
    }
    for c in &sc.checks {
        let name = format!("{} ({})", c.name, c.request);
        let total = c.passes + c.fails;
        if c.fails == 0 {
            verdicts.push(Verdict::pass(
                "checks",
                name,
                format!(
                    "{} of {} passed",
                    format_thousands(c.passes),
                    format_thousands(total)
                ),
            ));
        } else {
            let message = format!(
                "{} of {} failed ({:.2}% passed)",
                format_thousands(c.fails),
                format_thousands(total),
                c.passes as f64 * 100.0 / total as f64
            );
            verdicts.push(Verdict::fail("checks", name, message, ""));
        }
    }
    verdicts
}

/// Every verdict of a report: the built-in ones, then those of its thresholds and checks.
pub fn verdicts(report: &Report) -> Vec<Verdict> {
    let mut all = builtin_verdicts(report);
    if let Some(sc) = &report.scenario {
        all.extend(scenario_verdicts(sc));
    }
    all
}

/// The report's verdicts ([`verdicts`]) as JUnit XML (see [`render_verdicts`]).
pub fn render(report: &Report) -> String {
    render_verdicts(report, &verdicts(report))
}

/// `verdicts` as JUnit XML: `<testsuites>` holding one `<testsuite name="blaster">` with run
/// facts as `<properties>`, one `<testcase>` per verdict (a `<failure>` when it failed) and the
/// text summary as `<system-out>`. Ends with a newline.
pub fn render_verdicts(report: &Report, verdicts: &[Verdict]) -> String {
    let r = report;
    let tests = verdicts.len();
    let failures = verdicts.iter().filter(|v| !v.passed()).count();
    let time = format!("{:.3}", finite_or_zero(r.duration_s));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"blaster\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"blaster\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time}\">"
    );

    out.push_str("    <properties>\n");
    let l = &r.latency_us;
    let mut properties: Vec<(&str, String)> = vec![
        ("blaster_version", r.blaster_version.clone()),
        ("targets", r.targets.join(" ")),
        ("model", r.model.clone()),
        ("threads", r.threads.to_string()),
        ("connections", r.concurrency.to_string()),
        ("duration_s", r.duration_s.to_string()),
        ("requests", r.requests.to_string()),
        ("responses", r.responses.to_string()),
        ("rps", format!("{:.1}", r.rps)),
        ("errors", r.errors.total.to_string()),
        ("latency_p50_us", l.p50.to_string()),
        ("latency_p90_us", l.p90.to_string()),
        ("latency_p99_us", l.p99.to_string()),
        ("latency_max_us", l.max.to_string()),
        ("generator_bound", r.generator_bound.to_string()),
        ("command_line", r.command_line.join(" ")),
    ];
    if let Some(rate) = r.target_rate {
        properties.insert(3, ("target_rate", rate.to_string()));
    }
    if let Some(sc) = &r.scenario {
        properties.push(("scenario_file", sc.file.clone()));
        properties.push(("thresholds_passed", sc.thresholds_passed.to_string()));
        if let Some(by) = &sc.aborted_by {
            properties.push(("aborted_by", by.clone()));
        }
    }
    if let Some(ws) = &r.ws {
        properties.push(("ws_mode", ws.mode.clone()));
        properties.push(("ws_sessions", ws.sessions.to_string()));
        properties.push(("ws_msgs_received", ws.msgs_received.to_string()));
        properties.push(("ws_lost", ws.lost.to_string()));
    }
    for (name, value) in &properties {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(value)
        );
    }
    out.push_str("    </properties>\n");

    for v in verdicts {
        let open = format!(
            "    <testcase name=\"{}\" classname=\"{}\"",
            escape(&v.name),
            escape(&v.group)
        );
        match &v.failure {
            None if v.details.is_empty() => {
                let _ = writeln!(out, "{open}/>");
            }
            None => {
                let _ = writeln!(out, "{open}>");
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    escape_text(&v.details)
                );
                out.push_str("    </testcase>\n");
            }
            Some(message) => {
                let _ = writeln!(out, "{open}>");
                let body = if v.details.is_empty() {
                    message
                } else {
                    &v.details
                };
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    escape(message),
                    escape(&v.group),
                    escape_text(body)
                );
                out.push_str("    </testcase>\n");
            }
        }
    }

    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        escape_text(&super::text::render(r))
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Escapes `s` for XML text and (double- or single-quoted) attribute values: the five
/// markup characters become entities; tab, newline and carriage return become character
/// references (so attribute values keep them and text keeps `\r`); characters XML 1.0 does
/// not allow at all (other C0 controls, U+FFFE, U+FFFF) become U+FFFD.
pub fn escape(s: &str) -> String {
    escape_with(s, true)
}

/// Escapes `s` for XML element content: as [`escape`], but tabs and newlines stay as they are
/// (element content keeps them; attribute values would normalize them to spaces).
pub fn escape_text(s: &str) -> String {
    escape_with(s, false)
}

fn escape_with(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' if !attribute => out.push(c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadModel;
    use crate::report::tests::{config, outcome};

    fn report() -> Report {
        Report::from_run(&config(LoadModel::Closed), &outcome())
    }

    /// An element's name and attributes.
    type Element = (String, Vec<(String, String)>);

    /// A minimal XML well-formedness checker: one root element, matched tags, quoted and
    /// unique attributes, valid entity and character references, no stray `<` or `&`.
    /// Returns the elements in document order as (name, attributes).
    fn parse(xml: &str) -> Result<Vec<Element>, String> {
        fn unescape(s: &str) -> Result<String, String> {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('&') {
                out.push_str(&rest[..i]);
                let end = rest[i..]
                    .find(';')
                    .ok_or(format!("unterminated & in {s:?}"))?;
                let entity = &rest[i + 1..i + end];
                let c = match entity {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => {
                        let n = if let Some(hex) = entity.strip_prefix("#x") {
                            u32::from_str_radix(hex, 16)
                        } else if let Some(dec) = entity.strip_prefix('#') {
                            dec.parse()
                        } else {
                            return Err(format!("unknown entity &{entity};"));
                        }
                        .map_err(|e| format!("bad reference &{entity};: {e}"))?;
                        char::from_u32(n).ok_or(format!("bad char &{entity};"))?
                    }
                };
                out.push(c);
                rest = &rest[i + end + 1..];
            }
            out.push_str(rest);
            Ok(out)
        }
        let body = xml
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
            .ok_or("missing XML declaration")?;
        let mut elements = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        let mut roots = 0;
        while !rest.is_empty() {
            let lt = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..lt];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            unescape(text)?;
            if text.contains('>') {
                return Err(format!("raw > in text {text:?}"));
            }
            rest = &rest[lt..];
            if rest.is_empty() {
                break;
            }
            let gt = rest.find('>').ok_or("unterminated tag")?;
            let tag = &rest[1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("unmatched </{name}>"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad element name {name:?}"));
            }
            let mut attrs: Vec<(String, String)> = Vec::new();
            let mut a = tag[name_end..].trim_start();
            while !a.is_empty() {
                let eq = a
                    .find('=')
                    .ok_or(format!("attribute without value in {tag:?}"))?;
                let key = a[..eq].trim();
                let after = &a[eq + 1..];
                if !after.starts_with('"') {
                    return Err(format!("unquoted attribute {key} in {tag:?}"));
                }
                let close = after[1..].find('"').ok_or("unterminated attribute")?;
                let raw = &after[1..1 + close];
                if raw.contains('<') {
                    return Err(format!("raw < in attribute {key}"));
                }
                if attrs.iter().any(|(k, _)| k == key) {
                    return Err(format!("duplicate attribute {key}"));
                }
                attrs.push((key.to_owned(), unescape(raw)?));
                a = after[close + 2..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            elements.push((name.to_owned(), attrs));
            if !empty {
                stack.push(name.to_owned());
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(elements)
    }

    fn attr<'a>(e: &'a Element, key: &str) -> &'a str {
        e.1.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{} has no {key}", e.0))
    }

    #[test]
    fn well_formed_with_failures_counted() {
        // The fixture has 5 errors: one failure.
        let xml = render(&report());
        let elements = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let suite = elements.iter().find(|e| e.0 == "testsuite").unwrap();
        assert_eq!(attr(suite, "name"), "blaster");
        assert_eq!(attr(suite, "tests"), "3");
        assert_eq!(attr(suite, "failures"), "1");
        assert_eq!(attr(suite, "time"), "10.000");
        let cases: Vec<_> = elements.iter().filter(|e| e.0 == "testcase").collect();
        let names: Vec<&str> = cases.iter().map(|c| attr(c, "name")).collect();
        assert_eq!(
            names,
            vec!["no errors", "not generator-bound", "not interrupted"]
        );
        let failures: Vec<_> = elements.iter().filter(|e| e.0 == "failure").collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            attr(failures[0], "message"),
            "5 errors: timeout 3, connect_refused 1, reset 1"
        );
        assert!(xml.ends_with("</testsuites>\n"));
    }

    #[test]
    fn every_builtin_verdict_can_fail() {
        let mut r = report();
        r.generator_bound = true;
        r.generator.reasons = vec![
            "client CPU 97% of 2 threads: saturated".to_owned(),
            "event-loop lag p99 25.0ms (limit 10.0ms)".to_owned(),
        ];
        r.interrupted = true;
        let xml = render(&r);
        let elements = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let suite = elements.iter().find(|e| e.0 == "testsuite").unwrap();
        assert_eq!(attr(suite, "failures"), "3");
        let root = &elements[0];
        assert_eq!(root.0, "testsuites");
        assert_eq!(attr(root, "failures"), "3");
        let messages: Vec<&str> = elements
            .iter()
            .filter(|e| e.0 == "failure")
            .map(|e| attr(e, "message"))
            .collect();
        assert_eq!(
            messages[1],
            "client CPU 97% of 2 threads: saturated; event-loop lag p99 25.0ms (limit 10.0ms)"
        );
        assert!(messages[2].contains("interrupted"), "{}", messages[2]);

        r.errors = Default::default();
        r.generator_bound = false;
        r.generator.reasons.clear();
        r.interrupted = false;
        let xml = render(&r);
        let elements = parse(&xml).unwrap();
        assert_eq!(attr(&elements[0], "failures"), "0");
        assert!(!xml.contains("<failure"));
    }

    #[test]
    fn everything_is_escaped() {
        let mut r = report();
        let nasty = "http://x/?a=1&b=<2>\"'\u{1}\r\n]]>";
        r.targets = vec![nasty.to_owned()];
        r.command_line = vec!["blaster".to_owned(), nasty.to_owned()];
        let extra = Verdict::fail(
            "checks & <co>",
            "status is \"200\" <ok>",
            "got 'x' & </failure>",
            "line 1\nline <2>",
        );
        let mut verdicts = builtin_verdicts(&r);
        verdicts.push(extra);
        let xml = render_verdicts(&r, &verdicts);
        let elements = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let targets = elements
            .iter()
            .find(|e| e.0 == "property" && attr(e, "name") == "targets")
            .unwrap();
        assert_eq!(
            attr(targets, "value"),
            "http://x/?a=1&b=<2>\"'\u{FFFD}\r\n]]>"
        );
        let case = elements
            .iter()
            .find(|e| e.0 == "testcase" && attr(e, "classname") == "checks & <co>")
            .unwrap();
        assert_eq!(attr(case, "name"), "status is \"200\" <ok>");
        let failure = elements.iter().rfind(|e| e.0 == "failure").unwrap();
        assert_eq!(attr(failure, "message"), "got 'x' & </failure>");
        assert_eq!(attr(&elements[1], "tests"), "4");
        assert_eq!(attr(&elements[1], "failures"), "2");
    }

    #[test]
    fn one_case_per_threshold_and_check_with_the_measured_value() {
        let mut r = report();
        r.errors = Default::default();
        r.scenario = Some(crate::report::flow::tests::scenario_sample());
        let xml = render(&r);
        let elements = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let suite = elements.iter().find(|e| e.0 == "testsuite").unwrap();
        // 3 built-in + 5 threshold conditions + 2 checks; 3 thresholds and 1 check failed.
        assert_eq!(attr(suite, "tests"), "10");
        assert_eq!(attr(suite, "failures"), "4");
        let cases: Vec<(&str, &str)> = elements
            .iter()
            .filter(|e| e.0 == "testcase")
            .map(|c| (attr(c, "classname"), attr(c, "name")))
            .collect();
        assert_eq!(
            &cases[3..],
            &[
                ("thresholds", "http_req_duration{name:home}: p(95)<1200"),
                ("thresholds", "http_req_duration{name:search}: p(99)<5"),
                ("thresholds", "http_req_failed: rate<0.01"),
                ("thresholds", "http_reqs{name:buy}: count>100"),
                ("thresholds", "ws_msg_latency: p(95)<100"),
                ("checks", "home is 200 (home)"),
                ("checks", "search has results (search)"),
            ]
        );
        let messages: Vec<&str> = elements
            .iter()
            .filter(|e| e.0 == "failure")
            .map(|e| attr(e, "message"))
            .collect();
        assert_eq!(
            messages,
            vec![
                "measured 8.4 ms, wanted p(99)<5",
                "measured 0.0148 (1.48%), wanted rate<0.01",
                "no samples of ws_msg_latency: the condition p(95)<100 cannot hold",
                "37 of 1,000 failed (96.30% passed)",
            ]
        );
        // A passed threshold still says what was measured.
        assert!(
            xml.contains("<system-out>http_req_duration{name:home} p(95)&lt;1200: measured 8.4 ms</system-out>"),
            "{xml}"
        );
        let property = |name: &str| {
            attr(
                elements
                    .iter()
                    .find(|e| e.0 == "property" && attr(e, "name") == name)
                    .unwrap_or_else(|| panic!("no property {name}")),
                "value",
            )
            .to_owned()
        };
        assert_eq!(property("thresholds_passed"), "false");
        assert_eq!(property("scenario_file"), "shop.toml");
    }

    #[test]
    fn the_aborting_threshold_says_so() {
        let mut sc = crate::report::flow::tests::scenario_sample();
        sc.thresholds[2].abort_on_fail = true;
        sc.aborted_by = Some("http_req_failed".into());
        let v = scenario_verdicts(&sc);
        let t = v
            .iter()
            .find(|v| v.name.starts_with("http_req_failed"))
            .unwrap();
        assert!(
            t.failure
                .as_deref()
                .unwrap()
                .ends_with("; it stopped the run (abort_on_fail)"),
            "{t:?}"
        );
        assert!(t.details.contains("abort_on_fail"), "{t:?}");
    }

    #[test]
    fn escape_covers_markup_and_controls() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("\t\n\r"), "&#9;&#10;&#13;");
        assert_eq!(escape_text("<a>\t\n\r"), "&lt;a&gt;\t\n&#13;");
        assert_eq!(
            escape("\u{0}\u{1b}\u{FFFF}ok é"),
            "\u{FFFD}\u{FFFD}\u{FFFD}ok é"
        );
    }
}
