//! Property of the chunked decoder ([`crate::http::chunked`]), in both
//! strictness modes:
//!
//! * fed in fuzzer-chosen pieces, as the server and the client feed it, it
//!   reaches the same body or the same error as when fed everything at once,
//!   and never consumes a byte after the body;
//! * any body, encoded in fuzzer-chosen chunk sizes, decodes back to itself in
//!   both modes, using exactly the encoded bytes.
use super::input::Input;
use crate::http::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits, Strictness};

/// Small bounds, so the fuzzer reaches each of them.
pub fn limits() -> ChunkedLimits {
    ChunkedLimits {
        max_body: 512,
        max_line: 64,
        max_trailer_bytes: 128,
        max_trailers: 4,
    }
}

/// What decoding a whole stream came to: the body and the bytes used, or the error.
pub type Outcome = Result<(Vec<u8>, usize), ChunkedError>;

/// Feeds `stream` in pieces of `sizes` (cycled; 0 means everything left) the
/// way the callers do: a buffer that grows by each read and loses what the
/// decoder used. `Ok(None)` for a stream that ends before the body does.
pub fn decode_in_pieces(
    strictness: Strictness,
    stream: &[u8],
    sizes: &[usize],
) -> Result<Option<(Vec<u8>, usize)>, ChunkedError> {
    let mut decoder = ChunkedDecoder::new(strictness, limits());
    let mut body = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let (mut fed, mut used_total, mut turn) = (0, 0, 0);
    loop {
        let used = decoder.decode(&buf, &mut body)?;
        assert!(used <= buf.len(), "the decoder used bytes it was not given");
        buf.drain(..used);
        used_total += used;
        if decoder.is_done() {
            return Ok(Some((body, used_total)));
        }
        if fed == stream.len() {
            return Ok(None);
        }
        let size = sizes.get(turn % sizes.len().max(1)).copied().unwrap_or(0);
        turn += 1;
        let n = if size == 0 {
            stream.len() - fed
        } else {
            size.min(stream.len() - fed)
        };
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
    }
}

/// `body` chunked in pieces of `sizes` (cycled; at least 1 byte each).
pub fn encode(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut at, mut turn) = (0, 0);
    while at < body.len() {
        let size = sizes
            .get(turn % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        turn += 1;
        let n = size.min(body.len() - at);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The property. Input: a mode byte, piece sizes, then the stream (or body).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let sizes: Vec<usize> = (0..1 + input.byte() % 8)
        .map(|_| usize::from(input.byte() % 80))
        .collect();
    let rest = input.rest();
    if mode % 2 == 0 {
        for strictness in [Strictness::Strict, Strictness::Lenient] {
            let whole = decode_in_pieces(strictness, rest, &[0]);
            let pieces = decode_in_pieces(strictness, rest, &sizes);
            assert_eq!(
                pieces, whole,
                "{strictness:?}: pieces {sizes:?} decode differently"
            );
            if let Ok(Some((body, used))) = whole {
                assert!(body.len() <= limits().max_body, "body over the limit");
                assert!(used <= rest.len());
            }
        }
    } else {
        let body = rest.get(..limits().max_body).unwrap_or(rest);
        let mut encoded = encode(body, &sizes);
        let size = encoded.len();
        // Whatever follows the body stays unread.
        encoded.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for strictness in [Strictness::Strict, Strictness::Lenient] {
            for pieces in [&[0][..], &sizes] {
                let got = decode_in_pieces(strictness, &encoded, pieces);
                assert_eq!(
                    got,
                    Ok(Some((body.to_vec(), size))),
                    "{strictness:?}: an encoded body did not decode back"
                );
            }
        }
    }
}
