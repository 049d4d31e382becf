//! One Discord message body (the JSON the relay sends) as the HTML card the
//! preview shows, laid out the way Discord's client lays it out: the colour
//! bar, author and icon, title link, description Markdown, the fields' inline
//! grid (up to three inline fields a row, on Discord's 12-column grid), footer
//! and timestamp, and buttons. The live page and `render --html` both use
//! [`card`], so the file and the page cannot disagree.
//!
//! The body is untrusted (it is built from a payload): every string from it
//! is escaped (see `markdown`), URLs keep only http(s), colours are numbers,
//! and unknown shapes are skipped, never trusted.
use super::markdown::{escape, link_open, to_html, url_attr};
use serde_json::Value;
use std::fmt::Write as _;

/// What the preview knows about a message besides its body.
#[derive(Debug, Clone, Default)]
pub struct CardMeta<'a> {
    /// The message id (made up by the dry-run sink).
    pub id: &'a str,
    /// How many times the message was edited after it was created.
    pub edits: u64,
    /// When it was posted, `HH:MM` UTC, if known.
    pub posted: Option<String>,
}

/// Discord's dark theme shows embeds without a colour with this bar.
const NO_COLOUR: &str = "#1e1f22";
/// A Discord message holds at most this many embeds, rows and buttons a row.
const EMBEDS_MAX: usize = 10;
const ROWS_MAX: usize = 5;
const BUTTONS_MAX: usize = 5;

/// The whole card for one message.
pub fn card(msg: &Value, meta: &CardMeta) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<article class=\"msg\" data-id=\"{}\"><div class=\"avatar\" aria-hidden=\"true\">D</div>\
         <div class=\"main\"><h3 class=\"head\"><span class=\"name\">drone-discord</span>\
         <span class=\"app\">APP</span>",
        escape(meta.id)
    );
    if let Some(t) = &meta.posted {
        let _ = write!(out, "<span class=\"when\">{} UTC</span>", escape(t));
    }
    if meta.edits > 0 {
        out.push_str("<span class=\"edited\">(edited)</span>");
    }
    out.push_str("</h3>");
    if let Some(content) = text(msg, "content") {
        let _ = write!(out, "<div class=\"content\">{}</div>", to_html(content));
    }
    if let Some(embeds) = msg.get("embeds").and_then(Value::as_array) {
        for e in embeds.iter().take(EMBEDS_MAX) {
            embed(e, &mut out);
        }
    }
    if let Some(rows) = msg.get("components").and_then(Value::as_array) {
        components(rows, &mut out);
    }
    out.push_str("</div></article>");
    out
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn embed(e: &Value, out: &mut String) {
    let colour = e
        .get("color")
        .and_then(Value::as_u64)
        .filter(|c| *c <= 0xFF_FFFF)
        .map_or_else(|| NO_COLOUR.to_owned(), |c| format!("#{c:06x}"));
    let _ = write!(
        out,
        "<div class=\"embed\" style=\"border-left-color:{colour}\">"
    );
    if let Some(author) = e.get("author") {
        if let Some(name) = text(author, "name") {
            out.push_str("<div class=\"author\">");
            if let Some(icon) = author
                .get("icon_url")
                .and_then(Value::as_str)
                .and_then(url_attr)
            {
                let _ = write!(
                    out,
                    "<img class=\"author-icon\" src=\"{icon}\" alt=\"\" referrerpolicy=\"no-referrer\">"
                );
            }
            match author.get("url").and_then(Value::as_str).and_then(url_attr) {
                Some(url) => {
                    link_open(out, &url);
                    let _ = write!(out, "{}</a>", escape(name));
                }
                None => {
                    let _ = write!(out, "<span>{}</span>", escape(name));
                }
            }
            out.push_str("</div>");
        }
    }
    if let Some(title) = text(e, "title") {
        out.push_str("<div class=\"title\">");
        match e.get("url").and_then(Value::as_str).and_then(url_attr) {
            Some(url) => {
                link_open(out, &url);
                let _ = write!(out, "{}</a>", escape(title));
            }
            None => out.push_str(&escape(title)),
        }
        out.push_str("</div>");
    }
    if let Some(d) = text(e, "description") {
        let _ = write!(out, "<div class=\"desc\">{}</div>", to_html(d));
    }
    if let Some(fields) = e.get("fields").and_then(Value::as_array) {
        field_grid(fields, out);
    }
    let footer = e.get("footer").and_then(|f| text(f, "text"));
    let when = text(e, "timestamp").map(timestamp);
    if footer.is_some() || when.is_some() {
        out.push_str("<div class=\"footer\">");
        if let Some(f) = footer {
            let _ = write!(out, "<span>{}</span>", escape(f));
        }
        if footer.is_some() && when.is_some() {
            out.push_str("<span class=\"dot\">•</span>");
        }
        if let Some(w) = when {
            out.push_str(&w);
        }
        out.push_str("</div>");
    }
    out.push_str("</div>");
}

/// Discord's grid: consecutive inline fields share a row, three at most; a
/// field that is not inline has a row of its own. Each field gets the columns
/// of the 12-column grid Discord gives it (1/13 alone, 1/7 and 7/13 in
/// pairs, 1/5, 5/9, 9/13 in threes).
pub(super) fn grid_columns(inline: &[bool]) -> Vec<(u8, u8)> {
    let mut cols = Vec::with_capacity(inline.len());
    let mut i = 0;
    while i < inline.len() {
        let run = if inline[i] {
            inline[i..].iter().take(3).take_while(|x| **x).count()
        } else {
            1
        };
        let width = 12 / run as u8;
        for k in 0..run as u8 {
            cols.push((1 + k * width, 1 + (k + 1) * width));
        }
        i += run;
    }
    cols
}

fn field_grid(fields: &[Value], out: &mut String) {
    let fields: Vec<(&str, &str, bool)> = fields
        .iter()
        .take(25)
        .map(|f| {
            (
                f.get("name").and_then(Value::as_str).unwrap_or(""),
                f.get("value").and_then(Value::as_str).unwrap_or(""),
                f.get("inline").and_then(Value::as_bool).unwrap_or(false),
            )
        })
        .collect();
    if fields.is_empty() {
        return;
    }
    let inline: Vec<bool> = fields.iter().map(|f| f.2).collect();
    out.push_str("<div class=\"fields\">");
    for ((name, value, _), (from, to)) in fields.iter().zip(grid_columns(&inline)) {
        let _ = write!(
            out,
            "<div class=\"field\" style=\"grid-column:{from}/{to}\">\
             <div class=\"fname\">{}</div><div class=\"fvalue\">{}</div></div>",
            to_html(name),
            to_html(value)
        );
    }
    out.push_str("</div>");
}

/// An ISO 8601 timestamp as `YYYY-MM-DD HH:MM UTC` in a `<time>`; anything
/// else as the escaped text it is.
fn timestamp(ts: &str) -> String {
    let b = ts.as_bytes();
    let shaped = b.len() >= 16
        && b.iter().take(16).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shaped {
        return format!("<span>{}</span>", escape(ts));
    }
    let (date, time) = (&ts[..10], &ts[11..16]);
    format!("<time datetime=\"{}\">{date} {time} UTC</time>", escape(ts))
}

/// Action rows of buttons. Link buttons (style 5) open their http(s) URL;
/// the others are shown as Discord shows them, without doing anything.
fn components(rows: &[Value], out: &mut String) {
    for row in rows.iter().take(ROWS_MAX) {
        let Some(buttons) = row.get("components").and_then(Value::as_array) else {
            continue;
        };
        out.push_str("<div class=\"row\">");
        for b in buttons.iter().take(BUTTONS_MAX) {
            if b.get("type").and_then(Value::as_u64) != Some(2) {
                continue;
            }
            let style = b
                .get("style")
                .and_then(Value::as_u64)
                .filter(|s| (1..=5).contains(s));
            let style = style.unwrap_or(2);
            let mut label = String::new();
            if let Some(emoji) = b.get("emoji").and_then(|e| text(e, "name")) {
                label.push_str(&escape(emoji));
                label.push(' ');
            }
            label.push_str(&escape(text(b, "label").unwrap_or("")));
            let disabled = b.get("disabled").and_then(Value::as_bool) == Some(true);
            let class = format!("btn btn{style}{}", if disabled { " off" } else { "" });
            match b.get("url").and_then(Value::as_str).and_then(url_attr) {
                Some(url) if style == 5 && !disabled => {
                    let _ = write!(
                        out,
                        "<a class=\"{class}\" href=\"{url}\" target=\"_blank\" \
                         rel=\"noopener noreferrer nofollow\">{label} ↗</a>"
                    );
                }
                _ => {
                    let _ = write!(out, "<span class=\"{class}\">{label}</span>");
                }
            }
        }
        out.push_str("</div>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> CardMeta<'static> {
        CardMeta {
            id: "dry-run-1",
            ..CardMeta::default()
        }
    }

    #[test]
    fn inline_fields_fill_rows_of_three() {
        assert_eq!(
            grid_columns(&[true, true, true, true, true, false, true]),
            [(1, 5), (5, 9), (9, 13), (1, 7), (7, 13), (1, 13), (1, 13)]
        );
        assert_eq!(
            grid_columns(&[true, false, true, true]),
            [(1, 13), (1, 13), (1, 7), (7, 13)]
        );
        assert!(grid_columns(&[]).is_empty());
    }

    #[test]
    fn a_build_card_has_every_part() {
        let msg = json!({"embeds": [{
            "title": "octo/hello #42", "url": "https://drone.example/octo/hello/42",
            "color": 0x2ECC71, "description": "**Fix** the _thing_",
            "author": {"name": "Jane", "icon_url": "https://avatars.example/u/1"},
            "fields": [
                {"name": "Build", "value": "[#42](https://drone.example/octo/hello/42)", "inline": true},
                {"name": "Status", "value": "✅ Success", "inline": true},
            ],
            "footer": {"text": "Drone 2.4.0"}, "timestamp": "2021-11-12T23:28:20Z",
        }], "components": [{"type": 1, "components": [
            {"type": 2, "style": 5, "label": "Open", "url": "https://drone.example/x"},
            {"type": 2, "style": 1, "label": "Restart"},
        ]}]});
        let html = card(
            &msg,
            &CardMeta {
                edits: 2,
                posted: Some("23:28".into()),
                ..meta()
            },
        );
        for part in [
            "border-left-color:#2ecc71",
            "<img class=\"author-icon\" src=\"https://avatars.example/u/1\"",
            "<div class=\"title\"><a href=\"https://drone.example/octo/hello/42\"",
            "<div class=\"desc\"><strong>Fix</strong> the <em>thing</em></div>",
            "style=\"grid-column:1/7\"><div class=\"fname\">Build</div>",
            "style=\"grid-column:7/13\"",
            "<span>Drone 2.4.0</span><span class=\"dot\">•</span>\
             <time datetime=\"2021-11-12T23:28:20Z\">2021-11-12 23:28 UTC</time>",
            "<a class=\"btn btn5\" href=\"https://drone.example/x\"",
            "<span class=\"btn btn1\">Restart</span>",
            "<span class=\"when\">23:28 UTC</span>",
            "(edited)",
        ] {
            assert!(html.contains(part), "missing {part}\n{html}");
        }
    }

    /// Every string of the body is hostile here; none may become markup.
    #[test]
    fn nothing_from_the_payload_becomes_markup() {
        let evil = "<script>document.title='pwned'</script>\"><img src=x onerror=alert(1)>";
        let msg = json!({"content": evil, "embeds": [{
            "title": evil, "url": "javascript:alert(1)", "description": evil,
            "color": "red; background:url(x)",
            "author": {"name": evil, "icon_url": "javascript:alert(1)", "url": "data:text/html,x"},
            "fields": [{"name": evil, "value": evil, "inline": "yes"}],
            "footer": {"text": evil}, "timestamp": evil,
        }], "components": [{"type": 1, "components": [
            {"type": 2, "style": 5, "label": evil, "url": "javascript:alert(1)", "emoji": {"name": evil}},
        ]}]});
        let html = card(
            &msg,
            &CardMeta {
                id: evil,
                ..CardMeta::default()
            },
        );
        for bad in [
            "<script",
            "<img src=x",
            "onerror=alert(1)>",
            "javascript:",
            "data:",
            "url(x)",
        ] {
            assert!(!html.contains(bad), "{bad} in\n{html}");
        }
        assert!(html.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
        assert!(html.contains(&format!("border-left-color:{NO_COLOUR}")));
        // Only the tags this file and `markdown` write.
        let tags: Vec<&str> = html
            .split('<')
            .skip(1)
            .map(|t| t.split([' ', '>']).next().unwrap_or(""))
            .collect();
        for t in tags {
            assert!(
                ["article", "/article", "div", "/div", "h3", "/h3", "span", "/span", "a", "/a"]
                    .contains(&t),
                "unexpected tag <{t}"
            );
        }
    }

    #[test]
    fn odd_bodies_render_what_they_can() {
        assert!(card(&json!(null), &meta()).contains("drone-discord"));
        let html = card(
            &json!({"embeds": [{"fields": [{}], "color": 99_999_999}]}),
            &meta(),
        );
        assert!(html.contains("grid-column:1/13"));
        assert!(html.contains(NO_COLOUR));
    }
}
