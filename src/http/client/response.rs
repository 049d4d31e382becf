//! Reading one response off a stream: the head (1xx interim responses
//! skipped), then the body by `Content-Length`, chunked or read-to-close,
//! every part size-bounded, and whether the connection may be reused. A 2xx
//! body may instead be handed on piece by piece ([`Streamed`]), so a caller
//! that keeps only part of it (a Drone log's tail) never holds all of it.
use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::io_err;
use super::ClientError;
use crate::http::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits, Strictness};

/// Bytes of status line + headers we accept in a response.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields we accept in a response.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line in a chunked body.
const MAX_LINE: usize = 4096;
/// Interim (1xx) responses we skip before giving up.
const MAX_INTERIM: usize = 8;

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

/// Where a 2xx body goes instead of [`ClientResponse::body`]: to `sink`, in
/// pieces of at most one read (8 KiB), up to `max_bytes` in all (more is
/// [`ClientError::TooLarge`]). Other answers are kept whole as usual.
pub struct Streamed<'a> {
    pub max_bytes: u64,
    pub sink: &'a mut (dyn FnMut(&[u8]) -> Result<(), ClientError> + Send),
}

/// Buffered reading over a stream, tracking whether anything arrived.
pub(crate) struct Reader<'a, R> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    any_read: bool,
}

impl<'a, R: AsyncRead + Unpin> Reader<'a, R> {
    pub(crate) fn new(inner: &'a mut R) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(8192),
            pos: 0,
            any_read: false,
        }
    }

    /// Whether any byte of a response arrived (a stale pooled connection
    /// sends none, and only then is a request retried).
    pub(super) fn any_read(&self) -> bool {
        self.any_read
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
#[cfg(any(test, feature = "test-support"))]
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    method: &str,
    max_body: usize,
) -> Result<(ClientResponse, bool), ClientError> {
    read_response_to(reader, method, max_body, None).await
}

/// [`read_response`], with a 2xx body handed to `streamed` when given.
pub(crate) async fn read_response_to<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    method: &str,
    max_body: usize,
    streamed: Option<&mut Streamed<'_>>,
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
    let streamed = streamed.filter(|_| (200..300).contains(&head.status));
    if head.status == 101 {
        reusable = false;
    } else if no_body {
        // Nothing to read.
    } else if let Some(out) = streamed {
        let length = if chunked {
            None
        } else {
            content_length(&head.headers)?
        };
        reusable &= chunked || length.is_some();
        stream_body(reader, chunked, length, out).await?;
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

/// A 2xx body handed to `out` as it arrives: chunked, by `length`, or up to
/// the end of the connection when neither is given.
async fn stream_body<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    chunked: bool,
    length: Option<usize>,
    out: &mut Streamed<'_>,
) -> Result<(), ClientError> {
    let mut total: u64 = 0;
    let mut left = length.unwrap_or(usize::MAX);
    let mut piece = Vec::new();
    let mut decoder = chunked.then(|| chunked_decoder(usize::MAX));
    loop {
        let used = match decoder.as_mut() {
            Some(d) => d
                .decode(reader.available(), &mut piece)
                .map_err(chunked_err)?,
            None => {
                let n = left.min(reader.available().len());
                piece.extend_from_slice(reader.available().get(..n).unwrap_or(&[]));
                left -= n;
                n
            }
        };
        reader.consume(used);
        total += piece.len() as u64;
        if total > out.max_bytes {
            return Err(ClientError::TooLarge);
        }
        if !piece.is_empty() {
            (out.sink)(&piece)?;
            piece.clear();
        }
        if decoder.as_ref().map_or(left == 0, |d| d.is_done()) {
            return Ok(());
        }
        if reader.fill().await? == 0 {
            return match length {
                None if decoder.is_none() => Ok(()),
                _ => Err(ClientError::Protocol(
                    "connection closed before the body was complete".into(),
                )),
            };
        }
    }
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

/// Decodes a chunked body leniently (a bare LF ends a line too): we read
/// what Discord and the health endpoint send, and refuse only what cannot be
/// framed or is over the bounds.
async fn read_chunked<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    max_body: usize,
    body: &mut Vec<u8>,
) -> Result<(), ClientError> {
    let mut decoder = chunked_decoder(max_body);
    loop {
        let used = decoder
            .decode(reader.available(), body)
            .map_err(chunked_err)?;
        reader.consume(used);
        if decoder.is_done() {
            return Ok(());
        }
        if reader.fill().await? == 0 {
            return Err(ClientError::Protocol(if decoder.in_chunk_data() {
                "connection closed before the body was complete".into()
            } else {
                "connection closed inside chunked body".into()
            }));
        }
    }
}

fn chunked_decoder(max_body: usize) -> ChunkedDecoder {
    ChunkedDecoder::new(
        Strictness::Lenient,
        ChunkedLimits {
            max_body,
            max_line: MAX_LINE,
            max_trailer_bytes: MAX_HEAD_BYTES,
            max_trailers: usize::MAX,
        },
    )
}

fn chunked_err(error: ChunkedError) -> ClientError {
    match error {
        ChunkedError::TooLarge => ClientError::TooLarge,
        ChunkedError::LineTooLong => ClientError::Protocol("line too long in chunked body".into()),
        ChunkedError::BadSize => ClientError::Protocol("bad chunk size".into()),
        ChunkedError::DataNotTerminated => ClientError::Protocol("missing CRLF after chunk".into()),
        ChunkedError::TrailersTooLarge => ClientError::Protocol("trailers too large".into()),
        // Strict-only refusals; a lenient decoder does not produce them.
        other => ClientError::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(
        bytes: &[u8],
        method: &str,
        max: usize,
    ) -> Result<(ClientResponse, bool), ClientError> {
        let mut src = bytes;
        let mut reader = Reader::new(&mut src);
        read_response(&mut reader, method, max).await
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
    async fn a_streamed_2xx_body_goes_to_the_sink_in_pieces_and_other_answers_stay_whole() {
        async fn streamed(
            bytes: &[u8],
            max: u64,
        ) -> (Result<(ClientResponse, bool), ClientError>, Vec<u8>) {
            let mut got = Vec::new();
            let mut sink = |piece: &[u8]| {
                got.extend_from_slice(piece);
                Ok(())
            };
            let mut out = Streamed {
                max_bytes: max,
                sink: &mut sink,
            };
            let mut src = bytes;
            let mut reader = Reader::new(&mut src);
            let r = read_response_to(&mut reader, "GET", 10, Some(&mut out)).await;
            (r, got)
        }
        let big = "x".repeat(20_000);
        let framed = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n{big}"),
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4e20\r\n{big}\r\n0\r\n\r\n"
            ),
            format!("HTTP/1.1 200 OK\r\n\r\n{big}"),
        ];
        for (i, raw) in framed.iter().enumerate() {
            let (r, got) = streamed(raw.as_bytes(), 20_000).await;
            let (resp, reuse) = r.unwrap();
            assert!(resp.body.is_empty() && got == big.as_bytes(), "{i}");
            assert_eq!(reuse, i < 2, "{i}");
            let (r, _) = streamed(raw.as_bytes(), 19_999).await;
            assert_eq!(r.unwrap_err(), ClientError::TooLarge, "{i}");
        }
        let (r, got) = streamed(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
            100,
        )
        .await;
        assert_eq!(r.unwrap().0.body, b"no");
        assert!(got.is_empty());
        let (r, _) = streamed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 100).await;
        assert!(matches!(r, Err(ClientError::Protocol(_))));
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
}
