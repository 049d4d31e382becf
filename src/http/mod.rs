//! A minimal, hostile-client-proof HTTP/1.1 server on `httparse` (no hyper),
//! and the plain request/response types the webhook handler works with.
//!
//! The server (see [`server`]) owns every protocol concern: limits,
//! timeouts, keep-alive, `Expect: 100-continue`, chunked bodies, and the
//! 400/408/411/413/431/501/505 answers. A [`Handler`] only ever sees a
//! complete, size-checked request.
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub mod chunked;
pub mod client;
pub mod request;
pub mod response;
pub mod server;

/// Every bound the HTTP server enforces on its peers (not to be confused
/// with the Discord rate limiter). All of them are configurable; the
/// defaults suit a Drone server talking to a Pi.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Request line + headers, bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Number of header fields (431 beyond).
    pub max_headers: usize,
    /// Decoded body bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Time allowed to receive the request line and headers (slowloris).
    pub header_timeout: Duration,
    /// Time allowed to receive the whole body once the headers are in.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Time allowed to write a response.
    pub write_timeout: Duration,
    /// Concurrent connections. When full, a new connection evicts the oldest
    /// one that is not trusted (see `server::admission`); only when none can
    /// be evicted does it get a 503 and a close.
    pub max_connections: usize,
    /// Untrusted connections (no verified head yet) from one peer IP; its
    /// next one evicts that peer's oldest.
    pub max_untrusted_per_peer: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_untrusted_per_peer: 64,
            max_requests_per_connection: 1000,
        }
    }
}

/// A complete request as the handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target as sent (path plus optional query).
    pub target: String,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in order; names lower-cased, values raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body (de-chunked when it was sent chunked).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive) if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A response. The server adds `Content-Length`, `Date`, `Connection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Extra text for the one-line request log (e.g. `event_id=42`); never a secret.
    pub log_note: Option<String>,
}

impl Response {
    /// A JSON response with `Content-Type: application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            log_note: None,
        }
    }

    /// The short JSON error body every non-2xx answer uses: `{"error": "..."}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_log_note(mut self, note: impl Into<String>) -> Self {
        self.log_note = Some(note.into());
        self
    }
}

/// What a [`Handler`] says about a request once its head is in, before the
/// server reads the body or sends `100 Continue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadCheck {
    /// Read the body and call [`Handler::handle`].
    Accept,
    /// As `Accept`, and the head proved who sent it (a valid signature): the
    /// connection is no longer evicted to make room for new ones.
    Trusted,
    /// Answer this at once, without reading the body, and close.
    Refuse(Response),
}

/// Application logic behind the server.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request, peer: SocketAddr) -> impl Future<Output = Response> + Send;

    /// Checks that need only the head (a signature over headers); the
    /// default accepts everything.
    fn check_head(&self, _head: &request::Head, _peer: SocketAddr) -> HeadCheck {
        HeadCheck::Accept
    }

    /// True for a routine request (the service's own health checks) whose
    /// log line goes out at debug instead of info.
    fn is_routine(&self, _head: &request::Head, _peer: SocketAddr) -> bool {
        false
    }

    /// Called after each answer to a request whose head was read, whether
    /// the handler or its head check gave it, with the time since the
    /// request's first byte (for metrics; the default does nothing).
    fn answered(&self, _method: &str, _path: &str, _status: u16, _took: Duration) {}

    /// Called when the server itself refused a request (a protocol error:
    /// 400, 408, 411, 413, 431, ...) that the handler never saw; `route` is
    /// the method and path when the head had been read (for metrics).
    fn refused(&self, _route: Option<(&str, &str)>, _status: u16) {}
}

/// Where a local client reaches a listener bound to `addr`: the loopback
/// address of the same family when it is bound to the unspecified address.
pub fn local_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The reason phrase for the statuses this project uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
