//! Reconciliation: finding the message of a create whose outcome is
//! uncertain, so it is adopted instead of posted a second time.
//!
//! A create is uncertain when it may have reached Discord without the relay
//! recording its message id: its answer was lost or timed out, it was a
//! malformed 2xx, or the store failed right after it (the intent is stored
//! before the create goes out, see `store::MessageRef::uncertain`, so even
//! a crash leaves it behind). Repeating it with the same nonce is safe only
//! while Discord still remembers the nonce ("the past few minutes"); once
//! that window may have passed, the relay first reads the channel's newest
//! messages (`GET /channels/{id}/messages`, [`LOOKBACK`] of them, which
//! needs READ_MESSAGE_HISTORY) and looks for its own message of that build:
//! the author is the bot user, and the first embed's `url` is the build's
//! link ([`marker`]). Found, it is edited to the newest state and stored;
//! not found, the create is repeated.
//!
//! A message without a link (a build whose webhook had no `system.link`,
//! user events) cannot be recognised; its create is repeated with the same
//! nonce, which protects it only inside Discord's window.
use serde_json::Value;

/// How many of the channel's newest messages are searched (Discord allows
/// 1–100 a page). A build's message is one of the newest unless the channel
/// got this many messages while the create was uncertain.
pub const LOOKBACK: u8 = 50;

/// What identifies a build's message: the first embed's `url` (the build's
/// link in Drone), if the rendered body has one.
pub fn marker(body: &Value) -> Option<&str> {
    body.get("embeds")?
        .get(0)?
        .get("url")?
        .as_str()
        .filter(|u| !u.is_empty())
}

/// The newest message in `messages` (newest first, as Discord lists them)
/// that `bot_id` wrote and that carries `marker`, other than `except` (a
/// message the create replaces: it is known not to be the one sought).
pub fn find_own<'a>(
    messages: &'a [Value],
    bot_id: &str,
    marker: &str,
    except: Option<&str>,
) -> Option<&'a str> {
    messages.iter().find_map(|m| {
        let id = m.get("id")?.as_str()?;
        let author = m.get("author")?.get("id")?.as_str()?;
        (author == bot_id && self::marker(m) == Some(marker) && Some(id) != except).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOT: &str = "900000000000000001";
    const URL: &str = "https://drone.example.com/o/r/7";

    fn msg(id: &str, author: &str, url: Option<&str>) -> Value {
        let mut embed = json!({ "title": "t" });
        if let Some(u) = url {
            embed["url"] = json!(u);
        }
        json!({ "id": id, "author": { "id": author }, "embeds": [embed] })
    }

    #[test]
    fn the_marker_is_the_first_embeds_link() {
        assert_eq!(marker(&msg("1", BOT, Some(URL))), Some(URL));
        assert_eq!(marker(&msg("1", BOT, None)), None);
        assert_eq!(marker(&msg("1", BOT, Some(""))), None);
        assert_eq!(marker(&json!({ "content": "x" })), None);
        assert_eq!(marker(&json!({ "embeds": [] })), None);
    }

    #[test]
    fn finds_the_bots_own_message_of_the_build_only() {
        let other_build = msg("5", BOT, Some("https://drone.example.com/o/r/8"));
        let someone_else = msg("4", "900000000000000002", Some(URL));
        let no_link = msg("3", BOT, None);
        let ours = msg("2", BOT, Some(URL));
        let older_ours = msg("1", BOT, Some(URL));
        let list = vec![other_build, someone_else, no_link, ours, older_ours];
        assert_eq!(
            find_own(&list, BOT, URL, None),
            Some("2"),
            "the newest of ours"
        );
        assert_eq!(
            find_own(&list, BOT, URL, Some("2")),
            Some("1"),
            "never the message being replaced"
        );
        assert_eq!(find_own(&list[..3], BOT, URL, None), None);
        assert_eq!(find_own(&[], BOT, URL, None), None);
        // Garbage in the list is skipped, never a panic.
        let junk = vec![
            json!(null),
            json!({ "id": 1 }),
            json!({ "id": "9", "author": 3 }),
        ];
        assert_eq!(find_own(&junk, BOT, URL, None), None);
    }
}
