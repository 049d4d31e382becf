//! The buttons under a message: "Open in Drone", a link button (style 5,
//! an http(s) `url`, no `custom_id`) that opens the build and sends no
//! interaction, and the Restart button (style 4, a `custom_id` the bot
//! answers, see `crate::interactions`). Both sit in one action row.
use serde_json::{json, Value};

/// Discord's longest button label and link button URL.
pub const LABEL_MAX: usize = 80;
pub const BUTTON_URL_MAX: usize = 512;
/// Discord's longest `custom_id`.
pub const CUSTOM_ID_MAX: usize = 100;

/// The action rows for a build whose Drone page is `url` (already an
/// http(s) URL); none when Discord would refuse the URL on a button.
pub fn build_rows(url: &str) -> Option<Value> {
    (url.len() <= BUTTON_URL_MAX).then(|| {
        json!([{ "type": 1, "components": [
            { "type": 2, "style": 5, "label": "Open in Drone", "url": url }
        ] }])
    })
}

/// Add a red Restart button with `custom_id` to `msg`'s first action row
/// (made if missing). An over-long `custom_id` adds nothing.
pub fn add_restart(msg: &mut Value, custom_id: &str) {
    if custom_id.is_empty() || custom_id.len() > CUSTOM_ID_MAX {
        return;
    }
    let Some(obj) = msg.as_object_mut() else {
        return;
    };
    let rows = obj.entry("components").or_insert_with(|| json!([]));
    let Some(rows) = rows.as_array_mut() else {
        return;
    };
    if rows.is_empty() {
        rows.push(json!({ "type": 1, "components": [] }));
    }
    if let Some(row) = rows[0].get_mut("components").and_then(Value::as_array_mut) {
        row.push(json!({ "type": 2, "style": 4, "label": "Restart", "custom_id": custom_id }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_button_only_for_urls_discord_takes() {
        let rows = build_rows("https://drone.example/a/b/7").unwrap();
        assert_eq!(rows[0]["components"][0]["style"], 5);
        assert_eq!(
            rows[0]["components"][0]["url"],
            "https://drone.example/a/b/7"
        );
        assert!(rows[0]["components"][0].get("custom_id").is_none());
        let long = format!("https://d.example/{}", "x".repeat(BUTTON_URL_MAX));
        assert_eq!(build_rows(&long), None);
    }

    #[test]
    fn restart_joins_the_first_row_or_makes_one() {
        let mut msg = json!({ "components": build_rows("https://d.example/1").unwrap() });
        add_restart(&mut msg, "restart:1");
        let row = &msg["components"][0]["components"];
        assert_eq!(row[1]["custom_id"], "restart:1");
        assert_eq!(row[1]["style"], 4);
        let mut bare = json!({});
        add_restart(&mut bare, "restart:2");
        assert_eq!(bare["components"][0]["components"][0]["label"], "Restart");
        let mut untouched = json!({});
        add_restart(&mut untouched, &"x".repeat(CUSTOM_ID_MAX + 1));
        assert_eq!(untouched, json!({}));
    }
}
