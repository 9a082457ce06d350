//! Connections: address resolution, the socket+connect chain, sends from the VU's buffer,
//! the multishot receive, closing, completions, and the bounded shutdown.

use super::*;

impl VuWorker {
    pub(super) fn resolve(&mut self, authority: &str) -> Option<u32> {
        if let Some(&id) = self.addr_ids.get(authority) {
            return Some(id);
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(']') && h.contains(':') || p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr: SocketAddr = with_port.to_socket_addrs().ok()?.next()?;
        let id = self.addrs.len() as u32;
        self.addrs.push(Box::new(SockAddr::from(addr)));
        self.addr_ids.insert(authority.to_owned(), id);
        Some(id)
    }

    /// The VU's queued bytes need its connection (to `vu.addr`): connect when the slot is
    /// free, else close the old connection first (the release connects).
    pub(super) fn need_connection(&mut self, v: u32, now: u64) -> R {
        let vu = &self.vus[v as usize];
        match vu.link {
            Link::Free => {
                self.to_connect.push_back((v, vu.generation));
                let _ = now;
                Ok(())
            }
            Link::Ready | Link::Connecting => self.close(v),
            Link::Closing => Ok(()),
        }
    }

    pub(super) fn connect_due(&mut self, now: u64) -> R {
        let mut n = 0;
        while n < CONNECTS_PER_LOOP && self.connecting < self.max_connecting {
            let Some((v, generation)) = self.to_connect.pop_front() else {
                break;
            };
            let vu = &self.vus[v as usize];
            if vu.generation != generation || vu.link != Link::Free || vu.wait != Wait::Connect {
                continue;
            }
            self.start_connect(v, now)?;
            n += 1;
        }
        Ok(())
    }

    pub(super) fn start_connect(&mut self, v: u32, now: u64) -> R {
        // Every chain posts exactly one connect completion (ECANCELED when the socket
        // failed), which ends this count.
        self.connecting += 1;
        let vu = &mut self.vus[v as usize];
        vu.generation = vu.generation.wrapping_add(1) & GENERATION_MASK;
        vu.link = Link::Connecting;
        vu.sending = false;
        vu.send_done = 0;
        vu.recv_armed = false;
        if !matches!(vu.proto, Proto::Handshake(_)) {
            vu.connect_started = now;
        }
        if let Proto::Http(p) = &mut vu.proto {
            p.reset();
        }
        let target = &self.addrs[vu.addr as usize];
        // Spread over every VU of the run: worker i's VU v is the run's VU v*threads+i.
        let source = (!self.sources.is_empty())
            .then(|| &self.sources[(v as usize * self.threads + self.index) % self.sources.len()]);
        // SAFETY: the target address is boxed in `addrs`, which only grows, and the source
        // address lives in `sources`, which is never resized; both are kept (leaked if
        // needed) until every operation completed (see `shutdown`).
        vu.ops += u16::from(unsafe { self.io.push_connect(v, vu.generation, target, source) }?);
        Ok(())
    }

    /// Sends what is queued, unless a send is in flight (its completion sends the rest).
    pub(super) fn flush(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        if vu.sending || vu.link != Link::Ready || vu.queue.is_empty() {
            return Ok(());
        }
        std::mem::swap(&mut vu.send_buf, &mut vu.queue);
        vu.queue.clear();
        vu.send_done = 0;
        self.push_send(v)
    }

    pub(super) fn push_send(&mut self, v: u32) -> R {
        let (ring, fd) = self.io.ring_of(v);
        let vu = &mut self.vus[v as usize];
        let rest = &vu.send_buf[vu.send_done as usize..];
        let entry = opcode::Send::new(types::Fixed(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(Token::new(v, vu.generation, op::SEND).encode());
        vu.sending = true;
        vu.ops += 1;
        // SAFETY: `send_buf` is not touched while `sending` is set (new bytes go to `queue`),
        // and the VU (with its buffer) lives until every operation completed.
        unsafe { self.io.rings[ring].push(&entry) }.map_err(EngineError::Io)
    }

    pub(super) fn arm_recv(&mut self, v: u32) -> R {
        let (ring, fd) = self.io.ring_of(v);
        let vu = &mut self.vus[v as usize];
        let entry = opcode::RecvMulti::new(types::Fixed(fd), BGID)
            .build()
            .user_data(Token::new(v, vu.generation, op::RECV).encode());
        vu.recv_armed = true;
        vu.ops += 1;
        // SAFETY: the receive writes only into the registered buffer ring, which outlives it.
        unsafe { self.io.rings[ring].push(&entry) }.map_err(EngineError::Io)
    }

    /// Starts closing the VU's connection (cancel its receive or connect, close the slot).
    pub(super) fn close(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        let target_op = match vu.link {
            Link::Closing | Link::Free => return Ok(()),
            Link::Connecting => Some(op::CONNECT),
            Link::Ready => vu.recv_armed.then_some(op::RECV),
        };
        if vu.link == Link::Ready {
            self.open_now -= 1;
        }
        vu.link = Link::Closing;
        // The queue is kept: it may already hold the bytes for the VU's next connection (a
        // ws_connect or a request to another host closes the old connection after queueing
        // its Upgrade or request). Every step that starts a connection clears it first.
        let tok = |op| Token::new(v, vu.generation, op).encode();
        let cancel = target_op.map(|t| (tok(t), tok(op::CANCEL)));
        let (ring, fd) = self.io.ring_of(v);
        vu.ops += u16::from(
            self.io.rings[ring]
                .close_slot(fd, cancel, tok(op::CLOSE))
                .map_err(EngineError::Io)?,
        );
        Ok(())
    }

    /// A closing slot whose operations all completed is free; a VU waiting for a connection
    /// gets it now.
    pub(super) fn maybe_release(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if vu.link != Link::Closing || vu.ops != 0 {
            return Ok(());
        }
        vu.link = Link::Free;
        vu.sending = false;
        if vu.wait == Wait::Connect {
            return self.need_connection(v, now);
        }
        Ok(())
    }

    pub(super) fn handle_completions(&mut self, now: u64) -> R {
        let mut overflows = 0;
        for r in 0..self.io.rings.len() {
            overflows += u64::from(self.io.rings[r].reap(&mut self.cqes));
            for i in 0..self.cqes.len() {
                let (user_data, res, flags) = self.cqes[i];
                let tok = Token::decode(user_data);
                match tok.op {
                    op::RECV => self.on_recv(r, tok, res, flags, now)?,
                    op::WAKE => self.io.on_wake(res, flags)?,
                    _ => self.on_completion(tok, res, now)?,
                }
            }
            self.io.bufs[r].commit();
        }
        self.metrics.cq_overflows = overflows;
        Ok(())
    }

    /// A receive completion on ring `r` (whose buffer ring holds its data).
    pub(super) fn on_recv(&mut self, r: usize, tok: Token, res: i32, flags: u32, now: u64) -> R {
        let v = tok.slot;
        let finished = !cqueue::more(flags);
        let current = self.vus[v as usize].generation == tok.generation;
        let mut got = false;
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && current && self.vus[v as usize].link == Link::Ready {
                self.metrics.bytes_received += res as u64;
                self.rx.clear();
                self.rx
                    .extend_from_slice(self.io.bufs[r].get(bid, res as usize));
                got = true;
            }
            self.io.bufs[r].recycle(bid);
        }
        let vu = &mut self.vus[v as usize];
        if finished {
            vu.ops -= 1;
            vu.recv_armed = false;
        }
        if !current {
            return self.maybe_release(v, now);
        }
        if got {
            match vu.proto {
                Proto::Http(_) => self.on_http_data(v, now)?,
                Proto::Handshake(_) | Proto::Ws(_) => self.on_ws_data(v, now)?,
                Proto::None => {}
            }
        }
        let vu = &mut self.vus[v as usize];
        if vu.link != Link::Ready {
            return self.maybe_release(v, now);
        }
        if res == 0 {
            self.metrics.closed_by_peer += 1;
            return self.peer_closed(v, now, None);
        }
        if res < 0 {
            let errno = -res;
            if errno == libc::ENOBUFS {
                self.metrics.recv_buffer_exhausted += 1;
                return self.arm_recv(v);
            }
            let kind = if errno == libc::ECONNRESET {
                ErrorKind::Reset
            } else {
                ErrorKind::RecvFailed
            };
            return self.peer_closed(v, now, Some(kind));
        }
        if finished {
            self.arm_recv(v)?;
        }
        Ok(())
    }

    /// The connection ended under the VU (EOF or error).
    pub(super) fn peer_closed(&mut self, v: u32, now: u64, err: Option<ErrorKind>) -> R {
        let vu = &mut self.vus[v as usize];
        match (&vu.proto, vu.wait) {
            (Proto::Http(_), Wait::Response) => {
                let kind = err.unwrap_or(ErrorKind::ClosedMidResponse);
                self.metrics.record_error(kind);
                let step = vu.step as usize;
                self.fail_step(v, step, kind.as_str());
                self.close(v)?;
                self.resume(v, now)
            }
            (Proto::Ws(_), Wait::CloseAck) => {
                self.account_session_end(v, now, true);
                self.close(v)?;
                self.resume(v, now)
            }
            (Proto::Ws(_) | Proto::Handshake(_), _) => {
                if matches!(vu.proto, Proto::Handshake(_)) && vu.wait == Wait::Handshake {
                    let id = vu.step as usize;
                    self.flow.ws.sessions_failed += 1;
                    self.flow.ws.error("closed_during_handshake");
                    self.fail_step(v, id, "closed_during_handshake");
                    self.close(v)?;
                    return self.end_iteration(v, now, false);
                }
                let mid_frame = matches!(&vu.proto, Proto::Ws(dec) if dec.in_progress());
                self.flow.ws.error(match (err, mid_frame) {
                    (Some(_), _) => "reset",
                    (None, true) => "closed_mid_frame",
                    (None, false) => "eof",
                });
                self.session_lost(v, now)
            }
            _ => self.close(v),
        }
    }

    pub(super) fn on_completion(&mut self, tok: Token, res: i32, now: u64) -> R {
        let v = tok.slot;
        if tok.op == op::CONNECT {
            self.connecting -= 1;
        }
        let vu = &mut self.vus[v as usize];
        if vu.generation != tok.generation {
            return Ok(());
        }
        vu.ops -= 1;
        match tok.op {
            op::SOCKET | op::SOCKOPT | op::BIND => {
                if res < 0 && res != -libc::ECANCELED && vu.link == Link::Connecting {
                    return self.connect_failed(v, -res, now);
                }
                self.maybe_release(v, now)
            }
            op::CONNECT => {
                if vu.link != Link::Connecting {
                    return self.maybe_release(v, now);
                }
                if res < 0 {
                    return self.connect_failed(v, -res, now);
                }
                vu.link = Link::Ready;
                self.open_now += 1;
                self.metrics.conns_opened += 1;
                self.metrics
                    .connect_latency
                    .saturating_record(ns_to_us(now.saturating_sub(vu.connect_started)));
                self.arm_recv(v)?;
                let vu = &mut self.vus[v as usize];
                match (&vu.proto, vu.wait) {
                    (Proto::Http(_), Wait::Connect) => self.send_request(v, now),
                    (Proto::Handshake(_), Wait::Connect) => {
                        vu.wait = Wait::Handshake;
                        self.flush(v)
                    }
                    _ => self.flush(v),
                }
            }
            op::CANCEL | op::CLOSE => self.maybe_release(v, now),
            op::SEND => {
                vu.sending = false;
                if vu.link != Link::Ready {
                    return self.maybe_release(v, now);
                }
                if res < 0 {
                    let kind = if res == -libc::ECONNRESET || res == -libc::EPIPE {
                        ErrorKind::Reset
                    } else {
                        ErrorKind::SendFailed
                    };
                    return self.peer_closed(v, now, Some(kind));
                }
                self.metrics.bytes_sent += res as u64;
                vu.send_done += res as u32;
                if (vu.send_done as usize) < vu.send_buf.len() {
                    return self.push_send(v);
                }
                self.flush(v)
            }
            _ => unreachable!("unknown op {} in a completion token", tok.op),
        }
    }

    pub(super) fn connect_failed(&mut self, v: u32, errno: i32, now: u64) -> R {
        self.metrics.conns_failed += 1;
        let kind = if errno == libc::ECONNREFUSED {
            ErrorKind::ConnectRefused
        } else {
            ErrorKind::ConnectFailed
        };
        self.metrics.record_error(kind);
        self.close(v)?;
        let vu = &mut self.vus[v as usize];
        let id = vu.step as usize;
        let is_ws = matches!(vu.proto, Proto::Handshake(_));
        vu.proto = Proto::None;
        self.fail_step(v, id, kind.as_str());
        if is_ws {
            self.flow.ws.sessions_failed += 1;
            self.flow.ws.error(kind.as_str());
            self.maybe_release(v, now)?;
            return self.end_iteration(v, now, false);
        }
        self.maybe_release(v, now)?;
        self.resume(v, now)
    }

    /// Closes every connection and waits (bounded) until the kernel finished every operation,
    /// so no buffer is freed while the kernel may still use it.
    pub(super) fn shutdown(&mut self) {
        let now = self.clock.now_ns();
        for v in 0..self.vus.len() as u32 {
            let vu = &self.vus[v as usize];
            if vu.iterating || vu.link == Link::Ready {
                self.stop_vu(v, now);
            } else {
                self.account_session_end(v, now, false);
                if self.close(v).is_err() {
                    break;
                }
            }
        }
        let deadline = self.clock.now_ns() + 2_000_000_000 + 100_000 * self.vus.len() as u64;
        while self.vus.iter().any(|c| c.ops > 0) && self.clock.now_ns() < deadline {
            if self.io.wait(Duration::from_millis(10)).is_err() {
                break;
            }
            let now = self.clock.now_ns();
            if self.handle_completions(now).is_err() {
                break;
            }
        }
        let pending = self.vus.iter().filter(|c| c.ops > 0).count() as u64;
        if pending > 0 {
            // The kernel may still read send buffers or addresses: leak them.
            self.metrics.closing_at_exit = pending;
            std::mem::forget(std::mem::take(&mut self.vus));
            std::mem::forget(std::mem::take(&mut self.addrs));
            std::mem::forget(std::mem::take(&mut self.sources));
        }
        self.io.unregister_bufs();
    }
}

/// Splits `http://authority/path?q` (or `ws://` when `ws`) into authority and path.
pub(crate) fn split_url(url: &[u8], ws: bool) -> Result<(&str, &str), &'static str> {
    let url = std::str::from_utf8(url).map_err(|_| "bad_url")?;
    let (scheme, rest) = url.split_once("://").ok_or("bad_url")?;
    let ok = if ws {
        scheme.eq_ignore_ascii_case("ws")
    } else {
        scheme.eq_ignore_ascii_case("http")
    };
    if !ok {
        return Err(
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
                "tls_not_supported"
            } else {
                "bad_url"
            },
        );
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err("bad_url");
    }
    Ok((authority, if path.is_empty() { "/" } else { path }))
}
