//! The embed model: plain Rust while the renderers budget characters, JSON at
//! the end. A [`Field`] is always sendable (cleaned, bounded, never empty), and
//! the parts every embed shares (footer, Drone links, timestamp) are built here.
use serde_json::{json, Map, Value};

use super::limits::{count, FIELD_NAME_MAX, FIELD_VALUE_MAX};
use super::markdown::{http_url, multi_line, one_line, or_placeholder};
use crate::drone::System;
use crate::text::truncate_chars as truncate;

#[derive(Debug, Clone, Default)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) inline: bool,
}

impl Field {
    /// Cleans, trims, truncates and fills in placeholders, so a `Field` is always sendable.
    pub(super) fn new(name: &str, value: &str, inline: bool) -> Field {
        Field {
            name: or_placeholder(truncate(&one_line(name), FIELD_NAME_MAX)),
            value: or_placeholder(truncate(&multi_line(value), FIELD_VALUE_MAX)),
            inline,
        }
    }

    pub(super) fn chars(&self) -> usize {
        count(&self.name) + count(&self.value)
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Embed {
    pub(super) title: String,
    pub(super) url: Option<String>,
    pub(super) description: String,
    pub(super) color: Option<u32>,
    pub(super) author_name: String,
    pub(super) author_icon: Option<String>,
    pub(super) fields: Vec<Field>,
    pub(super) footer: String,
    pub(super) timestamp: Option<String>,
}

impl Embed {
    /// Characters outside the description and fields (title, author, footer).
    pub(super) fn frame_chars(&self) -> usize {
        count(&self.title) + count(&self.author_name) + count(&self.footer)
    }

    pub(super) fn to_json(&self) -> Value {
        let mut e = Map::new();
        if !self.title.is_empty() {
            e.insert("title".into(), Value::from(self.title.clone()));
        }
        if let Some(url) = &self.url {
            e.insert("url".into(), Value::from(url.clone()));
        }
        if !self.description.is_empty() {
            e.insert("description".into(), Value::from(self.description.clone()));
        }
        if let Some(color) = self.color {
            e.insert("color".into(), Value::from(color));
        }
        if !self.author_name.is_empty() {
            let mut a = Map::new();
            a.insert("name".into(), Value::from(self.author_name.clone()));
            if let Some(icon) = &self.author_icon {
                a.insert("icon_url".into(), Value::from(icon.clone()));
            }
            e.insert("author".into(), Value::Object(a));
        }
        if !self.fields.is_empty() {
            let fields = self
                .fields
                .iter()
                .map(|f| json!({"name": f.name, "value": f.value, "inline": f.inline}))
                .collect();
            e.insert("fields".into(), Value::Array(fields));
        }
        if !self.footer.is_empty() {
            e.insert("footer".into(), json!({ "text": self.footer }));
        }
        if let Some(ts) = &self.timestamp {
            e.insert("timestamp".into(), Value::from(ts.clone()));
        }
        Value::Object(e)
    }
}

/// Cap for the small fixed fields (build, status, trigger, ...). Keeping them
/// small guarantees room for the commit message and the stage summary.
pub(super) const SHORT_VALUE_MAX: usize = 300;

pub(super) fn short_field(name: &str, value: &str) -> Field {
    let mut f = Field::new(name, value, true);
    f.value = or_placeholder(truncate(&f.value, SHORT_VALUE_MAX));
    f
}

pub(super) fn footer(system: Option<&System>) -> String {
    let version = system.map(|s| one_line(&s.version)).unwrap_or_default();
    if version.is_empty() {
        "Drone".to_owned()
    } else {
        truncate(&format!("Drone {version}"), 64)
    }
}

/// `<system.link>/<path>` when that is a usable http(s) URL.
pub(super) fn drone_url(system: Option<&System>, path: &str) -> Option<String> {
    let base = system?.link.trim().trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    http_url(&format!("{base}/{path}"))
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`; `None` outside years 1970..=9999.
pub fn iso8601(ts: i64) -> Option<String> {
    if !(1..=253_402_300_799).contains(&ts) {
        return None;
    }
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let (year, month, day) = crate::httpdate::civil_from_days(days);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            iso8601(1_636_759_700).as_deref(),
            Some("2021-11-12T23:28:20Z")
        );
        assert_eq!(
            iso8601(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            iso8601(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(iso8601(1).as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(iso8601(0), None);
        assert_eq!(iso8601(i64::MAX), None);
        assert_eq!(iso8601(-1), None);
    }
}
