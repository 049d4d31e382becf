//! The fake Discord's reading of a `multipart/form-data` message (a message
//! with files), as strict as Discord: the boundary from `Content-Type`, a
//! `Content-Disposition: form-data; name=…` on every part, a required
//! `payload_json`, `files[n]` parts with a filename, at most 10 of them,
//! 10 MiB each (else 413 40005 "Request entity too large"), and an
//! `attachments` array in the payload naming exactly those `id`s with their
//! filenames.
use serde_json::{Map, Value};

use super::form::invalid_form;

/// Discord's per-file limit without boosts.
pub const FILE_MAX: usize = 10 * 1024 * 1024;
/// Files on one message.
pub const FILES_MAX: usize = 10;

/// One uploaded file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedFile {
    /// The `n` of `files[n]`.
    pub index: usize,
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// A parsed upload: the message (from `payload_json`) and its files.
pub struct Upload {
    pub payload: Map<String, Value>,
    pub files: Vec<UploadedFile>,
}

/// Why an upload is refused: the status and Discord's error body.
pub type Refusal = (u16, Value);

fn bad(what: &str) -> Refusal {
    (400, invalid_form(&[], "MULTIPART_INVALID", what))
}

/// Parse `body` sent with `content_type` (already known to be multipart).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Upload, Refusal> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or_else(|| bad("multipart without a boundary"))?;
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(bad("not multipart/form-data"));
    }
    let delim = format!("--{boundary}");
    let mut rest = body
        .strip_prefix(delim.as_bytes())
        .ok_or_else(|| bad("body does not start with the boundary"))?;
    let mut payload = None;
    let mut files: Vec<UploadedFile> = Vec::new();
    let sep = format!("\r\n{delim}");
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("boundary not followed by CRLF"))?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("part without headers"))?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| bad("part headers"))?;
        rest = &rest[head_end + 4..];
        let end =
            find(rest, sep.as_bytes()).ok_or_else(|| bad("part not closed by the boundary"))?;
        let content = &rest[..end];
        rest = &rest[end + sep.len()..];
        let (name, filename) = disposition(head)?;
        if name == "payload_json" {
            let v: Value = serde_json::from_slice(content).map_err(|_| {
                (
                    400,
                    super::form::invalid_form(&["payload_json"], "JSON", "invalid JSON"),
                )
            })?;
            let Value::Object(m) = v else {
                return Err(bad("payload_json is not an object"));
            };
            payload = Some(m);
            continue;
        }
        let index = name
            .strip_prefix("files[")
            .and_then(|n| n.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad("unknown part name"))?;
        let filename = filename.ok_or_else(|| bad("a file part without a filename"))?;
        if content.len() > FILE_MAX {
            return Err((
                413,
                serde_json::json!({"code": 40005, "message": "Request entity too large"}),
            ));
        }
        if files.iter().any(|f| f.index == index) {
            return Err(bad("files[n] repeated"));
        }
        files.push(UploadedFile {
            index,
            filename,
            bytes: content.to_vec(),
        });
    }
    if !matches!(rest, b"--" | b"--\r\n") {
        return Err(bad("text after the closing boundary"));
    }
    if files.len() > FILES_MAX {
        return Err(bad("more than 10 files"));
    }
    let payload = payload.ok_or_else(|| bad("payload_json is required"))?;
    check_attachments(&payload, &files)?;
    Ok(Upload { payload, files })
}

/// Every file is listed in `attachments` (by `id` = n, with its filename),
/// and nothing else is.
fn check_attachments(payload: &Map<String, Value>, files: &[UploadedFile]) -> Result<(), Refusal> {
    let listed = match payload.get("attachments") {
        Some(Value::Array(a)) => a.as_slice(),
        None if files.is_empty() => &[],
        _ => return Err(bad("attachments must list every files[n]")),
    };
    let matches = listed.len() == files.len()
        && files.iter().all(|f| {
            listed.iter().any(|a| {
                a.get("id").and_then(Value::as_u64) == Some(f.index as u64)
                    && a.get("filename").and_then(Value::as_str) == Some(f.filename.as_str())
            })
        });
    if !matches {
        return Err((
            400,
            invalid_form(
                &["attachments"],
                "ATTACHMENT_NOT_FOUND",
                "Unknown attachment",
            ),
        ));
    }
    Ok(())
}

/// `name` and `filename` of a part's `Content-Disposition: form-data`.
fn disposition(head: &str) -> Result<(String, Option<String>), Refusal> {
    let value = head
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then(|| v.trim())
        })
        .ok_or_else(|| bad("part without Content-Disposition"))?;
    let mut params = value.split(';').map(str::trim);
    if params.next() != Some("form-data") {
        return Err(bad("Content-Disposition is not form-data"));
    }
    let (mut name, mut filename) = (None, None);
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| bad("Content-Disposition parameter"))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| bad("unquoted Content-Disposition parameter"))?;
        match k {
            "name" => name = Some(v.to_string()),
            "filename" if !v.is_empty() => filename = Some(v.to_string()),
            _ => return Err(bad("unknown Content-Disposition parameter")),
        }
    }
    Ok((name.ok_or_else(|| bad("part without a name"))?, filename))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
