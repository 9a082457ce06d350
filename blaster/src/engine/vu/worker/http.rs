//! HTTP steps: render the request from its templates, send it on the VU's keep-alive
//! connection (or a new one), parse the response, record it, run checks and captures.

use super::*;
use crate::scenario::model::CheckCondition;

impl VuWorker {
    pub(super) fn http_request(&mut self, v: u32, id: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let step = &plan.steps[id as usize];
        let h = step.http().expect("an HTTP step");
        let shared = Arc::clone(&self.shared);
        let mut url = std::mem::take(&mut self.scratch);
        url.clear();
        let vu = &mut self.vus[v as usize];
        vu.state.render(&h.url, &shared, &mut url);
        let parsed = split_url(&url, false);
        let (authority, path) = match parsed {
            Ok(x) => x,
            Err(kind) => {
                self.scratch = url;
                self.fail_step(v, id as usize, kind);
                return self.resume(v, now);
            }
        };
        // `authority` and `path` borrow the rendered URL (the worker's scratch buffer, taken
        // out and put back below): no allocation per request.
        let Some(addr) = self.resolve(authority) else {
            self.scratch = url;
            self.fail_step(v, id as usize, "resolve_failed");
            return self.resume(v, now);
        };
        let vu = &mut self.vus[v as usize];
        let q = &mut vu.queue;
        q.clear();
        q.extend_from_slice(h.method.as_bytes());
        q.push(b' ');
        if path.starts_with('?') {
            // `http://host?x`: the target needs its path.
            q.push(b'/');
        }
        push_target(q, path.as_bytes());
        q.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        q.extend_from_slice(authority.as_bytes());
        q.extend_from_slice(b"\r\n");
        self.scratch = url;
        for (name, value) in plan
            .file
            .options
            .headers
            .iter()
            .filter(|(n, _)| !h.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
        {
            push_header(&mut vu.queue, name, value, &mut vu.state, &shared);
        }
        for (name, value) in &h.headers {
            push_header(&mut vu.queue, name, value, &mut vu.state, &shared);
        }
        if let Some(body) = &h.body {
            let mut b = std::mem::take(&mut self.scratch2);
            b.clear();
            vu.state.render(body, &shared, &mut b);
            vu.queue.extend_from_slice(b"Content-Length: ");
            vu.queue
                .extend_from_slice(itoa_buf(b.len() as u64, &mut [0; 20]));
            vu.queue.extend_from_slice(b"\r\n\r\n");
            vu.queue.extend_from_slice(&b);
            self.scratch2 = b;
        } else if matches!(h.method.as_str(), "POST" | "PUT" | "PATCH") {
            vu.queue.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        } else {
            vu.queue.extend_from_slice(b"\r\n");
        }
        vu.step = id;
        vu.collect = runtime::needs_response_bytes(h);
        vu.resp.clear();
        let reusable = vu.link == Link::Ready
            && vu.addr == addr
            && matches!(vu.proto, Proto::Http(_))
            && !vu.sending;
        if reusable {
            self.send_request(v, now)
        } else {
            let vu = &mut self.vus[v as usize];
            vu.addr = addr;
            vu.proto = Proto::Http(ResponseParser::new(Limits::default()));
            vu.wait = Wait::Connect;
            let timeout = h.timeout.map_or(self.timeout_ns, |t| t.as_nanos() as u64);
            self.set_timer(v, now + timeout);
            self.need_connection(v, now)
        }
    }

    /// Sends the queued request on the ready connection and waits for its response.
    pub(super) fn send_request(&mut self, v: u32, now: u64) -> R {
        let timeout = self.plan.steps[self.vus[v as usize].step as usize]
            .http()
            .and_then(|h| h.timeout)
            .map_or(self.timeout_ns, |t| t.as_nanos() as u64);
        let vu = &mut self.vus[v as usize];
        vu.req_start = vu.intended.take().unwrap_or(now);
        vu.wait = Wait::Response;
        self.metrics.requests += 1;
        self.set_timer(v, now + timeout);
        self.flush(v)
    }

    pub(super) fn on_http_data(&mut self, v: u32, now: u64) -> R {
        let mut data = std::mem::take(&mut self.rx);
        let mut at = 0;
        let result = loop {
            if at == data.len() {
                break Ok(());
            }
            let vu = &mut self.vus[v as usize];
            if vu.wait != Wait::Response {
                self.metrics.record_error(ErrorKind::UnexpectedData);
                self.metrics.closed_on_error += 1;
                break self.close(v);
            }
            // The answer to a HEAD has no body, whatever its Content-Length says.
            let head_request = self.plan.steps[vu.step as usize]
                .http()
                .is_some_and(|h| h.method == "HEAD");
            let Proto::Http(parser) = &mut vu.proto else {
                break Ok(());
            };
            match parser.feed(&data[at..], head_request) {
                Ok(p) => {
                    if vu.collect && vu.resp.len() + p.consumed <= MAX_KEPT_RESPONSE {
                        vu.resp.extend_from_slice(&data[at..at + p.consumed]);
                    }
                    at += p.consumed;
                    if let Some(resp) = p.response {
                        let retrying = self.on_response(v, resp.status, now)?;
                        if resp.close {
                            self.metrics.closed_by_peer += 1;
                            self.close(v)?;
                        }
                        if retrying {
                            break Ok(());
                        }
                        self.resume(v, now)?;
                        if self.vus[v as usize].link != Link::Ready {
                            break Ok(());
                        }
                    }
                }
                Err(e) => {
                    let kind = response_error_kind(e.kind());
                    self.metrics.record_error(kind);
                    self.metrics.closed_on_error += 1;
                    let step = vu.step as usize;
                    self.fail_step(v, step, kind.as_str());
                    self.close(v)?;
                    break self.resume(v, now);
                }
            }
        };
        data.clear();
        self.rx = data;
        result
    }

    /// Records an answer and runs the step's checks and captures; returns true when the
    /// request will be sent again (`retry`), false when the step is done.
    pub(super) fn on_response(
        &mut self,
        v: u32,
        status: u16,
        now: u64,
    ) -> Result<bool, EngineError> {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let vu = &mut self.vus[v as usize];
        let id = vu.step as usize;
        let h = plan.steps[id].http().expect("an HTTP step");
        let latency_ns = now.saturating_sub(vu.req_start);
        self.metrics.record_response(status, ns_to_us(latency_ns));
        let st = &mut self.flow.steps[id];
        st.count += 1;
        st.duration.saturating_record(ns_to_us(latency_ns));
        *st.statuses.entry(status).or_insert(0) += 1;
        if !h.is_expected(status) {
            st.failed += 1;
        }
        if let Some(retry) = &h.retry
            && retry.on.contains(&status)
        {
            if vu.waited_retry_after {
                // Waited what the server asked, and it refused again.
                vu.retry_after_broken = true;
            }
            if vu.retries < retry.max {
                let header = if vu.collect {
                    runtime::parse_response(&vu.resp, &mut self.scratch2)
                        .ok()
                        .and_then(|view| {
                            view.headers
                                .iter()
                                .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                                .map(|(_, value)| value.to_vec())
                        })
                } else {
                    None
                };
                let (wait, from_header) = retry.wait(
                    vu.retries + 1,
                    header.as_deref(),
                    std::time::SystemTime::now(),
                );
                let due = now.saturating_add(wait.as_nanos().min(u128::from(u64::MAX / 4)) as u64);
                // Never past the scenario's hard end: the run would cut the retry off anyway.
                if due < self.execs[vu.scenario as usize].hard_end_ns {
                    vu.retries += 1;
                    vu.waited_retry_after = from_header;
                    vu.wait = Wait::Retry;
                    let st = &mut self.flow.steps[id];
                    st.retries += 1;
                    st.retry_wait_us += ns_to_us(wait.as_nanos() as u64);
                    self.set_timer(v, due);
                    return Ok(true);
                }
            }
        }
        if h.checks.is_empty() && h.captures.is_empty() {
            return Ok(false);
        }
        let latency = Duration::from_nanos(latency_ns);
        let mut scratch = std::mem::take(&mut self.scratch2);
        let resp = std::mem::take(&mut vu.resp);
        {
            let view = if vu.collect {
                runtime::parse_response(&resp, &mut scratch).ok()
            } else {
                None
            };
            let (headers, body): (&[(&str, &[u8])], &[u8]) = match &view {
                Some(v) => (&v.headers, v.body),
                None => (&[], &[]),
            };
            for (i, c) in h.checks.iter().enumerate() {
                let honoured = c.conditions.contains(&CheckCondition::RetryAfterHonoured);
                if honoured && !vu.waited_retry_after && !vu.retry_after_broken {
                    // No Retry-After was waited for: nothing to judge; a check made of this
                    // condition alone is not counted.
                    if c.conditions.len() == 1 {
                        continue;
                    }
                }
                let ok = !(honoured && vu.retry_after_broken)
                    && runtime::run_check(
                        c,
                        status,
                        headers,
                        body,
                        latency,
                        &mut vu.state,
                        &shared,
                    );
                let cell = &mut self.flow.steps[id].checks[i];
                if ok {
                    cell.0 += 1;
                } else {
                    cell.1 += 1;
                }
            }
            for c in &h.captures {
                runtime::capture(c, headers, body, &mut vu.state, &shared);
            }
        }
        vu.resp = resp;
        self.scratch2 = scratch;
        Ok(false)
    }

    /// A request or message step failed without a response: counts it, and its checks as
    /// failed.
    pub(super) fn fail_step(&mut self, v: u32, step: usize, kind: &'static str) {
        self.vus[v as usize].iter_failed = true;
        let st = &mut self.flow.steps[step];
        st.count += 1;
        st.error(kind);
        for c in st.checks.iter_mut() {
            c.1 += 1;
        }
    }

    // ----- WebSocket ---------------------------------------------------------------------
}

/// Appends `name: value\r\n` with the value rendered; CR and LF in a rendered value are
/// dropped (they would end the header and let data inject others).
pub(super) fn push_header(
    out: &mut Vec<u8>,
    name: &str,
    value: &crate::scenario::model::Template,
    state: &mut VuState,
    shared: &Shared,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let at = out.len();
    state.render(value, shared, out);
    if out[at..].iter().any(|&b| b == b'\r' || b == b'\n') {
        let clean: Vec<u8> = out[at..]
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        out.truncate(at);
        out.extend_from_slice(&clean);
    }
    out.extend_from_slice(b"\r\n");
}

/// Formats `n` in decimal into `buf`.
pub(super) fn itoa_buf(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

pub(super) fn response_error_kind(kind: &str) -> ErrorKind {
    match kind {
        "headers_too_large" => ErrorKind::HeadersTooLarge,
        "invalid_chunk" => ErrorKind::InvalidChunk,
        "invalid_content_length" => ErrorKind::InvalidContentLength,
        "body_too_large" => ErrorKind::BodyTooLarge,
        "closed_mid_response" => ErrorKind::ClosedMidResponse,
        _ => ErrorKind::MalformedResponse,
    }
}

/// Appends a request target, percent-encoding the bytes a request line cannot carry (space,
/// controls, non-ASCII, `"<>\\^`{|}`) so data such as "judo seminar" in a query works; `%`
/// is kept, so already-encoded values pass through.
pub(super) fn push_target(out: &mut Vec<u8>, target: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in target {
        let bad = b <= b' ' || b >= 0x7F || b"\"<>\\^`{|}".contains(&b);
        if bad {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}
