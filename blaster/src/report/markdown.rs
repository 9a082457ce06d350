//! `--summary-md` renderer: a summary for humans to paste into a pull request, a wiki page or
//! a CI job summary (`$GITHUB_STEP_SUMMARY`), in the spirit of a load test's SUMMARY_REPORT.md.
//!
//! Sections: overall result (every [`Verdict`]), thresholds (metric, condition, measured
//! value, result), run metadata, results (counts, rates, latency), scenarios, per-name
//! results, checks, WebSocket sessions and messages, status codes, errors by kind, the
//! remaining verdicts, the generator, and a per-interval timeline. The scenario and WebSocket
//! sections are drawn by [`flow`]. Sections with nothing to show are left out, and no table is
//! ever printed without rows.

use std::fmt::Write as _;

use super::compare::{error_rate, format_percent, format_rate, http_error_responses};
use super::junit::{Verdict, verdicts as all_verdicts};

mod flow;
use super::{LatencySummary, Report, TimePoint};
use crate::cli::units::{format_bytes, format_duration_us, format_thousands};

/// Most rows of the timeline table; longer runs merge consecutive intervals into one row.
pub const MAX_TIMELINE_ROWS: usize = 60;

/// The report with all its verdicts (built-in, thresholds, checks) as markdown (see
/// [`render_with`]).
pub fn render(report: &Report) -> String {
    render_with(report, &all_verdicts(report))
}

/// The report as markdown, with `verdicts`: the overall result is PASS when every verdict
/// passed. Thresholds and checks have their own tables (from the report's `scenario`); the
/// other verdicts are listed under "Verdicts". Ends with a newline.
pub fn render_with(report: &Report, verdicts: &[Verdict]) -> String {
    let r = report;
    let mut out = String::from("# blaster load test report\n\n");

    let failed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.passed()).collect();
    if verdicts.is_empty() {
        // No checks, no overall result.
    } else if failed.is_empty() {
        let _ = writeln!(
            out,
            "**Result: PASS**: all {} verdict{} passed.\n",
            verdicts.len(),
            plural(verdicts.len() as u64)
        );
    } else {
        let names: Vec<String> = failed.iter().map(|v| md_text(&v.name)).collect();
        let _ = writeln!(
            out,
            "**Result: FAIL**: {} of {} verdict{} failed: {}.\n",
            failed.len(),
            verdicts.len(),
            plural(verdicts.len() as u64),
            names.join(", ")
        );
    }
    if r.interrupted {
        out.push_str("> **Interrupted** (Ctrl-C / SIGTERM): the results are partial.\n\n");
    }
    if r.generator_bound {
        out.push_str(
            "> **Generator-bound**: the load generator limited the run, so these numbers understate the target (see [Generator](#generator)).\n\n",
        );
    }

    if let Some(sc) = &r.scenario {
        flow::thresholds_section(&mut out, sc);
        flow::special_section(&mut out, sc);
    }
    run_section(&mut out, r);
    results_section(&mut out, r);
    if let Some(sc) = &r.scenario {
        flow::scenario_sections(&mut out, sc, r.duration_s);
    }
    if let Some(ws) = &r.ws {
        flow::websocket_section(&mut out, ws);
    }
    status_section(&mut out, r);
    errors_section(&mut out, r);
    verdicts_section(&mut out, verdicts);
    generator_section(&mut out, r);
    timeline_section(&mut out, r);

    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn run_section(out: &mut String, r: &Report) {
    out.push_str("## Run\n\n");
    let mut rows = vec![
        vec![
            "Targets".to_owned(),
            r.targets
                .iter()
                .map(|t| md_code(t))
                .collect::<Vec<_>>()
                .join("<br>"),
        ],
        vec![
            "Model".to_owned(),
            match r.target_rate {
                Some(rate) => format!("{} (target {} req/s)", md_text(&r.model), format_rate(rate)),
                None => md_text(&r.model),
            },
        ],
        vec!["Threads".to_owned(), r.threads.to_string()],
        vec![
            "Connections".to_owned(),
            format_thousands(r.concurrency as u64),
        ],
    ];
    if r.pipeline > 1 {
        rows.push(vec!["Pipeline".to_owned(), r.pipeline.to_string()]);
    }
    rows.push(vec!["Duration".to_owned(), format!("{:.2}s", r.duration_s)]);
    if !r.command_line.is_empty() {
        rows.push(vec![
            "Command line".to_owned(),
            md_code(&shell_join(&r.command_line)),
        ]);
    }
    let e = &r.environment;
    if !e.hostname.is_empty() {
        let mut host = md_text(&e.hostname);
        let mut facts = Vec::new();
        if !e.kernel.is_empty() {
            facts.push(format!("Linux {}", md_text(&e.kernel)));
        }
        if !e.cpu_model.is_empty() {
            facts.push(md_text(&e.cpu_model));
        }
        if e.cpus_online > 0 {
            facts.push(format!(
                "{} CPUs ({} allowed)",
                e.cpus_online, e.cpus_allowed
            ));
        }
        if e.memory_bytes > 0 {
            facts.push(format_bytes(e.memory_bytes));
        }
        if !facts.is_empty() {
            let _ = write!(host, " ({})", facts.join(", "));
        }
        rows.push(vec!["Load node".to_owned(), host]);
    }
    rows.push(vec!["blaster".to_owned(), md_text(&r.blaster_version)]);
    table(out, &["", ""], &[Align::Left, Align::Left], &rows);
}

fn results_section(out: &mut String, r: &Report) {
    out.push_str("## Results\n\n");
    let attempts = r.responses.saturating_add(r.errors.total);
    let mut rows = vec![
        vec!["Requests sent".to_owned(), format_thousands(r.requests)],
        vec!["Responses".to_owned(), format_thousands(r.responses)],
        vec![
            "Throughput".to_owned(),
            format!("{} req/s", format_rate(r.rps)),
        ],
        vec![
            "Errors".to_owned(),
            if r.errors.total > 0 {
                format!(
                    "{} ({} of attempts)",
                    format_thousands(r.errors.total),
                    format_percent(r.errors.total as f64 / attempts as f64)
                )
            } else {
                "0".to_owned()
            },
        ],
    ];
    let http_errors = http_error_responses(r);
    if http_errors > 0 {
        rows.push(vec![
            "HTTP 4xx/5xx responses".to_owned(),
            format!(
                "{} ({} of responses)",
                format_thousands(http_errors),
                format_percent(http_errors as f64 / r.responses.max(1) as f64)
            ),
        ]);
    }
    if let Some(rate) = error_rate(r) {
        rows.push(vec![
            "Error rate (errors + HTTP 4xx/5xx)".to_owned(),
            format_percent(rate),
        ]);
    }
    if r.in_flight_at_end > 0 {
        rows.push(vec![
            "In flight at end".to_owned(),
            format_thousands(r.in_flight_at_end),
        ]);
    }
    if r.target_rate.is_some() {
        rows.push(vec![
            format!("Late (>{})", format_duration_us(r.late_after_us)),
            format_thousands(r.late),
        ]);
        rows.push(vec!["Dropped".to_owned(), format_thousands(r.dropped)]);
    }
    rows.push(vec![
        "Transfer".to_owned(),
        format!(
            "sent {}, received {}",
            format_bytes(r.bytes.sent),
            format_bytes(r.bytes.received)
        ),
    ]);
    let c = &r.connections;
    let mut conns = format!(
        "{} opened, {} failed, {} closed by peer, {} closed on error",
        format_thousands(c.opened),
        format_thousands(c.failed),
        format_thousands(c.closed_by_peer),
        format_thousands(c.closed_on_error)
    );
    if c.reconnects > 0 {
        let _ = write!(conns, ", {} reconnects", format_thousands(c.reconnects));
    }
    let _ = write!(conns, ", {} open at end", format_thousands(c.open_at_end));
    rows.push(vec!["Connections".to_owned(), conns]);
    table(
        out,
        &["Metric", "Value"],
        &[Align::Left, Align::Right],
        &rows,
    );

    let mut latency = Vec::new();
    for (name, l) in [
        ("Request", &r.latency_us),
        ("Connect", &r.connect_latency_us),
    ] {
        if l.count > 0 {
            latency.push(latency_row(name, l));
        }
    }
    if latency.is_empty() {
        out.push_str("No responses, so no latency.\n\n");
    } else {
        out.push_str("### Latency\n\n");
        let mut align = vec![Align::Left];
        align.extend([Align::Right; 9]);
        table(
            out,
            &[
                "", "samples", "min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max",
            ],
            &align,
            &latency,
        );
    }
}

fn latency_row(name: &str, l: &LatencySummary) -> Vec<String> {
    let mut row = vec![name.to_owned(), format_thousands(l.count)];
    row.extend(
        [
            l.min,
            l.mean.max(0.0).round() as u64,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.p9999,
            l.max,
        ]
        .map(format_duration_us),
    );
    row
}

fn status_section(out: &mut String, r: &Report) {
    if r.status_codes.is_empty() {
        return;
    }
    out.push_str("## Status codes\n\n");
    let total: u64 = r.status_codes.values().sum();
    let rows: Vec<Vec<String>> = r
        .status_codes
        .iter()
        .map(|(code, &n)| {
            vec![
                md_text(code),
                format_thousands(n),
                format_percent(n as f64 / total.max(1) as f64),
            ]
        })
        .collect();
    table(
        out,
        &["Status", "Responses", "Share"],
        &[Align::Left, Align::Right, Align::Right],
        &rows,
    );
}

fn errors_section(out: &mut String, r: &Report) {
    if r.errors.total == 0 {
        return;
    }
    out.push_str("## Errors\n\n");
    // Largest first, then by name, as in the text summary.
    let mut kinds: Vec<(&String, &u64)> = r.errors.by_kind.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let rows: Vec<Vec<String>> = kinds
        .iter()
        .map(|&(kind, &n)| {
            vec![
                md_code(kind),
                format_thousands(n),
                format_percent(n as f64 / r.errors.total as f64),
            ]
        })
        .collect();
    if !table(
        out,
        &["Kind", "Count", "Share of errors"],
        &[Align::Left, Align::Right, Align::Right],
        &rows,
    ) {
        let _ = writeln!(out, "{} errors.\n", format_thousands(r.errors.total));
    }
}

/// The verdicts that have no table of their own (thresholds and checks have one).
fn verdicts_section(out: &mut String, verdicts: &[Verdict]) {
    let rest: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| v.group != "thresholds" && v.group != "checks")
        .collect();
    if rest.is_empty() {
        return;
    }
    out.push_str("## Verdicts\n\n");
    let rows: Vec<Vec<String>> = rest
        .iter()
        .map(|v| {
            let details = match &v.failure {
                Some(message) if v.details.is_empty() => md_text(message),
                Some(message) if !v.details.contains(message.as_str()) => {
                    format!("{}<br>{}", md_text(message), md_lines(&v.details))
                }
                _ => md_lines(&v.details),
            };
            vec![
                md_text(&v.name),
                if v.passed() { "pass" } else { "**FAIL**" }.to_owned(),
                details,
            ]
        })
        .collect();
    table(
        out,
        &["Verdict", "Result", "Details"],
        &[Align::Left, Align::Left, Align::Left],
        &rows,
    );
}

fn generator_section(out: &mut String, r: &Report) {
    out.push_str("## Generator\n\n");
    let g = &r.generator;
    let mut rows = vec![
        vec![
            "Client CPU".to_owned(),
            format!(
                "{:.2}s ({:.0}% of {} thread{}; user {:.2}s, system {:.2}s)",
                r.client_cpu_s,
                g.cpu_utilization * 100.0,
                r.threads,
                plural(r.threads as u64),
                r.client_cpu_user_s,
                r.client_cpu_system_s
            ),
        ],
        vec![
            "Event-loop lag".to_owned(),
            format!(
                "p99 {}, max {}",
                format_duration_us(g.loop_lag_p99_us),
                format_duration_us(g.loop_lag_max_us)
            ),
        ],
    ];
    if r.target_rate.is_some() {
        rows.push(vec![
            "Late because the generator was busy".to_owned(),
            format_thousands(g.late_by_generator),
        ]);
    }
    if g.cq_overflows > 0 {
        rows.push(vec![
            "Completion-queue overflows".to_owned(),
            format_thousands(g.cq_overflows),
        ]);
    }
    if g.recv_buffer_exhausted > 0 {
        rows.push(vec![
            "Receive-buffer exhaustions".to_owned(),
            format_thousands(g.recv_buffer_exhausted),
        ]);
    }
    rows.push(vec![
        "Generator-bound".to_owned(),
        if r.generator_bound { "**yes**" } else { "no" }.to_owned(),
    ]);
    table(out, &["", ""], &[Align::Left, Align::Left], &rows);
    if !g.reasons.is_empty() {
        out.push_str("Why:\n\n");
        for reason in &g.reasons {
            let _ = writeln!(out, "- {}", md_text(reason));
        }
        out.push('\n');
    }
}

/// One row of the timeline: one interval, or several merged.
struct Span {
    end_s: f64,
    duration_s: f64,
    requests: u64,
    responses: u64,
    errors: u64,
    late: u64,
    /// Worst (largest) interval value among those with responses; `None` when none had any.
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
    open_connections: u64,
}

/// Merges runs of `per_row` consecutive points: counts add up, latencies take the worst
/// interval's value, open connections the last one's.
fn spans(points: &[TimePoint], per_row: usize) -> Vec<Span> {
    points
        .chunks(per_row.max(1))
        .map(|chunk| {
            let with_latency = || chunk.iter().filter(|p| p.latency_us.count > 0);
            let last = chunk.last().expect("chunks are never empty");
            Span {
                end_s: last.t_s,
                duration_s: chunk.iter().map(|p| p.duration_s).sum(),
                requests: chunk.iter().map(|p| p.requests).sum(),
                responses: chunk.iter().map(|p| p.responses).sum(),
                errors: chunk.iter().map(|p| p.errors).sum(),
                late: chunk.iter().map(|p| p.late).sum(),
                p50: with_latency().map(|p| p.latency_us.p50).max(),
                p99: with_latency().map(|p| p.latency_us.p99).max(),
                max: with_latency().map(|p| p.latency_us.max).max(),
                open_connections: last.open_connections,
            }
        })
        .collect()
}

fn timeline_section(out: &mut String, r: &Report) {
    let points = &r.timeseries;
    if points.is_empty() {
        return;
    }
    out.push_str("## Timeline\n\n");
    let per_row = points.len().div_ceil(MAX_TIMELINE_ROWS);
    let interval = format_duration_us((r.report_interval_s.max(0.0) * 1e6).round() as u64);
    if per_row == 1 {
        let _ = writeln!(out, "One row per {interval} interval.\n");
    } else {
        let _ = writeln!(
            out,
            "{} intervals of {interval}, {per_row} per row: counts are totals over the row, latencies the worst interval's value.\n",
            points.len()
        );
    }
    let open = r.target_rate.is_some();
    let decimals = if r.report_interval_s >= 0.1 { 1 } else { 3 };
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), format_duration_us);
    let rows: Vec<Vec<String>> = spans(points, per_row)
        .iter()
        .map(|s| {
            let rps = if s.duration_s > 0.0 {
                s.responses as f64 / s.duration_s
            } else {
                0.0
            };
            let mut row = vec![
                format!("{:.decimals$}", s.end_s),
                format_thousands(s.requests),
                format_thousands(s.responses),
                format_rate(rps),
                format_thousands(s.errors),
                dash(s.p50),
                dash(s.p99),
                dash(s.max),
                format_thousands(s.open_connections),
            ];
            if open {
                row.push(format_thousands(s.late));
            }
            row
        })
        .collect();
    let mut header = vec![
        "t (s)",
        "requests",
        "responses",
        "req/s",
        "errors",
        "p50",
        "p99",
        "max",
        "open conns",
    ];
    if open {
        header.push("late");
    }
    let align = vec![Align::Right; header.len()];
    table(out, &header, &align, &rows);
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Writes a table followed by a blank line; writes nothing and returns false when `rows` is
/// empty. Cells must already be markdown (escaped with [`md_text`] / [`md_code`]).
fn table(out: &mut String, header: &[&str], align: &[Align], rows: &[Vec<String>]) -> bool {
    if rows.is_empty() {
        return false;
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push('|');
        for cell in cells {
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    line(
        out,
        &mut align.iter().map(|a| match a {
            Align::Left => "---",
            Align::Right => "---:",
        }),
    );
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
    out.push('\n');
    true
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Plain text as inline markdown that is safe in a table cell: markdown punctuation is
/// backslash-escaped (`|` too, which would split the cell), line breaks become spaces.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Several lines of plain text for one table cell, joined with `<br>`.
fn md_lines(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(md_text)
        .collect::<Vec<_>>()
        .join("<br>")
}

/// `s` as an inline code span that is safe in a table cell: the fence is one backtick longer
/// than any run inside, `|` is escaped (GFM tables split on it even in code), line breaks
/// become spaces.
fn md_code(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", s.replace('|', "\\|"))
}

/// Joins command-line arguments the way a POSIX shell would read them back: arguments with
/// anything but safe characters are single-quoted.
fn shell_join(args: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(safe) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::LoadModel;
    use crate::report::IntervalLatency;
    use crate::report::tests::{config, outcome};

    fn closed() -> Report {
        Report::from_run(&config(LoadModel::Closed), &outcome())
    }

    fn point(i: usize, responses: u64, p99: u64) -> TimePoint {
        TimePoint {
            t_s: (i + 1) as f64,
            duration_s: 1.0,
            requests: responses,
            responses,
            rps: responses as f64,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            connections_opened: 0,
            open_connections: 100,
            late: 0,
            latency_us: IntervalLatency {
                count: responses,
                p50: p99 / 2,
                p90: p99 - 1,
                p95: p99 - 1,
                p99,
                max: p99 + 1,
            },
        }
    }

    /// Every table has its header, separator and at least one row.
    pub(super) fn assert_no_empty_tables(md: &str) {
        let lines: Vec<&str> = md.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("| ---") || l.starts_with("| ---:") {
                assert!(
                    lines.get(i + 1).is_some_and(|n| n.starts_with('|')),
                    "table without rows at line {i}:\n{md}"
                );
            }
        }
    }

    pub(super) fn row_of<'a>(md: &'a str, label: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no {label} row in\n{md}"))
    }

    #[test]
    fn key_numbers_appear() {
        let md = render(&closed());
        assert!(md.starts_with("# blaster load test report\n"), "{md}");
        assert!(
            md.contains("**Result: FAIL**: 1 of 3 verdicts failed: no errors."),
            "{md}"
        );
        assert!(row_of(&md, "Targets").contains("`http://127.0.0.1:8080/`"));
        assert_eq!(row_of(&md, "Model"), "| Model | closed |");
        assert_eq!(row_of(&md, "Threads"), "| Threads | 2 |");
        assert_eq!(row_of(&md, "Connections"), "| Connections | 100 |");
        assert_eq!(row_of(&md, "Duration"), "| Duration | 10.00s |");
        assert!(row_of(&md, "Command line").contains("`blaster http://127.0.0.1:8080/`"));
        assert_eq!(row_of(&md, "Requests sent"), "| Requests sent | 1,005 |");
        assert_eq!(row_of(&md, "Throughput"), "| Throughput | 100 req/s |");
        assert_eq!(row_of(&md, "Errors"), "| Errors | 5 (0.50% of attempts) |");
        assert!(row_of(&md, "HTTP 4xx/5xx responses").contains("10 (1.00% of responses)"));
        let latency = row_of(&md, "Request");
        assert!(latency.contains("| 1,000 | 100us |"), "{latency}");
        let connect = row_of(&md, "Connect");
        assert!(connect.contains("| 4 | 50us |"), "{connect}");
        assert_eq!(row_of(&md, "200"), "| 200 | 990 | 99.0% |");
        assert_eq!(row_of(&md, "503"), "| 503 | 10 | 1.00% |");
        assert_eq!(row_of(&md, "`timeout`"), "| `timeout` | 3 | 60.0% |");
        assert!(row_of(&md, "no errors").contains("**FAIL** | 5 errors: timeout 3"));
        assert!(row_of(&md, "not generator-bound").contains("| pass |"));
        assert_eq!(row_of(&md, "Generator-bound"), "| Generator-bound | no |");
        assert!(row_of(&md, "Client CPU").contains("4.00s (20% of 2 threads"));
        assert!(!md.contains("## Timeline"), "{md}");
        assert!(!md.contains("Interrupted"), "{md}");
        assert!(md.ends_with("|\n"), "{md}");
        assert_no_empty_tables(&md);
    }

    #[test]
    fn empty_sections_are_left_out() {
        let mut r = closed();
        r.status_codes.clear();
        r.errors = Default::default();
        r.connect_latency_us = Default::default();
        r.in_flight_at_end = 0;
        let md = render(&r);
        for absent in [
            "## Status codes",
            "## Errors",
            "| Connect |",
            "| Errors | 5",
            "HTTP 4xx/5xx responses",
            "In flight",
            "| Late",
            "## Timeline",
            "Why:",
        ] {
            assert!(!md.contains(absent), "{absent} in\n{md}");
        }
        assert!(
            md.contains("**Result: PASS**: all 3 verdicts passed."),
            "{md}"
        );
        assert_no_empty_tables(&md);

        r.latency_us = Default::default();
        let md = render(&r);
        assert!(!md.contains("### Latency"), "{md}");
        assert!(md.contains("No responses, so no latency."), "{md}");
        assert!(
            render_with(&r, &[])
                .lines()
                .all(|l| !l.contains("## Verdicts"))
        );
        assert_no_empty_tables(&md);
    }

    #[test]
    fn generator_bound_interrupted_and_open_model() {
        let mut o = outcome();
        o.metrics.late = 7;
        o.metrics.dropped = 2;
        let mut r = Report::from_run(&config(LoadModel::Open { rate: 2_000.0 }), &o);
        r.generator_bound = true;
        r.generator.reasons =
            vec!["client CPU 97% of 2 threads: the generator was saturated".into()];
        r.interrupted = true;
        let md = render(&r);
        assert!(md.contains("> **Interrupted**"), "{md}");
        assert!(md.contains("> **Generator-bound**"), "{md}");
        assert_eq!(
            row_of(&md, "Model"),
            "| Model | open (target 2,000 req/s) |"
        );
        assert_eq!(row_of(&md, "Late (>10.0ms)"), "| Late (>10.0ms) | 7 |");
        assert_eq!(row_of(&md, "Dropped"), "| Dropped | 2 |");
        assert_eq!(
            row_of(&md, "Generator-bound"),
            "| Generator-bound | **yes** |"
        );
        assert!(
            md.contains("- client CPU 97% of 2 threads: the generator was saturated"),
            "{md}"
        );
        assert!(
            md.contains("**Result: FAIL**: 3 of 3 verdicts failed"),
            "{md}"
        );
        assert_no_empty_tables(&md);
    }

    #[test]
    fn short_timelines_get_one_row_per_interval() {
        let mut r = closed();
        r.timeseries = (0..10).map(|i| point(i, 100, 1_000 + i as u64)).collect();
        let md = render(&r);
        assert!(md.contains("One row per 1.00s interval."), "{md}");
        assert_eq!(
            row_of(&md, "1.0"),
            "| 1.0 | 100 | 100 | 100 | 0 | 500us | 1.00ms | 1.00ms | 100 |"
        );
        assert!(row_of(&md, "10.0").contains("| 1.01ms |"), "{md}");
        let rows = md.lines().skip_while(|l| !l.starts_with("| t (s)")).skip(2);
        assert_eq!(rows.take_while(|l| l.starts_with('|')).count(), 10);
        assert_no_empty_tables(&md);
    }

    #[test]
    fn long_timelines_are_merged_to_at_most_60_rows() {
        let mut r = closed();
        r.timeseries = (0..150).map(|i| point(i, 100, 1_000)).collect();
        r.timeseries[4].latency_us.p99 = 9_000;
        r.timeseries[5].errors = 7;
        let md = render(&r);
        assert!(md.contains("150 intervals of 1.00s, 3 per row"), "{md}");
        let rows: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("| t (s)"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(rows.len(), 50);
        // Rows 4-6 (t = 6 s): 300 responses over 3 s, the worst p99, the errors summed.
        assert_eq!(
            rows[1],
            "| 6.0 | 300 | 300 | 100 | 7 | 500us | 9.00ms | 1.00ms | 100 |"
        );
    }

    #[test]
    fn markdown_is_escaped() {
        assert_eq!(md_text("a|b_c*d<e>"), "a\\|b\\_c\\*d\\<e\\>");
        assert_eq!(md_text("x\ny"), "x y");
        assert_eq!(md_code("a|b"), "`a\\|b`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert_eq!(
            shell_join(&["blaster".into(), "-H".into(), "X: it's".into(), "".into()]),
            "blaster -H 'X: it'\\''s' ''"
        );
        let mut r = closed();
        r.targets = vec!["http://h/?q=a|b".to_owned()];
        let md = render(&r);
        assert!(
            row_of(&md, "Targets").contains("`http://h/?q=a\\|b`"),
            "{md}"
        );
    }
}
