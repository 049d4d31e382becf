//! Discord's rules for `allowed_mentions`, as the fake Discord enforces them
//! on every create and edit (bot and webhook): an object with only `parse`
//! (a subset of `roles`, `users`, `everyone`), `users` and `roles` (at most
//! 100 snowflakes each) and `replied_user` (a boolean); `parse: ["users"]`
//! together with `users` (or `roles` with `roles`) is refused as mutually
//! exclusive, as Discord does (message.mdx "Allowed Mentions Object").
//! Refusals are 400 50035 with an `errors` tree under `allowed_mentions`.
//! Discord ignores keys it does not know; the fake refuses them, so a typo
//! in what the relay sends cannot pass unnoticed. The stored message keeps
//! what was sent (`FakeDiscord::message(id)["allowed_mentions"]`).
use serde_json::{Map, Value};

use super::form::invalid_form;

/// "Array of user ids to mention (Max size of 100)", the same for roles.
pub const IDS_MAX: usize = 100;
const PARSE_TYPES: [&str; 3] = ["roles", "users", "everyone"];
const KEYS: [&str; 4] = ["parse", "users", "roles", "replied_user"];

fn is_snowflake(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| !s.is_empty() && s.len() <= 20 && s.parse::<u64>().is_ok())
}

/// Check `msg`'s `allowed_mentions` (absent or null is fine); the error is Discord's body.
pub fn check(msg: &Map<String, Value>) -> Result<(), Value> {
    let Some(am) = msg.get("allowed_mentions").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let bad = |path: &[&str], code: &str, message: &str| {
        let full: Vec<&str> = std::iter::once("allowed_mentions")
            .chain(path.iter().copied())
            .collect();
        Err(invalid_form(&full, code, message))
    };
    let Value::Object(am) = am else {
        return bad(
            &[],
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        );
    };
    if let Some(key) = am.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return bad(
            &[key],
            "UNKNOWN_FIELD",
            "Unknown field (the fake refuses keys Discord ignores).",
        );
    }
    let mut parsed: Vec<&str> = Vec::new();
    if let Some(parse) = am.get("parse") {
        let Some(list) = parse.as_array() else {
            return bad(&["parse"], "BASE_TYPE_LIST", "Must be a list.");
        };
        for (i, item) in list.iter().enumerate() {
            match item.as_str().filter(|t| PARSE_TYPES.contains(t)) {
                Some(t) => parsed.push(t),
                None => {
                    return bad(
                        &["parse", &i.to_string()],
                        "BASE_TYPE_CHOICES",
                        "Value must be one of ('roles', 'users', 'everyone').",
                    )
                }
            }
        }
    }
    for key in ["users", "roles"] {
        let Some(ids) = am.get(key) else { continue };
        let Some(list) = ids.as_array() else {
            return bad(&[key], "BASE_TYPE_LIST", "Must be a list.");
        };
        if list.len() > IDS_MAX {
            return bad(
                &[key],
                "BASE_TYPE_MAX_LENGTH",
                "Must be 100 or fewer in length.",
            );
        }
        if let Some(i) = list.iter().position(|id| !is_snowflake(id)) {
            return bad(
                &[key, &i.to_string()],
                "NUMBER_TYPE_COERCE",
                "Value is not snowflake.",
            );
        }
        if parsed.contains(&key) {
            return bad(
                &[],
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                &format!("parse:[\"{key}\"] and {key}: [ids...] are mutually exclusive."),
            );
        }
    }
    if am.get("replied_user").is_some_and(|v| !v.is_boolean()) {
        return bad(
            &["replied_user"],
            "BASE_TYPE_BOOLEAN",
            "Must be either true or false.",
        );
    }
    Ok(())
}
