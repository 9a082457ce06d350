//! Checks, captures and WebSocket message matching over a response's status, headers and
//! body (or a WebSocket message: no status, no headers). Expected values are rendered with
//! the VU's state into its scratch buffer, so a check allocates nothing unless it reads JSON.

use std::time::Duration;

use memchr::memmem;

use super::json;
use super::{Shared, VuState};
use crate::scenario::model::{Capture, CaptureSource, Check, CheckCondition, Template};

/// Whether every condition of check `c` holds for a response with `status`, `headers`,
/// `body` and `latency`. Conditions: status in the set; body contains the rendered text;
/// the JSON value at a path equals the rendered value (see `json::equals`); a header
/// (name case-insensitive) equals the rendered value exactly (surrounding whitespace aside);
/// latency below the limit.
pub fn run_check(
    c: &Check,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    latency: Duration,
    vu: &mut VuState,
    shared: &Shared,
) -> bool {
    // Cheap conditions first: a failing one spares rendering and JSON parsing.
    let cheap = c.conditions.iter().all(|cond| match cond {
        CheckCondition::StatusIn(set) => set.contains(&status),
        CheckCondition::LatencyBelow(limit) => latency < *limit,
        _ => true,
    });
    cheap
        && c.conditions.iter().all(|cond| match cond {
            // Decided by the worker, which knows the request's retries.
            CheckCondition::StatusIn(_)
            | CheckCondition::LatencyBelow(_)
            | CheckCondition::RetryAfterHonoured => true,
            CheckCondition::BodyContains(t) => {
                with_rendered(t, vu, shared, |needle| contains(body, needle))
            }
            CheckCondition::HeaderEquals { name, value } => {
                with_rendered(value, vu, shared, |want| {
                    headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case(name) && v.trim_ascii() == want.trim_ascii()
                    })
                })
            }
            CheckCondition::JsonEquals { path, value } => match json::lookup(body, path) {
                Some(found) => with_rendered(value, vu, shared, |want| {
                    std::str::from_utf8(want).is_ok_and(|want| json::equals(&found, want))
                }),
                None => false,
            },
        })
}

/// Takes a value from a response (or a WebSocket message, with `headers` empty) into the
/// VU's variable `c.var`: a JSON path (strings without quotes, other values as compact JSON),
/// the first header of that name (case-insensitive), or the first match of a regex over the
/// raw body bytes (its first group, or the whole match when it has none; invalid UTF-8 in
/// the captured bytes becomes U+FFFD). Returns whether a value was captured; when not, the
/// variable keeps its previous value.
pub fn capture(
    c: &Capture,
    headers: &[(&str, &[u8])],
    body: &[u8],
    vu: &mut VuState,
    shared: &Shared,
) -> bool {
    match &c.source {
        CaptureSource::Json(path) => match json::lookup(body, path) {
            Some(v) => {
                vu.set_var(&c.var, &json::to_var_text(&v));
                true
            }
            None => false,
        },
        CaptureSource::Header(name) => {
            match headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, v)) => {
                    vu.set_var(&c.var, &String::from_utf8_lossy(v.trim_ascii()));
                    true
                }
                None => false,
            }
        }
        CaptureSource::Regex(pattern) => {
            // `Shared::new` compiled every pattern of the file; one from elsewhere never
            // matches.
            let Some(re) = shared.regex(pattern) else {
                return false;
            };
            let Some(caps) = re.captures(body) else {
                return false;
            };
            let m = caps.get(1).or_else(|| caps.get(0));
            match m {
                Some(m) => {
                    vu.set_var(&c.var, &String::from_utf8_lossy(m.as_bytes()));
                    true
                }
                None => false,
            }
        }
    }
}

/// For `ws_expect`: whether `msg` contains the rendered `contains` (any message matches when
/// it is `None`). `scratch` holds the rendered text (cleared first; reused across calls).
pub fn message_matches(
    contains: Option<&Template>,
    msg: &[u8],
    vu: &mut VuState,
    shared: &Shared,
    scratch: &mut Vec<u8>,
) -> bool {
    let Some(t) = contains else {
        return true;
    };
    if let Some(lit) = t.as_literal() {
        return self::contains(msg, lit.as_bytes());
    }
    scratch.clear();
    vu.render(t, shared, scratch);
    self::contains(msg, scratch)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memmem::find(haystack, needle).is_some()
}

/// Renders `t` into the VU's scratch buffer (literals are used as they are) and calls `f`.
fn with_rendered(
    t: &Template,
    vu: &mut VuState,
    shared: &Shared,
    f: impl FnOnce(&[u8]) -> bool,
) -> bool {
    if let Some(lit) = t.as_literal() {
        return f(lit.as_bytes());
    }
    let mut buf = std::mem::take(&mut vu.scratch);
    buf.clear();
    vu.render(t, shared, &mut buf);
    let result = f(&buf);
    vu.scratch = buf;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model::ScenarioFile;
    use crate::scenario::runtime::testing::{parse, tpl, vu_for};
    use crate::scenario::runtime::{ResponseView, parse_response};

    /// A file whose one request step has `checks` and `capture` (TOML inline values).
    fn step_file(checks: &str, capture: &str) -> ScenarioFile {
        parse(&format!(
            r#"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "POST http://127.0.0.1/api/login"
checks = {checks}
capture = {capture}
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/api/orders/${{vars.order}}?u=${{vars.user_id}}&t=${{vars.token}}"
capture = {{ order = "json:$.o", user_id = "json:$.u", token = "json:$.t", seq = "json:$.s" }}
"#
        ))
    }

    fn http(step: &ScenarioFile) -> &crate::scenario::model::HttpStep {
        match &step.scenarios[0].flows[0].steps[0].kind {
            crate::scenario::model::StepKind::Http(h) => h,
            other => panic!("{other:?}"),
        }
    }

    const LOGIN_BODY: &str = r#"{"auth": {"ok": true, "token": "eyJ.abc"}, "user": {"id": 42, "roles": ["admin"]}, "order": "ord_9f3", "note": "order \"ord_x\" queued", "total": 32.50, "n": "7"}"#;

    /// A login response as received: JSON body, cookies, a padded header.
    fn login() -> ResponseView<'static> {
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Set-Cookie: session=s3cr3t; Path=/; HttpOnly\r\nset-cookie: second=1\r\n\
             X-Request-Id:   req-77  \r\nContent-Length: {}\r\n\r\n{LOGIN_BODY}",
            LOGIN_BODY.len()
        );
        // Leaked for a 'static view: a few hundred bytes per test.
        let raw: &'static [u8] = Box::leak(raw.into_bytes().into_boxed_slice());
        let scratch: &'static mut Vec<u8> = Box::leak(Box::default());
        parse_response(raw, scratch).unwrap()
    }

    #[test]
    fn the_test_response_is_what_it_claims() {
        let view = login();
        assert_eq!(view.status, 200);
        assert_eq!(view.body, LOGIN_BODY.as_bytes());
        assert_eq!(view.headers.len(), 5);
    }

    #[test]
    fn checks_on_a_realistic_login_response() {
        let f = step_file(
            r#"[
  { name = "ok", status = [200, 201] },
  { name = "not ok", status = [500] },
  { name = "token", body_contains = "eyJ." },
  { name = "no error", body_contains = "error" },
  { name = "auth", json = "$.auth.ok", equals = true },
  { name = "auth false", json = "$.auth.ok", equals = false },
  { name = "id", json = "$.user.id", equals = 42 },
  { name = "id text", json = "$.user.id", equals = "42" },
  { name = "total", json = "$.total", equals = 32.5 },
  { name = "n", json = "$.n", equals = 7 },
  { name = "roles", json = "$.user.roles", equals = '["admin"]' },
  { name = "missing", json = "$.user.email", equals = "x" },
  { name = "type", header = "content-type", equals = "application/json" },
  { name = "trimmed", header = "X-REQUEST-ID", equals = "req-77" },
  { name = "any cookie", header = "Set-Cookie", equals = "second=1" },
  { name = "wrong type", header = "Content-Type", equals = "text/html" },
  { name = "fast", latency_below = "200ms" },
  { name = "all", status = [200], body_contains = "ord_9f3", json = "$.auth.token", equals = "eyJ.abc", latency_below = "1s" },
  { name = "all but latency", status = [200], body_contains = "ord_9f3", latency_below = "100ms" },
]"#,
            "{ token = \"json:$.auth.token\" }",
        );
        let (shared, mut vu) = vu_for(f.clone());
        let view = login();
        let results: Vec<(&str, bool)> = http(&f)
            .checks
            .iter()
            .map(|c| {
                let ok = run_check(
                    c,
                    view.status,
                    &view.headers,
                    view.body,
                    Duration::from_millis(150),
                    &mut vu,
                    &shared,
                );
                (c.name.as_str(), ok)
            })
            .collect();
        let expect = [
            ("ok", true),
            ("not ok", false),
            ("token", true),
            ("no error", false),
            ("auth", true),
            ("auth false", false),
            ("id", true),
            ("id text", true),
            ("total", true),
            ("n", true),
            ("roles", true),
            ("missing", false),
            ("type", true),
            ("trimmed", true),
            ("any cookie", true),
            ("wrong type", false),
            ("fast", true),
            ("all", true),
            ("all but latency", false),
        ];
        assert_eq!(results, expect);
    }

    #[test]
    fn checks_render_their_expected_values() {
        let f = step_file(
            r#"[
  { name = "echo", body_contains = "${vars.token}" },
  { name = "json", json = "$.user.id", equals = "${vars.user_id}" },
]"#,
            "{ token = \"json:$.auth.token\", user_id = \"json:$.user.id\" }",
        );
        let (shared, mut vu) = vu_for(f.clone());
        let view = login();
        let checks = &http(&f).checks;
        let run = |vu: &mut VuState, c: &Check| {
            run_check(
                c,
                200,
                &view.headers,
                view.body,
                Duration::ZERO,
                vu,
                &shared,
            )
        };
        vu.set_var("token", "eyJ.abc");
        vu.set_var("user_id", "42");
        assert!(run(&mut vu, &checks[0]));
        assert!(run(&mut vu, &checks[1]));
        vu.set_var("token", "other");
        vu.set_var("user_id", "43");
        assert!(!run(&mut vu, &checks[0]));
        assert!(!run(&mut vu, &checks[1]));
    }

    #[test]
    fn captures_json_header_and_regex() {
        let f = step_file(
            "[{ status = [200] }]",
            r#"{ token = "json:$.auth.token", user_id = "json:$.user.id", roles = "json:$.user.roles",
                 session = "header:set-cookie", rid = "header:X-Request-Id",
                 order = 'regex:"order":\s*"(\w+)"', whole = 'regex:ord_\w+', missing = "json:$.nope",
                 nohdr = "header:X-Missing", noregex = 'regex:zzz(\d+)' }"#,
        );
        let (shared, mut vu) = vu_for(f.clone());
        let view = login();
        let mut got = Vec::new();
        for c in &http(&f).captures {
            let ok = capture(c, &view.headers, view.body, &mut vu, &shared);
            got.push((c.var.clone(), ok, vu.var(&c.var).map(str::to_owned)));
        }
        got.sort();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            got,
            [
                ("missing".into(), false, None),
                ("nohdr".into(), false, None),
                ("noregex".into(), false, None),
                ("order".into(), true, some("ord_9f3")),
                ("rid".into(), true, some("req-77")),
                ("roles".into(), true, some(r#"["admin"]"#)),
                (
                    "session".into(),
                    true,
                    some("session=s3cr3t; Path=/; HttpOnly")
                ),
                ("token".into(), true, some("eyJ.abc")),
                ("user_id".into(), true, some("42")),
                ("whole".into(), true, some("ord_9f3")),
            ]
        );
        // Captured values feed later templates.
        let next = &f.scenarios[0].flows[0].steps[1];
        let crate::scenario::model::StepKind::Http(h) = &next.kind else {
            panic!()
        };
        assert_eq!(
            vu.render_string(&h.url, &shared),
            "http://127.0.0.1/api/orders/ord_9f3?u=42&t=eyJ.abc"
        );
        // A failed capture keeps the previous value.
        let missing = http(&f).captures.iter().find(|c| c.var == "token").unwrap();
        assert!(!capture(missing, &[], b"{}", &mut vu, &shared));
        assert_eq!(vu.var("token"), Some("eyJ.abc"));
    }

    #[test]
    fn captures_from_websocket_messages_and_binary_bodies() {
        let f = step_file(
            "[{ status = [200] }]",
            r#"{ seq = "json:$.seq", id = 'regex:id=(\d+)' }"#,
        );
        let (shared, mut vu) = vu_for(f.clone());
        let caps = &http(&f).captures;
        let seq = caps.iter().find(|c| c.var == "seq").unwrap();
        let id = caps.iter().find(|c| c.var == "id").unwrap();
        assert!(capture(
            seq,
            &[],
            br#"{"type":"ack","seq":17}"#,
            &mut vu,
            &shared
        ));
        assert_eq!(vu.var("seq"), Some("17"));
        // The regex runs over raw bytes: invalid UTF-8 around the match does not matter.
        assert!(capture(id, &[], b"\xff\xfe id=123 \xc3", &mut vu, &shared));
        assert_eq!(vu.var("id"), Some("123"));
    }

    #[test]
    fn messages_match_rendered_text() {
        let f = step_file("[{ status = [200] }]", r#"{ seq = "json:$.seq" }"#);
        let (shared, mut vu) = vu_for(f);
        let mut scratch = Vec::new();
        let msg = br#"{"type":"location","seq":5}"#;
        assert!(message_matches(None, msg, &mut vu, &shared, &mut scratch));
        let lit = tpl(r#""type":"location""#);
        assert!(message_matches(
            Some(&lit),
            msg,
            &mut vu,
            &shared,
            &mut scratch
        ));
        let other = tpl("pong");
        assert!(!message_matches(
            Some(&other),
            msg,
            &mut vu,
            &shared,
            &mut scratch
        ));
        let templ = tpl(r#""seq":${vars.seq}}"#);
        vu.set_var("seq", "5");
        assert!(message_matches(
            Some(&templ),
            msg,
            &mut vu,
            &shared,
            &mut scratch
        ));
        vu.set_var("seq", "6");
        assert!(!message_matches(
            Some(&templ),
            msg,
            &mut vu,
            &shared,
            &mut scratch
        ));
        assert_eq!(
            scratch, br#""seq":6}"#,
            "the rendered text is left in scratch"
        );
    }
}
