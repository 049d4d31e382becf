//! Discord's Markdown, as far as the bot's messages use it, made into HTML
//! for the preview: `**bold**`, `*italics*` / `_italics_`, `__underline__`,
//! `~~strike~~`, `||spoiler||`, `` `code` ``, fenced code blocks, `[text](url)`
//! links, bare http(s) links, `> ` quotes, `<@id>` mention pills and `\`
//! escapes (the renderer writes `\_` for a literal `_`).
//!
//! Everything here is untrusted text from a payload, so it is HTML-escaped
//! *first*, and the Markdown is then read from the escaped text: no character
//! of the payload can reach the output as markup, and the only tags are the
//! ones written below. Links keep only http(s) URLs (a `javascript:` link is
//! shown as the text it is). Nesting is bounded and a delimiter without its
//! closing half is remembered as such, so hostile input stays cheap.
use std::fmt::Write as _;

/// Deeper emphasis than this is shown as plain text.
const MAX_DEPTH: usize = 6;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in element text and in a quoted attribute.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An already escaped URL if it is http(s) without spaces: safe in `href="…"`.
fn safe_href(escaped: &str) -> Option<&str> {
    let lower = escaped.get(..8).unwrap_or(escaped).to_ascii_lowercase();
    let scheme = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return None;
    };
    let ok =
        escaped.len() > scheme && !escaped.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(escaped)
}

/// An `<a>` for an escaped, checked URL.
pub(crate) fn link_open(out: &mut String, href: &str) {
    let _ = write!(
        out,
        "<a href=\"{href}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">"
    );
}

/// An untrusted URL (not yet escaped) as an attribute value, if it is http(s).
pub(crate) fn url_attr(raw: &str) -> Option<String> {
    let escaped = escape(raw.trim());
    safe_href(&escaped).map(str::to_owned)
}

/// Markdown with blocks: code fences and quotes, the rest inline.
pub(crate) fn to_html(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len() + 64);
    let mut rest = escaped.as_str();
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(close) = after.find("```") else {
            break;
        };
        let before = &rest[..open];
        prose(before.strip_suffix('\n').unwrap_or(before), &mut out);
        let body = &after[..close];
        // ```lang\n…```: the first line names the language when it is one word.
        let body = match body.split_once('\n') {
            Some((lang, code))
                if !lang.is_empty() && lang.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                code
            }
            _ => body,
        };
        out.push_str("<pre><code>");
        out.push_str(body.trim_matches('\n'));
        out.push_str("</code></pre>");
        rest = &after[close + 3..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    prose(rest, &mut out);
    out
}

/// Lines outside code blocks: runs of `> ` lines become one quote.
fn prose(text: &str, out: &mut String) {
    let mut quote: Vec<&str> = Vec::new();
    let mut first = true;
    for line in text.split('\n') {
        let quoted = line
            .strip_prefix("&gt; ")
            .or_else(|| (line == "&gt;").then_some(""));
        match quoted {
            Some(q) => quote.push(q),
            None => {
                if !quote.is_empty() {
                    flush_quote(&mut quote, out);
                    first = true;
                }
                if !first {
                    out.push_str("<br>");
                }
                inline(line, out, 0);
                first = false;
            }
        }
    }
    if !quote.is_empty() {
        flush_quote(&mut quote, out);
    }
}

fn flush_quote(lines: &mut Vec<&str>, out: &mut String) {
    out.push_str("<blockquote>");
    inline(&lines.join("\n"), out, 0);
    out.push_str("</blockquote>");
    lines.clear();
}

/// The paired delimiters, longest first so `**` wins over `*`.
const PAIRS: [(&str, &str, &str); 7] = [
    ("**", "<strong>", "</strong>"),
    ("__", "<u>", "</u>"),
    ("~~", "<s>", "</s>"),
    ("||", "<span class=\"spoiler\">", "</span>"),
    ("*", "<em>", "</em>"),
    ("_", "<em>", "</em>"),
    ("`", "<code>", "</code>"),
];

/// One line's (or one quote's) inline Markdown, from escaped text.
fn inline(s: &str, out: &mut String, depth: usize) {
    // A delimiter found unclosed once is unclosed for the rest of this text.
    let mut unclosed = [false; PAIRS.len()];
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some(after) = rest.strip_prefix('\\') {
            if let Some(n) = escaped_char_len(after) {
                out.push_str(&after[..n]);
                i += 1 + n;
                continue;
            }
        }
        if rest.starts_with('\n') {
            out.push_str("<br>");
            i += 1;
            continue;
        }
        if let Some((html, used)) = pair(s, i, depth, &mut unclosed) {
            out.push_str(&html);
            i += used;
            continue;
        }
        if let Some((html, used)) = masked_link(rest, depth) {
            out.push_str(&html);
            i += used;
            continue;
        }
        if let Some(used) = bare_link(s, i, out) {
            i += used;
            continue;
        }
        if let Some((html, used)) = mention(rest) {
            out.push_str(html);
            i += used;
            continue;
        }
        let c = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..c]);
        i += c;
    }
}

/// After a `\`: how many bytes are the escaped character (ASCII punctuation,
/// or one whole entity such as `&lt;`).
fn escaped_char_len(after: &str) -> Option<usize> {
    let c = after.chars().next()?;
    if c == '&' {
        return after.find(';').filter(|n| *n <= 5).map(|n| n + 1);
    }
    c.is_ascii_punctuation().then_some(1)
}

/// Where `close` next occurs in `s` as a delimiter (not escaped with `\`).
fn find_close(s: &str, close: &str) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(close) {
            return Some(i);
        }
        if let Some(after) = rest.strip_prefix('\\') {
            i += 1 + escaped_char_len(after).unwrap_or(0);
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// A delimited span starting at `s[at..]`, as HTML, and the bytes it used.
/// As in Discord, `*it*` must not start or end with a space, and `_it_` must
/// stand at word boundaries (`snake_case_name` stays as it is).
fn pair(
    s: &str,
    at: usize,
    depth: usize,
    unclosed: &mut [bool; PAIRS.len()],
) -> Option<(String, usize)> {
    let rest = &s[at..];
    for (k, (delim, open, close)) in PAIRS.iter().enumerate() {
        let Some(after) = rest.strip_prefix(delim) else {
            continue;
        };
        if unclosed[k] {
            return None;
        }
        if *delim == "`" {
            // Code: its text is shown as it is (already escaped), no Markdown inside.
            let Some(end) = after.find('`').filter(|n| *n > 0) else {
                unclosed[k] = true;
                return None;
            };
            return Some((format!("{open}{}{close}", &after[..end]), 2 + end));
        }
        let Some(end) = find_close(after, delim).filter(|n| *n > 0) else {
            unclosed[k] = true;
            return None;
        };
        let inner = &after[..end];
        let spaced = inner.starts_with(char::is_whitespace) || inner.ends_with(char::is_whitespace);
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let in_word = word(s[..at].chars().next_back()) || word(after[end + 1..].chars().next());
        if depth >= MAX_DEPTH || (*delim == "*" && spaced) || (*delim == "_" && in_word) {
            return None;
        }
        let mut html = String::from(*open);
        inline(inner, &mut html, depth + 1);
        html.push_str(close);
        return Some((html, 2 * delim.len() + end));
    }
    None
}

/// `[text](url)` with an http(s) URL; anything else stays text.
fn masked_link(rest: &str, depth: usize) -> Option<(String, usize)> {
    let after = rest.strip_prefix('[')?;
    let text_end = find_close(after, "]")?;
    let tail = after[text_end + 1..].strip_prefix('(')?;
    let url_end = tail.find(')')?;
    let href = safe_href(&tail[..url_end])?;
    if text_end == 0 || depth >= MAX_DEPTH {
        return None;
    }
    let mut html = String::new();
    link_open(&mut html, href);
    inline(&after[..text_end], &mut html, depth + 1);
    html.push_str("</a>");
    Some((html, 1 + text_end + 2 + url_end + 1))
}

/// A bare `http(s)://…` starting a word, up to whitespace or an escaped `<`/`>`/quote.
fn bare_link(s: &str, at: usize, out: &mut String) -> Option<usize> {
    let rest = &s[at..];
    let lower = rest.get(..8).unwrap_or(rest).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    if s[..at]
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric)
    {
        return None;
    }
    let end = rest
        .char_indices()
        .find(|&(i, c)| c.is_whitespace() || (c == '&' && !rest[i..].starts_with("&amp;")))
        .map_or(rest.len(), |(i, _)| i);
    // A sentence's full stop or closing bracket is not part of the URL.
    let url = rest[..end].trim_end_matches(['.', ',', ')', '!', '?', ':', ';']);
    let href = safe_href(url)?;
    link_open(out, href);
    out.push_str(href);
    out.push_str("</a>");
    Some(url.len())
}

/// `<@id>`, `<@!id>`, `<@&id>`, `<#id>` (escaped) as Discord's mention pills.
fn mention(rest: &str) -> Option<(&'static str, usize)> {
    let after = rest.strip_prefix("&lt;")?;
    let (label, digits) = if let Some(d) = after.strip_prefix("@&amp;") {
        ("@role", d)
    } else if let Some(d) = after.strip_prefix("@!").or_else(|| after.strip_prefix('@')) {
        ("@user", d)
    } else if let Some(d) = after.strip_prefix('#') {
        ("#channel", d)
    } else {
        return None;
    };
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || !digits[n..].starts_with("&gt;") {
        return None;
    }
    let html = match label {
        "@role" => "<span class=\"mention\">@role</span>",
        "#channel" => "<span class=\"mention\">#channel</span>",
        _ => "<span class=\"mention\">@user</span>",
    };
    Some((html, rest.len() - digits.len() + n + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_before_anything_else() {
        assert_eq!(
            to_html("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            to_html("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(escape("a'b&c"), "a&#39;b&amp;c");
    }

    #[test]
    fn discord_inline_markdown() {
        assert_eq!(
            to_html("**bold** *it* _it_ __u__ ~~s~~ ||sp|| `c*d*`"),
            "<strong>bold</strong> <em>it</em> <em>it</em> <u>u</u> <s>s</s> \
             <span class=\"spoiler\">sp</span> <code>c*d*</code>"
        );
        assert_eq!(
            to_html("**bold _and it_**"),
            "<strong>bold <em>and it</em></strong>"
        );
        assert_eq!(to_html("a\nb"), "a<br>b");
        assert_eq!(to_html(r"daily\_updates \*x\*"), "daily_updates *x*");
        assert_eq!(to_html("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(
            to_html("snake_case_name _it_"),
            "snake_case_name <em>it</em>"
        );
        assert_eq!(to_html("unclosed **bold"), "unclosed **bold");
    }

    #[test]
    fn code_blocks_keep_their_text() {
        assert_eq!(
            to_html("x\n```rust\nfn main() { **not bold** <b> }\n```\ny"),
            "x<pre><code>fn main() { **not bold** &lt;b&gt; }</code></pre>y"
        );
        assert_eq!(to_html("```a```"), "<pre><code>a</code></pre>");
        assert_eq!(to_html("``` unclosed"), "``` unclosed");
    }

    #[test]
    fn links_are_http_only() {
        assert_eq!(
            to_html("[#42](https://d.example/a?b=1&c=2)"),
            "<a href=\"https://d.example/a?b=1&amp;c=2\" target=\"_blank\" \
             rel=\"noopener noreferrer nofollow\">#42</a>"
        );
        for evil in [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](data:text/html,<script>)",
            "[x](&#106;avascript:alert(1))",
            "[x](vbscript:msgbox)",
        ] {
            let html = to_html(evil);
            assert!(!html.contains("<a"), "{evil} → {html}");
        }
        // A quote cannot leave the href attribute: it was escaped first.
        let html = to_html("[x](https://a.b/\"onmouseover=alert(1))");
        assert!(
            html.contains("href=\"https://a.b/&quot;onmouseover=alert(1\""),
            "{html}"
        );
        assert_eq!(
            to_html("see https://x.example/p. ok"),
            "see <a href=\"https://x.example/p\" target=\"_blank\" \
             rel=\"noopener noreferrer nofollow\">https://x.example/p</a>. ok"
        );
        assert!(!to_html("https://x.example/<script>").contains("<script"));
    }

    #[test]
    fn quotes_and_mentions() {
        assert_eq!(
            to_html("> quoted\n> **two**\nafter"),
            "<blockquote>quoted<br><strong>two</strong></blockquote>after"
        );
        assert_eq!(
            to_html("<@123> <@&45> <#6> <@x>"),
            "<span class=\"mention\">@user</span> <span class=\"mention\">@role</span> \
             <span class=\"mention\">#channel</span> &lt;@x&gt;"
        );
    }

    #[test]
    fn hostile_input_stays_cheap_and_balanced() {
        for s in [
            "*".repeat(5000),
            "**_".repeat(2000),
            "[".repeat(3000) + &"](https://a.b)".repeat(300),
            "\\".repeat(4097),
            "`".repeat(4096),
            "||~~__**".repeat(600),
        ] {
            let html = to_html(&s);
            for (open, close) in [
                ("<strong>", "</strong>"),
                ("<em>", "</em>"),
                ("<a ", "</a>"),
            ] {
                assert_eq!(html.matches(open).count(), html.matches(close).count());
            }
            assert!(!html.contains("<script"));
        }
    }
}
