//! End-of-run text summary: a terse, fixed-layout block for the terminal, in the spirit of
//! wrk and oha. Lines about things that did not happen (errors, the open model, interruption)
//! are left out.

use std::fmt::Write as _;

use super::{LatencySummary, Report};
use crate::cli::units::{format_bytes, format_count, format_duration_us, format_thousands};

/// Width of the label column.
const LABEL: usize = 14;

/// Renders the end-of-run summary, one line per topic, ending with a newline.
pub fn render(report: &Report) -> String {
    let r = report;
    let mut out = String::new();

    // Header: what ran.
    let mut header = format!(
        "blaster {}  {} model  {} thread{}  {} connection{}",
        r.blaster_version,
        r.model,
        r.threads,
        plural(r.threads as u64),
        r.concurrency,
        plural(r.concurrency as u64),
    );
    if r.pipeline > 1 {
        let _ = write!(header, "  pipeline {}", r.pipeline);
    }
    let _ = write!(header, "  {:.2}s  {}", r.duration_s, r.targets.join(" "));
    out.push_str(header.trim_end());
    out.push('\n');

    let mut requests = format!(
        "{} sent  {} responses  {}/s",
        format_thousands(r.requests),
        format_thousands(r.responses),
        format_rate(r.rps),
    );
    if r.in_flight_at_end > 0 {
        let _ = write!(
            requests,
            "  {} in flight at end",
            format_thousands(r.in_flight_at_end)
        );
    }
    line(&mut out, "requests", &requests);

    line(&mut out, "latency", &latency(&r.latency_us));
    if r.connect_latency_us.count > 0 {
        let c = &r.connect_latency_us;
        line(
            &mut out,
            "connect",
            &format!(
                "p50 {}  p99 {}  max {}",
                format_duration_us(c.p50),
                format_duration_us(c.p99),
                format_duration_us(c.max),
            ),
        );
    }

    if !r.status_codes.is_empty() {
        let codes: Vec<String> = r
            .status_codes
            .iter()
            .map(|(code, &n)| format!("{code}: {}", format_thousands(n)))
            .collect();
        line(&mut out, "status", &codes.join("  "));
    }

    if r.errors.total > 0 {
        // Largest first, then by name.
        let mut kinds: Vec<(&String, &u64)> = r.errors.by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{k} {}", format_thousands(**n)))
            .collect();
        line(
            &mut out,
            "errors",
            &format!(
                "{} total: {}",
                format_thousands(r.errors.total),
                kinds.join(", ")
            ),
        );
    }

    if let Some(rate) = r.target_rate {
        line(
            &mut out,
            "open model",
            &format!(
                "target {}/s  late {} (>{})  dropped {}",
                format_rate(rate),
                format_thousands(r.late),
                format_duration_us(r.late_after_us),
                format_thousands(r.dropped),
            ),
        );
    }

    let c = &r.connections;
    let mut conns = format!(
        "{} opened  {} failed  {} closed by peer  {} closed on error",
        format_thousands(c.opened),
        format_thousands(c.failed),
        format_thousands(c.closed_by_peer),
        format_thousands(c.closed_on_error),
    );
    if c.reconnects > 0 {
        let _ = write!(conns, "  {} reconnects", format_thousands(c.reconnects));
    }
    if c.churned > 0 {
        let _ = write!(conns, "  {} churned", format_thousands(c.churned));
    }
    let _ = write!(conns, "  {} open at end", format_thousands(c.open_at_end));
    if let Some(s) = c.all_open_s {
        let _ = write!(conns, "  all open after {s:.2}s");
    }
    line(&mut out, "connections", &conns);

    line(
        &mut out,
        "transfer",
        &format!(
            "sent {}  received {}",
            format_bytes(r.bytes.sent),
            format_bytes(r.bytes.received)
        ),
    );

    let g = &r.generator;
    line(
        &mut out,
        "client CPU",
        &format!(
            "{:.2}s ({:.0}% of {} thread{})  loop lag p99 {} max {}  generator-bound: {}",
            r.client_cpu_s,
            g.cpu_utilization * 100.0,
            r.threads,
            plural(r.threads as u64),
            format_duration_us(g.loop_lag_p99_us),
            format_duration_us(g.loop_lag_max_us),
            if r.generator_bound { "YES" } else { "no" },
        ),
    );
    for reason in &g.reasons {
        line(&mut out, "", &format!("! {reason}"));
    }
    if g.cq_overflows > 0 || g.recv_buffer_exhausted > 0 {
        line(
            &mut out,
            "rings",
            &format!(
                "{} completion-queue overflows  {} receive-buffer exhaustions",
                format_thousands(g.cq_overflows),
                format_thousands(g.recv_buffer_exhausted),
            ),
        );
    }

    if let Some(ws) = &r.ws {
        ws_section(&mut out, ws);
    }
    if let Some(sc) = &r.scenario {
        scenario_section(&mut out, sc);
    }
    if let Some(k) = &r.kernel {
        super::kernel::render_text(r, k, &mut out);
    }

    if r.interrupted {
        out.push_str("  INTERRUPTED: partial results\n");
    }
    out
}

fn ws_section(out: &mut String, ws: &super::flow::WsReport) {
    let mut s = format!(
        "{} opened  {} failed  {} reconnects",
        format_thousands(ws.sessions),
        format_thousands(ws.sessions_failed),
        format_thousands(ws.reconnects)
    );
    if ws.handshake_us.count > 0 {
        let h = &ws.handshake_us;
        let _ = write!(
            s,
            "  handshake p50 {}  p99 {}  max {}",
            format_duration_us(h.p50),
            format_duration_us(h.p99),
            format_duration_us(h.max)
        );
    }
    line(out, "ws sessions", &s);
    line(
        out,
        "ws messages",
        &format!(
            "{} sent  {} received ({}/s)  lost {}  duplicates {}  unanswered {}  late {}",
            format_thousands(ws.msgs_sent),
            format_thousands(ws.msgs_received),
            format_rate(ws.msgs_received_per_s),
            format_thousands(ws.lost),
            format_thousands(ws.duplicates),
            format_thousands(ws.unanswered),
            format_thousands(ws.late),
        ),
    );
    if ws.msg_latency_us.count > 0 {
        line(out, "ws latency", &latency(&ws.msg_latency_us));
    }
    if ws.fanout_us.count > 0 {
        let f = &ws.fanout_us;
        line(
            out,
            "ws fan-out",
            &format!(
                "first to last subscriber p50 {}  p99 {}  max {}",
                format_duration_us(f.p50),
                format_duration_us(f.p99),
                format_duration_us(f.max)
            ),
        );
    }
    if ws.ping_rtt_us.count > 0 {
        let p = &ws.ping_rtt_us;
        line(
            out,
            "ws ping",
            &format!(
                "{} sent  {} pongs  rtt p50 {}  p99 {}",
                format_thousands(ws.pings_sent),
                format_thousands(ws.pongs_received),
                format_duration_us(p.p50),
                format_duration_us(p.p99)
            ),
        );
    }
    if let Some(h) = &ws.herd {
        let t = |v: Option<f64>| v.map_or("never".to_owned(), |s| format!("{s:.2}s"));
        line(
            out,
            "ws herd",
            &format!(
                "{} dropped at once; back: 50% {}  99% {}  100% {}",
                format_thousands(h.dropped),
                t(h.back_50_s),
                t(h.back_99_s),
                t(h.back_100_s)
            ),
        );
    }
    if !ws.errors.is_empty() || !ws.close_codes.is_empty() {
        let mut parts: Vec<String> = ws
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {}", format_thousands(*n)))
            .collect();
        parts.extend(
            ws.close_codes
                .iter()
                .map(|(k, n)| format!("close {k}: {}", format_thousands(*n))),
        );
        line(out, "ws ends", &parts.join(", "));
    }
}

fn scenario_section(out: &mut String, sc: &super::flow::ScenarioReport) {
    for s in &sc.scenarios {
        let d = &s.iteration_duration_us;
        line(
            out,
            "scenario",
            &format!(
                "{} ({})  {} iterations  {} interrupted  {} dropped  {} late  VUs max {}  iteration p50 {}  p99 {}",
                s.name,
                s.executor,
                format_thousands(s.iterations),
                format_thousands(s.interrupted_iterations),
                format_thousands(s.dropped_iterations),
                format_thousands(s.late_iterations),
                s.vus_max,
                format_duration_us(d.p50),
                format_duration_us(d.p99),
            ),
        );
    }
    if !sc.names.is_empty() {
        let width = sc
            .names
            .iter()
            .map(|n| n.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 48);
        let _ = writeln!(
            out,
            "\n  {:<width$}  {:<10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "name", "kind", "count", "failed", "rate/s", "p50", "p99", "max"
        );
        for n in &sc.names {
            let l = &n.latency_us;
            let name: String = n.name.chars().take(width).collect();
            let _ = writeln!(
                out,
                "  {:<width$}  {:<10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
                name,
                n.kind,
                format_thousands(n.count),
                format_thousands(n.failed),
                format_rate(n.rate),
                format_duration_us(l.p50),
                format_duration_us(l.p99),
                format_duration_us(l.max),
            );
        }
        for n in sc.names.iter().filter(|n| n.retries > 0) {
            let _ = writeln!(
                out,
                "  {}: {} retried, {} waited before retrying",
                n.name,
                format_thousands(n.retries),
                format_duration_us((n.retry_wait_ms * 1000.0) as u64),
            );
        }
    }
    if !sc.checks.is_empty() {
        out.push('\n');
        for c in &sc.checks {
            let total = c.passes + c.fails;
            let mark = if c.fails == 0 { "✓" } else { "✗" };
            let _ = writeln!(
                out,
                "  {mark} check {} ({})  {}/{} passed",
                c.name,
                c.request,
                format_thousands(c.passes),
                format_thousands(total)
            );
        }
    }
    if !sc.thresholds.is_empty() {
        out.push('\n');
        for t in &sc.thresholds {
            let mark = if t.passed { "✓" } else { "✗" };
            let observed = t.observed.map_or("no samples".to_owned(), |v| {
                format!("{}", (v * 1000.0).round() / 1000.0)
            });
            let _ = writeln!(
                out,
                "  {mark} threshold {}  {}  (measured {observed})",
                t.metric, t.condition
            );
        }
        let verdict = if sc.thresholds_passed {
            "all thresholds passed".to_owned()
        } else {
            let failed = sc.thresholds.iter().filter(|t| !t.passed).count();
            format!("{failed} threshold(s) FAILED: exit code 99")
        };
        line(out, "verdict", &verdict);
        if let Some(by) = &sc.aborted_by {
            line(
                out,
                "",
                &format!("! run aborted early: {by} failed (abort_on_fail)"),
            );
        }
    }
}

fn line(out: &mut String, label: &str, body: &str) {
    let _ = writeln!(out, "  {label:<LABEL$}{body}");
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A rate: thousands-separated with one decimal below a million (`123,456.7`), compact above
/// (`1.23M`).
fn format_rate(rate: f64) -> String {
    if !rate.is_finite() || rate < 0.0 {
        return format_count(rate);
    }
    if rate >= 1e6 {
        return format_count(rate);
    }
    let tenths = (rate * 10.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format_thousands(tenths / 10)
    } else {
        format!("{}.{}", format_thousands(tenths / 10), tenths % 10)
    }
}

fn latency(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "no responses".to_owned();
    }
    format!(
        "min {}  mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        format_duration_us(l.min),
        format_duration_us(l.mean.round() as u64),
        format_duration_us(l.p50),
        format_duration_us(l.p90),
        format_duration_us(l.p99),
        format_duration_us(l.p999),
        format_duration_us(l.p9999),
        format_duration_us(l.max),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::LoadModel;
    use crate::metrics::WorkerMetrics;
    use crate::report::tests::{config, outcome};

    fn closed() -> Report {
        Report::from_run(&config(LoadModel::Closed), &outcome())
    }

    fn line_of<'a>(text: &'a str, label: &str) -> Option<&'a str> {
        text.lines().find(|l| l.trim_start().starts_with(label))
    }

    #[test]
    fn header_and_important_numbers() {
        let text = render(&closed());
        let header = text.lines().next().unwrap();
        assert!(
            header.starts_with(&format!("blaster {}", env!("CARGO_PKG_VERSION"))),
            "{header}"
        );
        for part in [
            "closed model",
            "2 threads",
            "100 connections",
            "10.00s",
            "http://127.0.0.1:8080/",
        ] {
            assert!(header.contains(part), "{part} missing from {header}");
        }
        let requests = line_of(&text, "requests").unwrap();
        assert!(requests.contains("1,005 sent"), "{requests}");
        assert!(requests.contains("1,000 responses"), "{requests}");
        assert!(requests.contains("100/s"), "{requests}");
        assert!(requests.contains("1 in flight at end"), "{requests}");
        let latency = line_of(&text, "latency").unwrap();
        assert!(latency.contains("min 100us"), "{latency}");
        assert!(
            latency.contains("p50 599us") || latency.contains("p50 600us"),
            "{latency}"
        );
        assert!(latency.contains("p99.99 "), "{latency}");
        let connect = line_of(&text, "connect ").unwrap();
        assert!(
            connect.contains("p50 60us") && connect.contains("max 80us"),
            "{connect}"
        );
        let status = line_of(&text, "status").unwrap();
        assert!(
            status.contains("200: 990") && status.contains("503: 10"),
            "{status}"
        );
        let conns = line_of(&text, "connections").unwrap();
        assert!(
            conns.contains("101 opened  1 failed  2 closed by peer"),
            "{conns}"
        );
        let transfer = line_of(&text, "transfer").unwrap();
        assert!(
            transfer.contains("sent 97.7 KiB  received 244.1 KiB"),
            "{transfer}"
        );
        let cpu = line_of(&text, "client CPU").unwrap();
        assert!(cpu.contains("4.00s (20% of 2 threads)"), "{cpu}");
        assert!(cpu.contains("generator-bound: no"), "{cpu}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn error_line_only_when_there_are_errors() {
        let text = render(&closed());
        let errors = line_of(&text, "errors").unwrap();
        assert!(
            errors.contains("5 total: timeout 3, connect_refused 1, reset 1"),
            "{errors}"
        );

        let mut o = outcome();
        o.metrics.errors = [0; crate::metrics::ErrorKind::ALL.len()];
        let text = render(&Report::from_run(&config(LoadModel::Closed), &o));
        assert!(line_of(&text, "errors").is_none(), "{text}");
    }

    #[test]
    fn open_model_and_interrupted_lines_only_when_they_apply() {
        let text = render(&closed());
        assert!(line_of(&text, "open model").is_none(), "{text}");
        assert!(!text.contains("INTERRUPTED"), "{text}");
        assert!(line_of(&text, "rings").is_none(), "{text}");

        let mut o = outcome();
        o.metrics.late = 3;
        o.interrupted = true;
        o.metrics.cq_overflows = 2;
        let text = render(&Report::from_run(
            &config(LoadModel::Open { rate: 2_000.0 }),
            &o,
        ));
        let open = line_of(&text, "open model").unwrap();
        assert!(
            open.contains("target 2,000/s  late 3 (>10.0ms)  dropped 0"),
            "{open}"
        );
        assert!(text.contains("INTERRUPTED: partial results"), "{text}");
        assert!(
            line_of(&text, "rings")
                .unwrap()
                .contains("2 completion-queue overflows")
        );
    }

    #[test]
    fn generator_bound_reasons_are_listed() {
        let mut o = outcome();
        o.cpu_user = Duration::from_millis(17_400);
        o.cpu_system = Duration::from_secs(2);
        let text = render(&Report::from_run(&config(LoadModel::Closed), &o));
        assert!(
            line_of(&text, "client CPU")
                .unwrap()
                .contains("generator-bound: YES"),
            "{text}"
        );
        assert!(
            text.contains("! client CPU 97% of 2 threads: the generator was saturated"),
            "{text}"
        );
    }

    #[test]
    fn empty_run_renders() {
        let mut o = outcome();
        o.metrics = WorkerMetrics::new();
        o.duration = Duration::ZERO;
        let text = render(&Report::from_run(&config(LoadModel::Closed), &o));
        assert!(
            line_of(&text, "latency").unwrap().contains("no responses"),
            "{text}"
        );
        assert!(line_of(&text, "connect ").is_none(), "{text}");
        assert!(line_of(&text, "status").is_none(), "{text}");
    }

    #[test]
    fn rates_format_readably() {
        assert_eq!(format_rate(123_456.73), "123,456.7");
        assert_eq!(format_rate(2_000.0), "2,000");
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(2_500_000.0), "2.50M");
    }

    #[test]
    fn retried_names_show_their_retries_and_wait() {
        let mut r = closed();
        let mut sc = crate::report::flow::tests::scenario_sample();
        sc.names[0].retries = 3;
        sc.names[0].retry_wait_ms = 2_500.0;
        let retried = sc.names[0].name.clone();
        r.scenario = Some(sc);
        let text = render(&r);
        let line = line_of(&text, &format!("{retried}: ")).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            line.trim(),
            format!("{retried}: 3 retried, 2.50s waited before retrying")
        );
        // Names without retries get no such line.
        assert_eq!(text.matches("retried,").count(), 1, "{text}");
    }
}
