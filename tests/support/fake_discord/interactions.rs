//! The fake Discord's side of a button click: the interactions it has
//! "created" ([`super::FakeDiscord::click`] makes the `INTERACTION_CREATE`
//! payload the fake gateway then delivers), the callback and the edit of
//! the original response, as strict as Discord:
//!
//! * `POST /interactions/{id}/{token}/callback` needs no `Authorization`
//!   (the token in the path authorizes); an unknown id or token, or a
//!   callback more than 3 s after the interaction was created → 404 10062
//!   "Unknown interaction"; a second callback → 400 40060 "Interaction has
//!   already been acknowledged"; a type other than 4–7, or `data.flags`
//!   with bits other than EPHEMERAL (64) and SUPPRESS_EMBEDS (4) → 400
//!   50035. Answered 204.
//! * `PATCH /webhooks/{application id}/{token}/messages/@original`: only
//!   after a callback, within the token's 15 minutes (else 404 10015
//!   Unknown Webhook); the body is checked as a message; each edit is
//!   recorded.
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{error, form, Canned};

/// Discord's deadline for the first answer.
pub const CALLBACK_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token lives.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// One interaction the fake created.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: String,
    pub token: String,
    pub application_id: String,
    pub created: Instant,
    /// The callback's body, once answered.
    pub callback: Option<Value>,
    /// Every edit of the original response, in order.
    pub edits: Vec<Value>,
}

/// The callback route.
pub fn callback(
    list: &mut [Interaction],
    now: Instant,
    id: &str,
    token: &str,
    body: &Map<String, Value>,
) -> Canned {
    let Some(i) = list.iter_mut().find(|i| i.id == id && i.token == token) else {
        return error(404, 10062, "Unknown interaction");
    };
    if now.duration_since(i.created) > CALLBACK_DEADLINE {
        return error(404, 10062, "Unknown interaction");
    }
    if i.callback.is_some() {
        return error(400, 40060, "Interaction has already been acknowledged.");
    }
    let kind = body.get("type").and_then(Value::as_u64);
    if !matches!(kind, Some(4..=7)) {
        return Canned::json(
            400,
            form::invalid_form(
                &["type"],
                "BASE_TYPE_CHOICES",
                "Value must be one of {4, 5, 6, 7}.",
            ),
        );
    }
    let flags = body.get("data").and_then(|d| d.get("flags"));
    if flags.is_some_and(|f| !matches!(f.as_u64(), Some(f) if f & !(64 | 4) == 0)) {
        return Canned::json(
            400,
            form::invalid_form(
                &["data", "flags"],
                "INTERACTION_RESPONSE_FLAGS_INVALID",
                "Invalid flags",
            ),
        );
    }
    i.callback = Some(Value::Object(body.clone()));
    Canned {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
        delay: None,
    }
}

/// The edit of the original response.
pub fn edit_original(
    list: &mut [Interaction],
    now: Instant,
    app: &str,
    token: &str,
    body: Map<String, Value>,
) -> Canned {
    let found = list.iter_mut().find(|i| {
        i.application_id == app
            && i.token == token
            && now.duration_since(i.created) < TOKEN_LIFETIME
    });
    let Some(i) = found.filter(|i| i.callback.is_some()) else {
        return error(404, 10015, "Unknown Webhook");
    };
    if let Err(e) = form::check_message(&body) {
        return Canned::json(400, e);
    }
    let msg = Value::Object(body);
    i.edits.push(msg.clone());
    Canned::json(
        200,
        json!({ "id": i.id, "type": 19, "flags": 64, "content": msg.get("content") }),
    )
}
