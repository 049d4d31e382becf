//! Turning a [`Response`] into bytes on the wire.
//!
//! The server, not the handler, owns the framing headers: `Content-Length`,
//! `Date` and `Connection` are always written here, and any the handler set
//! are dropped, as are header fields that could split the response (CR/LF in
//! a value, a name that is not a token).
use super::{reason_phrase, Response};
use std::time::SystemTime;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Header fields the server writes itself.
const OWNED: [&str; 4] = ["content-length", "connection", "date", "transfer-encoding"];

/// Serializes `resp` as an HTTP/1.1 response. `head_only` (for HEAD) keeps
/// the `Content-Length` of the body but leaves the body out.
pub fn encode(resp: &Response, head_only: bool, keep_alive: bool, now: SystemTime) -> Vec<u8> {
    let status = if (200..=599).contains(&resp.status) {
        resp.status
    } else {
        500
    };
    let mut out = Vec::with_capacity(160 + resp.body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (name, value) in &resp.headers {
        if OWNED.iter().any(|o| name.eq_ignore_ascii_case(o))
            || !is_token(name)
            || !is_field_value(value)
        {
            tracing::debug!(header = %name.escape_debug(), "dropping unsafe or server-owned response header");
            continue;
        }
        push_field(&mut out, name, value);
    }
    let no_body = status == 204;
    if !no_body {
        push_field(&mut out, "Content-Length", &resp.body.len().to_string());
    }
    push_field(&mut out, "Date", &crate::httpdate::format(now));
    push_field(
        &mut out,
        "Connection",
        if keep_alive { "keep-alive" } else { "close" },
    );
    out.extend_from_slice(b"\r\n");
    if !head_only && !no_body {
        out.extend_from_slice(&resp.body);
    }
    out
}

/// True if the handler asked for the connection to be closed after `resp`.
pub fn wants_close(resp: &Response) -> bool {
    resp.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("connection")
            && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_field_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn encode_writes_framing_and_drops_unsafe_headers() {
        let resp = Response::error(404, "not found")
            .with_header("X-Ok", "yes")
            .with_header("Content-Length", "999")
            .with_header("X-Evil", "a\r\nSet-Cookie: x=1");
        let text = String::from_utf8(encode(&resp, false, true, at(0))).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("X-Ok: yes\r\n"));
        assert!(!text.contains("999"));
        assert!(!text.contains("Set-Cookie"));
        assert!(text.contains("Content-Length: 21\r\n"), "{text}");
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.contains("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
        assert!(
            text.ends_with("\r\n\r\n{\"error\":\"not found\"}"),
            "{text}"
        );
    }

    #[test]
    fn head_only_keeps_length_but_not_body() {
        let resp = Response::json(200, &serde_json::json!({"ok": true}));
        let text = String::from_utf8(encode(&resp, true, false, at(0))).unwrap();
        assert!(text.contains("Content-Length: 11\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn wants_close_reads_connection_tokens() {
        assert!(wants_close(
            &Response::error(500, "x").with_header("connection", "Close")
        ));
        assert!(!wants_close(&Response::error(500, "x")));
    }
}
