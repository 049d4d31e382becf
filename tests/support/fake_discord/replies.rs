//! Replies as the fake Discord takes them: a create's `message_reference`
//! must name an existing message in the same channel, else 400 50035 with
//! `MESSAGE_REFERENCE_UNKNOWN_MESSAGE` under `message_reference`, unless it
//! says `fail_if_not_exists: false`: then the message is posted without a
//! reference, as Discord does (message.mdx "Message Reference Structure").
//! A reply is stored with `type` 19 (REPLY) and the reference completed
//! with its `channel_id`.
use serde_json::{json, Map, Value};

use super::form::invalid_form;
use super::{Canned, State};

/// Discord's message type of a reply.
pub const REPLY_TYPE: u64 = 19;

fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Check a new message's reference in `ch`; drops it when Discord would.
pub(super) fn resolve(s: &State, ch: &str, fields: &mut Map<String, Value>) -> Result<(), Canned> {
    let Some(reference) = fields.get("message_reference").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Value::Object(reference) = reference else {
        return Err(Canned::json(
            400,
            invalid_form(
                &["message_reference"],
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            ),
        ));
    };
    let same_channel = id_text(reference.get("channel_id")).map_or(true, |c| c == ch);
    let found = id_text(reference.get("message_id"))
        .and_then(|id| s.messages.get(&id))
        .is_some_and(|m| m.get("channel_id") == Some(&json!(ch)));
    if found && same_channel {
        let mut reference = reference.clone();
        reference.insert("channel_id".into(), json!(ch));
        fields.insert("message_reference".into(), Value::Object(reference));
        fields.insert("type".into(), json!(REPLY_TYPE));
        return Ok(());
    }
    let fail = reference
        .get("fail_if_not_exists")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !fail {
        fields.remove("message_reference");
        return Ok(());
    }
    Err(Canned::json(
        400,
        invalid_form(
            &["message_reference"],
            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
            "Unknown message",
        ),
    ))
}
