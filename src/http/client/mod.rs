//! A small HTTP/1.1 client over TCP or tokio-rustls, so that talking to Discord
//! (REST and the gateway's TLS socket) needs no hyper/reqwest stack on the Pi.
//!
//! It does exactly what this project needs and bounds everything it reads:
//! one request at a time per call, a pool of one idle kept-alive connection per
//! origin, bodies by `Content-Length`, chunked or read-to-close (size-limited),
//! 1xx interim responses skipped, timeouts on connect and on the whole request.
//! TLS uses rustls with the ring provider, webpki-roots plus an optional extra
//! PEM bundle (`SSL_CERT_FILE`, or a test CA).
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Bytes of status line + headers we accept in a response.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields we accept in a response.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line in a chunked body.
const MAX_LINE: usize = 4096;
/// Largest CA bundle we read from `extra_ca_file`.
const MAX_CA_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Interim (1xx) responses we skip before giving up.
const MAX_INTERIM: usize = 8;

/// URL scheme: HTTP(S) for REST, WS(S) for the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// Whether connections for this scheme use TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Wss)
    }

    fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A parsed absolute URL (no user info, no fragment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Always starts with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parse `scheme://host[:port][/path][?query]`. Fragments are dropped.
    pub fn parse(s: &str) -> Result<Url, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{why}: {}", truncate(s, 200)));
        if s.len() > 8192 {
            return Err(ClientError::Url("URL longer than 8192 bytes".into()));
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("URL contains whitespace or control characters"));
        }
        let (scheme_str, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("URL has no scheme"))?;
        let scheme = match scheme_str.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(bad("unsupported URL scheme")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split_at);
        if authority.contains('@') {
            return Err(bad("URL user info is not supported"));
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (h, p) = after
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = match p {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after IPv6 host"))?,
                ),
            };
            (h, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("URL has no host"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// `scheme://host[:port]` with the port left out when it is the default.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.host_header())
    }

    /// The value of the `Host` header: host (bracketed if IPv6) plus a
    /// non-default port.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query)
    }
}

/// Client-wide settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Extra PEM bundle of trusted CAs, added to the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// The whole request: connect, send, and receive the full response.
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_ca_file: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first value of header `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed. Messages never contain request headers (tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    Url(String),
    Connect(String),
    Tls(String),
    /// Which phase timed out: `"connect"` or `"request"`.
    Timeout(&'static str),
    Io(String),
    Protocol(String),
    TooLarge,
}

impl ClientError {
    /// Whether trying again later could succeed (network trouble), as
    /// opposed to a configuration or protocol problem.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect(_)
                | ClientError::Timeout(_)
                | ClientError::Io(_)
                | ClientError::Protocol(_)
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(m) => write!(f, "bad URL: {m}"),
            ClientError::Connect(m) => write!(f, "connect failed: {m}"),
            ClientError::Tls(m) => write!(f, "TLS error: {m}"),
            ClientError::Timeout(phase) => write!(f, "{phase} timed out"),
            ClientError::Io(m) => write!(f, "I/O error: {m}"),
            ClientError::Protocol(m) => write!(f, "HTTP protocol error: {m}"),
            ClientError::TooLarge => write!(f, "response too large"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A connected byte stream: plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(_) => f.write_str("Stream::Plain"),
            Stream::Tls(_) => f.write_str("Stream::Tls"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

struct Inner {
    opts: ClientOptions,
    tls: TlsConnector,
    /// One idle kept-alive connection per origin.
    idle: Mutex<HashMap<String, Stream>>,
}

/// The HTTP client. Cheap to clone; clones share the TLS config and pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Build the client and its TLS configuration (reads `extra_ca_file`).
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let tls = build_tls_config(opts.extra_ca_file.as_deref())?;
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                tls: TlsConnector::from(Arc::new(tls)),
                idle: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// One request; reuses a kept-alive connection to the same origin when it
    /// can, and retries once on a stale pooled connection (only if nothing of
    /// the response was read). `headers` must not include Host/Content-Length.
    pub async fn request(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ClientResponse, ClientError> {
        let head = build_request_head(method, url, headers, body)?;
        let timeout = self.inner.opts.request_timeout;
        match tokio::time::timeout(timeout, self.request_inner(method, url, &head, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("request")),
        }
    }

    async fn request_inner(
        &self,
        method: &str,
        url: &Url,
        head: &[u8],
        body: Option<&[u8]>,
    ) -> Result<ClientResponse, ClientError> {
        let origin = url.origin();
        let pooled = self.take_idle(&origin);
        if let Some(mut stream) = pooled {
            match self.exchange(&mut stream, method, head, body).await {
                Ok((resp, reusable)) => {
                    if reusable {
                        self.put_idle(origin, stream);
                    }
                    return Ok(resp);
                }
                Err((err, any_read)) => {
                    if any_read {
                        return Err(err);
                    }
                    tracing::debug!(origin = %origin, error = %err, "stale pooled connection, reconnecting");
                }
            }
        }
        let mut stream = self.connect(url).await?;
        match self.exchange(&mut stream, method, head, body).await {
            Ok((resp, reusable)) => {
                if reusable {
                    self.put_idle(origin, stream);
                }
                Ok(resp)
            }
            Err((err, _)) => Err(err),
        }
    }

    /// Send one request on `stream` and read its response. On error, says
    /// whether any response byte had been read.
    async fn exchange(
        &self,
        stream: &mut Stream,
        method: &str,
        head: &[u8],
        body: Option<&[u8]>,
    ) -> Result<(ClientResponse, bool), (ClientError, bool)> {
        let write = async {
            stream.write_all(head).await?;
            if let Some(b) = body {
                stream.write_all(b).await?;
            }
            stream.flush().await
        };
        write.await.map_err(|e| (io_err(e), false))?;
        let mut reader = Reader::new(stream);
        let out = read_response(&mut reader, method, self.inner.opts.max_response_bytes).await;
        let any = reader.any_read;
        out.map_err(|e| (e, any))
    }

    fn take_idle(&self, origin: &str) -> Option<Stream> {
        self.inner.idle.lock().ok()?.remove(origin)
    }

    fn put_idle(&self, origin: String, stream: Stream) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.insert(origin, stream);
        }
    }

    /// A raw connected stream (TCP for http/ws, TLS with SNI for https/wss),
    /// for the websocket gateway. Bounded by the connect timeout.
    pub async fn connect(&self, url: &Url) -> Result<Stream, ClientError> {
        let timeout = self.inner.opts.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner(url)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("connect")),
        }
    }

    async fn connect_inner(&self, url: &Url) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| ClientError::Connect(format!("{}: {e}", url.origin())))?;
        let _ = tcp.set_nodelay(true);
        if !url.scheme.is_tls() {
            return Ok(Stream::Plain(tcp));
        }
        let name = ServerName::try_from(url.host.clone()).map_err(|_| {
            ClientError::Url(format!(
                "invalid TLS server name: {}",
                truncate(&url.host, 200)
            ))
        })?;
        match self.inner.tls.connect(name, tcp).await {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            Err(e) => {
                let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
                if is_tls {
                    Err(ClientError::Tls(format!("{}: {e}", url.origin())))
                } else {
                    Err(ClientError::Connect(format!(
                        "{}: TLS handshake: {e}",
                        url.origin()
                    )))
                }
            }
        }
    }
}

fn io_err(e: io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// rustls client config: ring provider, webpki roots + optional PEM bundle.
fn build_tls_config(
    extra_ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca_file {
        let pem = read_bounded(path)?;
        let mut certs = Vec::new();
        for item in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                item.map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
            certs.push(cert);
        }
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ClientError::Tls(format!(
                "CA file {} holds no usable certificate",
                path.display()
            )));
        }
        tracing::debug!(path = %path.display(), added, ignored, "loaded extra CA certificates");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(ClientError::Tls(format!(
            "CA file {} is larger than 8 MiB",
            path.display()
        )));
    }
    Ok(buf)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Request line + headers, validated so that nothing can inject a header.
fn build_request_head(
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

/// Buffered reading over a stream, tracking whether anything arrived.
struct Reader<'a, R> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    any_read: bool,
}

impl<'a, R: AsyncRead + Unpin> Reader<'a, R> {
    fn new(inner: &'a mut R) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(8192),
            pos: 0,
            any_read: false,
        }
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Read more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> Result<usize, ClientError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        let n = self.inner.read(&mut chunk).await.map_err(io_err)?;
        if n > 0 {
            self.any_read = true;
            self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        }
        Ok(n)
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// One CRLF- (or LF-) terminated line, without the terminator.
    async fn read_line(&mut self, max: usize) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(i) = self.available().iter().position(|b| *b == b'\n') {
                let mut line = self.available().get(..i).unwrap_or(&[]).to_vec();
                self.consume(i + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.available().len() > max {
                return Err(ClientError::Protocol(
                    "line too long in chunked body".into(),
                ));
            }
            if self.fill().await? == 0 {
                return Err(ClientError::Protocol(
                    "connection closed inside chunked body".into(),
                ));
            }
        }
    }

    /// Exactly `n` bytes appended to `out`.
    async fn read_exact_into(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ClientError> {
        while n > 0 {
            if self.available().is_empty() && self.fill().await? == 0 {
                return Err(ClientError::Protocol(
                    "connection closed before the body was complete".into(),
                ));
            }
            let take = n.min(self.available().len());
            out.extend_from_slice(self.available().get(..take).unwrap_or(&[]));
            self.consume(take);
            n -= take;
        }
        Ok(())
    }
}

/// Parsed response head.
struct Head {
    status: u16,
    minor_version: u8,
    headers: Vec<(String, String)>,
}

/// Read the response head (skipping 1xx interim responses) and body.
/// Returns the response and whether the connection may be reused.
async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    method: &str,
    max_body: usize,
) -> Result<(ClientResponse, bool), ClientError> {
    let mut interim = 0;
    let head = loop {
        let head = read_head(reader).await?;
        if (100..200).contains(&head.status) && head.status != 101 {
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(ClientError::Protocol("too many interim responses".into()));
            }
            continue;
        }
        break head;
    };
    let find = |name: &'static str| {
        head.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let conn_tokens: Vec<String> = find("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut reusable = if head.minor_version >= 1 {
        !conn_tokens.iter().any(|t| t == "close")
    } else {
        conn_tokens.iter().any(|t| t == "keep-alive")
    };
    let no_body = method.eq_ignore_ascii_case("HEAD")
        || head.status == 204
        || head.status == 304
        || head.status == 101;
    let chunked = find("transfer-encoding")
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if head.status == 101 {
        reusable = false;
    } else if no_body {
        // Nothing to read.
    } else if chunked {
        read_chunked(reader, max_body, &mut body).await?;
    } else if let Some(len) = content_length(&head.headers)? {
        if len > max_body {
            return Err(ClientError::TooLarge);
        }
        reader.read_exact_into(len, &mut body).await?;
    } else {
        reusable = false;
        loop {
            let avail = reader.available().len();
            if body.len() + avail > max_body {
                return Err(ClientError::TooLarge);
            }
            body.extend_from_slice(reader.available());
            reader.consume(avail);
            if reader.fill().await? == 0 {
                break;
            }
        }
    }
    if !reader.available().is_empty() {
        // The server sent more than one response's worth: do not trust the connection.
        reusable = false;
    }
    Ok((
        ClientResponse {
            status: head.status,
            headers: head.headers,
            body,
        },
        reusable,
    ))
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ClientError> {
    let mut found: Option<usize> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ClientError::Protocol("invalid Content-Length".into()));
            }
            // Too many digits means "too large" rather than malformed.
            let n = part.parse::<usize>().map_err(|_| ClientError::TooLarge)?;
            if found.is_some_and(|f| f != n) {
                return Err(ClientError::Protocol("conflicting Content-Length".into()));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

async fn read_head<R: AsyncRead + Unpin>(reader: &mut Reader<'_, R>) -> Result<Head, ClientError> {
    loop {
        {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut storage);
            match resp.parse(reader.available()) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let minor_version = resp.version.unwrap_or(0);
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    reader.consume(n);
                    return Ok(Head {
                        status,
                        minor_version,
                        headers,
                    });
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ClientError::Protocol("too many response headers".into()));
                }
                Err(e) => {
                    return Err(ClientError::Protocol(format!(
                        "malformed response head: {e}"
                    )))
                }
            }
        }
        if reader.available().len() > MAX_HEAD_BYTES {
            return Err(ClientError::Protocol("response head too large".into()));
        }
        if reader.fill().await? == 0 {
            return Err(if reader.any_read {
                ClientError::Protocol("connection closed inside the response head".into())
            } else {
                ClientError::Io("connection closed before any response".into())
            });
        }
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    max_body: usize,
    body: &mut Vec<u8>,
) -> Result<(), ClientError> {
    loop {
        let line = reader.read_line(MAX_LINE).await?;
        let text = std::str::from_utf8(&line)
            .map_err(|_| ClientError::Protocol("bad chunk size".into()))?;
        let size_str = text.split(';').next().unwrap_or("").trim();
        if size_str.is_empty() || size_str.len() > 16 {
            return Err(ClientError::Protocol("bad chunk size".into()));
        }
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| ClientError::Protocol("bad chunk size".into()))?;
        if size == 0 {
            // Trailers, up to an empty line.
            let mut trailer_bytes = 0;
            loop {
                let t = reader.read_line(MAX_LINE).await?;
                if t.is_empty() {
                    return Ok(());
                }
                trailer_bytes += t.len();
                if trailer_bytes > MAX_HEAD_BYTES {
                    return Err(ClientError::Protocol("trailers too large".into()));
                }
            }
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ClientError::TooLarge);
        }
        reader.read_exact_into(size, body).await?;
        let crlf = reader.read_line(MAX_LINE).await?;
        if !crlf.is_empty() {
            return Err(ClientError::Protocol("missing CRLF after chunk".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    async fn parse(
        bytes: &[u8],
        method: &str,
        max: usize,
    ) -> Result<(ClientResponse, bool), ClientError> {
        let mut src = bytes;
        let mut reader = Reader::new(&mut src);
        read_response(&mut reader, method, max).await
    }

    #[test]
    fn url_parses_common_forms() {
        let u = Url::parse("https://discord.com/api/v10").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "discord.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path_and_query, "/api/v10");
        assert_eq!(u.origin(), "https://discord.com");

        let u = Url::parse("http://127.0.0.1:8080?x=1#frag").unwrap();
        assert_eq!(u.port, 8080);
        assert_eq!(u.path_and_query, "/?x=1");
        assert_eq!(u.origin(), "http://127.0.0.1:8080");

        let u = Url::parse("wss://gateway.discord.gg/?v=10&encoding=json").unwrap();
        assert_eq!(u.scheme, Scheme::Wss);
        assert_eq!(u.port, 443);
        assert_eq!(u.path_and_query, "/?v=10&encoding=json");

        let u = Url::parse("ws://[::1]:9000/gw").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.host_header(), "[::1]:9000");
    }

    #[test]
    fn url_rejects_bad_input() {
        for bad in [
            "discord.com/api",
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://host:99999/",
            "http://host:0/",
            "http://user@host/",
            "http://host/a b",
            "http://[::1/",
            "http://host/\r\nX: y",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(ClientError::Url(_))),
                "{bad} should be rejected"
            );
        }
    }

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

    #[tokio::test]
    async fn parses_content_length_body() {
        let (r, reuse) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            "GET",
            100,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("x-a"), Some("b"));
        assert!(reuse);
    }

    #[tokio::test]
    async fn parses_chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        let (r, reuse) = parse(raw, "GET", 100).await.unwrap();
        assert_eq!(r.body, b"hello world");
        assert!(reuse);
    }

    #[tokio::test]
    async fn reads_to_close_without_length_and_marks_not_reusable() {
        let (r, reuse) = parse(b"HTTP/1.1 200 OK\r\n\r\nuntil close", "GET", 100)
            .await
            .unwrap();
        assert_eq!(r.body, b"until close");
        assert!(!reuse);
    }

    #[tokio::test]
    async fn skips_interim_responses() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let (r, _) = parse(raw, "POST", 100).await.unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"ok");
    }

    #[tokio::test]
    async fn head_204_304_have_no_body() {
        let (r, reuse) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
            "HEAD",
            100,
        )
        .await
        .unwrap();
        assert!(r.body.is_empty());
        assert!(reuse);
        let (r, _) = parse(b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE", 100)
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        let (r, _) = parse(b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET", 100)
            .await
            .unwrap();
        assert_eq!(r.status, 304);
    }

    #[tokio::test]
    async fn enforces_size_limits() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            parse(big, "GET", 100).await.unwrap_err(),
            ClientError::TooLarge
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n";
        assert_eq!(
            parse(chunked, "GET", 100).await.unwrap_err(),
            ClientError::TooLarge
        );
        let mut close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        close.extend(vec![b'a'; 101]);
        assert_eq!(
            parse(&close, "GET", 100).await.unwrap_err(),
            ClientError::TooLarge
        );
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(
            parse(huge, "GET", 100).await.unwrap_err(),
            ClientError::TooLarge
        );
        let mut long_head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long_head.extend(vec![b'a'; MAX_HEAD_BYTES + 10]);
        assert!(matches!(
            parse(&long_head, "GET", 100).await,
            Err(ClientError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn rejects_malformed_responses() {
        for raw in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nhi",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
            b"HTTP/1.1 200 O",
        ] {
            assert!(
                parse(raw, "GET", 100).await.is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(raw)
            );
        }
        // Nothing at all: an I/O error that a stale pooled connection may retry.
        assert!(matches!(
            parse(b"", "GET", 100).await,
            Err(ClientError::Io(_))
        ));
    }

    #[tokio::test]
    async fn connection_close_and_http10_are_not_reused() {
        let (_, reuse) = parse(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            "GET",
            10,
        )
        .await
        .unwrap();
        assert!(!reuse);
        let (_, reuse) = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", 10)
            .await
            .unwrap();
        assert!(!reuse);
        let (_, reuse) = parse(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            "GET",
            10,
        )
        .await
        .unwrap();
        assert!(reuse);
    }

    /// A loopback server that answers `per_conn` requests per connection
    /// with a tiny 200, then closes; counts accepted connections.
    async fn tiny_server(per_conn: usize) -> (Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    let mut chunk = [0u8; 1024];
                    while served < per_conn {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            served += 1;
                            let body = format!("n{served}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if sock.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Close after the quota: the client's pooled connection goes stale.
                });
            }
        });
        (Url::parse(&format!("http://{addr}/x")).unwrap(), conns)
    }

    #[tokio::test]
    async fn reuses_kept_alive_connection() {
        let (url, conns) = tiny_server(100).await;
        let client = Client::new(ClientOptions::default()).unwrap();
        for _ in 0..3 {
            let r = client.request("GET", &url, &[], None).await.unwrap();
            assert_eq!(r.status, 200);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_once_on_stale_pooled_connection() {
        let (url, conns) = tiny_server(1).await;
        let client = Client::new(ClientOptions::default()).unwrap();
        let first = client.request("GET", &url, &[], None).await.unwrap();
        assert_eq!(first.body, b"n1");
        // Give the server time to close its side.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = client.request("GET", &url, &[], None).await.unwrap();
        assert_eq!(second.body, b"n1");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connect_refused_is_a_retryable_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new(ClientOptions::default()).unwrap();
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let err = client.request("GET", &url, &[], None).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn whole_request_times_out_when_server_stalls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let opts = ClientOptions {
            request_timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        };
        let client = Client::new(opts).unwrap();
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let err = client.request("GET", &url, &[], None).await.unwrap_err();
        assert_eq!(err, ClientError::Timeout("request"));
    }

    #[test]
    fn missing_or_empty_ca_file_is_a_tls_error() {
        let opts = ClientOptions {
            extra_ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientOptions::default()
        };
        assert!(matches!(Client::new(opts), Err(ClientError::Tls(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, b"not a pem").unwrap();
        let opts = ClientOptions {
            extra_ca_file: Some(path),
            ..ClientOptions::default()
        };
        assert!(matches!(Client::new(opts), Err(ClientError::Tls(_))));
    }
}
