//! Messages with files: the `multipart/form-data` body Discord takes instead
//! of JSON when a message carries attachments. One `payload_json` part holds
//! the message (with an `attachments` array naming each file's `id` and
//! `filename`) and one `files[n]` part per file. Bodies come from memory, so
//! their total is capped before anything is encoded; Discord's own per-file
//! limit is checked here too, so an oversized file never costs a request.
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use serde_json::{json, Value};

/// Discord takes at most this many files on one message.
pub const MAX_FILES: usize = 10;
/// Discord's per-file limit without boosts (10 MiB).
pub const FILE_MAX_BYTES: usize = 10 * 1024 * 1024;
/// What the client sends at most in one message's files, summed (8 MiB).
pub const DEFAULT_UPLOAD_CAP: usize = 8 * 1024 * 1024;
/// Longest file name kept (Discord shows names, not paths).
const NAME_MAX: usize = 100;

/// One file to attach. `Debug` shows its name and size, never its contents.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    filename: String,
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// A file named `filename`, made safe for a `Content-Disposition` header:
    /// anything but ASCII letters, digits, `.`, `-` and `_` becomes `_`.
    pub fn new(filename: &str, bytes: Vec<u8>) -> Attachment {
        let mut name: String = filename
            .chars()
            .take(NAME_MAX)
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
                _ => '_',
            })
            .collect();
        if name.trim_matches('.').is_empty() {
            name = "file.bin".into();
        }
        Attachment {
            filename: name,
            bytes,
        }
    }

    /// The name Discord will show.
    pub fn filename(&self) -> &str {
        &self.filename
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.filename, self.bytes.len())
    }
}

/// `body` and `files` as one `multipart/form-data` request: its
/// `Content-Type` (with the boundary) and its bytes. Refused, without
/// encoding anything, when there are more than [`MAX_FILES`] files, a file
/// passes [`FILE_MAX_BYTES`] or all of them pass `cap`.
pub fn encode(body: &Value, files: &[Attachment], cap: usize) -> Result<(String, Vec<u8>), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} files; Discord takes at most {MAX_FILES}",
            files.len()
        ));
    }
    let total: usize = files.iter().map(|f| f.bytes.len()).sum();
    if total > cap || files.iter().any(|f| f.bytes.len() > FILE_MAX_BYTES) {
        return Err(format!("files of {total} bytes pass the upload limit"));
    }
    let mut payload = body.clone();
    let listed: Vec<Value> = (0..files.len())
        .map(|n| json!({ "id": n, "filename": files[n].filename }))
        .collect();
    match payload.as_object_mut() {
        Some(m) => m.insert("attachments".into(), Value::Array(listed)),
        None => return Err("a message body must be a JSON object".into()),
    };
    let payload = serde_json::to_vec(&payload).map_err(|e| format!("body: {e}"))?;
    let boundary = boundary_for(&payload, files);
    let mut out = Vec::with_capacity(total + payload.len() + 256 * (files.len() + 1));
    part(&mut out, &boundary, "payload_json", None, &payload);
    for (n, f) in files.iter().enumerate() {
        part(
            &mut out,
            &boundary,
            &format!("files[{n}]"),
            Some(&f.filename),
            &f.bytes,
        );
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((format!("multipart/form-data; boundary={boundary}"), out))
}

/// One part: its boundary line, headers, blank line, bytes and line end.
fn part(out: &mut Vec<u8>, boundary: &str, name: &str, filename: Option<&str>, bytes: &[u8]) {
    let head = match filename {
        Some(f) => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ),
        None => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\
             Content-Type: application/json\r\n\r\n"
        ),
    };
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A boundary that occurs in no part (random, so a log cannot be written to
/// contain it; checked anyway).
fn boundary_for(payload: &[u8], files: &[Attachment]) -> String {
    let state = RandomState::new();
    let mut salt = 0u64;
    loop {
        let mut h = state.build_hasher();
        h.write_u64(salt);
        let b = format!("drone-discord-{:016x}", h.finish());
        let inside = |hay: &[u8]| hay.windows(b.len()).any(|w| w == b.as_bytes());
        if !inside(payload) && !files.iter().any(|f| inside(&f.bytes)) {
            return b;
        }
        salt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_header_safe_and_debug_hides_contents() {
        let a = Attachment::new("build/\"x\"\r\n.log", b"secret output".to_vec());
        assert_eq!(a.filename(), "build__x___.log");
        assert_eq!(format!("{a:?}"), "build__x___.log (13 bytes)");
        assert_eq!(Attachment::new("..", vec![]).filename(), "file.bin");
    }

    #[test]
    fn encodes_payload_json_and_numbered_files_with_their_attachments() {
        let files = [
            Attachment::new("a.log", b"one".to_vec()),
            Attachment::new("b.log", vec![]),
        ];
        let (ctype, body) = encode(&json!({"content": "hi"}), &files, 1024).unwrap();
        let boundary = ctype
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert!(text.contains(r#"name="files[0]"; filename="a.log""#));
        assert!(text.contains("\r\n\r\none\r\n"));
        assert!(text.contains(r#"name="files[1]"; filename="b.log""#));
        // The payload_json part, compared as JSON: key order differs when
        // serde_json keeps insertion order (the mongodb feature turns that on).
        let payload = text
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|part| part.split("\r\n").next())
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(payload).unwrap(),
            json!({"attachments": [{"filename": "a.log", "id": 0}, {"filename": "b.log", "id": 1}], "content": "hi"})
        );
    }

    #[test]
    fn refuses_too_many_too_big_or_over_the_cap() {
        let body = json!({});
        let eleven = vec![Attachment::new("x", vec![]); 11];
        assert!(encode(&body, &eleven, DEFAULT_UPLOAD_CAP).is_err());
        let big = [Attachment::new("x", vec![0; FILE_MAX_BYTES + 1])];
        assert!(encode(&body, &big, usize::MAX).is_err());
        let two = [
            Attachment::new("x", vec![0; 600]),
            Attachment::new("y", vec![0; 600]),
        ];
        assert!(encode(&body, &two, 1000).is_err());
        assert!(encode(&body, &two, 1200).is_ok());
        assert!(encode(&json!([]), &[], 10).is_err());
    }

    #[test]
    fn the_boundary_never_occurs_in_a_part() {
        let files = [Attachment::new("x", b"--drone-discord-".repeat(10))];
        let (ctype, body) = encode(&json!({}), &files, 1024).unwrap();
        let boundary = ctype.rsplit('=').next().unwrap();
        let count = body
            .windows(boundary.len())
            .filter(|w| *w == boundary.as_bytes())
            .count();
        assert_eq!(count, 3, "payload_json, files[0] and the close");
    }
}
