//! Threads and forum channels over REST: what kind a channel is, a thread
//! started from a build message, and a forum post whose first message is the
//! build message (issue 13's `thread`). Later edits of a forum post's message
//! are ordinary edits with the thread as the channel.
//!
//! Discord's rules these calls rely on: a thread started from a message has
//! the message's id; one thread per message (400 160004); a name is 1–100
//! characters (400 50035); forum and media channels take no plain messages,
//! only posts (`POST /channels/{forum}/threads` with `message`).
use serde_json::{json, Value};

use super::ratelimit::Route;
use super::rest::{check_id, message_id, message_of, Rest, RestError};

/// Longest thread name Discord takes, in code points.
const THREAD_NAME_MAX: usize = 100;
/// Auto-archive after one day of quiet (minutes).
const AUTO_ARCHIVE_MINUTES: u32 = 1440;

/// What `GET /channels/{id}` says a channel is, as far as posting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// GUILD_TEXT (0): messages, and threads started from them.
    Text,
    /// GUILD_FORUM (15) or GUILD_MEDIA (16): posts only.
    Forum,
    /// Any other channel type, by its number (e.g. 5, announcements).
    Other(u64),
}

impl ChannelKind {
    /// The kind of Discord's channel `type` number.
    pub fn of_type(t: u64) -> ChannelKind {
        match t {
            0 => ChannelKind::Text,
            15 | 16 => ChannelKind::Forum,
            other => ChannelKind::Other(other),
        }
    }
}

/// A thread name as Discord takes it: trimmed, at most 100 code points.
pub(super) fn thread_name(name: &str) -> String {
    crate::text::truncate_chars(name, THREAD_NAME_MAX)
}

impl Rest {
    /// `GET /channels/{id}`: the channel's kind.
    pub async fn channel_kind(&self, channel_id: &str) -> Result<ChannelKind, RestError> {
        let channel = self.channel(channel_id).await?;
        match channel.get("type").and_then(Value::as_u64) {
            Some(t) => Ok(ChannelKind::of_type(t)),
            None => Err(RestError::Transient {
                reason: "GET /channels/{id} answered without a channel type".into(),
                retry_after: None,
            }),
        }
    }

    /// `POST /channels/{c}/messages/{m}/threads`: a public thread under
    /// message `m`, named `name` (cut to 100 code points); returns its id.
    pub async fn start_thread(
        &self,
        channel_id: &str,
        message_id: &str,
        name: &str,
    ) -> Result<String, RestError> {
        check_id("channel id", channel_id)?;
        check_id("message id", message_id)?;
        let route = Route::new("POST", "/channels/{id}/messages/{id}/threads", channel_id);
        let path = format!("/channels/{channel_id}/messages/{message_id}/threads");
        let body =
            json!({ "name": thread_name(name), "auto_archive_duration": AUTO_ARCHIVE_MINUTES });
        let bytes = self.call("POST", &route, &path, Some(&body)).await?;
        message_of(&route, &bytes).map(|(_, id)| id)
    }

    /// `POST /channels/{forum}/threads` with `message: body`: a forum post;
    /// returns (thread id, starter message id).
    pub async fn create_forum_post(
        &self,
        forum_id: &str,
        name: &str,
        body: &Value,
    ) -> Result<(String, String), RestError> {
        check_id("channel id", forum_id)?;
        let route = Route::new("POST", "/channels/{id}/threads", forum_id);
        let path = format!("/channels/{forum_id}/threads");
        let post = json!({ "name": thread_name(name), "auto_archive_duration": AUTO_ARCHIVE_MINUTES, "message": body });
        let bytes = self.call("POST", &route, &path, Some(&post)).await?;
        let (channel, thread) = message_of(&route, &bytes)?;
        // The starter message's id is the thread's (Discord says so); take
        // the nested message's when the answer carries it.
        let starter = channel
            .get("message")
            .and_then(|m| message_id(m).ok())
            .unwrap_or_else(|| thread.clone());
        crate::metrics::global().message_created();
        Ok((thread, starter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_types_map_to_kinds() {
        assert_eq!(ChannelKind::of_type(0), ChannelKind::Text);
        assert_eq!(ChannelKind::of_type(15), ChannelKind::Forum);
        assert_eq!(ChannelKind::of_type(16), ChannelKind::Forum);
        assert_eq!(ChannelKind::of_type(5), ChannelKind::Other(5));
    }

    #[test]
    fn thread_names_fit_discord() {
        assert_eq!(thread_name("  ❌ a #1 "), "❌ a #1");
        let long = thread_name(&"é".repeat(150));
        assert_eq!(long.chars().count(), THREAD_NAME_MAX);
        assert!(long.ends_with('…'));
    }
}
