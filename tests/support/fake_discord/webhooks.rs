//! Webhook execution and edits, as strict as Discord (webhook.mdx "Execute
//! Webhook", "Edit Webhook Message"; the token check is in `webhook()` of
//! fake_discord.rs: 404 10015 unknown id, 401 50027 wrong token):
//!
//! * `POST /webhooks/{id}/{token}`: `?wait=true` answers the message (200);
//!   without it, 204 and no body. The body is checked as a create (limits,
//!   `allowed_mentions`). The message's author is the webhook, and it
//!   carries `webhook_id`.
//! * `thread_name` only for forum and media channels (else 400 220003); a
//!   webhook to a forum needs `thread_name` (a new post, whose thread has
//!   the message's id) or `?thread_id=` (400 220001 without either, 220002
//!   with both).
//! * `PATCH /webhooks/{id}/{token}/messages/{mid}`: only that webhook's
//!   messages, in its channel or in the `?thread_id=` given (404 10008
//!   otherwise); merged and checked as a bot edit.
//! * Discord ignores what a webhook cannot use, and the fake records it so
//!   a test can assert it was not sent: a `nonce` (execution takes none:
//!   it is not among the documented parameters, and unknown JSON fields are
//!   ignored) in [`FakeDiscord::webhook_nonces`]; `components` without
//!   `?with_components=true` are dropped, and the message ids listed in
//!   [`FakeDiscord::ignored_components`].
use serde_json::{json, Map, Value};

use super::form;
use super::threads::{check_name, open_thread};
use super::{
    apply_edit, error, insert_message, mentions, next_snowflake, public_view, Canned, FakeDiscord,
    Req, State,
};

/// What webhook calls sent that Discord ignores.
#[derive(Default)]
pub struct Hooks {
    nonces: Vec<Value>,
    ignored_components: Vec<String>,
}

impl FakeDiscord {
    /// Every `nonce` a webhook execution carried (Discord ignores them).
    pub fn webhook_nonces(&self) -> Vec<Value> {
        self.lock().hooks.nonces.clone()
    }

    /// Ids of webhook messages whose `components` were dropped (sent without
    /// `?with_components=true`).
    pub fn ignored_components(&self) -> Vec<String> {
        self.lock().hooks.ignored_components.clone()
    }
}

/// A query parameter's value.
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A boolean query string (reference.mdx: `True`, `true` or `1`).
fn flag(query: &str, key: &str) -> bool {
    matches!(param(query, key), Some("true" | "True" | "1"))
}

/// Drop what Discord ignores on a webhook message; true when components were dropped.
fn strip_ignored(s: &mut State, fields: &mut Map<String, Value>, query: &str) -> bool {
    if let Some(n) = fields.remove("nonce") {
        s.hooks.nonces.push(n);
    }
    fields.remove("enforce_nonce");
    if flag(query, "with_components") {
        return false;
    }
    fields
        .remove("components")
        .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()))
}

/// Where an execution's message goes.
enum Target {
    Channel(String),
    NewPost(String),
}

/// `POST /webhooks/{id}/{token}`.
pub(super) fn execute(s: &mut State, id: &str, req: &Req) -> Canned {
    let Some((_, channel, name)) = s.webhooks.get(id).cloned() else {
        return error(404, 10015, "Unknown Webhook");
    };
    let mut fields = match req.object() {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let dropped = strip_ignored(s, &mut fields, req.query);
    let thread_name = fields.remove("thread_name");
    let thread_id = param(req.query, "thread_id");
    let forum = s.channels.is_forum(&channel);
    let target =
        match (forum, &thread_name, thread_id) {
            (false, Some(_), _) => {
                return error(
                    400,
                    220003,
                    "Webhooks can only create threads in forum channels",
                )
            }
            (true, Some(_), Some(_)) => return error(
                400,
                220002,
                "Webhooks posted to forum channels cannot have both a thread_name and thread_id",
            ),
            (true, None, None) => {
                return error(
                    400,
                    220001,
                    "Webhooks posted to forum channels must have a thread_name or thread_id",
                )
            }
            (_, None, Some(t)) => match s.channels.thread(t) {
                Some(th) if th.parent == channel => Target::Channel(t.to_string()),
                _ => return error(404, 10003, "Unknown Channel"),
            },
            (true, Some(n), None) => match check_name(Some(n), "thread_name") {
                Ok(n) => Target::NewPost(n),
                Err(refused) => return refused,
            },
            (false, None, None) => Target::Channel(channel.clone()),
        };
    if let Err(body) = form::check_message(&fields).and_then(|()| mentions::check(&fields)) {
        return Canned::json(400, body);
    }
    let mid = next_snowflake(s);
    let ch = match target {
        Target::Channel(c) => c,
        Target::NewPost(n) => {
            open_thread(s, &mid, &channel, n, 1440);
            mid.clone()
        }
    };
    fields.insert("webhook_id".into(), json!(id));
    let author = json!({ "id": id, "username": name, "bot": true, "discriminator": "0000" });
    let msg = insert_message(s, &mid, &ch, author, fields);
    if dropped {
        s.hooks.ignored_components.push(mid);
    }
    if !flag(req.query, "wait") {
        return Canned {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        };
    }
    Canned::json(200, public_view(&msg))
}

/// `PATCH /webhooks/{id}/{token}/messages/{mid}`.
pub(super) fn edit(s: &mut State, id: &str, mid: &str, req: &Req) -> Canned {
    let Some((_, channel, _)) = s.webhooks.get(id) else {
        return error(404, 10015, "Unknown Webhook");
    };
    let home = param(req.query, "thread_id").unwrap_or(channel);
    let Some(existing) = s
        .messages
        .get(mid)
        .filter(|m| m.get("webhook_id") == Some(&json!(id)))
        .filter(|m| m.get("channel_id") == Some(&json!(home)))
        .cloned()
    else {
        return error(404, 10008, "Unknown Message");
    };
    let mut patch = match req.object() {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    if strip_ignored(s, &mut patch, req.query) {
        s.hooks.ignored_components.push(mid.to_string());
    }
    apply_edit(s, mid, existing, patch)
}
