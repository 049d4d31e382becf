//! The bot's presence, tied to health: the bot shows "online, Watching Drone"
//! only while this process (or whatever `HEALTHCHECK_URL` points at) reports
//! healthy, and invisible or do-not-disturb with the reason otherwise.
//!
//! [`run`] polls the health URL and publishes the *desired* [`Presence`] on a
//! watch channel; the gateway task sends it to Discord (op 3), coalescing
//! and rate limiting as needed. Publishing only on change keeps the gateway's
//! 120-per-minute send budget for things that matter.
use crate::http::client::{Client, Url};
use crate::shutdown::Shutdown;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, MissedTickBehavior};

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
            activity: Some(Activity {
                kind: 3,
                name: "Drone".into(),
                state: None,
            }),
        }
    }

    /// Invisible, or dnd with `reason` (truncated to 128 chars) as custom status.
    pub fn unhealthy(mode: UnhealthyMode, reason: &str) -> Self {
        match mode {
            UnhealthyMode::Invisible => Presence {
                status: OnlineStatus::Invisible,
                activity: None,
            },
            UnhealthyMode::Dnd => {
                let trimmed = reason.trim();
                let reason = if trimmed.is_empty() {
                    "unhealthy"
                } else {
                    trimmed
                };
                let state = crate::text::cut_chars(reason, MAX_STATE_CHARS);
                Presence {
                    status: OnlineStatus::Dnd,
                    activity: Some(Activity {
                        kind: 4,
                        name: "Custom Status".into(),
                        state: Some(state),
                    }),
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

/// The default `HEALTHCHECK_URL`: this process's own `/health` over
/// loopback (an unspecified listen address such as `0.0.0.0` is reached via
/// 127.0.0.1 / ::1).
pub fn default_check_url(listen: std::net::SocketAddr) -> String {
    // SocketAddr's Display brackets IPv6 addresses, as URLs need.
    format!("http://{}/health", crate::http::local_target(listen))
}

/// How long one health check may take at most.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a health response body we look at for `reason`.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Result of one GET: status code and body, or what went wrong.
pub type ProbeResult = Result<(u16, Vec<u8>), String>;
/// What [`Probe::get`] returns.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ProbeResult> + Send + 'a>>;

/// Performs the health GET; the shared HTTP [`Client`] in production, a
/// script in unit tests.
pub trait Probe: Send + Sync {
    fn get<'a>(&'a self, url: &'a str) -> ProbeFuture<'a>;
}

impl Probe for Client {
    fn get<'a>(&'a self, url: &'a str) -> ProbeFuture<'a> {
        Box::pin(async move {
            let url = Url::parse(url).map_err(|e| format!("health check: {e}"))?;
            let response = self
                .request("GET", &url, &[("Accept", "application/json")], None)
                .await
                .map_err(|e| format!("health check: {e}"))?;
            let mut body = response.body;
            body.truncate(MAX_BODY_BYTES);
            Ok((response.status, body))
        })
    }
}

/// One check: `Ok(())` when healthy, else the reason.
async fn check(probe: &dyn Probe, url: &str) -> Result<(), String> {
    match timeout(CHECK_TIMEOUT, probe.get(url)).await {
        Err(_) => Err("health check timed out".to_string()),
        Ok(Err(e)) => Err(e),
        Ok(Ok((200, _))) => Ok(()),
        Ok(Ok((code, body))) => {
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string));
            Err(reason.unwrap_or_else(|| format!("health check returned {code}")))
        }
    }
}

/// Poll `check_url` every `interval` and publish the desired presence, only
/// when it changes. Returns on shutdown.
pub async fn run(
    check_url: String,
    interval: Duration,
    unhealthy_mode: UnhealthyMode,
    http: impl Probe,
    tx: watch::Sender<Presence>,
    shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            _ = shutdown.wait() => return,
            r = check(&http, &check_url) => r,
        };
        let desired = match &result {
            Ok(()) => Presence::healthy(),
            Err(reason) => Presence::unhealthy(unhealthy_mode, reason),
        };
        let changed = tx.send_if_modified(|current| {
            if *current == desired {
                false
            } else {
                *current = desired;
                true
            }
        });
        if changed {
            match &result {
                Ok(()) => tracing::info!(status = "online", "presence: healthy"),
                Err(reason) => tracing::info!(reason = %reason, "presence: unhealthy"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn healthy_is_online_watching_drone() {
        let v = Presence::healthy().to_json();
        assert_eq!(
            v,
            json!({"since": null, "afk": false, "status": "online",
                   "activities": [{"type": 3, "name": "Drone"}]})
        );
    }

    #[test]
    fn default_check_url_is_loopback() {
        let url = |s: &str| default_check_url(s.parse().expect("addr"));
        assert_eq!(url("0.0.0.0:5000"), "http://127.0.0.1:5000/health");
        assert_eq!(url("[::]:5000"), "http://[::1]:5000/health");
        assert_eq!(url("192.168.1.2:80"), "http://192.168.1.2:80/health");
    }

    #[test]
    fn unhealthy_modes() {
        let p = Presence::unhealthy(UnhealthyMode::Invisible, "store: disk full");
        assert_eq!(p.to_json()["status"], "invisible");
        assert_eq!(p.to_json()["activities"], json!([]));
        let long = "é".repeat(300);
        let p = Presence::unhealthy(UnhealthyMode::Dnd, &long);
        let state = p
            .activity
            .as_ref()
            .and_then(|a| a.state.clone())
            .unwrap_or_default();
        assert_eq!(state.chars().count(), MAX_STATE_CHARS);
        assert_eq!(p.to_json()["activities"][0]["type"], 4);
        assert_eq!(p.to_json()["status"], "dnd");
        let p = Presence::unhealthy(UnhealthyMode::Dnd, "   ");
        assert_eq!(
            p.activity.and_then(|a| a.state).as_deref(),
            Some("unhealthy")
        );
    }

    /// Answers from a script: each GET pops the next answer (the last repeats).
    struct Scripted(Mutex<Vec<ProbeResult>>);

    impl Probe for Scripted {
        fn get<'a>(&'a self, _url: &'a str) -> ProbeFuture<'a> {
            let answer = match self.0.lock() {
                Ok(mut script) if script.len() > 1 => script.remove(0),
                Ok(script) => script
                    .first()
                    .cloned()
                    .unwrap_or(Err("empty script".into())),
                Err(_) => Err("poisoned".into()),
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_publishes_only_changes_with_reason() {
        let ok = || Ok((200, b"{\"status\":\"ok\"}".to_vec()));
        let bad = || {
            Ok((
                503,
                b"{\"status\":\"unhealthy\",\"reason\":\"discord: 401\"}".to_vec(),
            ))
        };
        let script = vec![
            ok(),
            ok(),
            bad(),
            bad(),
            Err("connection refused".to_string()),
            ok(),
        ];
        let probe = Scripted(Mutex::new(script));
        let (tx, mut rx) =
            watch::channel(Presence::unhealthy(UnhealthyMode::Invisible, "starting"));
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(
            "http://127.0.0.1:1/health".into(),
            Duration::from_secs(10),
            UnhealthyMode::Dnd,
            probe,
            tx,
            shutdown,
        ));
        let mut seen = Vec::new();
        for _ in 0..4 {
            rx.changed().await.expect("publisher alive");
            seen.push(rx.borrow_and_update().clone());
        }
        let reason = |p: &Presence| p.activity.as_ref().and_then(|a| a.state.clone());
        assert_eq!(seen[0], Presence::healthy());
        assert_eq!(seen[1].status, OnlineStatus::Dnd);
        assert_eq!(reason(&seen[1]).as_deref(), Some("discord: 401"));
        assert_eq!(reason(&seen[2]).as_deref(), Some("connection refused"));
        assert_eq!(seen[3], Presence::healthy());
        // Healthy repeats forever now: no further publications.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!rx.has_changed().unwrap_or(true));
        trigger.fire();
        task.await.expect("presence task ends on shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn non_json_error_body_uses_status_code() {
        let probe = Scripted(Mutex::new(vec![Ok((500, b"<html>".to_vec()))]));
        assert_eq!(
            check(&probe, "x").await,
            Err("health check returned 500".to_string())
        );
    }
}
