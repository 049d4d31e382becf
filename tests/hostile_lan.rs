//! End-to-end: a hostile LAN cannot delay or drop Drone's webhooks. Through
//! the real binary on loopback: a forged webhook is refused from its headers
//! alone (before its body, before `100 Continue`).
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};
use support::binary::start;
use support::credentials::SECRET;
use support::fixtures::fixture;
use support::webhook::signed_request;

/// How long a test waits for any one answer (a bound, not an assertion).
const WAIT: Duration = Duration::from_secs(30);

/// The head of a signed webhook for `body` (signed with `secret`), declaring
/// `content_length` and any `extra` header lines; no body follows.
fn signed_head(body: &[u8], secret: &str, content_length: usize, extra: &str) -> Vec<u8> {
    let raw = signed_request(body, secret, SystemTime::now());
    let text = String::from_utf8(raw).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let head = head.replace(
        &format!("Content-Length: {}\r\n", body.len()),
        &format!("Content-Length: {content_length}\r\n{extra}"),
    );
    format!("{head}\r\n\r\n").into_bytes()
}

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
    s.write_all(&signed_head(&body, "not-the-secret", 1024 * 1024, "")).unwrap();
    let (status, head) = read_head(&mut s).expect("an answer without sending the body");
    assert_eq!(status, 401, "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");

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
    s.write_all(&signed_head(&body, "not-the-secret", body.len(), "Expect: 100-continue\r\n")).unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(401));

    // Correctly signed with Expect: 100-continue: 100, then the body, then 200.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(&body, SECRET, body.len(), "Expect: 100-continue\r\n")).unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(100));
    s.write_all(&body).unwrap();
    let (status, head) = read_head(&mut s).expect("the final answer");
    assert_eq!(status, 200, "{head}");

    // A signed head whose body does not match its digest: 401 after the body.
    let mut s = connect(&svc.addr);
    s.write_all(&signed_head(&body, SECRET, body.len(), "")).unwrap();
    let mut other = body.clone();
    other[0] = b' ';
    s.write_all(&other).unwrap();
    assert_eq!(read_head(&mut s).map(|(status, _)| status), Some(401));

    let log = svc.log_text();
    assert!(!log.contains(SECRET), "the webhook secret reached the log");
    assert_eq!(svc.sigterm(), Some(0));
}
