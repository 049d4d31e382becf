//! Property of the server's request reader ([`crate::http::request`]):
//!
//! * whatever the bytes and however they are split across reads, the reader
//!   ends every request with a verdict (a request, a refusal with one of the
//!   statuses the server answers, or end of stream) and never panics;
//! * the split stream gets exactly the verdicts the same bytes get in one read;
//! * every accepted request, written out again (framing replaced by
//!   `Content-Length`), is read back as the same request.
use tokio::io::AsyncRead;
use tokio::time::{Duration, Instant};

use super::input::Input;
use super::runtime::block_on;
use super::split_reader::SplitReader;
use crate::http::request::{Framing, Head, ReadError, RequestReader};
use crate::http::ServerLimits;

/// Requests read from one stream at most.
const MAX_REQUESTS: usize = 8;
/// The statuses the reader may refuse with when no deadline can pass.
const REFUSALS: [u16; 7] = [400, 411, 413, 417, 431, 501, 505];

/// Small limits, so the fuzzer reaches every bound quickly.
pub fn limits() -> ServerLimits {
    ServerLimits {
        max_header_bytes: 1024,
        max_headers: 16,
        max_body_bytes: 256,
        ..ServerLimits::default()
    }
}

/// One verdict of the reader, comparable across runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Request(Accepted),
    Refused(u16),
    /// The stream ended: `Closed` between requests, `Truncated` inside one.
    End(&'static str),
}

/// What the reader made of one accepted request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub method: String,
    pub target: String,
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    pub expect_continue: bool,
    pub keep_alive: bool,
    pub body: Vec<u8>,
}

impl Accepted {
    fn new(head: Head, body: Vec<u8>) -> Self {
        Accepted {
            method: head.method,
            target: head.target,
            version: head.version,
            headers: head.headers,
            framing: head.framing,
            expect_continue: head.expect_continue,
            keep_alive: head.keep_alive,
            body,
        }
    }

    /// The request on the wire again, its body framed by `Content-Length`.
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(format!(" HTTP/1.{}\r\n", self.version).as_bytes());
        for (name, value) in self.unframed_headers() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.framing != Framing::Empty {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The header fields other than the ones that frame the body.
    fn unframed_headers(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.headers
            .iter()
            .filter(|(n, _)| n != "content-length" && n != "transfer-encoding")
    }
}

/// Reads requests until the stream ends, one is refused, or `MAX_REQUESTS`.
pub async fn verdicts<R: AsyncRead + Unpin>(io: R, limits: ServerLimits) -> Vec<Verdict> {
    let mut reader = RequestReader::new(io, limits);
    let mut out = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let deadline = Instant::now() + Duration::from_secs(60);
        let verdict = match reader.wait_for_request(deadline).await {
            Err(e) => end(e),
            Ok(()) => match reader.read_head(deadline).await {
                Err(e) => end(e),
                Ok(head) => match reader.read_body(&head, deadline).await {
                    Err(e) => end(e),
                    Ok(body) => Verdict::Request(Accepted::new(head, body)),
                },
            },
        };
        let last = !matches!(verdict, Verdict::Request(_));
        out.push(verdict);
        if last {
            break;
        }
    }
    out
}

fn end(e: ReadError) -> Verdict {
    match e {
        ReadError::Reject { status, reason } => {
            assert!(
                REFUSALS.contains(&status),
                "refused with {status} ({reason}), which no deadline explains"
            );
            Verdict::Refused(status)
        }
        ReadError::Closed => Verdict::End("closed"),
        ReadError::Truncated => Verdict::End("truncated"),
        ReadError::Idle => panic!("idle, but an in-memory stream never waits"),
        ReadError::Io(e) => panic!("I/O error from an in-memory stream: {e}"),
    }
}

/// The property. Input: split sizes (see [`SplitReader::from_input`]), then the stream.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mut split_sizes = Input::new(input.take(9));
    let stream = input.rest();
    let split = block_on(verdicts(
        SplitReader::from_input(&mut split_sizes, stream),
        limits(),
    ));
    let whole = block_on(verdicts(SplitReader::whole(stream), limits()));
    assert_eq!(split, whole, "split reads changed the verdicts");

    for verdict in &whole {
        let Verdict::Request(req) = verdict else {
            continue;
        };
        check_accepted(req);
        // Written out again, the request reads back the same. The head may
        // grow (", " after names, CRLF for bare LF, Content-Length for
        // chunked), so the second read allows a larger head.
        let again = req.serialise();
        let relaxed = ServerLimits {
            max_header_bytes: 4 * limits().max_header_bytes,
            ..limits()
        };
        let reread = block_on(verdicts(SplitReader::whole(&again), relaxed));
        let expected = Accepted {
            framing: match req.framing {
                Framing::Empty => Framing::Empty,
                _ => Framing::Length(req.body.len()),
            },
            headers: req
                .unframed_headers()
                .cloned()
                .chain((req.framing != Framing::Empty).then(|| {
                    (
                        "content-length".to_owned(),
                        req.body.len().to_string().into_bytes(),
                    )
                }))
                .collect(),
            ..req.clone()
        };
        assert_eq!(
            reread,
            vec![Verdict::Request(expected), Verdict::End("closed")],
            "the re-serialised request {:?} reads differently",
            String::from_utf8_lossy(&again)
        );
    }
}

/// What every accepted request satisfies on its own.
fn check_accepted(req: &Accepted) {
    assert!(req.version <= 1, "HTTP/1.{} accepted", req.version);
    assert!(
        req.body.len() <= limits().max_body_bytes,
        "body over the limit"
    );
    assert!(
        req.headers.len() <= limits().max_headers,
        "too many headers"
    );
    if let Framing::Length(n) = req.framing {
        assert_eq!(req.body.len(), n, "body length differs from Content-Length");
    }
    if req.framing == Framing::Empty {
        assert!(req.body.is_empty(), "a body without framing");
    }
    assert!(
        req.headers
            .iter()
            .all(|(n, _)| n.bytes().all(|b| !b.is_ascii_uppercase())),
        "header names are lower-cased"
    );
}
