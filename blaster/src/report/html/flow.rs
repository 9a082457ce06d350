//! The HTML sections of virtual-user runs: the threshold verdict and table, per-scenario,
//! per-name and check tables (the report's `scenario` object), and the WebSocket section (its
//! `ws` object). Only formats; every string from the report goes through [`esc`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::chart::{Axis, Chart, Series};
use super::{
    BLUE, GREEN, GREY, ORANGE, PURPLE, RED, card, esc, figure, format_tick_count, kv, kv_html,
    latency_axis, plural, share, time_axis,
};
use crate::cli::units::{format_bytes, format_count, format_duration_us, format_thousands};
use crate::report::LatencySummary;
use crate::report::flow::{ScenarioReport, WsReport};
use crate::report::series::{NamePoint, NameSeries, SeriesReport};

/// Exit code of a run whose thresholds failed (shown in the verdict).
const EXIT_THRESHOLDS: i32 = 99;

/// A banner under the header: whether the thresholds passed, and whether one aborted the run.
/// Nothing when the scenario file has no thresholds.
pub(super) fn verdict_banner(out: &mut String, sc: &ScenarioReport) {
    if sc.thresholds.is_empty() {
        return;
    }
    let total = sc.thresholds.len();
    let failed = sc.thresholds.iter().filter(|t| !t.passed).count();
    if failed == 0 && sc.thresholds_passed {
        let _ = writeln!(
            out,
            "<div class=\"banner ok\" id=\"threshold-verdict\"><strong>All {total} threshold{} passed.</strong>\
             Each condition and its measured value are in the Thresholds table below.</div>",
            plural(total as u64)
        );
        return;
    }
    let _ = write!(
        out,
        "<div class=\"banner bad\" id=\"threshold-verdict\"><strong>{failed} of {total} threshold{} failed \
         (exit code {EXIT_THRESHOLDS}).</strong><ul>",
        plural(total as u64)
    );
    for t in sc.thresholds.iter().filter(|t| !t.passed) {
        let _ = write!(
            out,
            "<li><code>{}</code> <code>{}</code>: measured {}</li>",
            esc(&t.metric),
            esc(&t.condition),
            esc(&t.observed_text())
        );
    }
    out.push_str("</ul>");
    if let Some(by) = &sc.aborted_by {
        let _ = write!(
            out,
            "The run was stopped early: <code>{}</code> failed and has <code>abort_on_fail</code>.",
            esc(by)
        );
    }
    out.push_str("</div>\n");
}

/// The threshold table: one row per condition, failed rows in red. Nothing without thresholds.
pub(super) fn thresholds(out: &mut String, sc: &ScenarioReport) {
    if sc.thresholds.is_empty() {
        return;
    }
    let failed = sc.thresholds.iter().filter(|t| !t.passed).count();
    let _ = write!(
        out,
        "<section id=\"thresholds\"><h2>Thresholds: {}</h2><div class=\"panel\"><table>\
         <tr><th>metric</th><th>condition</th><th class=\"num\">measured</th><th class=\"num\">result</th></tr>",
        if failed == 0 {
            "all passed".to_owned()
        } else {
            format!("{failed} of {} failed", sc.thresholds.len())
        }
    );
    for t in &sc.thresholds {
        let mut tags = String::new();
        if t.abort_on_fail {
            tags.push_str(" <span class=\"tag\">abort on fail</span>");
        }
        if sc.aborted_by.as_deref() == Some(t.metric.as_str()) && !t.passed {
            tags.push_str(" <span class=\"tag bad\">stopped the run</span>");
        }
        let (class, word) = if t.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td><code>{}</code>{tags}</td><td><code>{}</code></td>\
             <td class=\"num\">{}</td><td class=\"num {class}\">{word}</td></tr>",
            esc(&t.metric),
            esc(&t.condition),
            esc(&t.observed_text()),
        );
    }
    out.push_str(
        "</table><p class=\"note\">Measured values are in the unit of the condition: \
         milliseconds for time metrics, a fraction for rates, a number for counts.</p></div></section>\n",
    );
}

/// The results of a special mode: breakpoint search, spike recovery, soak watcher. Nothing
/// for a plain scenario file.
pub(super) fn special(out: &mut String, sc: &ScenarioReport) {
    if sc.breakpoint.is_none() && sc.spike.is_none() && sc.watch.is_none() {
        return;
    }
    out.push_str("<section id=\"special\"><h2>Special mode</h2><div class=\"grid small\">\n");
    let rate = |v: Option<f64>| v.map(|r| format!("{}/s", format_count(r)));
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
    if let Some(b) = &sc.breakpoint {
        out.push_str(
            "<div class=\"panel\" id=\"breakpoint\"><h3>Breakpoint search</h3><table class=\"kv\">",
        );
        kv(out, "stepped scenario", &b.scenario);
        kv(
            out,
            "last passing rate",
            &rate(b.last_passing_rate).unwrap_or_else(|| "none: the first step failed".to_owned()),
        );
        match rate(b.broke_at_rate) {
            Some(r) => kv_html(
                out,
                "broke at",
                &format!("<span class=\"bad\">{}</span>", esc(&r)),
            ),
            None => kv(out, "broke at", "never, up to the highest rate"),
        }
        if let Some(by) = &b.broken_by {
            kv(out, "broken by", by);
        }
        out.push_str("</table></div>\n");
    }
    if let Some(sp) = &sc.spike {
        out.push_str(
            "<div class=\"panel\" id=\"spike\"><h3>Spike recovery</h3><table class=\"kv\">",
        );
        kv(out, "scenario", &sp.scenario);
        kv(out, "p95 before the spike", &ms(sp.baseline_p95_ms));
        kv(out, "p95 at the peak", &ms(sp.spike_p95_ms));
        kv(out, "p95 after recovery", &ms(sp.recovered_p95_ms));
        kv(out, "tolerance", &format!("{}x the baseline", sp.tolerance));
        if sp.recovered {
            kv(out, "recovered", "yes");
        } else {
            kv_html(out, "recovered", "<span class=\"bad\">NO</span>");
        }
        out.push_str("</table></div>\n");
    }
    if let Some(w) = &sc.watch {
        out.push_str("<div class=\"panel\" id=\"watch\"><h3>Soak watcher</h3><table class=\"kv\">");
        kv(out, "polled", &w.url);
        kv(out, "gauge", &w.metric);
        kv(out, "samples", &format_thousands(w.samples.len() as u64));
        if let Some([_, last]) = w.samples.last() {
            kv(out, "last value", &format!("{last}"));
        }
        let growth = |v: Option<f64>| v.map_or("-".to_owned(), |g| format!("{g:+.3} per hour"));
        kv(out, "growth", &growth(w.growth_per_hour));
        kv(out, "allowed growth", &growth(w.max_growth_per_hour));
        if w.rising {
            kv_html(
                out,
                "rising",
                "<span class=\"bad\">yes: the value grows faster than allowed (a leak is suspected)</span>",
            );
        } else {
            kv(out, "rising", "no");
        }
        if w.errors > 0 {
            kv_html(
                out,
                "failed polls",
                &format!(
                    "<span class=\"bad\">{}</span> {}",
                    format_thousands(w.errors),
                    esc(&w.first_errors.join("; "))
                ),
            );
        }
        out.push_str("</table></div>\n");
        let chart = Chart {
            id: "watch-samples",
            x: time_axis(),
            y: Axis::linear("value", format_tick_count),
            series: vec![Series::line(
                &w.metric,
                BLUE,
                w.samples.iter().map(|[t, v]| (*t, *v)).collect(),
            )],
            refs: Vec::new(),
        };
        figure(
            out,
            &format!("{} over time", w.metric),
            chart.svg().as_deref(),
            "no samples: every poll failed",
        );
    }
    out.push_str("</div></section>\n");
}

/// Per-name results, checks and scenarios.
pub(super) fn scenario_sections(out: &mut String, sc: &ScenarioReport, duration_s: f64) {
    per_name(out, sc);
    if let Some(series) = &sc.series {
        per_name_charts(out, series);
    }
    checks(out, sc);
    scenarios(out, sc, duration_s);
}

fn latency_cell(l: &LatencySummary, v: u64) -> String {
    if l.count == 0 {
        "-".to_owned()
    } else {
        format_duration_us(v)
    }
}

/// `200 ×990, 503 ×10` and error kinds, for one name.
fn outcomes(codes: &BTreeMap<String, u64>, errors: &BTreeMap<String, u64>) -> String {
    let mut parts: Vec<String> = codes
        .iter()
        .map(|(c, n)| format!("{} ×{}", esc(c), format_thousands(*n)))
        .collect();
    parts.extend(errors.iter().map(|(k, n)| {
        format!(
            "<span class=\"bad\">{} ×{}</span>",
            esc(k),
            format_thousands(*n)
        )
    }));
    parts.join(", ")
}

fn per_name(out: &mut String, sc: &ScenarioReport) {
    out.push_str("<section id=\"per-name\"><h2>Per name</h2><div class=\"panel\">");
    if sc.names.is_empty() {
        out.push_str("<p class=\"empty\">no named requests or messages</p></div></section>\n");
        return;
    }
    let messages = sc
        .names
        .iter()
        .any(|n| n.msgs_sent > 0 || n.msgs_received > 0);
    let retries = sc.names.iter().any(|n| n.retries > 0);
    out.push_str(
        "<table><tr><th>name</th><th>kind</th><th>scenario</th><th class=\"num\">count</th>\
         <th class=\"num\">failed</th><th class=\"num\">error rate</th><th class=\"num\">rate</th>\
         <th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th>\
         <th class=\"num\">max</th>",
    );
    if messages {
        out.push_str("<th class=\"num\">msgs sent</th><th class=\"num\">msgs received</th>");
    }
    if retries {
        out.push_str("<th class=\"num\">retries</th><th class=\"num\">retry wait</th>");
    }
    out.push_str("<th>statuses and errors</th></tr>");
    for n in &sc.names {
        let l = &n.latency_us;
        let bad = if n.failed > 0 { " fail" } else { "" };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num{bad}\">{}</td><td class=\"num{bad}\">{:.2}%</td><td class=\"num\">{}/s</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            esc(&n.name),
            esc(&n.kind),
            esc(&n.scenario),
            format_thousands(n.count),
            format_thousands(n.failed),
            n.error_rate * 100.0,
            format_count(n.rate),
            latency_cell(l, l.p50),
            latency_cell(l, l.p90),
            latency_cell(l, l.p99),
            latency_cell(l, l.max),
        );
        if messages {
            let _ = write!(
                out,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                format_thousands(n.msgs_sent),
                format_thousands(n.msgs_received)
            );
        }
        if retries {
            let _ = write!(
                out,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                format_thousands(n.retries),
                format_duration_us((n.retry_wait_ms * 1000.0) as u64)
            );
        }
        let _ = write!(
            out,
            "<td class=\"small\">{}</td></tr>",
            outcomes(&n.status_codes, &n.errors)
        );
    }
    out.push_str(
        "</table><p class=\"note\">Latency is the request duration (http), the handshake \
         (ws_connect) or the message latency (ws_expect).</p></div></section>\n",
    );
}

/// Lines per chart: the busiest names (or tag values); more would be unreadable.
const MAX_LINES: usize = 8;
const PALETTE: [&str; 6] = [BLUE, ORANGE, GREEN, RED, PURPLE, GREY];

/// Per-name latency and rate over time (from `scenario.series`), and the rate per `group` tag
/// value when the names carry one (names summed per tag value at render time).
fn per_name_charts(out: &mut String, series: &SeriesReport) {
    let mut names: Vec<&NameSeries> = series
        .names
        .iter()
        .filter(|n| !n.points.is_empty())
        .collect();
    if names.is_empty() {
        return;
    }
    let total = |n: &NameSeries| n.points.iter().map(|p| p.count).sum::<u64>();
    names.sort_by_key(|n| std::cmp::Reverse(total(n)));
    let shown = names.len().min(MAX_LINES);
    let label = |n: &NameSeries| {
        if n.kind == "http" {
            n.name.clone()
        } else {
            format!("{} ({})", n.name, n.kind)
        }
    };
    let _ = writeln!(
        out,
        "<section id=\"per-name-charts\"><h2>Per name over time</h2>{}<div class=\"grid\">",
        if shown < names.len() {
            format!(
                "<p class=\"note\">The {shown} busiest of {} names.</p>",
                names.len()
            )
        } else {
            String::new()
        }
    );
    // As in the run-wide charts, the drain's sliver of an interval at the end is left out of
    // rates and percentiles (a rate over a few milliseconds is noise).
    let sliver = (series.interval_s * series.intervals_per_point as f64 / 2.0).min(0.05);
    fn drawn(n: &NameSeries, sliver: f64) -> Vec<&NamePoint> {
        n.points
            .iter()
            .filter(|p| p.t_s - p.start_s >= sliver)
            .collect()
    }
    // The shown names' lines: label, colour and points, filtered once.
    let lines: Vec<(String, &str, Vec<&NamePoint>)> = names[..shown]
        .iter()
        .zip(PALETTE.iter().cycle())
        .map(|(n, color)| (label(n), *color, drawn(n, sliver)))
        .collect();
    let series_of = |value: fn(&NamePoint) -> f64| -> Vec<Series> {
        lines
            .iter()
            .map(|(label, color, points)| {
                Series::line(
                    label,
                    color,
                    points.iter().map(|p| (p.t_s, value(p))).collect(),
                )
            })
            .collect()
    };
    let p99 = |p: &NamePoint| {
        if p.latency_us.count == 0 {
            f64::NAN
        } else {
            p.latency_us.p99 as f64
        }
    };
    let latency = Chart {
        id: "name-latency",
        x: time_axis(),
        y: latency_axis(
            lines
                .iter()
                .flat_map(|(_, _, points)| points)
                .filter(|p| p.latency_us.count > 0)
                .map(|p| (p.latency_us.p99, p.latency_us.p99)),
        ),
        series: series_of(p99),
        refs: Vec::new(),
    };
    let every = if series.intervals_per_point > 1 {
        format!(" (points of {} intervals)", series.intervals_per_point)
    } else {
        String::new()
    };
    figure(
        out,
        &format!("p99 latency per name{every}"),
        latency.svg().as_deref(),
        "no latency samples",
    );
    let rate = Chart {
        id: "name-throughput",
        x: time_axis(),
        y: Axis::linear("samples/s", format_tick_count),
        series: series_of(|p| p.rate),
        refs: Vec::new(),
    };
    figure(
        out,
        &format!("Throughput per name{every}"),
        rate.svg().as_deref(),
        "no samples",
    );
    // By tag: the names of each `group` value summed per point.
    // Per group value, per point start (ms): the latest end and the samples.
    type Points = BTreeMap<u64, (f64, u64)>;
    let mut groups: BTreeMap<&str, Points> = BTreeMap::new();
    for n in &names {
        let Some(g) = n.tags.get("group") else {
            continue;
        };
        for p in drawn(n, sliver) {
            // Points of all names share the same windows: key them by their start (ms).
            let e = groups
                .entry(g.as_str())
                .or_default()
                .entry((p.start_s * 1e3).round() as u64)
                .or_insert((p.t_s, 0));
            e.0 = e.0.max(p.t_s);
            e.1 += p.count;
        }
    }
    if !groups.is_empty() {
        let mut by_size: Vec<(&str, Points)> = groups.into_iter().collect();
        by_size.sort_by_key(|(_, pts)| std::cmp::Reverse(pts.values().map(|v| v.1).sum::<u64>()));
        let chart = Chart {
            id: "group-throughput",
            x: time_axis(),
            y: Axis::linear("samples/s", format_tick_count),
            series: by_size
                .iter()
                .take(MAX_LINES)
                .zip(PALETTE.iter().cycle())
                .map(|((g, pts), color)| {
                    Series::line(
                        g,
                        color,
                        pts.iter()
                            .map(|(&start_ms, &(end, count))| {
                                let secs = end - start_ms as f64 / 1e3;
                                (end, if secs > 0.0 { count as f64 / secs } else { 0.0 })
                            })
                            .collect(),
                    )
                })
                .collect(),
            refs: Vec::new(),
        };
        figure(
            out,
            "Throughput per group tag",
            chart.svg().as_deref(),
            "no samples",
        );
    }
    out.push_str("</div></section>\n");
}

fn checks(out: &mut String, sc: &ScenarioReport) {
    if sc.checks.is_empty() {
        return;
    }
    let failed = sc.checks.iter().filter(|c| c.fails > 0).count();
    let _ = write!(
        out,
        "<section id=\"checks\"><h2>Checks: {}</h2><div class=\"panel\"><table>\
         <tr><th>check</th><th>request</th><th class=\"num\">passed</th><th class=\"num\">failed</th>\
         <th class=\"num\">pass rate</th><th class=\"num\">result</th></tr>",
        if failed == 0 {
            "all passed".to_owned()
        } else {
            format!("{failed} of {} failed", sc.checks.len())
        }
    );
    for c in &sc.checks {
        let total = c.passes + c.fails;
        let (class, word) = if c.fails == 0 {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let rate = if total == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}%", share(c.passes, total) * 100.0)
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{rate}</td><td class=\"num {class}\">{word}</td></tr>",
            esc(&c.name),
            esc(&c.request),
            format_thousands(c.passes),
            format_thousands(c.fails),
        );
    }
    out.push_str("</table></div></section>\n");
}

fn scenarios(out: &mut String, sc: &ScenarioReport, duration_s: f64) {
    if sc.scenarios.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"scenarios\"><h2>Scenarios</h2><div class=\"panel\"><table>\
         <tr><th>scenario</th><th>executor</th><th class=\"num\">iterations</th>\
         <th class=\"num\">per second</th><th class=\"num\">interrupted</th>\
         <th class=\"num\">dropped</th><th class=\"num\">late</th><th class=\"num\">VUs max</th>\
         <th class=\"num\">iteration p50</th><th class=\"num\">p99</th><th class=\"num\">max</th></tr>",
    );
    for s in &sc.scenarios {
        let d = &s.iteration_duration_us;
        let rate = if duration_s > 0.0 {
            format!("{}/s", format_count(s.iterations as f64 / duration_s))
        } else {
            "-".to_owned()
        };
        let warn = |n: u64| if n > 0 { " fail" } else { "" };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{rate}</td>\
             <td class=\"num{}\">{}</td><td class=\"num{}\">{}</td><td class=\"num{}\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.name),
            esc(&s.executor),
            format_thousands(s.iterations),
            warn(s.interrupted_iterations),
            format_thousands(s.interrupted_iterations),
            warn(s.dropped_iterations),
            format_thousands(s.dropped_iterations),
            warn(s.late_iterations),
            format_thousands(s.late_iterations),
            format_thousands(s.vus_max),
            latency_cell(d, d.p50),
            latency_cell(d, d.p99),
            latency_cell(d, d.max),
        );
    }
    out.push_str(
        "</table><p class=\"note\">Dropped: arrival-rate iterations that found no free VU. \
         Late: started more than the lateness bound after their intended time. Interrupted: \
         cut off at the end of the scenario's graceful stop.</p></div></section>\n",
    );
}

/// The headline cards of a `blaster run ws://…` run: sessions, latency, messages, loss.
pub(super) fn ws_headline(out: &mut String, ws: &WsReport) {
    out.push_str("<section class=\"cards\" id=\"headline\">\n");
    card(
        out,
        "Sessions",
        &format_thousands(ws.sessions),
        &format!(
            "{} failed, {} reconnects",
            format_thousands(ws.sessions_failed),
            format_thousands(ws.reconnects)
        ),
        ws.sessions_failed > 0,
    );
    let p = |l: &LatencySummary, v: u64| {
        if l.count == 0 {
            "n/a".to_owned()
        } else {
            format_duration_us(v)
        }
    };
    let h = &ws.handshake_us;
    card(
        out,
        "Handshake p99",
        &p(h, h.p99),
        &format!("p50 {}", p(h, h.p50)),
        false,
    );
    let (label, l) = if ws.msg_latency_us.count == 0 && ws.ping_rtt_us.count > 0 {
        ("Ping RTT", &ws.ping_rtt_us)
    } else {
        ("Message latency", &ws.msg_latency_us)
    };
    card(out, &format!("{label} p50"), &p(l, l.p50), "median", false);
    card(
        out,
        &format!("{label} p99"),
        &p(l, l.p99),
        &format!("max {}", p(l, l.max)),
        false,
    );
    card(
        out,
        "Messages received",
        &format!("{}/s", format_count(ws.msgs_received_per_s)),
        &format!(
            "{} received, {} sent",
            format_thousands(ws.msgs_received),
            format_thousands(ws.msgs_sent)
        ),
        false,
    );
    card(
        out,
        "Lost",
        &format_thousands(ws.lost),
        &format!(
            "{} duplicates, {} unanswered",
            format_thousands(ws.duplicates),
            format_thousands(ws.unanswered)
        ),
        ws.lost > 0,
    );
    out.push_str("</section>\n");
}

/// The WebSocket section: sessions, messages, latencies, loss, reconnects and herd recovery.
pub(super) fn websocket(out: &mut String, ws: &WsReport, duration_s: f64) {
    let _ = writeln!(
        out,
        "<section id=\"websocket\"><h2>WebSocket ({})</h2><div class=\"grid small\">",
        esc(&ws.mode)
    );

    // Sessions.
    out.push_str("<div class=\"panel\" id=\"ws-sessions\"><h3>Sessions</h3><table class=\"kv\">");
    kv(out, "opened", &format_thousands(ws.sessions));
    flagged(out, "failed handshakes", ws.sessions_failed, None);
    kv(out, "reconnects", &format_thousands(ws.reconnects));
    if !ws.errors.is_empty() {
        let ends: Vec<String> = ws
            .errors
            .iter()
            .map(|(k, n)| format!("<code>{}</code> {}", esc(k), format_thousands(*n)))
            .collect();
        kv_html(out, "ended by", &ends.join(", "));
    }
    if !ws.close_codes.is_empty() {
        let codes: Vec<String> = ws
            .close_codes
            .iter()
            .map(|(k, n)| format!("<code>{}</code> {}", esc(k), format_thousands(*n)))
            .collect();
        kv_html(out, "close codes from the server", &codes.join(", "));
    }
    out.push_str("</table></div>\n");

    // Messages and loss.
    out.push_str("<div class=\"panel\" id=\"ws-messages\"><h3>Messages</h3><table class=\"kv\">");
    kv(
        out,
        "sent",
        &format!(
            "{} ({})",
            format_thousands(ws.msgs_sent),
            format_bytes(ws.bytes_sent)
        ),
    );
    kv(
        out,
        "received",
        &format!(
            "{} ({}, {}/s)",
            format_thousands(ws.msgs_received),
            format_bytes(ws.bytes_received),
            format_count(ws.msgs_received_per_s)
        ),
    );
    let expected = ws.msgs_received + ws.lost;
    flagged(out, "lost", ws.lost, Some(share(ws.lost, expected)));
    flagged(out, "duplicates or out of order", ws.duplicates, None);
    flagged(out, "unanswered at the end", ws.unanswered, None);
    flagged(out, "sent late", ws.late, None);
    if ws.pings_sent > 0 || ws.pongs_received > 0 {
        kv(
            out,
            "pings",
            &format!(
                "{} sent, {} pongs",
                format_thousands(ws.pings_sent),
                format_thousands(ws.pongs_received)
            ),
        );
    }
    if ws.pings_answered > 0 {
        kv(
            out,
            "server pings answered",
            &format_thousands(ws.pings_answered),
        );
    }
    if duration_s > 0.0 && ws.msgs_sent > 0 {
        kv(
            out,
            "send rate",
            &format!("{}/s", format_count(ws.msgs_sent as f64 / duration_s)),
        );
    }
    out.push_str("</table></div>\n");

    // Latencies, one column per summary with samples.
    let columns: Vec<(&str, &LatencySummary)> = [
        ("handshake", &ws.handshake_us),
        ("message", &ws.msg_latency_us),
        ("ping RTT", &ws.ping_rtt_us),
        ("fan-out", &ws.fanout_us),
        ("session", &ws.session_duration_us),
    ]
    .into_iter()
    .filter(|(_, l)| l.count > 0)
    .collect();
    out.push_str("<div class=\"panel\" id=\"ws-latency\"><h3>Latency</h3>");
    if columns.is_empty() {
        out.push_str("<p class=\"empty\">no session opened: no latency</p>");
    } else {
        out.push_str("<table><tr><th></th>");
        for (name, _) in &columns {
            let _ = write!(out, "<th class=\"num\">{name}</th>");
        }
        out.push_str("</tr>");
        type Pick = fn(&LatencySummary) -> u64;
        let rows: [(&str, Pick); 7] = [
            ("min", |l| l.min),
            ("mean", |l| l.mean.max(0.0).round() as u64),
            ("p50", |l| l.p50),
            ("p90", |l| l.p90),
            ("p99", |l| l.p99),
            ("p99.9", |l| l.p999),
            ("max", |l| l.max),
        ];
        for (label, f) in rows {
            let _ = write!(out, "<tr><td>{label}</td>");
            for (_, l) in &columns {
                let _ = write!(out, "<td class=\"num\">{}</td>", format_duration_us(f(l)));
            }
            out.push_str("</tr>");
        }
        out.push_str("<tr><td>samples</td>");
        for (_, l) in &columns {
            let _ = write!(out, "<td class=\"num\">{}</td>", format_thousands(l.count));
        }
        out.push_str("</tr></table>");
        out.push_str(
            "<p class=\"note\">Message: echo round trip or pub/sub delivery from the intended send \
             time. Fan-out: last minus first subscriber's delivery of one message.</p>",
        );
    }
    out.push_str("</div>\n");

    // Herd recovery.
    if let Some(h) = &ws.herd {
        out.push_str(
            "<div class=\"panel\" id=\"ws-herd\"><h3>Reconnect herd</h3><table class=\"kv\">",
        );
        kv(
            out,
            "dropped at once",
            &format!("{} sessions", format_thousands(h.dropped)),
        );
        for (label, v) in [
            ("50% back after", h.back_50_s),
            ("99% back after", h.back_99_s),
            ("100% back after", h.back_100_s),
        ] {
            match v {
                Some(s) => kv(out, label, &format!("{s:.3}s")),
                None => kv_html(out, label, "<span class=\"bad\">never</span>"),
            }
        }
        out.push_str(
            "</table><p class=\"note\">From the first drop of the largest mass drop (at least half \
             of the sessions within one second).</p></div>\n",
        );
    }
    out.push_str("</div></section>\n");
}

/// A count row shown in red when it is not zero, with an optional share.
fn flagged(out: &mut String, key: &str, n: u64, fraction: Option<f64>) {
    let text = match fraction {
        Some(f) if n > 0 => format!("{} ({:.3}%)", format_thousands(n), f * 100.0),
        _ => format_thousands(n),
    };
    if n > 0 {
        kv_html(
            out,
            key,
            &format!("<span class=\"bad\">{}</span>", esc(&text)),
        );
    } else {
        kv(out, key, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::super::render;
    use crate::config::LoadModel;
    use crate::report::Report;
    use crate::report::flow::tests::{scenario_sample, special_sample, ws_sample};
    use crate::report::tests::{config, outcome};

    fn scenario_report() -> Report {
        let mut r = Report::from_run(&config(LoadModel::Closed), &outcome());
        r.model = "scenario".into();
        r.scenario = Some(scenario_sample());
        r
    }

    fn ws_report() -> Report {
        let mut r = Report::from_run(&config(LoadModel::Closed), &outcome());
        r.model = "ws".into();
        r.ws = Some(ws_sample());
        r
    }

    /// The section with `id`, up to its end.
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no section {id}"));
        let end = html[start..]
            .find("</section>")
            .unwrap_or(html.len() - start);
        &html[start..start + end]
    }

    /// The table row of `html` that holds `needle`.
    fn row<'a>(html: &'a str, needle: &str) -> &'a str {
        let at = html
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing"));
        let start = html[..at].rfind("<tr").expect("inside a row");
        let end = at + html[at..].find("</tr>").expect("row ends");
        &html[start..end]
    }

    #[test]
    fn failed_thresholds_show_red_with_their_measured_value() {
        let html = render(&scenario_report());
        let banner = section(&html, "threshold-verdict");
        assert!(
            banner.contains("3 of 5 thresholds failed (exit code 99)"),
            "{banner}"
        );
        let t = section(&html, "thresholds");
        assert!(t.contains("Thresholds: 3 of 5 failed"), "{t}");
        let failed = row(t, "http_req_duration{name:search}");
        assert!(failed.starts_with("<tr class=\"fail\""), "{failed}");
        assert!(failed.contains("p(99)&lt;5"), "{failed}");
        assert!(failed.contains(">8.4 ms<"), "{failed}");
        assert!(failed.contains("class=\"num fail\">FAIL<"), "{failed}");
        let passed = row(t, "http_req_duration{name:home}");
        assert!(passed.starts_with("<tr class=\"pass\""), "{passed}");
        assert!(passed.contains(">pass<"), "{passed}");
        assert!(row(t, "http_req_failed").contains("0.0148 (1.48%)"));
        assert!(row(t, "http_reqs{name:buy}").contains(">250<"));
        let none = row(t, "ws_msg_latency");
        assert!(
            none.contains("no samples") && none.contains("FAIL"),
            "{none}"
        );
        assert_eq!(t.matches("<tr class=\"fail\"").count(), 3);
    }

    #[test]
    fn passing_thresholds_and_an_abort_are_said() {
        let mut r = scenario_report();
        let sc = r.scenario.as_mut().unwrap();
        sc.thresholds.retain(|t| t.passed);
        sc.thresholds_passed = true;
        let html = render(&r);
        assert!(section(&html, "threshold-verdict").contains("All 2 thresholds passed."));
        assert!(section(&html, "thresholds").contains("Thresholds: all passed"));

        let sc = r.scenario.as_mut().unwrap();
        sc.thresholds[0].passed = false;
        sc.thresholds[0].abort_on_fail = true;
        sc.thresholds_passed = false;
        sc.aborted_by = Some(sc.thresholds[0].metric.clone());
        let html = render(&r);
        let banner = section(&html, "threshold-verdict");
        assert!(banner.contains("The run was stopped early"), "{banner}");
        let t = row(section(&html, "thresholds"), "http_req_duration{name:home}");
        assert!(
            t.contains("abort on fail") && t.contains("stopped the run"),
            "{t}"
        );
    }

    #[test]
    fn per_name_checks_and_scenarios_tables() {
        let html = render(&scenario_report());
        let names = section(&html, "per-name");
        let search = row(names, "<code>search</code>");
        for cell in [
            ">1,000<", ">37<", ">3.70%<", ">100/s<", ">1.20ms<", ">8.40ms<",
        ] {
            assert!(search.contains(cell), "{cell} not in {search}");
        }
        assert!(search.contains("timeout ×37"), "{search}");
        assert!(search.contains("class=\"num fail\">37<"), "{search}");
        assert!(row(names, "<code>home</code>").contains("class=\"num\">0<"));
        assert!(
            !names.contains("msgs sent"),
            "no message columns without messages"
        );
        assert!(
            !names.contains("retries"),
            "no retry columns without retries"
        );
        let mut retried = scenario_report();
        retried.scenario = Some(crate::report::flow::tests::retried_sample());
        let html2 = render(&retried);
        let names2 = section(&html2, "per-name");
        assert!(
            names2.contains("<th class=\"num\">retries</th>"),
            "{names2}"
        );
        let search2 = row(names2, "<code>search</code>");
        assert!(
            search2.contains(">12<") && search2.contains(">2.50s<"),
            "{search2}"
        );

        let checks = section(&html, "checks");
        assert!(checks.contains("Checks: 1 of 2 failed"), "{checks}");
        let bad = row(checks, "search has results");
        assert!(bad.starts_with("<tr class=\"fail\""), "{bad}");
        assert!(bad.contains(">963<") && bad.contains(">37<") && bad.contains("96.30%"));
        assert!(row(checks, "home is 200").contains(">pass<"));

        let scenarios = section(&html, "scenarios");
        let browse = row(scenarios, "<code>browse</code>");
        assert!(browse.contains("constant-arrival-rate") && browse.contains(">1,000<"));
        assert!(browse.contains(">17<"), "{browse}");
        assert!(row(scenarios, "<code>users</code>").contains("ramping-vus"));
        // Scenario runs keep the HTTP headline.
        assert!(section(&html, "headline").contains("Requests"));
        assert!(!html.contains("id=\"websocket\""));
    }

    #[test]
    fn per_name_series_are_charted_with_a_line_per_name_and_per_group() {
        let html = render(&scenario_report());
        let sec = section(&html, "per-name-charts");
        for id in ["name-latency", "name-throughput", "group-throughput"] {
            let start = sec
                .find(&format!("data-chart=\"{id}\""))
                .unwrap_or_else(|| panic!("no chart {id}"));
            let svg = &sec[start..start + sec[start..].find("</svg>").unwrap()];
            let lines = svg.matches("<path class=\"series\"").count();
            let expected = if id == "group-throughput" { 1 } else { 3 };
            assert_eq!(lines, expected, "{id}: {svg}");
        }
        assert!(sec.contains(">search<"), "legend names the lines: {sec}");
        assert!(sec.contains("::checkout"), "{sec}");
        // Without a series, no section.
        let mut r = scenario_report();
        r.scenario.as_mut().unwrap().series = None;
        assert!(!render(&r).contains("per-name-charts"));
    }

    #[test]
    fn special_modes_show_their_results() {
        let mut r = scenario_report();
        assert!(!render(&r).contains("id=\"special\""));
        r.scenario = Some(special_sample());
        let html = render(&r);
        let sp = section(&html, "special");
        assert!(row(sp, "last passing rate").contains(">250/s<"));
        assert!(row(sp, "broke at").contains("<span class=\"bad\">300/s</span>"));
        assert!(row(sp, "broken by").contains("measured 0.031"));
        assert!(row(sp, "p95 at the peak").contains("80.50 ms"));
        assert!(row(sp, ">recovered<").contains(">NO<"));
        assert!(row(sp, "last value").contains(">121<"));
        assert!(row(sp, "growth").contains("+3780.000 per hour"));
        assert!(row(sp, "rising").contains("a leak is suspected"));
        assert!(row(sp, "failed polls").contains("connection refused"));
        let chart = &sp[sp
            .find("data-chart=\"watch-samples\"")
            .expect("the watch chart")..];
        assert!(chart.contains("<path class=\"series\""), "{chart}");
    }

    #[test]
    fn websocket_runs_lead_with_their_numbers() {
        let html = render(&ws_report());
        let headline = section(&html, "headline");
        assert!(headline.contains(">Sessions<") && headline.contains(">120<"));
        assert!(headline.contains("3 failed, 40 reconnects"), "{headline}");
        assert!(headline.contains("Message latency p99"), "{headline}");
        assert!(headline.contains("9.98k/s"), "{headline}");
        assert!(html.find("id=\"websocket\"") < html.find("id=\"charts\""));
        let ws = section(&html, "websocket");
        assert!(ws.contains("WebSocket (echo)"));
        assert!(
            row(ws, ">lost<").contains("41 (0.137%)"),
            "{}",
            row(ws, ">lost<")
        );
        assert!(row(ws, ">reconnects<").contains(">40<"));
        assert!(row(ws, "ended by").contains("<code>eof</code> 40"));
        assert!(row(ws, "close codes").contains("<code>1001</code> 5"));
        // Latency columns only for the summaries with samples: no fan-out in echo.
        let lat = &ws[ws.find("id=\"ws-latency\"").unwrap()..];
        assert!(lat.contains(">handshake<") && lat.contains(">ping RTT<"));
        assert!(!lat.contains(">fan-out<"), "{lat}");
        assert!(row(lat, "<td>p99</td>").contains(">4.70ms<"));
        let herd = &ws[ws.find("id=\"ws-herd\"").unwrap()..];
        assert!(
            row(herd, "50% back").contains("0.076s") || row(herd, "50% back").contains("0.075s")
        );
        assert!(row(herd, "100% back").contains("never"));
    }

    #[test]
    fn websocket_in_a_scenario_follows_the_tables() {
        let mut r = scenario_report();
        r.ws = Some(ws_sample());
        let html = render(&r);
        assert!(section(&html, "headline").contains("Requests"));
        assert!(html.find("id=\"per-name\"") < html.find("id=\"websocket\""));
    }

    #[test]
    fn scenario_strings_are_escaped() {
        let mut r = scenario_report();
        let sc = r.scenario.as_mut().unwrap();
        sc.names[0].name = "<script>alert(1)</script>".into();
        sc.checks[0].name = "<img src=x>".into();
        sc.thresholds[0].metric = "http_req_duration{name:<b>x</b>}".into();
        sc.file = "a&b.toml".into();
        let mut ws = ws_sample();
        ws.errors.insert("<i>evil</i>".into(), 1);
        r.ws = Some(ws);
        let html = render(&r);
        for raw in ["<script", "<img", "<b>x", "<i>evil"] {
            assert!(!html.contains(raw), "{raw} unescaped");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&amp;b.toml"));
    }

    #[test]
    fn the_new_sections_load_nothing() {
        let mut r = scenario_report();
        r.ws = Some(ws_sample());
        let html = render(&r);
        for attr in [
            "href=", "src=", "<link", "url(", "<script", "http://", "https://",
        ] {
            let page = html.replace("http://127.0.0.1:8080/", "");
            assert!(!page.contains(attr), "the page has {attr}");
        }
    }
}
