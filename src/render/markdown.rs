//! Untrusted text made safe to show in an embed: flattened to one line or
//! cleaned of control characters, Markdown escaped, URLs checked to be http(s)
//! and bounded, links written so Markdown cannot break them. Cutting to length
//! is [`crate::text`]'s job.
use super::embed::SHORT_VALUE_MAX;
use super::limits::{count, URL_MAX};
use crate::text::{controls_to_spaces, truncate_chars as truncate};

/// Shown instead of an empty name or value, which Discord rejects.
pub(super) const PLACEHOLDER: &str = "—";

/// One line: control characters (newlines included) become spaces; trimmed.
pub(super) fn one_line(s: &str) -> String {
    controls_to_spaces(s).trim().to_owned()
}

/// Several lines: `\r\n` → `\n`, other control characters except tab dropped; trimmed.
pub(super) fn multi_line(s: &str) -> String {
    let mapped: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    mapped.trim().to_owned()
}

pub(super) fn or_placeholder(s: String) -> String {
    if s.trim().is_empty() {
        PLACEHOLDER.to_owned()
    } else {
        s
    }
}

/// Escape the Markdown characters that would restyle a name shown in a field value.
pub(super) fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A URL Discord will accept in an embed: http(s), no whitespace, bounded.
pub(super) fn http_url(s: &str) -> Option<String> {
    let s = s.trim();
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let scheme_len = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return None;
    };
    let ok = s.len() > scheme_len
        && s.len() <= URL_MAX
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_owned())
}

/// A URL made safe inside Markdown's `(...)`.
pub(super) fn md_url(url: &str) -> String {
    url.replace('(', "%28").replace(')', "%29")
}

/// `[text](url)` when there is a URL and the link fits a short field; plain text otherwise.
pub(super) fn link_or_text(text: &str, url: Option<&str>) -> String {
    let text = escape_md(&truncate(&one_line(text), 200));
    match url {
        Some(url) => {
            let link = format!("[{text}]({})", md_url(url));
            if count(&link) <= SHORT_VALUE_MAX {
                link
            } else {
                text
            }
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(http_url(" https://a.b/c "), Some("https://a.b/c".into()));
        assert_eq!(http_url("HTTP://a.b"), Some("HTTP://a.b".into()));
        for bad in [
            "",
            "https://",
            "javascript:alert(1)",
            "ftp://x",
            "https://a b",
            "ü",
        ] {
            assert_eq!(http_url(bad), None, "{bad:?}");
        }
        assert_eq!(md_url("https://x/a_(b)"), "https://x/a_%28b%29");
    }
}
