//! The markdown sections of virtual-user runs: thresholds (like the "targets vs. actual"
//! table of a SUMMARY_REPORT.md), scenarios, per-name results and checks (the report's
//! `scenario` object), and WebSocket sessions and messages (its `ws` object).

use std::fmt::Write as _;

use super::{Align, latency_row, md_code, md_text, plural, table};
use crate::cli::units::{format_bytes, format_duration_us, format_thousands};
use crate::report::compare::{format_percent, format_rate};
use crate::report::flow::{ScenarioReport, WsReport};

/// `## Thresholds`: one row per condition with its measured value, and the verdict.
pub(super) fn thresholds_section(out: &mut String, sc: &ScenarioReport) {
    if sc.thresholds.is_empty() {
        return;
    }
    out.push_str("## Thresholds\n\n");
    let failed = sc.thresholds.iter().filter(|t| !t.passed).count();
    if failed == 0 && sc.thresholds_passed {
        let _ = writeln!(
            out,
            "All {} threshold{} passed.\n",
            sc.thresholds.len(),
            plural(sc.thresholds.len() as u64)
        );
    } else {
        let _ = writeln!(
            out,
            "**{failed} of {} threshold{} failed**: blaster exited with code 99.\n",
            sc.thresholds.len(),
            plural(sc.thresholds.len() as u64)
        );
    }
    if let Some(by) = &sc.aborted_by {
        let _ = writeln!(
            out,
            "> **Aborted**: {} failed and has `abort_on_fail`, so the run stopped early.\n",
            md_code(by)
        );
    }
    let rows: Vec<Vec<String>> = sc
        .thresholds
        .iter()
        .map(|t| {
            let mut metric = md_code(&t.metric);
            if t.abort_on_fail {
                metric.push_str(" (abort on fail)");
            }
            vec![
                metric,
                md_code(&t.condition),
                md_text(&t.observed_text()),
                if t.passed { "pass" } else { "**FAIL**" }.to_owned(),
            ]
        })
        .collect();
    table(
        out,
        &["Metric", "Condition", "Measured", "Result"],
        &[Align::Left, Align::Left, Align::Right, Align::Left],
        &rows,
    );
}

/// `## Special mode`: breakpoint search, spike recovery or soak watcher results.
pub(super) fn special_section(out: &mut String, sc: &ScenarioReport) {
    if sc.breakpoint.is_none() && sc.spike.is_none() && sc.watch.is_none() {
        return;
    }
    out.push_str("## Special mode\n\n");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let rate = |v: Option<f64>| v.map(|r| format!("{}/s", format_rate(r)));
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
    if let Some(b) = &sc.breakpoint {
        rows.push(vec![
            "Breakpoint: last passing rate".to_owned(),
            format!(
                "{} ({})",
                rate(b.last_passing_rate).unwrap_or_else(|| "none".to_owned()),
                md_text(&b.scenario)
            ),
        ]);
        rows.push(vec![
            "Breakpoint: broke at".to_owned(),
            match rate(b.broke_at_rate) {
                Some(r) => match &b.broken_by {
                    Some(by) => format!("**{r}**: {}", md_text(by)),
                    None => format!("**{r}**"),
                },
                None => "never, up to the highest rate".to_owned(),
            },
        ]);
    }
    if let Some(sp) = &sc.spike {
        rows.push(vec![
            format!(
                "Spike ({}): p95 before / at peak / after",
                md_text(&sp.scenario)
            ),
            format!(
                "{} / {} / {}",
                ms(sp.baseline_p95_ms),
                ms(sp.spike_p95_ms),
                ms(sp.recovered_p95_ms)
            ),
        ]);
        rows.push(vec![
            format!("Spike: recovered within {}x", sp.tolerance),
            if sp.recovered { "yes" } else { "**NO**" }.to_owned(),
        ]);
    }
    if let Some(w) = &sc.watch {
        let growth = |v: Option<f64>| v.map_or("-".to_owned(), |g| format!("{g:+.3}/h"));
        rows.push(vec![
            format!("Soak watcher: {}", md_code(&w.metric)),
            format!(
                "{} samples from {}, last {}",
                format_thousands(w.samples.len() as u64),
                md_code(&w.url),
                w.samples
                    .last()
                    .map_or("-".to_owned(), |[_, v]| format!("{v}"))
            ),
        ]);
        rows.push(vec![
            "Soak watcher: growth (allowed)".to_owned(),
            format!(
                "{} ({}){}",
                growth(w.growth_per_hour),
                growth(w.max_growth_per_hour),
                if w.rising {
                    ": **rising, a leak is suspected**"
                } else {
                    ""
                }
            ),
        ]);
        if w.errors > 0 {
            rows.push(vec![
                "Soak watcher: failed polls".to_owned(),
                format!(
                    "{}: {}",
                    format_thousands(w.errors),
                    md_text(&w.first_errors.join("; "))
                ),
            ]);
        }
    }
    table(out, &["", ""], &[Align::Left, Align::Left], &rows);
}

/// `## Scenarios`, `## Per name` and `## Checks`.
pub(super) fn scenario_sections(out: &mut String, sc: &ScenarioReport, duration_s: f64) {
    if !sc.scenarios.is_empty() {
        out.push_str("## Scenarios\n\n");
        let rows: Vec<Vec<String>> = sc
            .scenarios
            .iter()
            .map(|s| {
                let d = &s.iteration_duration_us;
                let lat = |v: u64| {
                    if d.count == 0 {
                        "-".to_owned()
                    } else {
                        format_duration_us(v)
                    }
                };
                vec![
                    md_text(&s.name),
                    md_text(&s.executor),
                    format_thousands(s.iterations),
                    if duration_s > 0.0 {
                        format_rate(s.iterations as f64 / duration_s)
                    } else {
                        "-".to_owned()
                    },
                    format_thousands(s.interrupted_iterations),
                    format_thousands(s.dropped_iterations),
                    format_thousands(s.late_iterations),
                    format_thousands(s.vus_max),
                    lat(d.p50),
                    lat(d.p99),
                    lat(d.max),
                ]
            })
            .collect();
        let mut align = vec![Align::Left, Align::Left];
        align.extend([Align::Right; 9]);
        table(
            out,
            &[
                "Scenario",
                "Executor",
                "Iterations",
                "Iterations/s",
                "Interrupted",
                "Dropped",
                "Late",
                "VUs max",
                "Iteration p50",
                "p99",
                "max",
            ],
            &align,
            &rows,
        );
    }

    if !sc.names.is_empty() {
        out.push_str("## Per name\n\n");
        let messages = sc
            .names
            .iter()
            .any(|n| n.msgs_sent > 0 || n.msgs_received > 0);
        let retries = sc.names.iter().any(|n| n.retries > 0);
        let rows: Vec<Vec<String>> = sc
            .names
            .iter()
            .map(|n| {
                let l = &n.latency_us;
                let lat = |v: u64| {
                    if l.count == 0 {
                        "-".to_owned()
                    } else {
                        format_duration_us(v)
                    }
                };
                let mut row = vec![
                    md_code(&n.name),
                    md_text(&n.kind),
                    md_text(&n.scenario),
                    format_thousands(n.count),
                    if n.failed > 0 {
                        format!("**{}**", format_thousands(n.failed))
                    } else {
                        "0".to_owned()
                    },
                    format_percent(n.error_rate),
                    format!("{}/s", format_rate(n.rate)),
                    lat(l.p50),
                    lat(l.p90),
                    lat(l.p99),
                    lat(l.max),
                ];
                if messages {
                    row.push(format_thousands(n.msgs_sent));
                    row.push(format_thousands(n.msgs_received));
                }
                if retries {
                    row.push(format_thousands(n.retries));
                    row.push(format_duration_us((n.retry_wait_ms * 1000.0) as u64));
                }
                row
            })
            .collect();
        let mut header = vec![
            "Name",
            "Kind",
            "Scenario",
            "Count",
            "Failed",
            "Error rate",
            "Rate",
            "p50",
            "p90",
            "p99",
            "max",
        ];
        if messages {
            header.extend(["Msgs sent", "Msgs received"]);
        }
        if retries {
            header.extend(["Retries", "Retry wait"]);
        }
        let mut align = vec![Align::Left; 3];
        align.extend(vec![Align::Right; header.len() - 3]);
        table(out, &header, &align, &rows);
    }

    if !sc.checks.is_empty() {
        out.push_str("## Checks\n\n");
        let rows: Vec<Vec<String>> = sc
            .checks
            .iter()
            .map(|c| {
                let total = c.passes + c.fails;
                vec![
                    md_text(&c.name),
                    md_code(&c.request),
                    format_thousands(c.passes),
                    format_thousands(c.fails),
                    if total == 0 {
                        "-".to_owned()
                    } else {
                        format_percent(c.passes as f64 / total as f64)
                    },
                    if c.fails == 0 { "pass" } else { "**FAIL**" }.to_owned(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "Check",
                "Request",
                "Passed",
                "Failed",
                "Pass rate",
                "Result",
            ],
            &[
                Align::Left,
                Align::Left,
                Align::Right,
                Align::Right,
                Align::Right,
                Align::Left,
            ],
            &rows,
        );
    }
}

/// `## WebSocket`: sessions, messages, loss, reconnects, herd recovery and latencies.
pub(super) fn websocket_section(out: &mut String, ws: &WsReport) {
    let _ = writeln!(out, "## WebSocket ({})\n", md_text(&ws.mode));
    let mut rows = vec![
        vec![
            "Sessions".to_owned(),
            format!(
                "{} opened, {} failed handshakes, {} reconnects",
                format_thousands(ws.sessions),
                format_thousands(ws.sessions_failed),
                format_thousands(ws.reconnects)
            ),
        ],
        vec![
            "Messages".to_owned(),
            format!(
                "{} sent ({}), {} received ({}, {}/s)",
                format_thousands(ws.msgs_sent),
                format_bytes(ws.bytes_sent),
                format_thousands(ws.msgs_received),
                format_bytes(ws.bytes_received),
                format_rate(ws.msgs_received_per_s)
            ),
        ],
    ];
    let expected = ws.msgs_received + ws.lost;
    let lost = if ws.lost > 0 {
        format!(
            "**{}** ({} of expected)",
            format_thousands(ws.lost),
            format_percent(ws.lost as f64 / expected as f64)
        )
    } else {
        "0".to_owned()
    };
    rows.push(vec!["Lost".to_owned(), lost]);
    rows.push(vec![
        "Duplicates or out of order".to_owned(),
        format_thousands(ws.duplicates),
    ]);
    rows.push(vec![
        "Unanswered at the end".to_owned(),
        format_thousands(ws.unanswered),
    ]);
    rows.push(vec!["Sent late".to_owned(), format_thousands(ws.late)]);
    if ws.pings_sent > 0 || ws.pongs_received > 0 || ws.pings_answered > 0 {
        rows.push(vec![
            "Pings".to_owned(),
            format!(
                "{} sent, {} pongs, {} server pings answered",
                format_thousands(ws.pings_sent),
                format_thousands(ws.pongs_received),
                format_thousands(ws.pings_answered)
            ),
        ]);
    }
    if !ws.errors.is_empty() {
        let ends: Vec<String> = ws
            .errors
            .iter()
            .map(|(k, n)| format!("{} {}", md_code(k), format_thousands(*n)))
            .collect();
        rows.push(vec!["Sessions ended by".to_owned(), ends.join(", ")]);
    }
    if !ws.close_codes.is_empty() {
        let codes: Vec<String> = ws
            .close_codes
            .iter()
            .map(|(k, n)| format!("{} {}", md_code(k), format_thousands(*n)))
            .collect();
        rows.push(vec!["Close codes".to_owned(), codes.join(", ")]);
    }
    if let Some(h) = &ws.herd {
        let t = |v: Option<f64>| v.map_or("**never**".to_owned(), |s| format!("{s:.3}s"));
        rows.push(vec![
            "Reconnect herd".to_owned(),
            format!(
                "{} dropped at once; back: 50% after {}, 99% after {}, 100% after {}",
                format_thousands(h.dropped),
                t(h.back_50_s),
                t(h.back_99_s),
                t(h.back_100_s)
            ),
        ]);
    }
    table(
        out,
        &["Metric", "Value"],
        &[Align::Left, Align::Left],
        &rows,
    );

    let latency: Vec<Vec<String>> = [
        ("Handshake", &ws.handshake_us),
        ("Message", &ws.msg_latency_us),
        ("Ping RTT", &ws.ping_rtt_us),
        ("Fan-out", &ws.fanout_us),
        ("Session", &ws.session_duration_us),
    ]
    .into_iter()
    .filter(|(_, l)| l.count > 0)
    .map(|(name, l)| latency_row(name, l))
    .collect();
    if !latency.is_empty() {
        out.push_str("### WebSocket latency\n\n");
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

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::super::tests::{assert_no_empty_tables, row_of};
    use crate::config::LoadModel;
    use crate::report::Report;
    use crate::report::flow::tests::{scenario_sample, special_sample, ws_sample};
    use crate::report::tests::{config, outcome};

    fn scenario_report() -> Report {
        let mut r = Report::from_run(&config(LoadModel::Closed), &outcome());
        r.errors = Default::default();
        r.model = "scenario".into();
        r.scenario = Some(scenario_sample());
        r
    }

    #[test]
    fn thresholds_table_shows_each_condition_its_value_and_result() {
        let md = render(&scenario_report());
        // 3 thresholds and 1 check failed, out of 3 built-in + 5 + 2 verdicts.
        assert!(
            md.contains("**Result: FAIL**: 4 of 10 verdicts failed: http\\_req\\_duration{name:search}: p(99)\\<5,"),
            "{md}"
        );
        assert!(md.contains(
            "## Thresholds\n\n**3 of 5 thresholds failed**: blaster exited with code 99."
        ));
        assert!(
            md.find("## Thresholds") < md.find("## Run"),
            "thresholds come first"
        );
        assert!(
            md.contains("| Metric | Condition | Measured | Result |"),
            "{md}"
        );
        assert_eq!(
            row_of(&md, "`http_req_duration{name:search}`"),
            "| `http_req_duration{name:search}` | `p(99)<5` | 8.4 ms | **FAIL** |"
        );
        assert_eq!(
            row_of(&md, "`http_req_duration{name:home}`"),
            "| `http_req_duration{name:home}` | `p(95)<1200` | 8.4 ms | pass |"
        );
        assert_eq!(
            row_of(&md, "`http_req_failed`"),
            "| `http_req_failed` | `rate<0.01` | 0.0148 (1.48%) | **FAIL** |"
        );
        assert_eq!(
            row_of(&md, "`ws_msg_latency`"),
            "| `ws_msg_latency` | `p(95)<100` | no samples | **FAIL** |"
        );
        // Thresholds and checks are not repeated among the other verdicts.
        let verdicts = &md[md.find("## Verdicts").expect("verdicts")..];
        let verdicts = &verdicts[..verdicts.find("\n## ").unwrap_or(verdicts.len())];
        assert!(!verdicts.contains("http_req"), "{verdicts}");
        assert!(verdicts.contains("| no errors | pass |"), "{verdicts}");
        assert_no_empty_tables(&md);
    }

    #[test]
    fn scenario_per_name_and_checks_tables() {
        let md = render(&scenario_report());
        assert_eq!(
            row_of(&md, "browse"),
            "| browse | constant-arrival-rate | 1,000 | 100 | 2 | 3 | 4 | 17 | 2.00ms | 9.00ms | 15.0ms |"
        );
        assert_eq!(
            row_of(&md, "`search`"),
            "| `search` | http | browse | 1,000 | **37** | 3.70% | 100/s | 1.20ms | 4.80ms | 8.40ms | 12.0ms |"
        );
        assert!(row_of(&md, "`home`").contains("| 0 | 0% |"), "{md}");
        assert_eq!(
            row_of(&md, "search has results"),
            "| search has results | `search` | 963 | 37 | 96.3% | **FAIL** |"
        );
        assert_eq!(
            row_of(&md, "home is 200"),
            "| home is 200 | `home` | 1,000 | 0 | 100.0% | pass |"
        );
        assert!(
            !md.contains("Msgs sent"),
            "no message columns without messages"
        );
        assert!(!md.contains("Retries"), "no retry columns without retries");
        let mut retried = scenario_report();
        retried.scenario = Some(crate::report::flow::tests::retried_sample());
        let md2 = render(&retried);
        assert!(md2.contains("| Retries | Retry wait |"), "{md2}");
        assert!(
            row_of(&md2, "`search`").ends_with("| 12 | 2.50s |"),
            "{}",
            row_of(&md2, "`search`")
        );
        assert!(!md.contains("## WebSocket"));
        assert_no_empty_tables(&md);
    }

    #[test]
    fn passing_and_aborted_runs() {
        let mut r = scenario_report();
        let sc = r.scenario.as_mut().unwrap();
        sc.thresholds.retain(|t| t.passed);
        sc.checks.retain(|c| c.fails == 0);
        sc.thresholds_passed = true;
        let md = render(&r);
        assert!(md.contains("All 2 thresholds passed."), "{md}");
        assert!(
            md.contains("**Result: PASS**: all 6 verdicts passed."),
            "{md}"
        );

        let sc = r.scenario.as_mut().unwrap();
        sc.thresholds[1].passed = false;
        sc.thresholds[1].abort_on_fail = true;
        sc.thresholds_passed = false;
        sc.aborted_by = Some("http_reqs{name:buy}".into());
        let md = render(&r);
        assert!(
            md.contains("> **Aborted**: `http_reqs{name:buy}` failed and has `abort_on_fail`"),
            "{md}"
        );
        assert!(row_of(&md, "`http_reqs{name:buy}` (abort on fail)").ends_with("| **FAIL** |"));
    }

    #[test]
    fn special_modes_show_their_results() {
        let mut r = scenario_report();
        assert!(!render(&r).contains("## Special mode"));
        r.scenario = Some(special_sample());
        let md = render(&r);
        assert!(md.find("## Special mode") < md.find("## Run"), "{md}");
        assert_eq!(
            row_of(&md, "Breakpoint: last passing rate"),
            "| Breakpoint: last passing rate | 250/s (browse) |"
        );
        assert_eq!(
            row_of(&md, "Breakpoint: broke at"),
            "| Breakpoint: broke at | **300/s**: http\\_req\\_failed rate\\<0.01 (measured 0.031) |"
        );
        assert_eq!(
            row_of(&md, "Spike (users): p95 before / at peak / after"),
            "| Spike (users): p95 before / at peak / after | 4.00 ms / 80.50 ms / 9.25 ms |"
        );
        assert_eq!(
            row_of(&md, "Spike: recovered within 1.5x"),
            "| Spike: recovered within 1.5x | **NO** |"
        );
        assert!(
            row_of(&md, "Soak watcher: growth (allowed)")
                .contains("+3780.000/h (+50.000/h): **rising, a leak is suspected**"),
            "{md}"
        );
        assert!(row_of(&md, "Soak watcher: `memory_usage_mb`").contains("3 samples"));
        assert_no_empty_tables(&md);
    }

    #[test]
    fn websocket_section() {
        let mut r = Report::from_run(&config(LoadModel::Closed), &outcome());
        r.ws = Some(ws_sample());
        let md = render(&r);
        assert!(md.contains("## WebSocket (echo)\n"), "{md}");
        assert_eq!(
            row_of(&md, "Sessions"),
            "| Sessions | 120 opened, 3 failed handshakes, 40 reconnects |"
        );
        assert!(row_of(&md, "Messages").contains("30,000 sent"), "{md}");
        assert!(row_of(&md, "Messages").contains("29,930 received"), "{md}");
        assert_eq!(row_of(&md, "Lost"), "| Lost | **41** (0.14% of expected) |");
        assert_eq!(
            row_of(&md, "Sessions ended by"),
            "| Sessions ended by | `eof` 40 |"
        );
        assert!(
            row_of(&md, "Reconnect herd").contains("20 dropped at once; back: 50% after 0.076s")
                || row_of(&md, "Reconnect herd").contains("0.075s"),
            "{md}"
        );
        assert!(row_of(&md, "Reconnect herd").ends_with("100% after **never** |"));
        assert!(
            row_of(&md, "Message").starts_with("| Message | 29,930 |"),
            "{md}"
        );
        assert!(row_of(&md, "Ping RTT").starts_with("| Ping RTT | 278 |"));
        assert!(!md.contains("| Fan-out |"), "no fan-out samples in echo");
        assert_no_empty_tables(&md);
    }
}
