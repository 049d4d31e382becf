//! Reading requests off a byte stream, one at a time, without trusting the peer.
//!
//! [`RequestReader`] owns the connection's read buffer, so bytes that arrive
//! early (pipelined requests, or a body sent together with its headers) are
//! carried over to the next step instead of being lost. It works over any
//! [`AsyncRead`], which lets the tests drive it with scripted readers that
//! hand out one byte at a time, and lets the server drive it over a socket.
//!
//! Every step is bounded: bytes by [`ServerLimits`], time by a deadline the caller
//! passes in. Everything the peer can get wrong becomes a [`ReadError`] that
//! names the status to answer with; nothing here can panic on input.
use super::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits, Strictness};
use super::{Request, ServerLimits};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{timeout_at, Instant};

/// How much we ask the socket for per read.
const READ_CHUNK: usize = 8 * 1024;
/// Longest chunk-size line (size plus extensions) we accept in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Why no (further) request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The request is unacceptable: answer `status` (with `reason` in the JSON
    /// body) and close, because the stream is now in an unknown state.
    Reject { status: u16, reason: &'static str },
    /// The peer closed the connection before starting another request.
    Closed,
    /// No new request started before the deadline (idle keep-alive connection).
    Idle,
    /// The peer closed the connection in the middle of a request.
    Truncated,
    /// The socket failed.
    Io(io::Error),
}

impl ReadError {
    fn reject(status: u16, reason: &'static str) -> Self {
        ReadError::Reject { status, reason }
    }
}

/// How the body of a request is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes (already checked against the limit).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request line plus headers.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// Minor version: 0 or 1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    /// The client sent `Expect: 100-continue` and waits for our go-ahead.
    pub expect_continue: bool,
    /// Whether the client wants the connection kept open after this request.
    pub keep_alive: bool,
}

impl Head {
    /// True when a body follows the head on the wire.
    pub fn has_body(&self) -> bool {
        !matches!(self.framing, Framing::Empty | Framing::Length(0))
    }

    /// The request target without its query string (safe to log).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn into_request(self, body: Vec<u8>) -> Request {
        Request {
            method: self.method,
            target: self.target,
            version: self.version,
            headers: self.headers,
            body,
        }
    }
}

/// Reads requests from `io`, keeping leftover bytes between them.
pub struct RequestReader<R> {
    io: R,
    buf: Vec<u8>,
    limits: ServerLimits,
}

impl<R> RequestReader<R> {
    pub fn new(io: R, limits: ServerLimits) -> Self {
        RequestReader {
            io,
            buf: Vec::new(),
            limits,
        }
    }

    /// The underlying stream, e.g. to write a response on the same socket.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Bytes received but not yet consumed (the start of a pipelined request).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    /// Reads and decodes one complete request: head and body, with
    /// `header_timeout` / `body_timeout` from `limits` starting now.
    /// Convenience for callers that need no `100 Continue` in between.
    pub async fn read_request(&mut self) -> Result<Request, ReadError> {
        let head = self
            .read_head(Instant::now() + self.limits.header_timeout)
            .await?;
        let body = self
            .read_body(&head, Instant::now() + self.limits.body_timeout)
            .await?;
        Ok(head.into_request(body))
    }

    /// Waits until the next request has started (at least one byte of it is
    /// buffered). Empty lines before a request are skipped, as RFC 9112 asks.
    /// `Closed` if the peer hangs up first, `Idle` if `deadline` passes first.
    pub async fn wait_for_request(&mut self, deadline: Instant) -> Result<(), ReadError> {
        loop {
            self.skip_leading_newlines();
            if !self.buf.is_empty() {
                return Ok(());
            }
            match self.fill(deadline).await {
                Ok(Some(0)) => return Err(ReadError::Closed),
                Ok(Some(_)) => {}
                Ok(None) => return Err(ReadError::Idle),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads the request line and headers, all of them by `deadline`, and
    /// decides how the body is framed.
    pub async fn read_head(&mut self, deadline: Instant) -> Result<Head, ReadError> {
        let mut scanned = 0;
        loop {
            if self.skip_leading_newlines() {
                scanned = 0;
            }
            if let Some(end) = find_head_end(&self.buf, scanned) {
                if end > self.limits.max_header_bytes {
                    return Err(ReadError::reject(431, "request header fields too large"));
                }
                return self.parse_head(end);
            }
            if self.buf.len() > self.limits.max_header_bytes {
                return Err(ReadError::reject(431, "request header fields too large"));
            }
            scanned = self.buf.len().saturating_sub(3);
            match self.fill(deadline).await {
                Ok(Some(0)) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(Some(0)) => return Err(ReadError::Truncated),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ReadError::reject(408, "timed out reading request headers"))
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads the body `head` announced, all of it by `deadline`; chunked
    /// bodies are decoded. Bytes after the body stay buffered.
    pub async fn read_body(
        &mut self,
        head: &Head,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadError> {
        match head.framing {
            Framing::Empty => Ok(Vec::new()),
            Framing::Length(n) => {
                self.fill_to(n, deadline).await?;
                let rest = self.buf.split_off(n);
                Ok(std::mem::replace(&mut self.buf, rest))
            }
            Framing::Chunked => self.read_chunked(deadline).await,
        }
    }

    /// Decodes a chunked body strictly (CRLF only), bounded like the
    /// headers and the body.
    async fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut decoder = ChunkedDecoder::new(
            Strictness::Strict,
            ChunkedLimits {
                max_body: self.limits.max_body_bytes,
                max_line: MAX_CHUNK_LINE,
                max_trailer_bytes: self.limits.max_header_bytes,
                max_trailers: self.limits.max_headers,
            },
        );
        let mut body = Vec::new();
        loop {
            let used = decoder
                .decode(&self.buf, &mut body)
                .map_err(reject_chunked)?;
            self.buf.drain(..used.min(self.buf.len()));
            if decoder.is_done() {
                return Ok(body);
            }
            self.fill_or_fail(deadline).await?;
        }
    }

    /// Reads until at least `n` bytes are buffered.
    async fn fill_to(&mut self, n: usize, deadline: Instant) -> Result<(), ReadError> {
        if n > self.buf.len() {
            self.buf.reserve(n - self.buf.len());
        }
        while self.buf.len() < n {
            self.fill_or_fail(deadline).await?;
        }
        Ok(())
    }

    /// One read inside a request: EOF and timeouts are errors here.
    async fn fill_or_fail(&mut self, deadline: Instant) -> Result<(), ReadError> {
        match self.fill(deadline).await {
            Ok(Some(0)) => Err(ReadError::Truncated),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ReadError::reject(408, "timed out reading request body")),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// One read into the buffer. `Some(0)` is EOF, `None` is the deadline.
    async fn fill(&mut self, deadline: Instant) -> io::Result<Option<usize>> {
        self.buf.reserve(READ_CHUNK);
        match timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
            Ok(Ok(n)) => Ok(Some(n)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Drops CR/LF bytes at the start of the buffer; true if any were dropped.
    fn skip_leading_newlines(&mut self) -> bool {
        let n = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buf.drain(..n);
        n > 0
    }

    fn parse_head(&mut self, end: usize) -> Result<Head, ReadError> {
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Request::new(&mut fields);
        let bytes = self.buf.get(..end).unwrap_or_default();
        let consumed = match parsed.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(ReadError::reject(400, "malformed request head"))
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::reject(431, "too many header fields"))
            }
            Err(httparse::Error::Version) if names_another_version(bytes) => {
                return Err(ReadError::reject(
                    505,
                    "only HTTP/1.0 and HTTP/1.1 are supported",
                ))
            }
            Err(_) => return Err(ReadError::reject(400, "malformed request head")),
        };
        let (Some(method), Some(target), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(ReadError::reject(400, "malformed request line"));
        };
        if version > 1 {
            return Err(ReadError::reject(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
        let headers: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let head = analyse(
            method.to_string(),
            target.to_string(),
            version,
            headers,
            &self.limits,
        )?;
        self.buf.drain(..consumed.min(self.buf.len()));
        Ok(head)
    }
}

/// Decides framing, `Expect` and keep-alive from the header fields, refusing
/// anything ambiguous (the request-smuggling cases) or over the limits.
fn analyse(
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    limits: &ServerLimits,
) -> Result<Head, ReadError> {
    let mut content_length: Option<u64> = None;
    let mut codings: Option<Vec<String>> = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect: Option<bool> = None;

    for (name, value) in &headers {
        match name.as_str() {
            "content-length" => {
                let mut any = false;
                for part in list_items(value) {
                    let n = parse_content_length(part)?;
                    if content_length.is_some_and(|seen| seen != n) {
                        return Err(ReadError::reject(400, "conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                    any = true;
                }
                if !any {
                    return Err(ReadError::reject(400, "invalid Content-Length"));
                }
            }
            "transfer-encoding" => {
                let list = codings.get_or_insert_with(Vec::new);
                list.extend(
                    list_items(value).map(|c| String::from_utf8_lossy(c).to_ascii_lowercase()),
                );
            }
            "connection" => {
                for token in list_items(value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            "expect" => {
                let ok = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
                expect = Some(expect.unwrap_or(true) && ok);
            }
            _ => {}
        }
    }

    let framing = match (codings, content_length) {
        (Some(_), Some(_)) => {
            return Err(ReadError::reject(
                400,
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (Some(_), None) if version == 0 => {
            return Err(ReadError::reject(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (Some(codings), None) => match codings.as_slice() {
            [only] if only == "chunked" => Framing::Chunked,
            [] => return Err(ReadError::reject(400, "empty Transfer-Encoding")),
            _ => {
                return Err(ReadError::reject(
                    501,
                    "only chunked transfer coding is supported",
                ))
            }
        },
        (None, Some(n)) => {
            if n > limits.max_body_bytes as u64 {
                return Err(ReadError::reject(413, "request body too large"));
            }
            // Within max_body_bytes, so it fits in usize.
            Framing::Length(
                usize::try_from(n).map_err(|_| ReadError::reject(413, "request body too large"))?,
            )
        }
        (None, None) if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => {
            return Err(ReadError::reject(411, "Content-Length required"))
        }
        (None, None) => Framing::Empty,
    };

    // RFC 9110: Expect is an HTTP/1.1 feature; a 1.0 client's is ignored.
    let expect_continue = match expect {
        Some(false) if version >= 1 => {
            return Err(ReadError::reject(417, "unsupported Expect value"))
        }
        Some(true) => version >= 1,
        _ => false,
    };

    let keep_alive = if version >= 1 {
        !close
    } else {
        keep_alive && !close
    };
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
        expect_continue,
        keep_alive,
    })
}

/// A strict Content-Length value: digits only. Too many digits means "huge".
fn parse_content_length(digits: &[u8]) -> Result<u64, ReadError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ReadError::reject(400, "invalid Content-Length"));
    }
    Ok(digits
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX))
}

/// The answer to a malformed chunked body.
fn reject_chunked(error: ChunkedError) -> ReadError {
    match error {
        ChunkedError::LineTooLong => ReadError::reject(400, "chunk size line too long"),
        ChunkedError::NotCrlf => ReadError::reject(400, "line not terminated by CRLF"),
        ChunkedError::BadSize => ReadError::reject(400, "invalid chunk size"),
        ChunkedError::BadExtension => ReadError::reject(400, "invalid chunk extension"),
        ChunkedError::TooLarge => ReadError::reject(413, "request body too large"),
        ChunkedError::DataNotTerminated => {
            ReadError::reject(400, "chunk data not followed by CRLF")
        }
        ChunkedError::TrailersTooLarge => ReadError::reject(431, "trailer fields too large"),
        ChunkedError::TooManyTrailers => ReadError::reject(431, "too many trailer fields"),
        ChunkedError::BadTrailer => ReadError::reject(400, "malformed trailer field"),
    }
}

/// The non-empty, trimmed items of a comma-separated header value.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty())
}

/// True if the request line is well formed but names a version we do not
/// speak (`PRI * HTTP/2.0`, `GET / HTTP/1.2`), as opposed to being garbage.
fn names_another_version(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts.as_slice() {
        [method, target, version] => {
            !method.is_empty()
                && !target.is_empty()
                && matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                    if major.is_ascii_digit() && minor.is_ascii_digit())
        }
        _ => false,
    }
}

/// Index just past the blank line that ends the head, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (rest.get(i + 1), rest.get(i + 2)) {
            (Some(b'\n'), _) => Some(from + i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(from + i + 3),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::ReadBuf;

    /// Hands out its script one byte per read: the worst case for split reads.
    struct OneByteAtATime<'a>(&'a [u8]);

    impl AsyncRead for OneByteAtATime<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some((first, rest)) = self.0.split_first() {
                out.put_slice(&[*first]);
                self.0 = rest;
            }
            Poll::Ready(Ok(()))
        }
    }

    fn limits() -> ServerLimits {
        ServerLimits {
            max_header_bytes: 512,
            max_headers: 8,
            max_body_bytes: 64,
            ..ServerLimits::default()
        }
    }

    async fn read_one(bytes: &[u8]) -> Result<Request, ReadError> {
        RequestReader::new(bytes, limits()).read_request().await
    }

    /// The status a request is rejected with (panics in the test otherwise).
    async fn rejected(bytes: &[u8]) -> u16 {
        match read_one(bytes).await {
            Err(ReadError::Reject { status, .. }) => status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    const POST: &[u8] = b"POST /hook?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Drone-Event: build\r\n\r\nhello";

    #[tokio::test]
    async fn split_reads_one_byte_at_a_time() {
        let mut reader = RequestReader::new(OneByteAtATime(POST), limits());
        let req = reader.read_request().await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/hook?x=1");
        assert_eq!(req.path(), "/hook");
        assert_eq!(req.version, 1);
        assert_eq!(req.header("x-drone-event"), Some("build"));
        assert_eq!(req.headers.first().map(|h| h.0.as_str()), Some("host"));
        assert_eq!(req.body, b"hello");
        assert!(matches!(
            reader.read_request().await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn pipelined_requests_in_one_read_carry_over() {
        let mut bytes = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        bytes.extend_from_slice(POST);
        bytes.extend_from_slice(b"\r\nDELETE /x HTTP/1.1\r\n\r\n");
        let mut reader = RequestReader::new(bytes.as_slice(), limits());
        let first = reader.read_request().await.unwrap();
        assert_eq!(
            (first.method.as_str(), first.target.as_str()),
            ("GET", "/health")
        );
        assert!(first.body.is_empty());
        let second = reader.read_request().await.unwrap();
        assert_eq!(
            (second.method.as_str(), second.body.as_slice()),
            ("POST", &b"hello"[..])
        );
        // A stray CRLF between requests is tolerated.
        let third = reader.read_request().await.unwrap();
        assert_eq!(third.method, "DELETE");
        assert!(matches!(
            reader.read_request().await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn keep_alive_defaults_per_version() {
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (bytes, keep) in cases {
            let head = RequestReader::new(bytes, limits())
                .read_head(Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(head.keep_alive, keep, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[tokio::test]
    async fn oversize_content_length_is_413_without_reading_the_body() {
        // No body follows on the wire: the answer must not wait for it.
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n").await,
            413
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").await,
            413
        );
        assert!(read_one(b"POST / HTTP/1.1\r\nContent-Length: 64\r\n\r\n")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn oversize_chunked_body_is_413() {
        let mut bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            bytes.extend_from_slice(b"20\r\n");
            bytes.extend_from_slice(&[b'a'; 32]);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(rejected(&bytes).await, 413);
        assert_eq!(
            rejected(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"
            )
            .await,
            413
        );
    }

    #[tokio::test]
    async fn oversize_and_too_many_headers_are_431() {
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend_from_slice(&[b'a'; 600]);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(rejected(&big).await, 431);
        // Still 431 when the end of the head never arrives.
        assert_eq!(rejected(&big[..big.len() - 4]).await, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..9 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(rejected(&many).await, 431);
    }

    #[tokio::test]
    async fn body_needs_a_length_on_post_but_not_on_get() {
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n").await, 411);
        for method in ["GET", "HEAD", "DELETE"] {
            let req = read_one(format!("{method} / HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            assert!(req.body.is_empty());
        }
    }

    #[tokio::test]
    async fn ambiguous_lengths_are_400() {
        let cases: [&[u8]; 6] = [
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        ];
        for bytes in cases {
            assert_eq!(
                rejected(bytes).await,
                400,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // The same value twice is not ambiguous.
        let req = read_one(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        assert_eq!(req.body, b"abc");
    }

    #[tokio::test]
    async fn unsupported_codings_versions_and_expectations() {
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").await,
            501
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").await,
            501
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").await,
            400
        );
        assert_eq!(rejected(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await, 505);
        assert_eq!(rejected(b"GET / HTTP/1.2\r\n\r\n").await, 505);
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nExpect: something-else\r\n\r\n").await,
            417
        );
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET /  HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert_eq!(rejected(bad).await, 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn expect_continue_is_flagged() {
        let bytes = b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok";
        let mut reader = RequestReader::new(&bytes[..], limits());
        let head = reader
            .read_head(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(head.expect_continue && head.has_body());
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers_is_decoded() {
        let bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
            5;name=value\r\nhello\r\n\
            1 ;x\r\n \r\n\
            0006\r\nworld!\r\n\
            0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n\
            GET /next HTTP/1.1\r\n\r\n";
        let mut reader = RequestReader::new(OneByteAtATime(bytes), limits());
        let req = reader.read_request().await.unwrap();
        assert_eq!(req.body, b"hello world!");
        assert_eq!(reader.read_request().await.unwrap().target, "/next");
    }

    #[tokio::test]
    async fn bad_chunks_are_400() {
        let cases: [&[u8]; 6] = [
            b"zz\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"-1\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        ];
        for chunks in cases {
            let mut bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            bytes.extend_from_slice(chunks);
            assert_eq!(
                rejected(&bytes).await,
                400,
                "{}",
                String::from_utf8_lossy(chunks)
            );
        }
        // Trailers count against the header limits.
        let mut bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for i in 0..9 {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        assert_eq!(rejected(&bytes).await, 431);
    }

    #[tokio::test]
    async fn truncated_requests_are_not_answered() {
        assert!(matches!(
            read_one(b"GET / HT").await,
            Err(ReadError::Truncated)
        ));
        assert!(matches!(
            read_one(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel").await,
            Err(ReadError::Truncated)
        ));
        assert!(matches!(read_one(b"").await, Err(ReadError::Closed)));
        assert!(matches!(
            read_one(b"\r\n\r\n").await,
            Err(ReadError::Closed)
        ));
    }

    /// A tiny deterministic PRNG (xorshift64*) for the garbage test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Reads requests until the stream ends or one is refused; returns the
    /// number accepted and refused, checking each verdict on the way.
    async fn verdicts<R: AsyncRead + Unpin>(mut reader: RequestReader<R>) -> (usize, usize) {
        const ALLOWED: [u16; 8] = [400, 408, 411, 413, 417, 431, 501, 505];
        let mut accepted = 0;
        for _ in 0..8 {
            match reader.read_request().await {
                Ok(req) => {
                    accepted += 1;
                    assert!(req.body.len() <= 64);
                    assert!(req.version <= 1);
                }
                Err(ReadError::Reject { status, reason }) => {
                    assert!(
                        ALLOWED.contains(&status),
                        "unexpected status {status} ({reason})"
                    );
                    return (accepted, 1);
                }
                Err(ReadError::Closed | ReadError::Truncated) => break,
                Err(other) => panic!("unexpected outcome {other:?}"),
            }
        }
        (accepted, 0)
    }

    #[tokio::test]
    async fn garbage_never_panics_and_always_gets_a_verdict() {
        const SEEDS: [&[u8]; 3] = [
            POST,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
        ];
        const ALPHABET: &[u8] = b"\r\n :;,-0123456789abcdefABCDEF/HTTP1.GETPOSTchunkedContent-LengthTransfer-Encoding\x00\x7f\xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..6000 {
            let mut bytes = match round % 3 {
                // Pure noise.
                0 => (0..rng.below(200))
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<u8>>(),
                // Noise from an HTTP-ish alphabet.
                1 => (0..rng.below(200))
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect(),
                // A valid request with a few bytes flipped, cut or inserted.
                _ => {
                    let mut b = SEEDS[rng.below(SEEDS.len())].to_vec();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(b.len());
                        match rng.below(3) {
                            0 => b[at] = ALPHABET[rng.below(ALPHABET.len())],
                            1 => b.truncate(at),
                            _ => b.insert(at, rng.next() as u8),
                        }
                        if b.is_empty() {
                            break;
                        }
                    }
                    b
                }
            };
            if round % 7 == 0 {
                bytes.extend_from_slice(b"\r\n\r\n");
            }
            // Half the rounds arrive whole, half one byte at a time.
            let (ok, no) = if round % 2 == 0 {
                verdicts(RequestReader::new(bytes.as_slice(), limits())).await
            } else {
                verdicts(RequestReader::new(OneByteAtATime(&bytes), limits())).await
            };
            accepted += ok;
            refused += no;
        }
        // The generator must exercise both outcomes for the test to mean anything.
        assert!(
            accepted > 50 && refused > 500,
            "accepted {accepted}, refused {refused}"
        );
    }
}
