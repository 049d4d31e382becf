//! The bot's effective permissions in one channel, as Discord computes them
//! (discord-api-docs `topics/permissions.md`, "Permission Overwrites"): the
//! `@everyone` role and the bot's roles, ADMINISTRATOR and the server owner
//! allow everything, then the channel's overwrites for `@everyone`, for the
//! bot's roles (all denies, then all allows) and for the bot itself.
//!
//! Pure: `check` fetches the channel (`GET /channels/{id}`: `guild_id`,
//! `permission_overwrites`), the server (`GET /guilds/{id}`: `owner_id`,
//! `roles`) and the bot's member (`GET /guilds/{id}/members/{bot}`: `roles`),
//! and this says what is missing of what a route needs. Permission sets are
//! decimal strings in API v10; anything malformed counts as no permission.
use serde_json::Value;

pub const ADMINISTRATOR: u64 = 1 << 3;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const EMBED_LINKS: u64 = 1 << 14;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;

/// The names `check` prints, in the order it prints them.
const NAMES: &[(u64, &str)] = &[
    (VIEW_CHANNEL, "VIEW_CHANNEL"),
    (SEND_MESSAGES, "SEND_MESSAGES"),
    (EMBED_LINKS, "EMBED_LINKS"),
    (READ_MESSAGE_HISTORY, "READ_MESSAGE_HISTORY"),
    (CREATE_PUBLIC_THREADS, "CREATE_PUBLIC_THREADS"),
    (SEND_MESSAGES_IN_THREADS, "SEND_MESSAGES_IN_THREADS"),
];

/// Channel types with posts instead of messages: GUILD_FORUM and GUILD_MEDIA.
pub fn is_forum(channel: &Value) -> bool {
    matches!(channel["type"].as_u64(), Some(15 | 16))
}

/// What a route needs in its channel: to post, embed and read back its
/// messages (the relay finds a lost create's message by reading), and to
/// start a thread and post in it when `thread` is on. A forum's post is a
/// thread created with its first message, which SEND_MESSAGES allows.
pub fn needed(forum: bool, threads: bool) -> u64 {
    let base = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY;
    if threads && !forum {
        base | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS
    } else {
        base
    }
}

/// The names of the bits of `need` that `have` lacks (empty: nothing missing).
pub fn missing(need: u64, have: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| need & bit != 0 && have & bit == 0)
        .map(|(_, name)| *name)
        .collect()
}

fn bits(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The permissions of user `user_id`, holding the roles of `member`, in
/// `channel` of the server `guild`.
pub fn effective(guild: &Value, member: &Value, channel: &Value, user_id: &str) -> u64 {
    let guild_id = guild["id"].as_str().unwrap_or_default();
    if guild["owner_id"].as_str() == Some(user_id) {
        return u64::MAX;
    }
    let member_roles: Vec<&str> = member["roles"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let holds = |id: &str| id == guild_id || member_roles.contains(&id);
    let mut perms = 0;
    for role in guild["roles"].as_array().into_iter().flatten() {
        if holds(role["id"].as_str().unwrap_or_default()) {
            perms |= bits(&role["permissions"]);
        }
    }
    if perms & ADMINISTRATOR != 0 {
        return u64::MAX;
    }
    let overwrites = channel["permission_overwrites"].as_array();
    let find = |id: &str| {
        overwrites
            .into_iter()
            .flatten()
            .find(|o| o["id"].as_str() == Some(id))
            .map(|o| (bits(&o["allow"]), bits(&o["deny"])))
    };
    if let Some((allow, deny)) = find(guild_id) {
        perms = (perms & !deny) | allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for o in overwrites.into_iter().flatten() {
        let id = o["id"].as_str().unwrap_or_default();
        if id != guild_id && member_roles.contains(&id) && o["type"].as_u64() == Some(0) {
            allow |= bits(&o["allow"]);
            deny |= bits(&o["deny"]);
        }
    }
    perms = (perms & !deny) | allow;
    if let Some((allow, deny)) = find(user_id) {
        perms = (perms & !deny) | allow;
    }
    perms
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const G: &str = "100";
    const BOT: &str = "7";

    fn guild(everyone: u64, roles: &[(&str, u64)]) -> Value {
        let mut all = vec![json!({"id": G, "permissions": everyone.to_string()})];
        all.extend(
            roles
                .iter()
                .map(|(id, p)| json!({"id": id, "permissions": p.to_string()})),
        );
        json!({"id": G, "owner_id": "1", "roles": all})
    }

    fn overwrite(id: &str, kind: u64, allow: u64, deny: u64) -> Value {
        json!({"id": id, "type": kind, "allow": allow.to_string(), "deny": deny.to_string()})
    }

    const POST: u64 = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY;

    #[test]
    fn roles_add_up_and_administrator_or_owner_allow_everything() {
        let member = json!({"roles": ["20"]});
        let ch = json!({"permission_overwrites": []});
        let g = guild(
            VIEW_CHANNEL | SEND_MESSAGES,
            &[("20", EMBED_LINKS), ("30", 1 << 40)],
        );
        assert_eq!(
            effective(&g, &member, &ch, BOT),
            VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
        );
        let admin = guild(0, &[("20", ADMINISTRATOR)]);
        assert_eq!(effective(&admin, &member, &ch, BOT), u64::MAX);
        let mut owned = guild(0, &[]);
        owned["owner_id"] = json!(BOT);
        assert_eq!(effective(&owned, &json!({}), &ch, BOT), u64::MAX);
    }

    #[test]
    fn overwrites_apply_everyone_then_roles_then_the_member() {
        let member = json!({"roles": ["20", "21"]});
        let g = guild(POST, &[("20", 0), ("21", 0)]);
        // @everyone denies sending; one role allows it back, another denies
        // embeds; the member's own overwrite denies reading history.
        let ch = json!({"permission_overwrites": [
            overwrite(G, 0, 0, SEND_MESSAGES | EMBED_LINKS),
            overwrite("20", 0, SEND_MESSAGES, 0),
            overwrite("21", 0, EMBED_LINKS, READ_MESSAGE_HISTORY),
            overwrite(BOT, 1, 0, EMBED_LINKS),
            overwrite("99", 0, 0, VIEW_CHANNEL),
        ]});
        let have = effective(&g, &member, &ch, BOT);
        assert_eq!(have, VIEW_CHANNEL | SEND_MESSAGES);
        assert_eq!(
            missing(needed(false, true), have),
            [
                "EMBED_LINKS",
                "READ_MESSAGE_HISTORY",
                "CREATE_PUBLIC_THREADS",
                "SEND_MESSAGES_IN_THREADS"
            ]
        );
        // A role's allow beats another role's deny at the same level.
        let ch = json!({"permission_overwrites": [
            overwrite("20", 0, 0, SEND_MESSAGES), overwrite("21", 0, SEND_MESSAGES, 0)]});
        assert_eq!(effective(&g, &member, &ch, BOT), POST);
    }

    #[test]
    fn forums_need_no_thread_permission_and_junk_counts_as_none() {
        assert_eq!(needed(true, true), POST);
        assert!(missing(needed(true, true), POST).is_empty());
        assert!(is_forum(&json!({"type": 15})) && is_forum(&json!({"type": 16})));
        assert!(!is_forum(&json!({"type": 0})));
        let g = json!({"id": G, "roles": [{"id": G, "permissions": 3072}]});
        assert_eq!(effective(&g, &json!(null), &json!(null), BOT), 0);
    }
}
