//! The Restart button's `custom_id`: which build a click restarts, and the
//! check that a click's `custom_id` is one this bot put on that message.
//!
//! The id is `restart:<number>:<namespace/name>` (at most 100 characters,
//! Discord's limit; a longer slug gets no button). A user cannot make the
//! bot restart another build: the interaction carries the message the
//! button is on, as Discord stores it, and its `custom_id` must be one of
//! that message's buttons; the message is the bot's own (Discord sends a
//! component interaction only to the application that posted it), and the
//! bot put there only the id of the build the message shows.
use serde_json::Value;

use crate::drone::Webhook;
use crate::render::components::{add_restart, CUSTOM_ID_MAX};

const PREFIX: &str = "restart:";

/// The `custom_id` for restarting build `number` of `slug`, if it fits.
pub fn custom_id(slug: &str, number: u64) -> Option<String> {
    let id = format!("{PREFIX}{number}:{slug}");
    let plain = slug.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    (plain && !slug.is_empty() && id.len() <= CUSTOM_ID_MAX).then_some(id)
}

/// The build a `custom_id` names: (slug, number).
pub fn parse(custom_id: &str) -> Option<(&str, u64)> {
    let (number, slug) = custom_id.strip_prefix(PREFIX)?.split_once(':')?;
    let number = number.parse().ok().filter(|n| *n > 0)?;
    Some((slug, number)).filter(|(s, _)| !s.is_empty())
}

/// Add the Restart button to a failed build's message `msg` (`failure` or
/// `error`); other messages are left alone.
pub fn add_for_failure(msg: &mut Value, hook: &Webhook) {
    let (Some(repo), Some(build)) = (hook.repo.as_ref(), hook.build.as_ref()) else {
        return;
    };
    if !matches!(build.status.as_str(), "failure" | "error") {
        return;
    }
    if let Some(id) = custom_id(&repo.slug, build.number.max(0) as u64) {
        add_restart(msg, &id);
    }
}

/// Whether `custom_id` is one of the buttons on the interaction's message.
pub fn on_message(interaction: &Value, custom_id: &str) -> bool {
    let rows = interaction
        .get("message")
        .and_then(|m| m.get("components"))
        .and_then(Value::as_array);
    rows.into_iter().flatten().any(|row| {
        let buttons = row.get("components").and_then(Value::as_array);
        buttons
            .into_iter()
            .flatten()
            .any(|b| b.get("custom_id").and_then(Value::as_str) == Some(custom_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_round_trip_and_fit_discords_limit() {
        let id = custom_id("Diesel-Net/plex", 189).unwrap();
        assert_eq!(id, "restart:189:Diesel-Net/plex");
        assert_eq!(parse(&id), Some(("Diesel-Net/plex", 189)));
        assert_eq!(custom_id(&"x".repeat(100), 1), None);
        assert_eq!(custom_id("a b/c", 1), None);
        assert_eq!(custom_id("", 1), None);
        for bad in [
            "restart:0:a/b",
            "restart:x:a/b",
            "restart:1:",
            "open:1:a/b",
            "restart:1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_button_on_the_message_counts() {
        let click = json!({"data": {"custom_id": "restart:7:a/b"}, "message": {"components": [
            {"type": 1, "components": [
                {"type": 2, "style": 5, "url": "https://d.example"},
                {"type": 2, "style": 4, "custom_id": "restart:7:a/b"}]}]}});
        assert!(on_message(&click, "restart:7:a/b"));
        assert!(!on_message(&click, "restart:8:a/b"));
        assert!(!on_message(&json!({}), "restart:7:a/b"));
    }

    #[test]
    fn failed_builds_get_the_button_and_others_do_not() {
        let mut hook = crate::drone::parse(include_bytes!(
            "../../test/fixtures/synthetic/status_failure.json"
        ))
        .unwrap();
        let mut msg = crate::render::render(&hook).unwrap();
        add_for_failure(&mut msg, &hook);
        let row = &msg["components"][0]["components"];
        assert_eq!(row[0]["style"], 5);
        assert_eq!(row[1]["style"], 4);
        let id = row[1]["custom_id"].as_str().unwrap();
        let build = hook.build.as_ref().unwrap();
        assert_eq!(
            parse(id),
            Some((
                hook.repo.as_ref().unwrap().slug.as_str(),
                build.number as u64
            ))
        );
        hook.build.as_mut().unwrap().status = "success".into();
        let mut ok = crate::render::render(&hook).unwrap();
        add_for_failure(&mut ok, &hook);
        assert_eq!(
            ok["components"][0]["components"].as_array().map(Vec::len),
            Some(1)
        );
    }
}
