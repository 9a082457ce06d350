//! `uring-floor`: the least an io_uring load client can do, as a yardstick for blaster's
//! performance goals. Not a product: it measures nothing about the target (no timing, no
//! histograms, no response parsing beyond counting bytes) and stops at the first error.
//!
//! Two modes, both on one thread and one ring, with the same ring features as blaster's
//! engine (SINGLE_ISSUER | DEFER_TASKRUN, direct descriptors, multishot receive into a
//! provided buffer ring, the request sent from one stable buffer):
//!
//! - `http URL -c N -d SECS [--skip-send-cqe]`: N keep-alive connections, closed loop, one
//!   request in flight each. A response is counted when the bytes received on its connection
//!   reach the length of the first response (taken once, before the run, over a plain
//!   socket), so it only suits targets whose every response has the same length (nginx
//!   `return 200 "ok"`, `blaster serve /`). `--skip-send-cqe` asks the kernel not to post a
//!   completion for sends that succeed (IOSQE_CQE_SKIP_SUCCESS).
//! - `connect HOST:PORT[-PORT] -n N [--source LIST] [--max-connecting K] [--hold SECS]`:
//!   opens N connections (spread over the ports of a range) as fast as possible, at most K at a time, with the same linked chain as
//!   blaster (socket into a direct slot, then IP_BIND_ADDRESS_NO_PORT + bind when sources are
//!   given, then connect; successes of all but the connect post no completion; then a
//!   multishot receive per connection, as a holding client needs to see a close), prints, then
//!   holds them SECS seconds (default 0) before exiting. Past one ring's file table (19,000
//!   here) it fills further rings one after another.
//!
//! Prints one line of `key=value` pairs: what was done, the wall time and the process's CPU
//! time (user + system, getrusage), which is what the benchmark scripts divide.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blaster::engine::ring::{BufRing, Ring, RingConfig, Token, raise_nofile_limit};
use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

const OP_CONNECT: u8 = 1;
const OP_RECV: u8 = 2;
const OP_SEND: u8 = 3;
const OP_SETUP: u8 = 4;
const BGID: u16 = 0;
const IORING_CQE_F_BUFFER: u32 = 1;
const IORING_CQE_F_MORE: u32 = 2;
static ONE: libc::c_int = 1;
/// Direct descriptors per ring in connect mode: under the 20,000 RLIMIT_NOFILE here, with
/// room for the process's ordinary descriptors.
const RING_SLOTS: usize = 19_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: uring-floor http URL -c N -d SECS [--skip-send-cqe]\n       \
                 uring-floor connect HOST:PORT[-PORT] -n N [--source LIST] [--max-connecting K] [--hold SECS]";
    let Some(mode) = args.first() else {
        bail!("{usage}");
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let number = |name: &str, default: u64| -> Result<u64> {
        value(name).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("{name} takes a number, got {v:?}"))
        })
    };
    raise_nofile_limit();
    match mode.as_str() {
        "http" => {
            let url = args.get(1).context(usage)?;
            http(
                url,
                number("-c", 100)? as usize,
                Duration::from_secs(number("-d", 10)?),
                flag("--skip-send-cqe"),
            )
        }
        "connect" => {
            let addr = args.get(1).context(usage)?;
            let sources = match value("--source") {
                Some(list) => blaster::cli::parse_sources(list)?,
                None => Vec::new(),
            };
            connect(
                addr,
                number("-n", 10_000)? as usize,
                &sources,
                number("--max-connecting", 1024)? as usize,
                Duration::from_secs(number("--hold", 0)?),
            )
        }
        _ => bail!("{usage}"),
    }
}

/// One loopback address from `host:port` (the benchmarks never aim elsewhere).
fn loopback(addr: &str) -> Result<SocketAddr> {
    let sa = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    if !sa.ip().is_loopback() {
        bail!("{addr}: uring-floor only sends to loopback addresses");
    }
    Ok(sa)
}

/// The process's CPU time so far (user + system), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The length of the target's response to `request`, read once over a plain socket.
fn response_len(addr: SocketAddr, request: &[u8]) -> Result<usize> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("is a target on {addr}?"))?;
    s.write_all(request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("{addr} closed the connection before answering");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&buf)? {
            let body: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .context("the response has no Content-Length")
                .and_then(|h| Ok(std::str::from_utf8(h.value)?.trim().parse()?))?;
            if buf.len() >= head + body {
                return Ok(head + body);
            }
        }
    }
}

fn http(url: &str, conns: usize, duration: Duration, skip_send_cqe: bool) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = loopback(authority)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes();
    let expect = response_len(addr, &request)? as u32;
    let target = SockAddr::from(addr);

    let mut ring = Ring::new(RingConfig::for_connections(conns))?;
    let entries = (conns * 2).next_power_of_two().clamp(256, 32768) as u16;
    let mut bufs = ring.register_buf_ring(BGID, entries, 4096)?;
    let mut received = vec![0u32; conns];
    let send_flags = if skip_send_cqe {
        squeue::Flags::SKIP_SUCCESS
    } else {
        squeue::Flags::empty()
    };
    let push_send = |ring: &mut Ring, slot: u32| -> Result<()> {
        let e = opcode::Send::new(types::Fixed(slot), request.as_ptr(), request.len() as u32)
            .build()
            .flags(send_flags)
            .user_data(Token::new(slot, 0, OP_SEND).encode());
        // SAFETY: `request` lives until the process exits.
        unsafe { ring.push(&e) }?;
        Ok(())
    };
    let push_recv = |ring: &mut Ring, slot: u32| -> Result<()> {
        let e = opcode::RecvMulti::new(types::Fixed(slot), BGID)
            .build()
            .user_data(Token::new(slot, 0, OP_RECV).encode());
        // SAFETY: the receive writes only into the registered buffer ring, which outlives it.
        unsafe { ring.push(&e) }?;
        Ok(())
    };
    for slot in 0..conns as u32 {
        // SAFETY: `target` lives until the process exits.
        unsafe { ring.push_chain(&connect_chain(slot, &target, None)) }?;
    }

    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut responses = 0u64;
    let mut cqes = Vec::new();
    while start.elapsed() < duration {
        ring.submit_and_wait(Some(Duration::from_millis(100)))?;
        ring.reap(&mut cqes);
        for &(user_data, res, flags) in &cqes {
            let tok = Token::decode(user_data);
            let slot = tok.slot;
            match tok.op {
                OP_CONNECT if res < 0 => bail!("connect to {addr}: {}", errno(res)),
                OP_CONNECT => {
                    push_recv(&mut ring, slot)?;
                    push_send(&mut ring, slot)?;
                }
                OP_RECV if res == -libc::ENOBUFS => push_recv(&mut ring, slot)?,
                OP_RECV if res < 0 => bail!("receive: {}", errno(res)),
                OP_RECV if res == 0 => bail!("{addr} closed a connection"),
                OP_RECV => {
                    if flags & IORING_CQE_F_BUFFER != 0 {
                        bufs.recycle((flags >> 16) as u16);
                    }
                    let got = &mut received[slot as usize];
                    *got += res as u32;
                    while *got >= expect {
                        *got -= expect;
                        responses += 1;
                        push_send(&mut ring, slot)?;
                    }
                    if flags & IORING_CQE_F_MORE == 0 {
                        push_recv(&mut ring, slot)?;
                    }
                }
                OP_SEND if res != request.len() as i32 => {
                    bail!("send: {} (of {} bytes)", errno(res), request.len())
                }
                OP_SEND => {}
                _ if res < 0 => bail!("connection setup: {}", errno(res)),
                _ => {}
            }
        }
        bufs.commit();
    }
    let cpu = cpu_seconds() - cpu0;
    let secs = start.elapsed().as_secs_f64();
    ring.unregister_buf_ring(&bufs);
    println!(
        "mode=http conns={conns} responses={responses} secs={secs:.3} cpu_s={cpu:.3} \
         us_per_response={:.3} skip_send_cqe={skip_send_cqe}",
        cpu * 1e6 / responses.max(1) as f64
    );
    Ok(())
}

/// Socket into direct slot `slot`, optionally IP_BIND_ADDRESS_NO_PORT + bind to `source`,
/// then connect: the chain blaster's engine submits, with completions only for failures and
/// for the connect.
fn connect_chain(slot: u32, target: &SockAddr, source: Option<&SockAddr>) -> Vec<squeue::Entry> {
    let fixed = types::Fixed(slot);
    let setup = |e: squeue::Entry| {
        e.flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::new(slot, 0, OP_SETUP).encode())
    };
    let domain = if target.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let dest = types::DestinationSlot::try_from_slot_target(slot).expect("slot in range");
    let mut chain = vec![setup(
        opcode::Socket::new(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
            .file_index(Some(dest))
            .build(),
    )];
    if let Some(source) = source {
        chain.push(setup(
            opcode::SetSockOpt::new(
                fixed,
                libc::IPPROTO_IP as u32,
                libc::IP_BIND_ADDRESS_NO_PORT as u32,
                (&raw const ONE).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build(),
        ));
        chain.push(setup(
            opcode::Bind::new(fixed, source.as_ptr().cast(), source.len()).build(),
        ));
    }
    chain.push(
        opcode::Connect::new(fixed, target.as_ptr().cast(), target.len())
            .build()
            .user_data(Token::new(slot, 0, OP_CONNECT).encode()),
    );
    chain
}

fn connect(
    addr: &str,
    n: usize,
    sources: &[IpAddr],
    max_connecting: usize,
    hold: Duration,
) -> Result<()> {
    let targets = port_range(addr)?;
    let sources: Vec<SockAddr> = sources
        .iter()
        .map(|&ip| SockAddr::from(SocketAddr::new(ip, 0)))
        .collect();
    // One ring's file table holds at most RLIMIT_NOFILE slots: beyond that, further rings,
    // filled one after another (each drained before the next starts, a bubble of at most
    // `max_connecting` connects per switch).
    let per_ring = n.min(RING_SLOTS);
    let mut rings = Vec::new();
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let (mut started, mut opened) = (0usize, 0usize);
    let mut cqes = Vec::new();
    // A held connection keeps a multishot receive armed (to see the peer close), as
    // blaster's hold mode does; a small buffer ring per ring serves them.
    let new_ring = || -> Result<(Ring, BufRing)> {
        let ring = Ring::new(RingConfig::for_held_connections(per_ring))?;
        let bufs = ring.register_buf_ring(BGID, 16, 4096)?;
        Ok((ring, bufs))
    };
    rings.push(new_ring()?);
    while opened < n {
        let mut ring_end = (rings.len() * per_ring).min(n);
        if started == ring_end && opened == started {
            rings.push(new_ring()?);
            ring_end = (rings.len() * per_ring).min(n);
        }
        let (ring, _) = rings.last_mut().expect("a ring");
        // Connects in flight are all on the last ring: earlier rings were drained.
        while started < ring_end && started - opened < max_connecting.max(1) {
            let source = (!sources.is_empty()).then(|| &sources[started % sources.len()]);
            let slot = (started % per_ring) as u32;
            let target = &targets[started % targets.len()];
            // SAFETY: `targets` and `sources` live until the process exits, and the option
            // value is a static.
            unsafe { ring.push_chain(&connect_chain(slot, target, source)) }?;
            started += 1;
        }
        ring.submit_and_wait(Some(Duration::from_secs(1)))?;
        ring.reap(&mut cqes);
        for &(user_data, res, _) in &cqes {
            let tok = Token::decode(user_data);
            match tok.op {
                OP_CONNECT if res < 0 => bail!("connect to {addr}: {}", errno(res)),
                OP_CONNECT => {
                    opened += 1;
                    let e = opcode::RecvMulti::new(types::Fixed(tok.slot), BGID)
                        .build()
                        .user_data(Token::new(tok.slot, 0, OP_RECV).encode());
                    // SAFETY: the receive writes only into the ring's registered buffer
                    // ring, which lives as long as the ring.
                    unsafe { ring.push(&e) }?;
                }
                OP_RECV => bail!("a held connection received or closed ({res})"),
                _ if res < 0 => bail!("connection setup: {}", errno(res)),
                _ => {}
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("gave up after 120 s with {opened} of {n} connections open");
        }
    }
    let cpu = cpu_seconds() - cpu0;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "mode=connect opened={opened} targets={} sources={} rings={} secs={secs:.3} cpu_s={cpu:.3} \
         us_per_connect={:.3} connects_per_s={:.0}",
        targets.len(),
        sources.len(),
        rings.len(),
        cpu * 1e6 / opened.max(1) as f64,
        opened as f64 / secs
    );
    std::thread::sleep(hold);
    Ok(())
}

/// `HOST:PORT` or `HOST:FIRST-LAST`: one loopback address per port.
fn port_range(addr: &str) -> Result<Vec<SockAddr>> {
    let (host, ports) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr}: want HOST:PORT or HOST:FIRST-LAST"))?;
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let bad = || format!("{addr}: bad port or port range");
    let (first, last): (u16, u16) = (
        first.parse().with_context(bad)?,
        last.parse().with_context(bad)?,
    );
    if first > last {
        bail!("{}", bad());
    }
    (first..=last)
        .map(|p| loopback(&format!("{host}:{p}")).map(SockAddr::from))
        .collect()
}

fn errno(res: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-res)
}
