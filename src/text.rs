//! Bounding untrusted text: every way this program shortens a string it did not
//! write (Drone payloads, Discord error bodies, store errors, health reasons,
//! URLs) lives here, so each variant exists once.
//!
//! The variants differ on purpose, because the bounds they serve differ:
//!
//! * **Code points, marker included** ([`truncate_chars`]): Discord counts its
//!   embed limits in code points after trimming, so a rendered string must fit
//!   `max` *with* its `…`. Used by the renderer for every embed string.
//! * **Code points, marker appended** ([`cut_chars_marked`]): log lines, error
//!   responses and `/health` reasons only need to stay short, not to hit an
//!   exact limit; the first `max` code points are kept and `…` shows the cut.
//! * **Code points, no marker** ([`cut_chars`]): fields with a hard limit where
//!   a marker would cost a character the reader wants more (the bot's custom
//!   status, systemd's `STATUS=` line, a header name in a signature error).
//! * **Bytes** ([`cut_bytes_marked`]): bounds on the wire and in logs are in
//!   bytes; the cut lands on a char boundary at or before `max`, then `…`.
//!   For the HTTP client's error messages (URLs, hosts).
//!
//! None of them cuts inside a code point, so the output is always valid UTF-8;
//! grapheme clusters (emoji sequences, combining accents) may be split, a
//! cosmetic cost accepted for text that is only shown. [`controls_to_spaces`]
//! flattens text to one line and pairs with the cuts where a newline would
//! break the output (systemd's `KEY=value` lines, one-line error messages).

/// Trim, then cut to at most `max` code points, ending in `…` when cut (the
/// `…` counts toward `max`; whitespace before it is dropped).
pub fn truncate_chars(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// The first `max` code points, then `…` when something was cut (so at most
/// `max + 1` code points). No trimming.
pub fn cut_chars_marked(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The first `max` code points, nothing added. No trimming.
pub fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// At most `max` bytes, cut back to a char boundary, then `…` when something
/// was cut (so at most `max + 3` bytes). No trimming.
pub fn cut_bytes_marked(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Every control character (newlines and tabs included) becomes a space, one
/// for one, so code point counts are unchanged. No trimming.
pub fn controls_to_spaces(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_code_points_and_marks_the_cut() {
        assert_eq!(truncate_chars("  abc  ", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("ab  cd", 4), "ab…");
        assert_eq!(truncate_chars("日本語テキスト", 4), "日本語…");
        assert_eq!(truncate_chars("😀😀😀", 2).chars().count(), 2);
        assert_eq!(truncate_chars("abc", 0), "");
        let cut = truncate_chars(&"é".repeat(5000), 4096);
        assert_eq!(cut.chars().count(), 4096);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn cut_chars_marked_appends_the_marker_after_max_code_points() {
        assert_eq!(cut_chars_marked("abc", 3), "abc");
        assert_eq!(cut_chars_marked("abcd", 3), "abc…");
        assert_eq!(cut_chars_marked(" ab ", 2), " a…");
        assert_eq!(cut_chars_marked("日本語テキスト", 3), "日本語…");
        assert_eq!(cut_chars_marked("", 0), "");
        assert_eq!(cut_chars_marked("a", 0), "…");
        let cut = cut_chars_marked(&"é".repeat(500), 120);
        assert_eq!(cut.chars().count(), 121);
    }

    #[test]
    fn cut_chars_keeps_max_code_points_and_adds_nothing() {
        assert_eq!(cut_chars("abc", 3), "abc");
        assert_eq!(cut_chars("abcd", 3), "abc");
        assert_eq!(cut_chars(" ab ", 2), " a");
        assert_eq!(cut_chars("😀😀😀", 2), "😀😀");
        assert_eq!(cut_chars("abc", 0), "");
    }

    #[test]
    fn cut_bytes_marked_cuts_on_a_char_boundary() {
        assert_eq!(cut_bytes_marked("abc", 3), "abc");
        assert_eq!(cut_bytes_marked("abcd", 3), "abc…");
        // "é" is two bytes: a cut in its middle moves back before it.
        assert_eq!(cut_bytes_marked("aé", 2), "a…");
        assert_eq!(cut_bytes_marked("😀", 3), "…");
        assert_eq!(cut_bytes_marked(" a ", 2), " a…");
        let cut = cut_bytes_marked(&"日".repeat(100), 200);
        assert!(cut.len() <= 203 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn controls_become_spaces_one_for_one() {
        assert_eq!(controls_to_spaces("a\nb\r\n\tc\u{0}"), "a b   c ");
        assert_eq!(controls_to_spaces(" é "), " é ");
    }
}
