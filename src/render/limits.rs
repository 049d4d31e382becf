//! Discord's message limits and the checker that enforces them. The renderers
//! budget against these constants; [`check_limits`] validates a finished
//! message body against them and this project's own rules. In the library only
//! `render::finish` calls it, as a last guard before a message leaves the
//! renderer; the unit and golden tests call it on every rendering.
use serde_json::Value;

use super::markdown::http_url;

/// Discord's embed and message limits, in code points
/// (<https://discord.com/developers/docs/resources/message#embed-object-embed-limits>).
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELDS_MAX: usize = 25;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FOOTER_MAX: usize = 2048;
pub const AUTHOR_NAME_MAX: usize = 256;
pub const EMBED_TOTAL_MAX: usize = 6000;
pub const EMBEDS_MAX: usize = 10;
pub const CONTENT_MAX: usize = 2000;
/// Not a documented Discord number; a sane cap so a huge URL can never be sent.
pub const URL_MAX: usize = 2048;

/// Length as Discord counts it: in code points.
pub(super) fn count(s: &str) -> usize {
    s.chars().count()
}

/// Check a message body against Discord's documented limits and this project's
/// rules (no nulls, no empty names/values, http(s) URLs, mentions disabled).
/// Returns the first problem found.
pub fn check_limits(msg: &Value) -> Result<(), String> {
    let obj = msg.as_object().ok_or("message is not a JSON object")?;
    no_nulls(msg, "message")?;
    if let Some(nonce) = obj.get("nonce") {
        let n = match nonce {
            Value::String(s) => count(s),
            Value::Number(n) => n.to_string().len(),
            _ => return Err("nonce is neither a string nor a number".into()),
        };
        if n > 25 {
            return Err(format!("nonce has {n} chars > 25"));
        }
    }
    if let Some(content) = obj.get("content") {
        let c = content.as_str().ok_or("content is not a string")?;
        limit("content", c, CONTENT_MAX)?;
    }
    let parse = obj
        .get("allowed_mentions")
        .and_then(|m| m.get("parse"))
        .and_then(Value::as_array)
        .ok_or("allowed_mentions.parse missing")?;
    if !parse.is_empty() {
        return Err("allowed_mentions.parse must be empty".into());
    }
    let embeds = match obj.get("embeds") {
        None => &Vec::new(),
        Some(e) => e.as_array().ok_or("embeds is not an array")?,
    };
    if embeds.len() > EMBEDS_MAX {
        return Err(format!("{} embeds > {EMBEDS_MAX}", embeds.len()));
    }
    if embeds.is_empty() && obj.get("content").is_none() {
        return Err("message has neither embeds nor content".into());
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        total += check_embed(embed).map_err(|e| format!("embed {i}: {e}"))?;
    }
    if total > EMBED_TOTAL_MAX {
        return Err(format!("embeds total {total} chars > {EMBED_TOTAL_MAX}"));
    }
    Ok(())
}

/// Validates one embed; returns its character count toward the 6000 total.
fn check_embed(embed: &Value) -> Result<usize, String> {
    let e = embed.as_object().ok_or("not an object")?;
    let mut total = 0;
    total += opt_text(e.get("title"), "title", TITLE_MAX)?;
    total += opt_text(e.get("description"), "description", DESCRIPTION_MAX)?;
    opt_url(e.get("url"), "url")?;
    if let Some(color) = e.get("color") {
        let c = color
            .as_u64()
            .ok_or("color is not a non-negative integer")?;
        if c > 0xFF_FFFF {
            return Err(format!("color {c} > 0xFFFFFF"));
        }
    }
    if let Some(ts) = e.get("timestamp") {
        ts.as_str().ok_or("timestamp is not a string")?;
    }
    if let Some(author) = e.get("author") {
        total += req_text(author.get("name"), "author.name", AUTHOR_NAME_MAX)?;
        opt_url(author.get("icon_url"), "author.icon_url")?;
        opt_url(author.get("url"), "author.url")?;
    }
    if let Some(footer) = e.get("footer") {
        total += req_text(footer.get("text"), "footer.text", FOOTER_MAX)?;
        opt_url(footer.get("icon_url"), "footer.icon_url")?;
    }
    for key in ["thumbnail", "image"] {
        if let Some(media) = e.get(key) {
            opt_url(media.get("url"), key)?;
        }
    }
    if let Some(fields) = e.get("fields") {
        let fields = fields.as_array().ok_or("fields is not an array")?;
        if fields.len() > FIELDS_MAX {
            return Err(format!("{} fields > {FIELDS_MAX}", fields.len()));
        }
        for (i, f) in fields.iter().enumerate() {
            total += req_text(f.get("name"), &format!("field {i} name"), FIELD_NAME_MAX)?;
            total += req_text(f.get("value"), &format!("field {i} value"), FIELD_VALUE_MAX)?;
            if let Some(inline) = f.get("inline") {
                inline
                    .as_bool()
                    .ok_or(format!("field {i} inline is not a bool"))?;
            }
        }
    }
    if total == 0 && e.get("fields").is_none() {
        return Err("embed is empty".into());
    }
    Ok(total)
}

fn limit(what: &str, s: &str, max: usize) -> Result<usize, String> {
    let n = count(s.trim());
    if n > max {
        Err(format!("{what} has {n} chars > {max}"))
    } else {
        Ok(n)
    }
}

fn req_text(v: Option<&Value>, what: &str, max: usize) -> Result<usize, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or(format!("{what} missing or not a string"))?;
    if s.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    limit(what, s, max)
}

fn opt_text(v: Option<&Value>, what: &str, max: usize) -> Result<usize, String> {
    match v {
        None => Ok(0),
        Some(_) => req_text(v, what, max),
    }
}

fn opt_url(v: Option<&Value>, what: &str) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) => {
            let s = v.as_str().ok_or(format!("{what} is not a string"))?;
            http_url(s)
                .map(|_| ())
                .ok_or(format!("{what} is not an http(s) URL"))
        }
    }
}

fn no_nulls(v: &Value, path: &str) -> Result<(), String> {
    match v {
        Value::Null => Err(format!("{path} is null")),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| no_nulls(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .try_for_each(|(k, x)| no_nulls(x, &format!("{path}.{k}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok_msg() -> Value {
        json!({"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v", "inline": true}]}],
               "allowed_mentions": {"parse": []}})
    }

    #[test]
    fn check_limits_rejects_each_violation() {
        check_limits(&ok_msg()).unwrap();
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "null colour",
                Box::new(|m| m["embeds"][0]["color"] = Value::Null),
            ),
            (
                "colour range",
                Box::new(|m| m["embeds"][0]["color"] = json!(0x1000000)),
            ),
            (
                "long title",
                Box::new(|m| m["embeds"][0]["title"] = json!("t".repeat(257))),
            ),
            (
                "empty value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!("  ")),
            ),
            (
                "numeric value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!(5)),
            ),
            (
                "long field name",
                Box::new(|m| m["embeds"][0]["fields"][0]["name"] = json!("n".repeat(257))),
            ),
            (
                "long field value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!("v".repeat(1025))),
            ),
            (
                "26 fields",
                Box::new(|m| {
                    m["embeds"][0]["fields"] = json!(vec![json!({"name":"n","value":"v"}); 26])
                }),
            ),
            (
                "bad url",
                Box::new(|m| m["embeds"][0]["url"] = json!("javascript:x")),
            ),
            ("empty url", Box::new(|m| m["embeds"][0]["url"] = json!(""))),
            (
                "long footer",
                Box::new(|m| m["embeds"][0]["footer"] = json!({"text": "f".repeat(2049)})),
            ),
            (
                "long author",
                Box::new(|m| m["embeds"][0]["author"] = json!({"name": "a".repeat(257)})),
            ),
            (
                "mentions",
                Box::new(|m| m["allowed_mentions"] = json!({"parse": ["everyone"]})),
            ),
            (
                "no mentions",
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("allowed_mentions");
                }),
            ),
            (
                "11 embeds",
                Box::new(|m| m["embeds"] = json!(vec![json!({"title": "t"}); 11])),
            ),
            ("empty embed", Box::new(|m| m["embeds"][0] = json!({}))),
            (
                "total",
                Box::new(|m| {
                    m["embeds"][0]["description"] = json!("d".repeat(4096));
                    m["embeds"][0]["fields"] =
                        json!(vec![json!({"name":"n","value":"v".repeat(1000)}); 2]);
                }),
            ),
            (
                "total over embeds",
                Box::new(|m| {
                    m["embeds"] = json!(vec![json!({"description": "d".repeat(4000)}); 2])
                }),
            ),
        ];
        for (what, mutate) in cases {
            let mut m = ok_msg();
            mutate(&mut m);
            assert!(check_limits(&m).is_err(), "{what} accepted");
        }
        // Counting is per code point after trimming, so exactly-at-limit passes.
        let mut m = ok_msg();
        m["embeds"][0]["title"] = json!(format!("  {}  ", "日".repeat(256)));
        check_limits(&m).unwrap();
    }

    #[test]
    fn check_limits_accepts_the_relays_nonce_but_not_a_long_one() {
        let mut m = ok_msg();
        m["nonce"] = json!("b2088-v2");
        m["enforce_nonce"] = json!(true);
        check_limits(&m).unwrap();
        m["nonce"] = json!("n".repeat(26));
        assert!(check_limits(&m).is_err());
    }
}
