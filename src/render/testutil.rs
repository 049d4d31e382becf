//! Helpers the renderers' unit tests share: the Drone fixtures from
//! `test/fixtures/drone/` and lookups into a rendered message.
use serde_json::Value;

use crate::drone::{parse, Webhook};

/// The parsed webhook `test/fixtures/drone/<name>.json`.
pub(super) fn fixture(name: &str) -> Webhook {
    let path = format!(
        "{}/test/fixtures/drone/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    parse(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The message's (only) embed.
pub(super) fn embed(msg: &Value) -> &Value {
    &msg["embeds"][0]
}

/// The value of the embed field called `name`.
pub(super) fn field<'a>(msg: &'a Value, name: &str) -> Option<&'a str> {
    embed(msg)["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)?["value"]
        .as_str()
}
