//! The websocket opening handshake, client side (RFC 6455 §4.1).
//!
//! tungstenite's `handshake` feature would do it, but for one request and one
//! response it brings the `http` crate (request and response types, the
//! header-name tables), `data-encoding` and a second SHA-1 into the Pi binary.
//! This sends the same request and makes the same checks as tungstenite's
//! client (status 101, `Upgrade: websocket`, `Connection: Upgrade`, the
//! `Sec-WebSocket-Accept` key, no subprotocol) with httparse, ring and base64,
//! which the binary carries anyway, then hands the stream to tungstenite,
//! together with any bytes the server sent right after its response.
use super::conn::BoxIo;
use crate::http::client::Url;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// The GUID the server appends to our key before hashing (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The response head must fit in this (tungstenite's limit too).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many response headers (tungstenite's limit too).
const MAX_HEADERS: usize = 124;

/// Why the upgrade failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// The URL is not a `ws://` or `wss://` URL we can request.
    Url(String),
    /// Reading or writing the stream failed, or it closed early.
    Io(String),
    /// The server answered with another status than 101.
    Status(u16, String),
    /// The response is not HTTP, or fails one of the RFC's checks.
    Protocol(&'static str),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Url(e) => write!(f, "URL error: {e}"),
            UpgradeError::Io(e) => write!(f, "IO error: {e}"),
            UpgradeError::Status(code, reason) => write!(f, "HTTP error: {code} {reason}"),
            UpgradeError::Protocol(why) => write!(f, "WebSocket protocol error: {why}"),
        }
    }
}

impl std::error::Error for UpgradeError {}

/// Upgrade `stream` (already connected, TLS included, to `url`'s host) to a
/// client websocket with `config`.
pub async fn client(
    mut stream: BoxIo,
    url: &str,
    config: WebSocketConfig,
) -> Result<WebSocketStream<BoxIo>, UpgradeError> {
    let url = Url::parse(url).map_err(|e| UpgradeError::Url(e.to_string()))?;
    let key = new_key()?;
    stream
        .write_all(request(&url, &key).as_bytes())
        .await
        .map_err(|e| UpgradeError::Io(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| UpgradeError::Io(e.to_string()))?;

    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(n) = check_response(&buf, &key)? {
            break n;
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(UpgradeError::Protocol("response head larger than 64 KiB"));
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(MAX_HEAD_BYTES - buf.len());
        let n = stream
            .read(&mut chunk[..want])
            .await
            .map_err(|e| UpgradeError::Io(e.to_string()))?;
        if n == 0 {
            return Err(UpgradeError::Io(
                "connection closed during the websocket upgrade".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf.split_off(head_len);
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await)
}

/// 16 random bytes, base64: the `Sec-WebSocket-Key`.
fn new_key() -> Result<String, UpgradeError> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| UpgradeError::Io("no random bytes for the websocket key".into()))?;
    Ok(B64.encode(nonce))
}

/// What the server must send back for `key`.
fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID);
    B64.encode(ctx.finish())
}

/// The upgrade request, with the headers in tungstenite's order and case.
fn request(url: &Url, key: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
        url.path_and_query,
        url.host_header()
    )
}

/// `Ok(Some(len))` once `buf` holds a complete, valid upgrade response of
/// `len` bytes; `Ok(None)` while it is incomplete.
fn check_response(buf: &[u8], key: &str) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpgradeError::Protocol("too many headers"))
        }
        Err(_) => return Err(UpgradeError::Protocol("the response is not HTTP")),
    };
    let code = response.code.unwrap_or_default();
    if code != 101 {
        let reason = response.reason.unwrap_or_default().to_string();
        return Err(UpgradeError::Status(code, reason));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let is = |name: &str, want: &str| {
        header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(want))
    };
    if !is("Upgrade", "websocket") {
        return Err(UpgradeError::Protocol("No \"Upgrade: websocket\" header"));
    }
    if !is("Connection", "Upgrade") {
        return Err(UpgradeError::Protocol("No \"Connection: upgrade\" header"));
    }
    if header("Sec-WebSocket-Accept") != Some(accept_key(key).as_bytes()) {
        return Err(UpgradeError::Protocol(
            "Key mismatch in \"Sec-WebSocket-Accept\" header",
        ));
    }
    if header("Sec-WebSocket-Protocol").is_some() {
        return Err(UpgradeError::Protocol(
            "Server sent a subprotocol but none was requested",
        ));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn ok_response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(KEY)
        )
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_16_random_bytes() {
        let (a, b) = (new_key().unwrap_or_default(), new_key().unwrap_or_default());
        assert_eq!(B64.decode(&a).map(|k| k.len()).ok(), Some(16));
        assert_ne!(a, b);
    }

    #[test]
    fn the_request_has_the_upgrade_headers() {
        let url = Url::parse("wss://gateway.discord.gg/?v=10&encoding=json").expect("url");
        assert_eq!(
            request(&url, KEY),
            "GET /?v=10&encoding=json HTTP/1.1\r\nHost: gateway.discord.gg\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
    }

    #[test]
    fn a_valid_response_is_accepted_whole_and_only_whole() {
        let r = ok_response("");
        assert_eq!(check_response(r.as_bytes(), KEY), Ok(Some(r.len())));
        assert_eq!(check_response(&r.as_bytes()[..r.len() - 1], KEY), Ok(None));
        let lower = r
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: upgrade");
        assert_eq!(check_response(lower.as_bytes(), KEY), Ok(Some(lower.len())));
    }

    #[test]
    fn a_bad_response_says_why() {
        let err = |r: &str| {
            check_response(r.as_bytes(), KEY)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            err("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"),
            "HTTP error: 429 Too Many Requests"
        );
        assert!(err("SSH-2.0-OpenSSH\r\n\r\n").contains("not HTTP"));
        assert!(err(&ok_response("").replace("Upgrade: websocket\r\n", ""))
            .contains("Upgrade: websocket"));
        assert!(
            err(&ok_response("").replace("Connection: Upgrade", "Connection: keep-alive"))
                .contains("Connection: upgrade")
        );
        assert!(err(&ok_response("").replace(&accept_key(KEY), "AAAA"))
            .contains("Sec-WebSocket-Accept"));
        assert!(err(&ok_response("Sec-WebSocket-Protocol: chat\r\n")).contains("subprotocol"));
    }

    /// Against tungstenite's own server handshake; a frame the server sends
    /// together with its 101 response is not lost.
    #[tokio::test]
    async fn upgrades_against_tungstenites_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp)
                .await
                .expect("server handshake");
            ws.send(Message::text("hello")).await.expect("send");
            ws.next().await.and_then(Result::ok)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let url = format!("ws://{addr}/?v=10&encoding=json");
        let mut ws = client(Box::new(tcp), &url, WebSocketConfig::default())
            .await
            .expect("upgrade");
        let first = ws.next().await.and_then(Result::ok);
        assert_eq!(first, Some(Message::text("hello")));
        ws.send(Message::text("hi")).await.expect("send");
        let got = server.await.expect("server task");
        assert_eq!(got, Some(Message::text("hi")));
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(b"HTTP/1.1 101 Switching").await;
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let err = client(
            Box::new(tcp),
            &format!("ws://{addr}/"),
            WebSocketConfig::default(),
        )
        .await
        .err();
        assert!(matches!(err, Some(UpgradeError::Io(_))), "{err:?}");
    }
}
