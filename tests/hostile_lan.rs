//! End-to-end: a hostile LAN cannot delay or drop Drone's webhooks. Through
//! the real binary on loopback: a forged webhook is refused from its headers
//! alone (before its body, before `100 Continue`), and a swarm of slow
//! connections from many addresses (127.0.0.2 and up) cannot keep a signed
//! webhook out.
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};
use support::binary::start;
use support::credentials::SECRET;
use support::fixtures::fixture;
use support::swarm::{signed_head, Swarm};
use support::webhook::signed_request;

/// How long a test waits for any one answer (a bound, not an assertion).
const WAIT: Duration = Duration::from_secs(30);

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads one response head off `s` (status, head text); bytes after it are
/// left unread. `None` if the connection ends first.
fn read_head(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

#[test]
fn a_forged_webhook_is_refused_from_its_headers_alone() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[]);
    let body = fixture("build_created.json");

    // A wrong key, declaring a 1 MiB body (the limit) that never comes: the
    // answer is 401 at once, not a 408 after waiting for the body.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(&body, "not-the-secret", 1024 * 1024, ""))
        .unwrap();
    let (status, head) = read_head(&mut s).expect("an answer without sending the body");
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    // Unsigned, with Expect: 100-continue: 401, never 100.
    let mut s = connect(&svc.addr);
    let unsigned = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(unsigned.as_bytes()).unwrap();
    let (status, head) = read_head(&mut s).expect("an answer");
    assert_eq!(status, 401, "{head}");

    // Wrong key with Expect: 100-continue: 401 too.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(
        &body,
        "not-the-secret",
        body.len(),
        "Expect: 100-continue\r\n",
    ))
    .unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(401));

    // Correctly signed with Expect: 100-continue: 100, then the body, then 200.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(
        &body,
        SECRET,
        body.len(),
        "Expect: 100-continue\r\n",
    ))
    .unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(100));
    s.write_all(&body).unwrap();
    let (status, head) = read_head(&mut s).expect("the final answer");
    assert_eq!(status, 200, "{head}");

    // A signed head whose body does not match its digest: 401 after the body.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(&body, SECRET, body.len(), ""))
        .unwrap();
    let mut other = body.clone();
    other[0] = b' ';
    s.write_all(&other).unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(401));

    let log = svc.log_text();
    assert!(!log.contains(SECRET), "the webhook secret reached the log");
    assert_eq!(svc.sigterm(), Some(0));
}

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_slow_connection_swarm_cannot_keep_a_signed_webhook_out() {
    drone_discord::rlimit::raise_open_files();
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[("RUST_LOG", "info")]);
    let addr: SocketAddr = svc.addr.parse().unwrap();
    let body = fixture("build_created.json");

    // 1 000 connections trickling headers and 256 trickling bodies
    // (support::swarm), a byte per connection every 200 ms while Drone sends.
    let swarm = Swarm::start(addr, &body);
    let (opened, refused) = (swarm.opened, swarm.refused);

    // Drone (127.0.0.1) sends signed webhooks: every one is queued.
    for n in 0..5 {
        let mut hook: serde_json::Value = serde_json::from_slice(&body).unwrap();
        hook["build"]["id"] = serde_json::json!(9000 + n);
        let hook = serde_json::to_vec(&hook).unwrap();
        let (status, answer) = svc.post_signed(&hook, SECRET);
        assert_eq!(status, 200, "webhook {n} during the swarm: {answer}");
    }
    let rss = rss_kib(svc.child.id());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", svc.child.id())).map_or(0, |d| d.count());
    let still_open = swarm.stop();
    eprintln!(
        "swarm: {opened} connections opened ({refused} refused), {still_open} still writable at the end; \
         5 signed webhooks answered 200; service: {fds} open files, RSS {rss} KiB"
    );
    // Memory stays bounded by the connection table, not by the swarm.
    assert!(rss > 0 && rss < 64 * 1024, "RSS {rss} KiB during the swarm");
    // And the service holds the table's worth of connections, not the swarm's.
    assert!(fds > 0 && fds < 512, "{fds} open files during the swarm");
    assert_eq!(svc.sigterm(), Some(0));
}

#[test]
fn a_413_can_be_read_by_a_client_that_is_still_sending() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[]);
    // 2 MiB to a 1 MiB limit, written whole before reading anything (as a
    // naive client does): the server answers 413 at the head and must keep
    // reading and discarding, or the close resets the answer away.
    let body = fixture("build_created.json");
    let mut big = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    big["padding"] = serde_json::json!("x".repeat(2 * 1024 * 1024));
    let big = serde_json::to_vec(&big).unwrap();
    // A small send buffer, so the body cannot all sit in kernel buffers
    // before the server decides to close.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: SocketAddr = svc.addr.parse().unwrap();
    let mut s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_send_buffer_size(16 * 1024)?;
            socket.set_recv_buffer_size(16 * 1024)?;
            socket.connect(addr).await?.into_std()
        })
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&signed_request(&big, SECRET, SystemTime::now()))
        .expect("the whole request is written (no reset while sending)");
    let (status, head) = read_head(&mut s).expect("the 413, not a reset");
    assert_eq!(status, 413, "{head}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).contains("too large"),
        "{rest:?}"
    );
    drop(s);
    assert_eq!(svc.sigterm(), Some(0));
}
