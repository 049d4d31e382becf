//! Channels with a type, threads and forum posts, as the fake Discord keeps
//! them (channel.mdx "Start Thread from Message", "Start Thread in Forum or
//! Media Channel"; opcodes-and-status-codes.mdx for the codes):
//!
//! * every channel is a text channel (type 0) unless
//!   [`FakeDiscord::set_channel_type`] says otherwise (5 announcements, 15
//!   forum, 16 media); [`FakeDiscord::remove_channel`] makes one unknown
//!   (404 10003 on every route under it). `GET /channels/{id}` answers `id`,
//!   `type`, `guild_id`, `name` (and a thread's `parent_id`, `thread_metadata`);
//! * `POST /channels/{c}/messages/{m}/threads`: `name` 1–100 code points
//!   after trimming (400 50035), `auto_archive_duration` one of 60, 1440,
//!   4320, 10080; the message must be in `c` (404 10008); one thread per
//!   message (400 160004). The thread (type 11) has the message's id, and
//!   messages can be posted in it;
//! * forum and media channels refuse `POST /channels/{forum}/messages`
//!   (400 40058) and take `POST /channels/{forum}/threads` with `message`:
//!   a post whose starter message has the thread's id. Other channels answer
//!   that route 400 50024 (the standalone threads Discord makes there are
//!   not needed here).
use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::form::{self, invalid_form};
use super::{
    bot_user, created_view, error, insert_message, mentions, next_snowflake, Canned, FakeDiscord,
    Req, State,
};

/// The guild every channel of the fake is in.
pub const GUILD_ID: &str = "100000000000000042";
/// Longest thread name, in code points after trimming.
pub const THREAD_NAME_MAX: usize = 100;
/// The `auto_archive_duration`s Discord takes (minutes).
pub const ARCHIVE_DURATIONS: [u64; 4] = [60, 1440, 4320, 10080];
/// A public thread's channel type.
pub const PUBLIC_THREAD: u64 = 11;

/// One thread: where it hangs, its name, when it archives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    pub parent: String,
    pub name: String,
    pub auto_archive_duration: u64,
}

/// Channel types, unknown channels and threads.
#[derive(Default)]
pub struct Channels {
    types: HashMap<String, u64>,
    unknown: HashSet<String>,
    threads: HashMap<String, Thread>,
}

impl Channels {
    pub fn kind(&self, ch: &str) -> u64 {
        self.types.get(ch).copied().unwrap_or(0)
    }
    pub fn is_forum(&self, ch: &str) -> bool {
        matches!(self.kind(ch), 15 | 16)
    }
    pub fn is_unknown(&self, ch: &str) -> bool {
        self.unknown.contains(ch)
    }
    pub fn thread(&self, id: &str) -> Option<&Thread> {
        self.threads.get(id)
    }
}

impl FakeDiscord {
    /// Give `channel` a Discord channel type (0 text, 5 announcements, 15 forum, 16 media).
    pub fn set_channel_type(&self, channel: &str, kind: u64) {
        let mut s = self.lock();
        s.channels.unknown.remove(channel);
        s.channels.types.insert(channel.to_string(), kind);
    }

    /// Make `channel` unknown: every route under it answers 404 10003.
    pub fn remove_channel(&self, channel: &str) {
        self.lock().channels.unknown.insert(channel.to_string());
    }

    /// The thread with id `id` (a message's id, or a forum post's), if any.
    pub fn thread(&self, id: &str) -> Option<Thread> {
        self.lock().channels.thread(id).cloned()
    }

    /// Every thread, by id.
    pub fn threads(&self) -> HashMap<String, Thread> {
        self.lock().channels.threads.clone()
    }

    /// The messages in channel (or thread) `channel`, in creation order, newest state.
    pub fn channel_messages(&self, channel: &str) -> Vec<Value> {
        let s = self.lock();
        s.order
            .iter()
            .filter_map(|id| s.messages.get(id))
            .filter(|m| m.get("channel_id") == Some(&json!(channel)))
            .cloned()
            .collect()
    }
}

/// `GET /channels/{id}`.
pub(super) fn channel(s: &State, ch: &str) -> Canned {
    let mut v =
        json!({ "id": ch, "type": s.channels.kind(ch), "guild_id": GUILD_ID, "name": "builds" });
    if let Some(t) = s.channels.thread(ch) {
        v = thread_view(ch, t);
    }
    Canned::json(200, v)
}

fn thread_view(id: &str, t: &Thread) -> Value {
    json!({ "id": id, "type": PUBLIC_THREAD, "guild_id": GUILD_ID, "parent_id": t.parent,
        "name": t.name, "message_count": 0,
        "thread_metadata": { "archived": false, "locked": false,
            "auto_archive_duration": t.auto_archive_duration } })
}

/// A thread name as Discord checks it (`path` names the field in errors).
pub fn check_name(v: Option<&Value>, path: &str) -> Result<String, Canned> {
    let bad = |code: &str, message: &str| Canned::json(400, invalid_form(&[path], code, message));
    match v {
        None | Some(Value::Null) => Err(bad("BASE_TYPE_REQUIRED", "This field is required")),
        Some(Value::String(n)) if (1..=THREAD_NAME_MAX).contains(&form::discord_len(n)) => {
            Ok(n.trim().to_string())
        }
        Some(Value::String(_)) => Err(bad(
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        )),
        Some(_) => Err(bad(
            "STRING_TYPE_CONVERT",
            "Could not interpret value as string.",
        )),
    }
}

/// `name` and `auto_archive_duration` (default one day) of a thread request.
fn check_thread(fields: &Map<String, Value>) -> Result<(String, u64), Canned> {
    let name = check_name(fields.get("name"), "name")?;
    let duration = match fields.get("auto_archive_duration") {
        None | Some(Value::Null) => 1440,
        Some(v) => match v.as_u64().filter(|d| ARCHIVE_DURATIONS.contains(d)) {
            Some(d) => d,
            None => {
                return Err(Canned::json(
                    400,
                    invalid_form(
                        &["auto_archive_duration"],
                        "BASE_TYPE_CHOICES",
                        "Value must be one of {60, 1440, 4320, 10080}.",
                    ),
                ))
            }
        },
    };
    Ok((name, duration))
}

/// Record thread `id` under `parent`.
pub(super) fn open_thread(s: &mut State, id: &str, parent: &str, name: String, duration: u64) {
    s.channels.types.insert(id.to_string(), PUBLIC_THREAD);
    s.channels.threads.insert(
        id.to_string(),
        Thread {
            parent: parent.to_string(),
            name,
            auto_archive_duration: duration,
        },
    );
}

/// `POST /channels/{ch}/messages/{mid}/threads`.
pub(super) fn start_thread(s: &mut State, ch: &str, mid: &str, req: &Req) -> Canned {
    let fields = match req.object() {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let (name, duration) = match check_thread(&fields) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let in_channel = s
        .messages
        .get(mid)
        .is_some_and(|m| m.get("channel_id") == Some(&json!(ch)));
    if !in_channel {
        return error(404, 10008, "Unknown Message");
    }
    if s.channels.threads.contains_key(mid) {
        return error(
            400,
            160004,
            "A thread has already been created for this message",
        );
    }
    open_thread(s, mid, ch, name, duration);
    let t = &s.channels.threads[mid];
    Canned::json(201, thread_view(mid, t))
}

/// `POST /channels/{forum}/threads` with `message`: a forum post.
pub(super) fn forum_post(s: &mut State, token: &str, forum: &str, req: &Req) -> Canned {
    if !s.channels.is_forum(forum) {
        return error(400, 50024, "Cannot execute action on this channel type");
    }
    let fields = match req.object() {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let (name, duration) = match check_thread(&fields) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let Some(Value::Object(message)) = fields.get("message") else {
        return Canned::json(
            400,
            invalid_form(&["message"], "BASE_TYPE_REQUIRED", "This field is required"),
        );
    };
    if let Err(body) = form::check_message(message).and_then(|()| mentions::check(message)) {
        return Canned::json(400, body);
    }
    let id = next_snowflake(s);
    let msg = insert_message(s, &id, &id, bot_user(token), message.clone());
    open_thread(s, &id, forum, name, duration);
    let mut post = thread_view(&id, &s.channels.threads[&id]);
    post["message"] = created_view(&msg);
    Canned::json(201, post)
}

/// A plain message to a forum or media channel: 400 40058.
pub(super) fn refuse_in_forum(s: &State, ch: &str) -> Result<(), Canned> {
    match s.channels.is_forum(ch) {
        true => Err(error(
            400,
            40058,
            "Cannot send a message in a forum channel",
        )),
        false => Ok(()),
    }
}
