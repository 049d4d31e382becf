//! The one server (guild) of the fake Discord, for the calls `check` makes to
//! compute the bot's permissions in a channel: `GET /channels/{id}`
//! (`threads.rs`) answers the channel's `permission_overwrites` from here,
//! `GET /guilds/{id}` its `owner_id` and `roles`, and
//! `GET /guilds/{id}/members/{user}` the bot's `roles` (any other member is
//! 404 10007 Unknown Member, as on Discord).
//!
//! By default `@everyone` may view, post, embed, read history and use threads,
//! the bot has no other role, and channels have no overwrites.
use std::collections::HashMap;

use serde_json::{json, Value};

/// The fake server's id: the `guild_id` of its channels.
pub use super::threads::GUILD_ID;
/// The server owner (never the bot).
const OWNER_ID: &str = "100000000000000009";
/// VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS, READ_MESSAGE_HISTORY,
/// CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS.
pub const EVERYONE_DEFAULT: u64 =
    (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 35) | (1 << 38);

pub struct Guild {
    /// Channel id → its `permission_overwrites` array.
    pub overwrites: HashMap<String, Value>,
    /// Every role but `@everyone`: (id, permissions).
    pub roles: Vec<(String, u64)>,
    pub everyone: u64,
    /// The bot's role ids.
    pub bot_roles: Vec<String>,
}

impl Default for Guild {
    fn default() -> Guild {
        Guild {
            overwrites: HashMap::new(),
            roles: Vec::new(),
            everyone: EVERYONE_DEFAULT,
            bot_roles: Vec::new(),
        }
    }
}

impl Guild {
    /// A channel's `permission_overwrites` (`GET /channels/{id}`).
    pub fn overwrites(&self, ch: &str) -> Value {
        self.overwrites
            .get(ch)
            .cloned()
            .unwrap_or_else(|| json!([]))
    }

    /// `GET /guilds/{id}`, or None for another server.
    pub fn guild(&self, id: &str) -> Option<Value> {
        let mut roles = vec![json!({ "id": GUILD_ID, "name": "@everyone",
            "permissions": self.everyone.to_string() })];
        roles.extend(self.roles.iter().map(
            |(id, p)| json!({ "id": id, "name": format!("role {id}"), "permissions": p.to_string() }),
        ));
        (id == GUILD_ID).then(
            || json!({ "id": GUILD_ID, "name": "fake", "owner_id": OWNER_ID, "roles": roles }),
        )
    }

    /// `GET /guilds/{id}/members/{user}` for the bot `bot`, or None.
    pub fn member(&self, id: &str, user: &str, bot: &str) -> Option<Value> {
        (id == GUILD_ID && user == bot)
            .then(|| json!({ "user": { "id": bot, "bot": true }, "roles": self.bot_roles }))
    }
}
