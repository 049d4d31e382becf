//! See the messages before Discord does: with `serve --dry-run`, the dry-run
//! sink records every message it would create or edit here, and `GET /preview`
//! shows them as Discord would (one card per message, edited in place: one
//! message per build). `render FIXTURE --html` writes the same card to a file.
//!
//! This file is the [`Preview`] board: a bounded map of message id → latest
//! body, in the order the messages were created, with a version that moves on
//! every change so the page asks only for what changed. The parts beside it:
//!
//! * `html`: one message body → the card's HTML (embeds, field grid, buttons);
//! * `markdown`: Discord's Markdown → HTML, escaping everything first;
//! * `page`: the embedded page (`page.html`) and its Content-Security-Policy.
//!
//! The page polls (`GET /preview/messages?since=V`, once a second) rather than
//! holding a server-sent-events stream: the HTTP server writes whole,
//! length-delimited responses within a write timeout, and a connection that is
//! being answered cannot be evicted, so every open stream would hold one of
//! the 256 connection slots Drone's webhooks need.
use crate::sync::lock;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

mod html;
mod markdown;
mod page;

pub use html::{card, CardMeta};
pub use page::{content_security_policy, live, standalone};

/// The board keeps the newest this many messages; the oldest are evicted.
pub const PREVIEW_MAX_MESSAGES: usize = 200;

#[derive(Debug)]
struct Entry {
    id: String,
    channel: String,
    body: Value,
    /// The board's version when this entry last changed.
    updated: u64,
    edits: u64,
    /// `HH:MM` UTC of the create.
    posted: String,
}

#[derive(Debug, Default)]
struct Board {
    version: u64,
    entries: VecDeque<Entry>,
}

/// The messages `--dry-run` would have sent, newest state of each.
#[derive(Debug)]
pub struct Preview {
    max: usize,
    board: Mutex<Board>,
}

impl Default for Preview {
    fn default() -> Self {
        Preview::new(PREVIEW_MAX_MESSAGES)
    }
}

impl Preview {
    /// A board holding at most `max` messages (at least one).
    pub fn new(max: usize) -> Self {
        Preview {
            max: max.max(1),
            board: Mutex::new(Board::default()),
        }
    }

    /// A create, or an edit: the message `id` in `channel` now reads `body`.
    /// An edit of a message the board does not hold (evicted, or created
    /// before a restart) shows it as new.
    pub fn record(&self, channel: &str, id: &str, body: &Value) {
        let mut b = lock(&self.board);
        b.version += 1;
        let version = b.version;
        if let Some(e) = b.entries.iter_mut().find(|e| e.id == id) {
            e.body = body.clone();
            e.channel = channel.to_owned();
            e.updated = version;
            e.edits += 1;
            return;
        }
        if b.entries.len() >= self.max {
            b.entries.pop_front();
        }
        b.entries.push_back(Entry {
            id: id.to_owned(),
            channel: channel.to_owned(),
            body: body.clone(),
            updated: version,
            edits: 0,
            posted: clock(SystemTime::now()),
        });
    }

    /// `GET /preview/messages?since=V`: the board's version, every id it
    /// holds (in creation order), and the cards that changed after `since`.
    /// A `since` from the future (the service restarted) means "everything".
    pub fn updates(&self, since: u64) -> Value {
        let b = lock(&self.board);
        let since = if since > b.version { 0 } else { since };
        let changed: Vec<Value> = b
            .entries
            .iter()
            .filter(|e| e.updated > since)
            .map(|e| {
                let meta = CardMeta {
                    id: &e.id,
                    edits: e.edits,
                    posted: Some(e.posted.clone()),
                };
                json!({"id": e.id, "channel": e.channel, "html": card(&e.body, &meta)})
            })
            .collect();
        json!({
            "version": b.version,
            "max": self.max,
            "ids": b.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            "messages": changed,
        })
    }
}

/// `HH:MM` of a wall-clock time, UTC.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ids(v: &Value) -> Vec<&str> {
        v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn edits_replace_in_place_and_only_changes_are_sent() {
        let p = Preview::new(10);
        p.record("c", "m1", &json!({"content": "one"}));
        p.record("c", "m2", &json!({"content": "two"}));
        let all = p.updates(0);
        assert_eq!(
            (all["version"].as_u64(), ids(&all)),
            (Some(2), vec!["m1", "m2"])
        );
        assert_eq!(all["messages"].as_array().unwrap().len(), 2);

        p.record("c", "m1", &json!({"content": "one, edited"}));
        let changed = p.updates(2);
        assert_eq!(
            ids(&changed),
            ["m1", "m2"],
            "an edit keeps the message's place"
        );
        let msgs = changed["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["id"], "m1");
        let html = msgs[0]["html"].as_str().unwrap();
        assert!(
            html.contains("one, edited") && html.contains("(edited)"),
            "{html}"
        );

        assert!(p.updates(3)["messages"].as_array().unwrap().is_empty());
        // A client that saw a newer version (before a restart) gets everything.
        assert_eq!(p.updates(99)["messages"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_board_is_bounded_and_evicts_the_oldest() {
        let p = Preview::new(3);
        for i in 1..=5 {
            p.record("c", &format!("m{i}"), &json!({"content": i.to_string()}));
        }
        assert_eq!(ids(&p.updates(0)), ["m3", "m4", "m5"]);
        assert_eq!(Preview::default().max, PREVIEW_MAX_MESSAGES);
    }

    #[test]
    fn clock_is_utc_hours_and_minutes() {
        let t = UNIX_EPOCH + Duration::from_secs(1_636_759_700);
        assert_eq!(clock(t), "23:28");
    }
}
