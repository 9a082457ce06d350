//! WebSocket steps and the `ws://` modes: the Upgrade, sends, expected messages, pings, the
//! close handshake, paced echo/publish with the 32-byte prefix, session loss and reconnects.

use super::*;

impl VuWorker {
    pub(super) fn ws_connect(&mut self, v: u32, id: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let step = &plan.steps[id as usize];
        let StepKind::WsConnect { url, headers, .. } = &step.kind else {
            unreachable!()
        };
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let vu = &mut self.vus[v as usize];
        vu.state.render(url, &shared, &mut text);
        let (authority, mut path) = match split_url(&text, true) {
            Ok((a, p)) => {
                // As in an HTTP request line: a rendered value with a space must not break
                // the Upgrade's request line (it was refused as a bad request).
                let mut target = Vec::with_capacity(p.len());
                super::http::push_target(&mut target, p.as_bytes());
                let target = String::from_utf8(target).expect("push_target writes ASCII");
                (a.to_owned(), target)
            }
            Err(kind) => {
                self.scratch = text;
                self.fail_step(v, id as usize, kind);
                self.flow.ws.sessions_failed += 1;
                return self.end_iteration(v, now, false);
            }
        };
        self.scratch = text;
        if path.starts_with('?') {
            path.insert(0, '/');
        }
        if let Some(topics) = step.topics {
            let topic = format!("t{}", vu.index % u64::from(topics.max(1)));
            let at = path.find('?').unwrap_or(path.len());
            path.insert_str(at, &topic);
        }
        let Some(addr) = self.resolve(&authority) else {
            self.fail_step(v, id as usize, "resolve_failed");
            self.flow.ws.sessions_failed += 1;
            return self.end_iteration(v, now, false);
        };
        let vu = &mut self.vus[v as usize];
        let mut extra: Vec<(String, String)> = Vec::new();
        for (name, value) in plan
            .file
            .options
            .headers
            .iter()
            .filter(|(n, _)| !headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
            .chain(headers.iter())
        {
            extra.push((name.clone(), vu.state.render_string(value, &shared)));
        }
        // Subprotocols: the step's own (`--subprotocol`) and any Sec-WebSocket-Protocol
        // header, offered in the request and checked against the answer.
        vu.offered.clear();
        vu.offered.extend(step.protocols.iter().cloned());
        extra.retain(|(name, value)| {
            if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                vu.offered.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
                false
            } else {
                true
            }
        });
        let mut request = match UpgradeRequest::new(&path, &authority, &vu.offered, &extra) {
            Ok(r) => r,
            Err(_) => {
                self.fail_step(v, id as usize, "bad_request");
                self.flow.ws.sessions_failed += 1;
                return self.end_iteration(v, now, false);
            }
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&vu.random().to_le_bytes());
        key[8..].copy_from_slice(&vu.random().to_le_bytes());
        vu.queue.clear();
        vu.queue.extend_from_slice(request.with_key(&key));
        vu.proto = Proto::Handshake(Box::new(HandshakeParser::new(&key)));
        vu.addr = addr;
        vu.step = id;
        vu.ws_step = id;
        vu.wait = Wait::Connect;
        vu.connect_started = now;
        // A new session: the old connection (if any) goes.
        let _ = self.close(v);
        self.set_timer(v, now + self.timeout_ns);
        self.need_connection(v, now)
    }

    /// Sends a ws_send / ws_subscribe body. False when there is no session.
    pub(super) fn ws_send(&mut self, v: u32, id: u32, now: u64) -> Result<bool, EngineError> {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let body = match &plan.steps[id as usize].kind {
            StepKind::WsSend { body, .. } | StepKind::WsSubscribe { body, .. } => body,
            _ => unreachable!(),
        };
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            self.flow.steps[id as usize].error("ws_not_connected");
            return Ok(false);
        }
        let mut payload = std::mem::take(&mut self.scratch2);
        payload.clear();
        vu.state.render(body, &shared, &mut payload);
        let mask = vu.mask();
        ws::encode_text(&payload, mask, &mut vu.queue);
        vu.last_send = now;
        let st = &mut self.flow.steps[id as usize];
        st.count += 1;
        st.msgs_sent += 1;
        self.flow.ws.msgs_sent += 1;
        self.flow.ws.bytes_sent += payload.len() as u64;
        self.scratch2 = payload;
        self.flush(v)?;
        Ok(true)
    }

    pub(super) fn on_ws_data(&mut self, v: u32, now: u64) -> R {
        let data = std::mem::take(&mut self.rx);
        let mut at = 0;
        let mut result = Ok(());
        while at < data.len() {
            let vu = &mut self.vus[v as usize];
            match &mut vu.proto {
                Proto::Handshake(parser) => match parser.feed(&data[at..], &vu.offered) {
                    Ok((used, accepted)) => {
                        at += used;
                        if accepted.is_some() {
                            let limits = self.plan.steps[vu.ws_step as usize].ws_limits();
                            vu.proto = Proto::Ws(Box::new(FrameDecoder::new(limits, true)));
                            if let Err(e) = self.on_handshake(v, now) {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let id = vu.step as usize;
                        self.flow.ws.sessions_failed += 1;
                        self.flow.ws.error(e.kind());
                        self.fail_step(v, id, e.kind());
                        result = self
                            .close(v)
                            .and_then(|()| self.end_iteration(v, now, false));
                        break;
                    }
                },
                Proto::Ws(dec) => {
                    let keep = if vu.keep_messages {
                        MAX_KEPT_MESSAGE
                    } else {
                        PREFIX_LEN
                    };
                    match dec.feed_chunks(&data[at..]) {
                        Ok((used, event)) => {
                            at += used;
                            match event {
                                Some(ChunkEvent::Data(chunk)) => {
                                    if chunk.first {
                                        vu.msg.clear();
                                        vu.msg_len = 0;
                                    }
                                    if vu.msg.len() < keep {
                                        chunk.unmask_into(&mut vu.msg);
                                        vu.msg.truncate(keep);
                                    }
                                    vu.msg_len += chunk.len() as u64;
                                    if chunk.last {
                                        let _ = chunk.opcode == Data::Text;
                                        if let Err(e) = self.on_message(v, now) {
                                            result = Err(e);
                                            break;
                                        }
                                    }
                                }
                                Some(ChunkEvent::Control(ev)) => {
                                    if let Err(e) = self.on_control(v, ev, now) {
                                        result = Err(e);
                                        break;
                                    }
                                }
                                None => {}
                            }
                        }
                        Err(e) => {
                            self.flow.ws.error(e.kind());
                            // Tell the server why (1009 for a frame or message over the
                            // limit) when the connection can still carry it: the close frame
                            // is sent ahead of the connection's close, unless a send is
                            // already in flight.
                            if let Some(code) = e.close_code() {
                                let mask = vu.mask();
                                let _ = ws::encode_close(Some(code), "", mask, &mut vu.queue);
                                if let Err(e) = self.flush(v) {
                                    result = Err(e);
                                    break;
                                }
                            }
                            result = self.session_lost(v, now);
                            break;
                        }
                    }
                }
                _ => break,
            }
            if self.vus[v as usize].link != Link::Ready {
                break;
            }
        }
        let mut data = data;
        data.clear();
        self.rx = data;
        result
    }

    pub(super) fn on_handshake(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        let took = ns_to_us(now.saturating_sub(vu.connect_started));
        let id = vu.ws_step as usize;
        let st = &mut self.flow.steps[id];
        st.count += 1;
        st.duration.saturating_record(took);
        let ws = &mut self.flow.ws;
        ws.sessions += 1;
        ws.handshake.saturating_record(took);
        if vu.dropped_at > 0 {
            ws.episodes.push((vu.dropped_at, now));
            ws.reconnects += 1;
            vu.dropped_at = 0;
        }
        vu.ws_open_at = now;
        vu.listen_step = vu.ws_step;
        // ws_expect times from the last send of this session.
        vu.last_send = 0;
        self.resume(v, now)
    }

    pub(super) fn on_control(&mut self, v: u32, ev: Event, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        match ev {
            Event::Ping(payload) => {
                let mask = vu.mask();
                let _ = ws::encode_pong(payload.as_slice(), mask, &mut vu.queue);
                self.flow.ws.pings_answered += 1;
                self.flush(v)
            }
            Event::Pong(payload) => {
                self.flow.ws.pongs_received += 1;
                if let Ok(b) = <[u8; 8]>::try_from(payload.as_slice()) {
                    let sent = u64::from_le_bytes(b);
                    if sent <= now {
                        self.flow
                            .ws
                            .ping_rtt
                            .saturating_record(ns_to_us(now - sent));
                    }
                }
                Ok(())
            }
            Event::Close { code, .. } => {
                *self
                    .flow
                    .ws
                    .close_codes
                    .entry(code.unwrap_or(1005))
                    .or_insert(0) += 1;
                if vu.wait == Wait::CloseAck {
                    self.account_session_end(v, now, true);
                    self.close(v)?;
                    return self.resume(v, now);
                }
                // Answer the close, then the session is over.
                let mask = vu.mask();
                let _ = ws::encode_close(code.filter(|c| *c != 1005), "", mask, &mut vu.queue);
                self.flush(v)?;
                self.flow.ws.error("closed_by_server");
                self.session_lost(v, now)
            }
            Event::Text { .. } | Event::Binary { .. } => Ok(()),
        }
    }

    pub(super) fn on_message(&mut self, v: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let vu = &mut self.vus[v as usize];
        let ws = &mut self.flow.ws;
        ws.msgs_received += 1;
        ws.bytes_received += vu.msg_len;
        self.flow.steps[vu.listen_step as usize].msgs_received += 1;
        match vu.wait {
            Wait::Builtin(b) => {
                let Some((kind, from, seq, intended)) = parse_prefix(&vu.msg) else {
                    return Ok(());
                };
                match b {
                    Builtin::Echo { .. } if kind == 0 && from == vu.number => {
                        if intended <= now {
                            let us = ns_to_us(now - intended);
                            ws.msg_latency.saturating_record(us);
                            // An echo is the answer to the message: count it like a response
                            // (no status) so progress and the time series show messages.
                            self.metrics.responses += 1;
                            self.metrics.interval_latency.saturating_record(us);
                        }
                        track_seq(&mut vu.seq_expected, seq, ws);
                    }
                    Builtin::Subscribe | Builtin::Publish { .. } if kind == 1 => {
                        if matches!(b, Builtin::Publish { .. }) {
                            return Ok(());
                        }
                        if intended <= now {
                            let us = ns_to_us(now - intended);
                            ws.msg_latency.saturating_record(us);
                            self.metrics.interval_latency.saturating_record(us);
                        }
                        ws.delivered(from, seq, now);
                        match vu.publishers.iter_mut().find(|(p, _)| *p == from) {
                            Some((_, next)) => track_seq(next, seq, ws),
                            // The first message seen from a publisher sets the baseline: a
                            // subscriber that joined late did not lose the earlier ones.
                            None => vu.publishers.push((from, seq + 1)),
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Wait::Message => {
                let id = vu.step as usize;
                let StepKind::WsExpect {
                    contains, captures, ..
                } = &plan.steps[id].kind
                else {
                    return Ok(());
                };
                let mut scratch = std::mem::take(&mut self.scratch2);
                let msg = std::mem::take(&mut vu.msg);
                let matched = runtime::message_matches(
                    contains.as_ref(),
                    &msg,
                    &mut vu.state,
                    &shared,
                    &mut scratch,
                );
                if matched {
                    for c in captures {
                        runtime::capture(c, &[], &msg, &mut vu.state, &shared);
                    }
                }
                vu.msg = msg;
                self.scratch2 = scratch;
                if !matched {
                    return Ok(());
                }
                let from = if vu.last_send > 0 {
                    vu.last_send
                } else {
                    vu.expect_start
                };
                let us = ns_to_us(now.saturating_sub(from));
                let st = &mut self.flow.steps[id];
                st.count += 1;
                st.duration.saturating_record(us);
                self.flow.ws.msg_latency.saturating_record(us);
                self.resume(v, now)
            }
            _ => Ok(()),
        }
    }

    /// Records the end of a WebSocket session (if one is open).
    pub(super) fn account_session_end(&mut self, v: u32, now: u64, _clean: bool) {
        let vu = &mut self.vus[v as usize];
        if vu.ws_open_at > 0 {
            self.flow
                .ws
                .session_duration
                .saturating_record(ns_to_us(now.saturating_sub(vu.ws_open_at)));
            vu.ws_open_at = 0;
            if let Wait::Builtin(Builtin::Echo { .. }) = vu.wait {
                self.flow.ws.unanswered += vu.seq_sent.saturating_sub(vu.seq_expected);
            }
        }
    }

    /// The server closed the session or it failed: end the iteration as failed (the ws://
    /// modes then reconnect after their backoff).
    pub(super) fn session_lost(&mut self, v: u32, now: u64) -> R {
        self.account_session_end(v, now, false);
        let vu = &mut self.vus[v as usize];
        vu.dropped_at = now;
        self.close(v)?;
        let vu = &mut self.vus[v as usize];
        match vu.wait {
            Wait::Builtin(_) | Wait::Message | Wait::Listen | Wait::Handshake => {
                if vu.wait == Wait::Message {
                    let id = vu.step as usize;
                    self.flow.steps[id].error("ws_closed");
                }
                self.end_iteration(v, now, false)
            }
            _ => Ok(()),
        }
    }

    pub(super) fn builtin_start(&mut self, v: u32, b: Builtin, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            return self.end_iteration(v, now, false);
        }
        vu.wait = Wait::Builtin(b);
        vu.seq_sent = 0;
        vu.seq_expected = 0;
        vu.publishers.clear();
        match b {
            Builtin::Hold {
                ping_every: Some(every),
            } => {
                let first = now + (every.as_nanos() as f64 * vu.unit()) as u64;
                self.set_timer(v, first);
            }
            Builtin::Echo { rate, .. } | Builtin::Publish { rate, .. } => {
                // Spread the first send over one period so sessions opened together do not
                // send in lockstep.
                vu.next_send = now + (1e9 / rate * vu.unit()) as u64;
                let at = vu.next_send;
                self.set_timer(v, at);
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn builtin_tick(&mut self, v: u32, b: Builtin, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            return Ok(());
        }
        match b {
            Builtin::Hold {
                ping_every: Some(every),
            } => {
                let mask = vu.mask();
                let _ = ws::encode_ping(&now.to_le_bytes(), mask, &mut vu.queue);
                self.flow.ws.pings_sent += 1;
                self.flush(v)?;
                self.set_timer(v, now + every.as_nanos() as u64);
            }
            Builtin::Echo { rate, payload } | Builtin::Publish { rate, payload } => {
                let kind = u8::from(matches!(b, Builtin::Publish { .. }));
                let period = 1e9 / rate;
                let mut body = std::mem::take(&mut self.scratch2);
                let mut n = 0;
                while vu.next_send <= now && n < CATCH_UP {
                    let intended = vu.next_send;
                    if now - intended > self.late_after_ns {
                        self.flow.ws.late += 1;
                    }
                    body.clear();
                    body.extend_from_slice(MAGIC);
                    body.extend_from_slice(&[kind, 0, 0, 0]);
                    body.extend_from_slice(&vu.number.to_le_bytes());
                    body.extend_from_slice(&vu.seq_sent.to_le_bytes());
                    body.extend_from_slice(&intended.to_le_bytes());
                    body.resize((payload as usize).max(PREFIX_LEN), 0);
                    let mask = vu.mask();
                    ws::encode_binary(&body, mask, &mut vu.queue);
                    vu.seq_sent += 1;
                    self.flow.ws.msgs_sent += 1;
                    self.flow.ws.bytes_sent += body.len() as u64;
                    if kind == 0 {
                        self.metrics.requests += 1;
                    }
                    vu.next_send = intended + period as u64;
                    n += 1;
                }
                self.scratch2 = body;
                let next = self.vus[v as usize].next_send;
                self.flush(v)?;
                self.set_timer(v, next.max(now + 1));
            }
            _ => {}
        }
        Ok(())
    }

    // ----- connections -------------------------------------------------------------------
}

/// Reads the ws:// modes' 32-byte prefix: (kind, sender VU, sequence, intended send ns).
pub(super) fn parse_prefix(msg: &[u8]) -> Option<(u8, u64, u64, u64)> {
    if msg.len() < PREFIX_LEN || &msg[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
    Some((msg[4], word(8), word(16), word(24)))
}

/// Advances an expected sequence number with `seq`, counting gaps and repeats.
pub(super) fn track_seq(expected: &mut u64, seq: u64, ws: &mut crate::metrics::flow::WsStats) {
    use std::cmp::Ordering as O;
    match seq.cmp(expected) {
        O::Equal => *expected += 1,
        O::Greater => {
            ws.lost += seq - *expected;
            *expected = seq + 1;
        }
        O::Less => ws.duplicates += 1,
    }
}
