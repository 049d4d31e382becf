//! The gateway connection as a pure state machine: frames, close codes and
//! time go in, actions (send, close, connect, stop, health status) come out.
//! No sockets and no clock of its own, so every rule of Discord's gateway
//! — heartbeat jitter, zombie detection, resume versus
//! identify, fatal close codes, backoff, send budget, identify budget,
//! handshake timeouts — is unit tested by feeding events and instants.
//!
//! ```text
//! Disconnected ─start─▶ Connecting ─Connected─▶ AwaitingHello ─Hello─▶ Identifying ─READY──▶ Active
//!                          ▲                                      └──▶ Resuming ───RESUMED─┘
//!                          └──── drop / zombie / op 7 / op 9 / timeout (backoff) ◀──────────┘
//!                                  fatal close code ──▶ Fatal (Stop, no reconnect)
//! ```
use super::identify_budget::IdentifyBudget;
use super::identify_ledger::History;
use crate::backoff::ExponentialBackoff;
use crate::health::Status;
use crate::jitter::Jitter;
use crate::presence::Presence;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

pub use super::identify_budget::SessionStartLimit;

/// Discord closes with 4002 on sent payloads above this; we refuse them locally.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Our send budget per [`SEND_WINDOW`] (Discord allows 120; leave headroom).
pub const SEND_LIMIT: usize = 110;
/// Slots of [`SEND_LIMIT`] only heartbeats may use.
pub const HEARTBEAT_RESERVE: usize = 5;
/// The window Discord's send limit is counted over.
pub const SEND_WINDOW: Duration = Duration::from_secs(60);
/// The close code we use when we want to keep the session resumable.
pub const CLOSE_RESUMABLE: u16 = 4000;
/// The close code that ends the session (bot goes offline): only on shutdown.
pub const CLOSE_NORMAL: u16 = 1000;
/// Heartbeat interval bounds we accept from Hello (ms).
const MIN_HEARTBEAT_MS: u64 = 100;
const MAX_HEARTBEAT_MS: u64 = 600_000;
/// Longest `resume_gateway_url` / `session_id` we keep from READY.
const MAX_SESSION_FIELD: usize = 512;

/// The bot token. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The bare token, sent as is in Identify and Resume. A token pasted as
    /// `Bot <token>` is stripped once by the configuration
    /// ([`crate::config::discord_config`]), not here.
    pub fn new(bare: &str) -> Self {
        Token(bare.to_string())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Discord's identify window; a `reset_after` beyond it is not believed.
const MAX_RESET_AFTER: Duration = Duration::from_secs(24 * 3600);

impl From<&crate::discord::rest::SessionStartLimit> for SessionStartLimit {
    fn from(l: &crate::discord::rest::SessionStartLimit) -> Self {
        SessionStartLimit {
            total: u32::try_from(l.total).unwrap_or(u32::MAX),
            remaining: u32::try_from(l.remaining).unwrap_or(u32::MAX),
            reset_after: Duration::from_millis(l.reset_after).min(MAX_RESET_AFTER),
            max_concurrency: u32::try_from(l.max_concurrency).unwrap_or(u32::MAX).max(1),
        }
    }
}

/// Timing knobs; the defaults follow Discord's notes, tests shrink them.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// No Hello this long after connecting → retry.
    pub hello_timeout: Duration,
    /// No READY / RESUMED this long after Hello → retry.
    pub ready_timeout: Duration,
    /// First reconnect backoff step.
    pub backoff_min: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// A session that stayed up this long resets the backoff.
    pub stable_after: Duration,
    /// The window in which at most `max_concurrency` (default 1) Identifies
    /// may go out (Discord: 5 s).
    pub identify_spacing: Duration,
    /// Identifies allowed in any 24 h, earlier runs included (Discord resets
    /// the token past 1000).
    pub identify_daily_cap: u32,
    /// Extra wait after close 4008 (we were rate limited).
    pub rate_limited_wait: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            hello_timeout: Duration::from_secs(20),
            ready_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            identify_spacing: Duration::from_secs(5),
            identify_daily_cap: 1000,
            rate_limited_wait: Duration::from_secs(15),
        }
    }
}

/// Everything the machine needs to know up front.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Gateway URL as cached from `GET /gateway/bot` (query added here).
    pub url: String,
    pub token: Token,
    pub session_start_limit: Option<SessionStartLimit>,
    /// The Identifies of earlier runs, from the identify ledger.
    pub identify_history: History,
    /// The wall clock at the machine's start: only to say in health until
    /// when an Identify waits.
    pub started_wall: SystemTime,
    pub tuning: Tuning,
}

/// What happened, as seen by the driver.
#[derive(Debug)]
pub enum Event<'a> {
    /// The websocket handshake of the connection we asked for succeeded.
    Connected,
    /// A text frame arrived.
    Frame(&'a str),
    /// The connection ended (close frame code, or `None` for a drop / failed connect).
    Closed(Option<u16>, String),
    /// Time passed (call at [`Machine::next_deadline`]).
    Tick,
    /// The desired presence changed.
    PresenceChanged(Presence),
    /// We are stopping on purpose.
    Shutdown,
}

/// One outgoing gateway payload. `Debug` shows only the opcode and size,
/// because Identify and Resume carry the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    pub op: u8,
    pub json: String,
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("op", &self.op)
            .field("bytes", &self.json.len())
            .finish()
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Drop any current connection, wait `delay`, then connect to `url`.
    Connect { url: String, delay: Duration },
    /// Send a text frame on the current connection.
    Send(Payload),
    /// An Identify goes out next (the `Send` that follows): persist that in
    /// the identify ledger first, so a crash can only overcount.
    RecordIdentify,
    /// Close the current connection with this code and drop it.
    Close(u16),
    /// Give up for good (fatal close code); the reason is for logs and health.
    Stop(String),
    /// New gateway status for health.
    Status(Status),
    /// An `INTERACTION_CREATE` (a button click): its `d`, for
    /// `crate::interactions` to answer.
    Interaction(Value),
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Disconnected,
    Connecting,
    AwaitingHello,
    Identifying,
    Resuming,
    Active,
    Fatal,
}

/// What a close code means for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// Keep the session, resume.
    Resume,
    /// The session is gone (or never was), identify anew.
    Identify,
    /// We sent too fast: back off, then resume.
    BackOff,
    /// Never reconnect: the configuration is wrong.
    Fatal(&'static str),
}

/// Discord's close codes mapped per the notes. Unknown codes, 1000/1001 from
/// the server and drops (`None`) resume; a failed resume ends in op 9 and
/// then a fresh Identify.
pub fn classify_close(code: Option<u16>) -> CloseKind {
    match code {
        Some(4004) => CloseKind::Fatal("authentication failed (check DISCORD_TOKEN)"),
        Some(4010) => CloseKind::Fatal("invalid shard"),
        Some(4011) => CloseKind::Fatal("sharding required"),
        Some(4012) => CloseKind::Fatal("invalid API version"),
        Some(4013) => CloseKind::Fatal("invalid intents"),
        Some(4014) => CloseKind::Fatal("disallowed intents"),
        Some(4003) | Some(4005) | Some(4007) | Some(4009) => CloseKind::Identify,
        Some(4008) => CloseKind::BackOff,
        _ => CloseKind::Resume,
    }
}

/// `url` with `v=10&encoding=json` as its query: adds a `/` path when there is
/// none, and replaces any `v`, `encoding` or `compress` already present.
pub fn gateway_url(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.split('#').next().unwrap_or(raw);
    let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
    let mut out = base.to_string();
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    if !base.get(after_scheme..).unwrap_or("").contains('/') {
        out.push('/');
    }
    out.push('?');
    for param in query.split('&') {
        let name = param.split('=').next().unwrap_or("");
        if param.is_empty() || matches!(name, "v" | "encoding" | "compress") {
            continue;
        }
        out.push_str(param);
        out.push('&');
    }
    out.push_str("v=10&encoding=json");
    out
}

#[derive(Deserialize)]
struct Incoming {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

#[derive(Clone, Debug)]
struct Session {
    id: String,
    resume_url: String,
}

#[derive(Clone, Copy, Debug)]
struct Heartbeat {
    interval: Duration,
    next: Instant,
    /// A beat went out and no frame at all has arrived since. Any frame
    /// proves the connection alive, as in twilight: an ACK stuck behind
    /// other frames must not look like a zombie.
    unanswered: bool,
}

/// Sliding-window send limiter, per connection.
#[derive(Debug, Default)]
struct SendLimiter {
    sent: VecDeque<Instant>,
}

impl SendLimiter {
    fn prune(&mut self, now: Instant) {
        while let Some(first) = self.sent.front() {
            if now.saturating_duration_since(*first) >= SEND_WINDOW {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    fn try_take(&mut self, now: Instant, heartbeat: bool) -> bool {
        self.prune(now);
        let cap = if heartbeat {
            SEND_LIMIT
        } else {
            SEND_LIMIT - HEARTBEAT_RESERVE
        };
        if self.sent.len() < cap {
            self.sent.push_back(now);
            true
        } else {
            false
        }
    }

    /// When the oldest send leaves the window.
    fn next_free(&self, now: Instant) -> Instant {
        self.sent.front().map(|t| *t + SEND_WINDOW).unwrap_or(now)
    }
}

enum Sent {
    Yes,
    Throttled,
    TooLarge,
}

/// The gateway state machine. See the module docs.
#[derive(Debug)]
pub struct Machine {
    base_url: String,
    token: Token,
    tuning: Tuning,
    jitter: Jitter,
    phase: Phase,
    handshake_deadline: Option<Instant>,
    session: Option<Session>,
    seq: Option<u64>,
    heartbeat: Option<Heartbeat>,
    limiter: SendLimiter,
    desired: Presence,
    /// What the current session shows, as far as we know.
    shown: Option<Presence>,
    presence_retry_at: Option<Instant>,
    attempts: u32,
    active_since: Option<Instant>,
    identify_budget: IdentifyBudget,
    /// `started_wall` paired with the `now` of [`Machine::new`].
    clock: (Instant, SystemTime),
}

impl Machine {
    pub fn new(cfg: MachineConfig, jitter: Jitter, presence: Presence, now: Instant) -> Self {
        let identify_budget = IdentifyBudget::new(
            &cfg.identify_history,
            cfg.session_start_limit,
            cfg.tuning.identify_spacing,
            cfg.tuning.identify_daily_cap,
            now,
        );
        Machine {
            base_url: gateway_url(&cfg.url),
            token: cfg.token,
            tuning: cfg.tuning,
            jitter,
            phase: Phase::Disconnected,
            handshake_deadline: None,
            session: None,
            seq: None,
            heartbeat: None,
            limiter: SendLimiter::default(),
            desired: presence,
            shown: None,
            presence_retry_at: None,
            attempts: 0,
            active_since: None,
            identify_budget,
            clock: (now, cfg.started_wall),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The first connection.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Disconnected {
            let delay = self.identify_wait(now);
            self.phase = Phase::Connecting;
            match self.identify_budget_status(now, delay) {
                Some(waiting) => out.push(Action::Status(Status::failed(waiting))),
                None => out.push(Action::Status(Status::ok("connecting"))),
            }
            out.push(Action::Connect {
                url: self.base_url.clone(),
                delay,
            });
        }
        out
    }

    /// When the driver must deliver [`Event::Tick`] next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let handshake = match self.phase {
            Phase::AwaitingHello | Phase::Identifying | Phase::Resuming => self.handshake_deadline,
            _ => None,
        };
        let beat = self.heartbeat.map(|h| h.next);
        let presence = if self.phase == Phase::Active {
            self.presence_retry_at
        } else {
            None
        };
        [handshake, beat, presence].into_iter().flatten().min()
    }

    /// Feed one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Connected => self.on_connected(now, &mut out),
            Event::Frame(text) => self.on_frame(now, text, &mut out),
            Event::Closed(code, reason) => self.on_closed(now, code, &reason, &mut out),
            Event::Tick => self.on_tick(now, &mut out),
            Event::PresenceChanged(p) => {
                self.desired = p;
                self.maybe_send_presence(now, &mut out);
            }
            Event::Shutdown => {
                if self.is_connected() {
                    out.push(Action::Close(CLOSE_NORMAL));
                }
                // Closing with 1000 ends the session on Discord's side too.
                self.session = None;
                self.heartbeat = None;
                self.phase = Phase::Disconnected;
                out.push(Action::Status(Status::ok("stopped")));
            }
        }
        out
    }

    fn is_connected(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingHello | Phase::Identifying | Phase::Resuming | Phase::Active
        )
    }

    fn on_connected(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.phase = Phase::AwaitingHello;
        self.handshake_deadline = Some(now + self.tuning.hello_timeout);
        self.limiter = SendLimiter::default();
        self.heartbeat = None;
        out.push(Action::Status(Status::ok("handshaking")));
    }

    fn on_frame(&mut self, now: Instant, text: &str, out: &mut Vec<Action>) {
        if !self.is_connected() {
            return;
        }
        // Liveness: whatever arrived, the connection carries frames.
        if let Some(h) = &mut self.heartbeat {
            h.unanswered = false;
        }
        let msg: Incoming = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, bytes = text.len(), "ignoring malformed gateway frame");
                return;
            }
        };
        // Read at receive time, reset only on Identify (pitfall 3).
        if let Some(s) = msg.s {
            self.seq = Some(s);
        }
        match msg.op {
            10 => self.on_hello(now, &msg.d, out),
            // The ACK counted as liveness above, like any frame.
            11 => {}
            1 => {
                tracing::debug!("gateway asked for a heartbeat");
                // Beat now, and the next regular beat one interval from now:
                // the server just reset its own expectation.
                if let Some(h) = &mut self.heartbeat {
                    h.next = now + h.interval;
                }
                self.send_heartbeat(now, out);
            }
            7 => {
                tracing::info!("gateway asked us to reconnect (op 7)");
                out.push(Action::Close(CLOSE_RESUMABLE));
                self.reconnect(now, "server asked to reconnect", Duration::ZERO, out);
            }
            9 => {
                let resumable = msg.d.as_bool().unwrap_or(false) && self.session.is_some();
                tracing::info!(resumable, "gateway invalidated the session (op 9)");
                out.push(Action::Close(CLOSE_RESUMABLE));
                if resumable {
                    self.reconnect(now, "invalid session (resumable)", Duration::ZERO, out);
                } else {
                    self.forget_session();
                    let wait = Duration::from_secs(1).mul_f64(1.0 + 4.0 * self.jitter.sample());
                    self.reconnect(now, "invalid session", wait, out);
                }
            }
            0 => self.on_dispatch(now, msg.t.as_deref(), &msg.d, out),
            op => tracing::debug!(op, "ignoring gateway opcode"),
        }
    }

    fn on_hello(&mut self, now: Instant, d: &Value, out: &mut Vec<Action>) {
        if self.phase != Phase::AwaitingHello {
            tracing::debug!("ignoring unexpected Hello");
            return;
        }
        let interval_ms = d
            .get("heartbeat_interval")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if interval_ms == 0 {
            tracing::warn!("Hello without a usable heartbeat_interval");
            out.push(Action::Close(CLOSE_RESUMABLE));
            self.reconnect(now, "bad Hello", Duration::ZERO, out);
            return;
        }
        // Discord sends ~41 s. Clamp so a bogus value can neither switch off
        // zombie detection (huge) nor spin the loop (tiny).
        let interval = Duration::from_millis(interval_ms.clamp(MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS));
        self.heartbeat = Some(Heartbeat {
            interval,
            next: now + interval.mul_f64(self.jitter.sample()),
            unanswered: false,
        });
        self.handshake_deadline = Some(now + self.tuning.ready_timeout);
        match self.session.clone() {
            Some(session) => {
                self.phase = Phase::Resuming;
                let payload = json!({
                    "op": 6,
                    "d": { "token": self.token.expose(), "session_id": session.id, "seq": self.seq }
                });
                self.send(now, 6, &payload, false, out);
            }
            None => self.identify(now, out),
        }
    }

    fn identify(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some((_, why)) = self.identify_budget.blocked(now) {
            // Normally waited out before connecting; here only if the
            // session was lost between connecting and Hello.
            tracing::warn!(reason = %why, "identify budget exhausted; waiting instead of identifying");
            out.push(Action::Close(CLOSE_RESUMABLE));
            self.reconnect(now, "identify budget exhausted", Duration::ZERO, out);
            return;
        }
        self.identify_budget.record(now);
        out.push(Action::RecordIdentify);
        self.phase = Phase::Identifying;
        self.seq = None;
        let payload = json!({
            "op": 2,
            "d": {
                "token": self.token.expose(),
                "intents": 0,
                "properties": {
                    "os": std::env::consts::OS,
                    "browser": "drone-discord",
                    "device": "drone-discord",
                },
                "presence": self.desired.to_json(),
            }
        });
        if let Sent::Yes = self.send(now, 2, &payload, false, out) {
            self.shown = Some(self.desired.clone());
        }
    }

    fn on_dispatch(&mut self, now: Instant, t: Option<&str>, d: &Value, out: &mut Vec<Action>) {
        match t {
            Some("READY") => {
                let id = d
                    .get("session_id")
                    .and_then(Value::as_str)
                    .filter(|s| s.len() <= MAX_SESSION_FIELD);
                let url = d
                    .get("resume_gateway_url")
                    .and_then(Value::as_str)
                    .filter(|s| s.len() <= MAX_SESSION_FIELD);
                self.session = id.map(|id| Session {
                    id: id.to_string(),
                    resume_url: url
                        .filter(|u| self.resume_url_acceptable(u))
                        .map(gateway_url)
                        .unwrap_or_else(|| self.base_url.clone()),
                });
                tracing::info!(resumable = self.session.is_some(), "gateway session ready");
                self.activate(now, out);
            }
            Some("RESUMED") => {
                tracing::info!(seq = self.seq, "gateway session resumed");
                self.activate(now, out);
            }
            Some("INTERACTION_CREATE") => out.push(Action::Interaction(d.clone())),
            _ => {}
        }
    }

    /// Never let a READY downgrade `wss://` to `ws://` (the token would travel in clear).
    fn resume_url_acceptable(&self, url: &str) -> bool {
        if self.base_url.starts_with("wss://") {
            url.starts_with("wss://")
        } else {
            url.starts_with("wss://") || url.starts_with("ws://")
        }
    }

    fn activate(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Identifying | Phase::Resuming) {
            return;
        }
        self.phase = Phase::Active;
        self.handshake_deadline = None;
        self.active_since = Some(now);
        out.push(Action::Status(Status::ok("connected")));
        self.maybe_send_presence(now, out);
    }

    fn on_closed(&mut self, now: Instant, code: Option<u16>, reason: &str, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Disconnected | Phase::Fatal) {
            return;
        }
        let kind = classify_close(code);
        tracing::info!(code, reason, kind = ?kind, "gateway connection closed");
        let what = match code {
            Some(c) => format!("closed with {c}"),
            None => format!("connection lost: {reason}"),
        };
        match kind {
            CloseKind::Fatal(why) => {
                self.phase = Phase::Fatal;
                self.heartbeat = None;
                self.handshake_deadline = None;
                self.forget_session();
                let reason = format!("stopped: {what}: {why}");
                tracing::error!(code, reason = %reason, "gateway will not reconnect");
                out.push(Action::Status(Status::failed(reason.clone())));
                out.push(Action::Stop(reason));
            }
            CloseKind::Identify => {
                self.forget_session();
                self.reconnect(now, &what, Duration::ZERO, out);
            }
            CloseKind::BackOff => {
                let wait = self.tuning.rate_limited_wait;
                self.reconnect(now, &what, wait, out);
            }
            CloseKind::Resume => self.reconnect(now, &what, Duration::ZERO, out),
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(
            self.phase,
            Phase::AwaitingHello | Phase::Identifying | Phase::Resuming
        ) {
            if let Some(deadline) = self.handshake_deadline {
                if now >= deadline {
                    let what = if self.phase == Phase::AwaitingHello {
                        "no Hello"
                    } else {
                        "no READY/RESUMED"
                    };
                    tracing::warn!(what, "gateway handshake timed out");
                    out.push(Action::Close(CLOSE_RESUMABLE));
                    self.reconnect(
                        now,
                        &format!("handshake timeout: {what}"),
                        Duration::ZERO,
                        out,
                    );
                    return;
                }
            }
        }
        if let Some(h) = self.heartbeat {
            if now >= h.next {
                if h.unanswered {
                    // Pitfall 1: half-open socket. Close resumably (never 1000/1001).
                    tracing::warn!("no frame at all since the last heartbeat: zombie connection");
                    out.push(Action::Close(CLOSE_RESUMABLE));
                    self.reconnect(
                        now,
                        "zombie connection (nothing received since the last heartbeat)",
                        Duration::ZERO,
                        out,
                    );
                    return;
                }
                if let Some(hb) = &mut self.heartbeat {
                    hb.next = now + hb.interval;
                }
                self.send_heartbeat(now, out);
            }
        }
        if self.phase == Phase::Active && self.presence_retry_at.is_some_and(|t| now >= t) {
            self.presence_retry_at = None;
            self.maybe_send_presence(now, out);
        }
    }

    fn send_heartbeat(&mut self, now: Instant, out: &mut Vec<Action>) {
        let payload = json!({ "op": 1, "d": self.seq });
        if let Sent::Yes = self.send(now, 1, &payload, true, out) {
            if let Some(h) = &mut self.heartbeat {
                h.unanswered = true;
            }
        }
    }

    /// Send the desired presence if the session shows something else and the
    /// budget allows; otherwise retry when a slot frees up. Only the newest
    /// desired presence is ever sent (changes while waiting coalesce).
    fn maybe_send_presence(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.phase != Phase::Active {
            return;
        }
        if self.shown.as_ref() == Some(&self.desired) {
            self.presence_retry_at = None;
            return;
        }
        if self.presence_retry_at.is_some() {
            return; // already waiting for a slot; the newest value goes then
        }
        let payload = json!({ "op": 3, "d": self.desired.to_json() });
        match self.send(now, 3, &payload, false, out) {
            Sent::Yes => self.shown = Some(self.desired.clone()),
            Sent::Throttled => self.presence_retry_at = Some(self.limiter.next_free(now)),
            Sent::TooLarge => {}
        }
    }

    fn send(
        &mut self,
        now: Instant,
        op: u8,
        payload: &Value,
        heartbeat: bool,
        out: &mut Vec<Action>,
    ) -> Sent {
        let json = payload.to_string();
        if json.len() > MAX_PAYLOAD_BYTES {
            tracing::warn!(
                op,
                bytes = json.len(),
                "refusing gateway payload over 4096 bytes"
            );
            return Sent::TooLarge;
        }
        if !self.limiter.try_take(now, heartbeat) {
            tracing::debug!(op, "gateway send budget exhausted; deferring");
            return Sent::Throttled;
        }
        out.push(Action::Send(Payload { op, json }));
        Sent::Yes
    }

    fn forget_session(&mut self) {
        self.session = None;
        self.shown = None;
    }

    /// After any drop: back off ([`ExponentialBackoff`] from `backoff_min` to
    /// `backoff_max`, the count reset after a stable session) and connect
    /// again, resuming when we still hold a session.
    fn reconnect(
        &mut self,
        now: Instant,
        reason: &str,
        min_delay: Duration,
        out: &mut Vec<Action>,
    ) {
        self.heartbeat = None;
        self.handshake_deadline = None;
        self.presence_retry_at = None;
        // An op 3 may have been lost with the old connection: after RESUMED,
        // send the desired presence again rather than trust our memory.
        self.shown = None;
        if let Some(since) = self.active_since.take() {
            if now.saturating_duration_since(since) >= self.tuning.stable_after {
                self.attempts = 0;
            }
        }
        self.attempts = self.attempts.saturating_add(1);
        let schedule = ExponentialBackoff::new(self.tuning.backoff_min, self.tuning.backoff_max);
        let backoff = schedule.delay(self.attempts, self.jitter.sample());
        let mut delay = backoff.max(min_delay);
        let mut waiting = None;
        let url = match &self.session {
            Some(s) => s.resume_url.clone(),
            None => {
                let identify = self.identify_wait(now);
                if identify > delay {
                    delay = identify;
                    waiting = self.identify_budget_status(now, delay);
                }
                self.base_url.clone()
            }
        };
        self.phase = Phase::Connecting;
        let status = match waiting {
            Some(w) => format!("{w} (after: {reason})"),
            None => format!("reconnecting in {}s: {reason}", delay.as_secs()),
        };
        out.push(Action::Status(Status::failed(status)));
        out.push(Action::Connect { url, delay });
    }

    /// How long until we may Identify (the identify budget's rules).
    fn identify_wait(&self, now: Instant) -> Duration {
        self.identify_budget.wait(now)
    }

    /// Health's words while an Identify waits `delay` for the budget (why,
    /// and until when on the wall clock); `None` for the short spacing
    /// waits, which are ordinary reconnects.
    fn identify_budget_status(&self, now: Instant, delay: Duration) -> Option<String> {
        let (_, why) = self.identify_budget.blocked(now)?;
        if why == super::identify_budget::Blocked::Spacing {
            return None;
        }
        let (start, wall) = self.clock;
        let until = wall + now.saturating_duration_since(start) + delay;
        tracing::warn!(reason = %why, wait_s = delay.as_secs(), "identify budget exhausted; the gateway waits");
        Some(format!(
            "waiting for the identify budget until {} (in {}s): {why}",
            crate::httpdate::format(until),
            delay.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests;
