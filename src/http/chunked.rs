//! The one decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1),
//! shared by the server (requests from Drone) and the client (responses from
//! Discord).
//!
//! The two sides read the same grammar with a different tolerance, which the
//! caller picks with [`Strictness`]:
//!
//! - [`Strictness::Strict`] (the server): every line ends in CRLF, the chunk
//!   size is hex digits with nothing in front, extensions are printable, and
//!   trailer fields are `name: value`, counted and bounded like the headers.
//!   A peer that writes anything else is refused: a lenient server is how
//!   request smuggling starts.
//! - [`Strictness::Lenient`] (the client): a bare LF ends a line too, the
//!   size may be surrounded by whitespace, and trailers are only bounded in
//!   size. We trust the framing of the servers we chose to talk to, and would
//!   rather read an odd but harmless response than fail a Discord call.
//!
//! The decoder is a pure state machine over bytes ([`ChunkedDecoder::decode`]):
//! it does no I/O, so each side keeps its own buffer, deadlines and error
//! type, and maps a [`ChunkedError`] to its own answer. Every bound is in
//! [`ChunkedLimits`]; nothing here can panic on input.

use std::fmt;

/// How tolerant the decoder is of sloppy framing; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// CRLF only, strict chunk-size and trailer syntax (the server).
    Strict,
    /// Bare LF accepted, whitespace around the size tolerated (the client).
    Lenient,
}

/// Every bound the decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Decoded body bytes ([`ChunkedError::TooLarge`] beyond).
    pub max_body: usize,
    /// Longest chunk-size line (size plus extensions); in lenient mode also
    /// the longest trailer line.
    pub max_line: usize,
    /// Trailer section bytes. Strict counts each line with its CRLF and
    /// refuses a line that would not fit; lenient counts line contents.
    pub max_trailer_bytes: usize,
    /// Trailer fields (strict mode only).
    pub max_trailers: usize,
}

/// What is wrong with a chunked body. The caller turns it into its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line (lenient: any line) is longer than `max_line`.
    LineTooLong,
    /// Strict: a line ended in a bare LF.
    NotCrlf,
    /// The chunk size is not a hex number.
    BadSize,
    /// Strict: a chunk extension holds a control or non-ASCII byte.
    BadExtension,
    /// The body would be larger than `max_body`.
    TooLarge,
    /// The chunk data is not followed by the line end.
    DataNotTerminated,
    /// The trailer section is larger than `max_trailer_bytes`.
    TrailersTooLarge,
    /// Strict: more trailer fields than `max_trailers`.
    TooManyTrailers,
    /// Strict: a trailer line is not a field (`name: value`).
    BadTrailer,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::LineTooLong => "chunk size line too long",
            ChunkedError::NotCrlf => "line not terminated by CRLF",
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::BadExtension => "invalid chunk extension",
            ChunkedError::TooLarge => "body too large",
            ChunkedError::DataNotTerminated => "chunk data not followed by CRLF",
            ChunkedError::TrailersTooLarge => "trailer fields too large",
            ChunkedError::TooManyTrailers => "too many trailer fields",
            ChunkedError::BadTrailer => "malformed trailer field",
        })
    }
}

impl std::error::Error for ChunkedError {}

/// Where the decoder is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes still to come.
    Data(usize),
    /// After chunk data, expecting its line end.
    DataEnd,
    /// After the last chunk, expecting trailer lines up to an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// Decodes one chunked body, fed with whatever bytes have arrived.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    strictness: Strictness,
    limits: ChunkedLimits,
    state: State,
    /// Bytes at the start of the input already searched for a line end, so
    /// a line trickled in byte by byte is not rescanned on every call.
    scanned: usize,
    trailer_bytes: usize,
    trailers: usize,
}

impl ChunkedDecoder {
    pub fn new(strictness: Strictness, limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            strictness,
            limits,
            state: State::Size,
            scanned: 0,
            trailer_bytes: 0,
            trailers: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True while the decoder is inside chunk data (so a caller can say the
    /// body, not its framing, was cut short).
    pub fn in_chunk_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// Decodes as much of `input` as possible, appending chunk data to
    /// `body`, and returns how many bytes of `input` it consumed. The caller
    /// drops those bytes and calls again with the rest plus whatever arrived
    /// since, until [`is_done`](Self::is_done). Bytes after the body are
    /// never consumed. `body` must be the same buffer on every call.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            let step = match self.state {
                State::Done => return Ok(used),
                State::Size => self.size_line(rest, body.len())?,
                State::Data(left) => {
                    let take = left.min(rest.len());
                    body.extend_from_slice(rest.get(..take).unwrap_or_default());
                    self.state = match left - take {
                        0 => State::DataEnd,
                        more => State::Data(more),
                    };
                    Some(take)
                }
                State::DataEnd => self.data_end(rest)?,
                State::Trailers => self.trailer_line(rest)?,
            };
            match step {
                Some(n) if n > 0 || self.state == State::Done => used += n,
                // Nothing more can be decoded until more input arrives.
                _ => return Ok(used),
            }
        }
    }

    /// The chunk-size line; `None` until it is complete.
    fn size_line(&mut self, input: &[u8], body_len: usize) -> Result<Option<usize>, ChunkedError> {
        let max = self.limits.max_line;
        let Some((line, used)) = self.line(input, max, ChunkedError::LineTooLong)? else {
            return Ok(None);
        };
        let size = match self.strictness {
            Strictness::Strict => strict_chunk_size(line)?,
            Strictness::Lenient => lenient_chunk_size(line)?,
        };
        self.state = if size == 0 {
            State::Trailers
        } else {
            if (body_len as u64).saturating_add(size) > self.limits.max_body as u64 {
                return Err(ChunkedError::TooLarge);
            }
            // Within max_body, so it fits in usize.
            State::Data(usize::try_from(size).map_err(|_| ChunkedError::TooLarge)?)
        };
        Ok(Some(used))
    }

    /// The line end after chunk data; `None` until it can be judged.
    fn data_end(&mut self, input: &[u8]) -> Result<Option<usize>, ChunkedError> {
        match self.strictness {
            // Exactly CRLF, judged as soon as two bytes are in.
            Strictness::Strict => match input.get(..2) {
                None => Ok(None),
                Some(b"\r\n") => {
                    self.state = State::Size;
                    Ok(Some(2))
                }
                Some(_) => Err(ChunkedError::DataNotTerminated),
            },
            // An empty line: CRLF or a bare LF.
            Strictness::Lenient => {
                let max = self.limits.max_line;
                let Some((line, used)) = self.line(input, max, ChunkedError::LineTooLong)? else {
                    return Ok(None);
                };
                if !line.is_empty() {
                    return Err(ChunkedError::DataNotTerminated);
                }
                self.state = State::Size;
                Ok(Some(used))
            }
        }
    }

    /// One trailer line, discarded; `None` until it is complete.
    fn trailer_line(&mut self, input: &[u8]) -> Result<Option<usize>, ChunkedError> {
        let (max, over) = match self.strictness {
            Strictness::Strict => (
                self.limits
                    .max_trailer_bytes
                    .saturating_sub(self.trailer_bytes),
                ChunkedError::TrailersTooLarge,
            ),
            Strictness::Lenient => (self.limits.max_line, ChunkedError::LineTooLong),
        };
        let Some((line, used)) = self.line(input, max, over)? else {
            return Ok(None);
        };
        if line.is_empty() {
            self.state = State::Done;
            return Ok(Some(used));
        }
        match self.strictness {
            Strictness::Strict => {
                self.trailer_bytes += line.len() + 2;
                self.trailers += 1;
                if self.trailers > self.limits.max_trailers {
                    return Err(ChunkedError::TooManyTrailers);
                }
                if !line.contains(&b':') {
                    return Err(ChunkedError::BadTrailer);
                }
            }
            Strictness::Lenient => {
                self.trailer_bytes += line.len();
                if self.trailer_bytes > self.limits.max_trailer_bytes {
                    return Err(ChunkedError::TrailersTooLarge);
                }
            }
        }
        Ok(Some(used))
    }

    /// The next complete line at the start of `input`, without its line end,
    /// and the bytes it used (line end included). `None` if it is not
    /// complete yet; `over` if it is (or is becoming) longer than `max`.
    fn line<'a>(
        &mut self,
        input: &'a [u8],
        max: usize,
        over: ChunkedError,
    ) -> Result<Option<(&'a [u8], usize)>, ChunkedError> {
        let from = self.scanned.min(input.len());
        let Some(lf) = input
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|off| from + off)
        else {
            if input.len() > max {
                return Err(over);
            }
            self.scanned = input.len();
            return Ok(None);
        };
        self.scanned = 0;
        // The same bound as for a line still arriving above, in both modes:
        // whether a long line came in one read or in several must not matter.
        if lf > max {
            return Err(over);
        }
        let line = input.get(..lf).unwrap_or_default();
        let content = match self.strictness {
            Strictness::Strict => line.strip_suffix(b"\r").ok_or(ChunkedError::NotCrlf)?,
            Strictness::Lenient => line.strip_suffix(b"\r").unwrap_or(line),
        };
        Ok(Some((content, lf + 1)))
    }
}

/// `chunk-size [ BWS ";" ext ]`: hex digits only, nothing before them.
/// Overflow can only mean a chunk far beyond any body limit: `u64::MAX`.
fn strict_chunk_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let (size, ext) = match line.iter().position(|&b| b == b';') {
        Some(i) => line.split_at(i),
        None => (line, &[][..]),
    };
    let size = size.trim_ascii_end();
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(ChunkedError::BadSize);
    }
    if !ext
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(ChunkedError::BadExtension);
    }
    let value = size.iter().try_fold(0u64, |acc, &d| {
        let digit = char::from(d).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(digit))
    });
    Ok(value.unwrap_or(u64::MAX))
}

/// The size before any `;`, whitespace trimmed, at most 16 hex digits;
/// extensions are ignored.
fn lenient_chunk_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let text = std::str::from_utf8(line).map_err(|_| ChunkedError::BadSize)?;
    let size = text.split(';').next().unwrap_or("").trim();
    if size.is_empty() || size.len() > 16 {
        return Err(ChunkedError::BadSize);
    }
    let size = usize::from_str_radix(size, 16).map_err(|_| ChunkedError::BadSize)?;
    Ok(size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChunkedLimits = ChunkedLimits {
        max_body: 64,
        max_line: 32,
        max_trailer_bytes: 64,
        max_trailers: 2,
    };

    /// Decodes `wire` fed whole, then again one byte at a time; both ways
    /// must agree. `Ok` holds the body and the bytes left unconsumed.
    fn decode(
        strictness: Strictness,
        wire: &[u8],
    ) -> Result<(Vec<u8>, usize), Option<ChunkedError>> {
        let whole = feed(strictness, wire, wire.len());
        let trickled = feed(strictness, wire, 1);
        assert_eq!(whole, trickled, "{}", String::from_utf8_lossy(wire));
        whole
    }

    /// Feeds `wire` in steps of `step` bytes like a socket would; `Err(None)`
    /// when the input ends before the body does.
    fn feed(
        strictness: Strictness,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), Option<ChunkedError>> {
        let mut decoder = ChunkedDecoder::new(strictness, LIMITS);
        let mut body = Vec::new();
        let (mut buf, mut arrived) = (Vec::new(), 0);
        loop {
            let used = decoder.decode(&buf, &mut body).map_err(Some)?;
            buf.drain(..used);
            if decoder.is_done() {
                return Ok((body, buf.len() + wire.len() - arrived));
            }
            let Some(more) = wire
                .get(arrived..(arrived + step).min(wire.len()))
                .filter(|m| !m.is_empty())
            else {
                return Err(None);
            };
            buf.extend_from_slice(more);
            arrived += more.len();
        }
    }

    const BOTH: [Strictness; 2] = [Strictness::Strict, Strictness::Lenient];

    #[test]
    fn decodes_chunks_extensions_and_trailers_in_both_modes() {
        let wire =
            b"5;name=value\r\nhello\r\n1 ;x\r\n \r\n0006\r\nworld!\r\n0\r\nX-T: yes\r\n\r\nNEXT";
        for mode in BOTH {
            assert_eq!(
                decode(mode, wire),
                Ok((b"hello world!".to_vec(), 4)),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn strict_requires_crlf_everywhere() {
        for wire in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
        ] {
            assert_eq!(
                decode(Strictness::Strict, wire),
                Err(Some(ChunkedError::NotCrlf)),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        assert_eq!(
            decode(Strictness::Strict, b"5\r\nhello\n0\r\n\r\n"),
            Err(Some(ChunkedError::DataNotTerminated))
        );
        assert_eq!(
            decode(Strictness::Strict, b"5\r\nhelloXX0\r\n\r\n"),
            Err(Some(ChunkedError::DataNotTerminated))
        );
    }

    #[test]
    fn lenient_accepts_bare_lf_everywhere() {
        let wire = b"5\nhello\n6\r\n world\n0\nX: 1\n\nNEXT";
        assert_eq!(
            decode(Strictness::Lenient, wire),
            Ok((b"hello world".to_vec(), 4))
        );
        assert_eq!(
            decode(Strictness::Lenient, b"2\r\nabX\n0\r\n\r\n"),
            Err(Some(ChunkedError::DataNotTerminated))
        );
    }

    #[test]
    fn chunk_size_syntax_differs_by_mode() {
        // Whitespace before the size: refused by the server, read by the client.
        assert_eq!(
            decode(Strictness::Strict, b" 5\r\nhello\r\n0\r\n\r\n"),
            Err(Some(ChunkedError::BadSize))
        );
        assert_eq!(
            decode(Strictness::Lenient, b" 5 \r\nhello\r\n0\r\n\r\n"),
            Ok((b"hello".to_vec(), 0))
        );
        // A control byte in an extension: refused by the server, ignored by the client.
        assert_eq!(
            decode(Strictness::Strict, b"5;a\x01\r\nhello\r\n0\r\n\r\n"),
            Err(Some(ChunkedError::BadExtension))
        );
        assert_eq!(
            decode(Strictness::Lenient, b"5;a\x01\r\nhello\r\n0\r\n\r\n"),
            Ok((b"hello".to_vec(), 0))
        );
        for mode in BOTH {
            for bad in [&b"zz\r\n"[..], b"-1\r\n", b"\r\n"] {
                assert_eq!(
                    decode(mode, bad),
                    Err(Some(ChunkedError::BadSize)),
                    "{mode:?}"
                );
            }
        }
    }

    #[test]
    fn body_limit_is_checked_before_the_data_arrives() {
        for mode in BOTH {
            // 0x41 = 65 > 64: refused on the size line alone.
            assert_eq!(
                decode(mode, b"41\r\n"),
                Err(Some(ChunkedError::TooLarge)),
                "{mode:?}"
            );
            assert_eq!(
                decode(mode, b"20\r\n").map(|_| ()),
                Err(None),
                "{mode:?}: 32 bytes fit and are awaited"
            );
            let mut two = b"20\r\n".to_vec();
            two.extend_from_slice(&[b'a'; 32]);
            two.extend_from_slice(b"\r\n21\r\n");
            assert_eq!(
                decode(mode, &two),
                Err(Some(ChunkedError::TooLarge)),
                "{mode:?}"
            );
        }
        // A size too long for any integer: "too large" for the server, "bad" for the client.
        assert_eq!(
            decode(Strictness::Strict, b"ffffffffffffffffffff\r\n"),
            Err(Some(ChunkedError::TooLarge))
        );
        assert_eq!(
            decode(Strictness::Lenient, b"ffffffffffffffffffff\r\n"),
            Err(Some(ChunkedError::BadSize))
        );
    }

    #[test]
    fn lines_are_bounded_even_before_they_end() {
        let long = [b'1'; 40];
        for mode in BOTH {
            assert_eq!(
                decode(mode, &long),
                Err(Some(ChunkedError::LineTooLong)),
                "{mode:?}"
            );
        }
    }

    /// Found by the `chunked` fuzz target: a lenient line over `max_line`
    /// was refused when it trickled in but accepted when its line end came in
    /// the same read, so the bound depended on how the peer's bytes were split.
    #[test]
    fn a_long_line_is_refused_however_it_arrives() {
        let mut size_line = [b' '; 40].to_vec();
        size_line.extend_from_slice(b"1\nx\n0\n\n");
        let mut trailer = b"0\n".to_vec();
        trailer.extend_from_slice(&[b'a'; 40]);
        trailer.extend_from_slice(b"\n\n");
        for wire in [size_line, trailer] {
            assert_eq!(
                decode(Strictness::Lenient, &wire),
                Err(Some(ChunkedError::LineTooLong)),
                "{}",
                String::from_utf8_lossy(&wire)
            );
        }
    }

    #[test]
    fn strict_trailers_are_fields_counted_and_bounded() {
        assert_eq!(
            decode(Strictness::Strict, b"0\r\nno colon\r\n\r\n"),
            Err(Some(ChunkedError::BadTrailer))
        );
        assert_eq!(
            decode(Strictness::Strict, b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            Err(Some(ChunkedError::TooManyTrailers))
        );
        let mut big = b"0\r\nX: ".to_vec();
        big.extend_from_slice(&[b'a'; 70]);
        assert_eq!(
            decode(Strictness::Strict, &big),
            Err(Some(ChunkedError::TrailersTooLarge))
        );
    }

    #[test]
    fn lenient_trailers_are_only_bounded_in_size() {
        assert_eq!(
            decode(
                Strictness::Lenient,
                b"0\r\nno colon\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
            ),
            Ok((Vec::new(), 0))
        );
        let mut many = b"0\r\n".to_vec();
        for _ in 0..3 {
            many.extend_from_slice(&[b'a'; 30]);
            many.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            decode(Strictness::Lenient, &many),
            Err(Some(ChunkedError::TrailersTooLarge))
        );
    }

    #[test]
    fn only_the_data_state_is_inside_chunk_data() {
        let mut decoder = ChunkedDecoder::new(Strictness::Lenient, LIMITS);
        let mut body = Vec::new();
        assert!(!decoder.in_chunk_data());
        assert_eq!(decoder.decode(b"5\r\nhe", &mut body), Ok(5));
        assert!(decoder.in_chunk_data());
        assert_eq!(decoder.decode(b"llo", &mut body), Ok(3));
        assert!(!decoder.in_chunk_data() && !decoder.is_done());
        assert_eq!(decoder.decode(b"\r\n0\r\n\r\nrest", &mut body), Ok(7));
        assert!(decoder.is_done());
        assert_eq!(body, b"hello");
    }
}
