//! A minimal HTTP/1.1 client over a plain socket, so tests can send exactly
//! the bytes they mean (bad signatures, odd headers) and read the answer.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status, headers with lower-case names, body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// One request on a fresh connection; reads to close. Returns (status,
/// headers with lower-case names, body); status 0 when the peer closed
/// without a status line.
pub fn http_full(addr: &str, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(raw).expect("write request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}

/// [`http_full`] for a peer that may be down or die mid-request: an error
/// when it cannot connect or the connection ends before a status line.
pub fn try_http_full(addr: &str, raw: &[u8]) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(raw)?;
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    let answer = parse(&out);
    if answer.0 == 0 {
        read?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before a status line",
        ));
    }
    Ok(answer)
}

fn parse(out: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// One request on a fresh connection; reads to close. Returns (status, body).
pub fn http(addr: &str, raw: &[u8]) -> (u16, String) {
    let (status, _headers, body) = http_full(addr, raw);
    (status, body)
}
