//! The request line and header fields the client writes, validated so that
//! nothing a caller passes (a path, a header value holding a token) can
//! inject a header or a second request.
use super::{ClientError, Url};

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Request line + headers, validated so that nothing can inject a header.
pub(super) fn build_request_head(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Vec<u8>, ClientError> {
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ClientError::Protocol("invalid method".into()));
    }
    if url.path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ClientError::Url(
            "path contains whitespace or control characters".into(),
        ));
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\n",
            url.path_and_query,
            url.host_header()
        )
        .as_bytes(),
    );
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ClientError::Protocol("invalid header name".into()));
        }
        if name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(ClientError::Protocol(format!(
                "header {name} is set by the client"
            )));
        }
        // Header values are never echoed into the error: they may hold a token.
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(ClientError::Protocol(format!(
                "value of header {name} contains CR/LF/NUL"
            )));
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let needs_length = matches!(method, "POST" | "PUT" | "PATCH");
    match body {
        Some(b) => head.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes()),
        None if needs_length => head.extend_from_slice(b"Content-Length: 0\r\n"),
        None => {}
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_rejects_header_injection_without_echoing_value() {
        let url = Url::parse("http://h/x").unwrap();
        let err = build_request_head(
            "GET",
            &url,
            &[("Authorization", "Bot secret\r\nX: y")],
            None,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(build_request_head("GET", &url, &[("Host", "evil")], None).is_err());
        let head = build_request_head("POST", &url, &[("A", "b")], None).unwrap();
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("POST /x HTTP/1.1\r\nHost: h\r\nA: b\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }
}
