//! A step's log read as it arrives, keeping only its tail.
//!
//! Drone answers `GET …/logs/{stage}/{step}` with the stored log as is: a JSON
//! array of lines `{"pos": 0, "out": "…\n", "time": 3}`, or, from some log
//! stores, the same objects one per line (JSON lines). Both are read the same
//! way: objects are cut out of the stream at nesting depth zero (brackets,
//! commas and whitespace between them are skipped) and each object's `out`
//! is appended to a tail that holds at most `cap` bytes, so the memory a log
//! costs is bounded whatever its size: `cap`, plus one line of at most
//! [`MAX_LINE_BYTES`] (a longer one is left out, with a note), plus the read
//! buffers. Anything else at depth zero is a garbled answer.
use std::collections::VecDeque;

/// Longest JSON object of one log line that is read; a longer one is left out.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The tail of a step's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepLog {
    /// The last bytes of the log's text (every line's `out`, in order), at
    /// most the cap; when cut, it starts at a line boundary if one is near.
    pub text: String,
    /// Bytes of log text in all, kept or not.
    pub total_bytes: u64,
    /// Lines (objects) in all.
    pub lines: u64,
}

impl StepLog {
    /// Whether Drone had nothing (yet): no line at all.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Whether the start of the log was cut off.
    pub fn is_cut(&self) -> bool {
        (self.text.len() as u64) < self.total_bytes
    }
}

/// The incremental reader. Feed it the body's pieces, then [`LogReader::finish`].
#[derive(Debug)]
pub struct LogReader {
    cap: usize,
    tail: VecDeque<u8>,
    total: u64,
    lines: u64,
    object: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    too_long: bool,
}

impl LogReader {
    /// A reader keeping at most `cap` bytes of text.
    pub fn new(cap: usize) -> LogReader {
        LogReader {
            cap,
            tail: VecDeque::new(),
            total: 0,
            lines: 0,
            object: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            too_long: false,
        }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            if self.depth == 0 {
                match b {
                    b'{' => {
                        self.depth = 1;
                        self.object.clear();
                        self.object.push(b);
                        self.too_long = false;
                    }
                    b'[' | b']' | b',' | b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => return Err("garbled log: not a JSON array of lines".into()),
                }
                continue;
            }
            if !self.too_long {
                if self.object.len() >= MAX_LINE_BYTES {
                    self.too_long = true;
                    self.object = Vec::new();
                } else {
                    self.object.push(b);
                }
            }
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.line_done()?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn line_done(&mut self) -> Result<(), String> {
        self.lines += 1;
        if self.too_long {
            self.push("[drone-discord: a log line longer than 64 KiB is left out]\n".as_bytes());
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&self.object)
            .map_err(|e| format!("garbled log line {}: {e}", self.lines))?;
        self.push(v["out"].as_str().unwrap_or_default().as_bytes());
        Ok(())
    }

    fn push(&mut self, text: &[u8]) {
        self.total += text.len() as u64;
        let keep = text
            .get(text.len().saturating_sub(self.cap)..)
            .unwrap_or_default();
        self.tail.extend(keep);
        let excess = self.tail.len().saturating_sub(self.cap);
        self.tail.drain(..excess);
    }

    /// The log, once the body is complete; a body that ends inside a line is garbled.
    pub fn finish(mut self) -> Result<StepLog, String> {
        if self.depth != 0 {
            return Err("garbled log: the body ends inside a line".into());
        }
        let bytes = self.tail.make_contiguous();
        let mut start = 0;
        if (bytes.len() as u64) < self.total {
            // Cut: start after the first newline in the first few KiB, else
            // at the first char boundary.
            start = bytes
                .iter()
                .take(4096)
                .position(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            while bytes.get(start).is_some_and(|&b| (0x80..0xC0).contains(&b)) {
                start += 1;
            }
        }
        let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned();
        Ok(StepLog {
            text,
            total_bytes: self.total,
            lines: self.lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cap: usize, body: &[u8], piece: usize) -> Result<StepLog, String> {
        let mut r = LogReader::new(cap);
        for chunk in body.chunks(piece.max(1)) {
            r.feed(chunk)?;
        }
        r.finish()
    }

    #[test]
    fn arrays_and_json_lines_read_the_same_however_they_are_split() {
        let array = br#"[{"pos":0,"out":"+ make test\n","time":0},{"pos":1,"out":"a \"}{[\" b\n","time":1}]"#;
        let lines = b"{\"pos\":0,\"out\":\"+ make test\\n\",\"time\":0}\n{\"pos\":1,\"out\":\"a \\\"}{[\\\" b\\n\"}\n";
        for body in [&array[..], &lines[..]] {
            for piece in [1, 3, 7, 1000] {
                let log = read(1000, body, piece).unwrap();
                assert_eq!(log.text, "+ make test\na \"}{[\" b\n");
                assert_eq!((log.lines, log.is_cut()), (2, false));
            }
        }
        assert!(read(10, b"", 1).unwrap().is_empty());
        assert!(read(10, b"[]", 1).unwrap().is_empty());
    }

    #[test]
    fn only_the_tail_is_kept_from_a_line_boundary() {
        let mut body = b"[".to_vec();
        for i in 0..1000 {
            body.extend(format!(r#"{{"pos":{i},"out":"line {i:04} ünï\n"}},"#).as_bytes());
        }
        body.extend(b"{}]");
        let log = read(100, &body, 4096).unwrap();
        assert!(log.is_cut() && log.text.len() <= 100, "{:?}", log.text);
        assert!(log.text.starts_with("line ") && log.text.ends_with("line 0999 ünï\n"));
        assert_eq!(log.lines, 1001);
        assert_eq!(log.total_bytes, 1000 * "line 0000 ünï\n".len() as u64);
    }

    #[test]
    fn a_huge_line_is_left_out_and_garbage_is_refused() {
        let huge = format!(
            r#"[{{"out":"{}"}},{{"out":"end\n"}}]"#,
            "x".repeat(MAX_LINE_BYTES)
        );
        let log = read(1 << 20, huge.as_bytes(), 8192).unwrap();
        assert!(log.text.contains("left out") && log.text.ends_with("end\n"));
        for bad in [
            &b"<html>502</html>"[..],
            b"[{\"out\":1",
            b"[{\"out\" \"x\"}]",
            b"null",
        ] {
            assert!(
                read(100, bad, 5).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
