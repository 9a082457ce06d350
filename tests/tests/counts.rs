//! Counting: every request blaster sends is accounted for exactly once, per status code, in
//! bytes, with pipelining and several threads; and what goes on the wire is the request the
//! user asked for.

use blaster_tests::{
    Fixture, Mode, assert_all_ok, assert_invariant, header, run_json, split_requests, start_serve,
    status_count, u,
};

fn url(addr: std::net::SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn exact_request_count_all_ok() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&["run", &url(addr, "/"), "-n", "2000", "-c", "20", "-t", "1"]);
    assert_all_ok(&r, 2000);
    assert_eq!(r["model"], "closed", "{r:#}");
    assert!(u(&r, &["connections", "opened"]) >= 20, "{r:#}");
    assert!(u(&r, &["bytes", "sent"]) >= 2000 * 16, "{r:#}");
}

#[test]
fn non_200_status_is_counted_under_its_code() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &url(addr, "/status/503"),
        "-n",
        "300",
        "-c",
        "5",
        "-t",
        "1",
    ]);
    assert_eq!(u(&r, &["requests"]), 300, "{r:#}");
    assert_eq!(u(&r, &["responses"]), 300, "{r:#}");
    assert_eq!(status_count(&r, "503"), 300, "{r:#}");
    assert_eq!(status_count(&r, "200"), 0, "{r:#}");
    // A 503 is a response, not a transport error.
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    assert_invariant(&r);
}

fn chunked(path: &str) {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&["run", &url(addr, path), "-n", "500", "-c", "10", "-t", "1"]);
    assert_all_ok(&r, 500);
    assert!(
        u(&r, &["bytes", "received"]) >= 500 * 5000,
        "chunked bodies not fully received:\n{r:#}"
    );
}

#[test]
fn chunked_body_is_read_to_the_end() {
    chunked("/chunked/5000");
}

#[test]
fn chunked_body_with_trailer_is_read_to_the_end() {
    chunked("/chunked/5000?trailer=1");
}

#[test]
fn large_content_length_body_is_read_to_the_end() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &url(addr, "/bytes/100000"),
        "-n",
        "200",
        "-c",
        "4",
        "-t",
        "1",
    ]);
    assert_all_ok(&r, 200);
    assert!(u(&r, &["bytes", "received"]) >= 200 * 100_000, "{r:#}");
    // Keep-alive over full bodies: no connection had to be reopened.
    assert_eq!(u(&r, &["connections", "opened"]), 4, "{r:#}");
}

#[test]
fn head_response_has_no_body() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &url(addr, "/bytes/1000"),
        "-m",
        "HEAD",
        "-n",
        "500",
        "-c",
        "5",
        "-t",
        "1",
        "--timeout",
        "5s",
    ]);
    // If blaster waited for the 1000 body bytes Content-Length announces, these would time
    // out instead.
    assert_all_ok(&r, 500);
    let per_response = u(&r, &["bytes", "received"]) / 500;
    assert!(
        per_response < 500,
        "HEAD responses carry no body, got {per_response} bytes per response:\n{r:#}"
    );
}

#[test]
fn pipelined_requests_are_all_counted() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &url(addr, "/"),
        "-n",
        "2000",
        "-c",
        "4",
        "-t",
        "1",
        "--pipeline",
        "4",
    ]);
    assert_all_ok(&r, 2000);
    assert_eq!(r["pipeline"], 4, "{r:#}");
}

#[test]
fn two_threads_count_exactly() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&["run", &url(addr, "/"), "-n", "2000", "-c", "20", "-t", "2"]);
    assert_all_ok(&r, 2000);
    assert_eq!(u(&r, &["threads"]), 2, "{r:#}");
}

#[test]
fn post_sends_method_path_host_headers_and_body() {
    let fx = Fixture::start(Mode::Ok);
    let body = "hello=blaster&x=1";
    let r = run_json(&[
        "run",
        &fx.url("/submit/form?q=1"),
        "-m",
        "POST",
        "--body",
        body,
        "-H",
        "X-Test: yes",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "-n",
        "3",
        "-c",
        "1",
        "-t",
        "1",
    ]);
    assert_all_ok(&r, 3);

    let received = fx.received();
    let requests = split_requests(&received);
    assert_eq!(
        requests.len(),
        3,
        "expected 3 complete requests, got:\n{}",
        String::from_utf8_lossy(&received)
    );
    let host = format!("127.0.0.1:{}", fx.addr().port());
    for (head, got_body) in &requests {
        let request_line = head.split("\r\n").next().unwrap();
        assert_eq!(
            request_line, "POST /submit/form?q=1 HTTP/1.1",
            "head:\n{head}"
        );
        assert_eq!(header(head, "host"), Some(host.as_str()), "head:\n{head}");
        assert_eq!(
            header(head, "content-length"),
            Some(body.len().to_string().as_str()),
            "head:\n{head}"
        );
        assert_eq!(header(head, "x-test"), Some("yes"), "head:\n{head}");
        assert_eq!(
            header(head, "content-type"),
            Some("application/x-www-form-urlencoded"),
            "head:\n{head}"
        );
        assert_eq!(
            head.split("\r\n")
                .filter(|l| l.split(':').next().unwrap().eq_ignore_ascii_case("host"))
                .count(),
            1,
            "exactly one Host header:\n{head}"
        );
        assert_eq!(got_body.as_slice(), body.as_bytes(), "head:\n{head}");
    }
    assert_eq!(
        u(&r, &["bytes", "sent"]),
        received.len() as u64,
        "bytes.sent should be what the server got:\n{r:#}"
    );
}

#[test]
fn get_sends_plain_request_with_host() {
    let fx = Fixture::start(Mode::Ok);
    let r = run_json(&["run", &fx.url("/"), "-n", "2", "-c", "1", "-t", "1"]);
    assert_all_ok(&r, 2);
    let received = fx.received();
    let requests = split_requests(&received);
    assert_eq!(requests.len(), 2, "{}", String::from_utf8_lossy(&received));
    let host = format!("127.0.0.1:{}", fx.addr().port());
    for (head, body) in &requests {
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "head:\n{head}");
        assert_eq!(header(head, "host"), Some(host.as_str()), "head:\n{head}");
        assert!(body.is_empty());
    }
    // One keep-alive connection carried both.
    assert_eq!(fx.connections(), 1);
}
