//! The bot's presence, tied to health: the bot shows "online, Watching Drone"
//! only while this process (or whatever `HEALTHCHECK_URL` points at) reports
//! healthy, and invisible or do-not-disturb with the reason otherwise.
//!
//! [`run`] polls the health URL and publishes the *desired* [`Presence`] on a
//! watch channel; the gateway task sends it to Discord (op 3), coalescing
//! and rate limiting as needed. Publishing only on change keeps the gateway's
//! 120-per-minute send budget for things that matter.
use serde_json::{json, Value};

/// The four statuses a bot may set for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnlineStatus {
    Online,
    Dnd,
    Idle,
    Invisible,
}

impl OnlineStatus {
    /// The string Discord expects in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnlineStatus::Online => "online",
            OnlineStatus::Dnd => "dnd",
            OnlineStatus::Idle => "idle",
            OnlineStatus::Invisible => "invisible",
        }
    }
}

/// One activity: `kind` is Discord's activity type (3 = Watching, 4 = Custom).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub kind: u8,
    pub name: String,
    pub state: Option<String>,
}

/// What the bot should look like: status plus at most one activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub status: OnlineStatus,
    pub activity: Option<Activity>,
}

/// What to show while unhealthy (`--unhealthy-presence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnhealthyMode {
    /// Look offline.
    #[default]
    Invisible,
    /// Do-not-disturb with the reason as custom status.
    Dnd,
}

/// Discord shows at most this many characters of a custom status.
pub const MAX_STATE_CHARS: usize = 128;

impl Presence {
    /// Online, "Watching Drone".
    pub fn healthy() -> Self {
        Presence {
            status: OnlineStatus::Online,
            activity: Some(Activity { kind: 3, name: "Drone".into(), state: None }),
        }
    }

    /// Invisible, or dnd with `reason` (truncated to 128 chars) as custom status.
    pub fn unhealthy(mode: UnhealthyMode, reason: &str) -> Self {
        match mode {
            UnhealthyMode::Invisible => Presence { status: OnlineStatus::Invisible, activity: None },
            UnhealthyMode::Dnd => {
                let trimmed = reason.trim();
                let state: String = if trimmed.is_empty() { "unhealthy" } else { trimmed }
                    .chars()
                    .take(MAX_STATE_CHARS)
                    .collect();
                Presence {
                    status: OnlineStatus::Dnd,
                    activity: Some(Activity { kind: 4, name: "Custom Status".into(), state: Some(state) }),
                }
            }
        }
    }

    /// The presence object used both as op 3's `d` and as Identify's `presence`:
    /// all four fields, `since` null and `afk` false.
    pub fn to_json(&self) -> Value {
        let activities: Vec<Value> = self
            .activity
            .iter()
            .map(|a| {
                let mut v = json!({ "type": a.kind, "name": a.name });
                if let (Some(state), Some(obj)) = (&a.state, v.as_object_mut()) {
                    obj.insert("state".into(), Value::String(state.clone()));
                }
                v
            })
            .collect();
        json!({
            "since": Value::Null,
            "activities": activities,
            "status": self.status.as_str(),
            "afk": false,
        })
    }
}
