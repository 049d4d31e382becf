//! A fake Discord REST API for end-to-end tests: a real HTTP/1.1 server on
//! 127.0.0.1 (port 0), hand-written on tokio + httparse, with keep-alive and
//! optional TLS (a test CA made at test time), so the real client code runs
//! over the real wire protocol. It is as strict as Discord where a kinder
//! fake would let a test pass that real Discord would fail: nonces are
//! forgotten, bodies are validated, buckets carry Discord's headers, and
//! answers can be lost after the work was done.
//!
//! # Quick start
//!
//! ```ignore
//! mod support;
//! use support::fake_discord::{Canned, FakeDiscord, Fault};
//!
//! let fake = FakeDiscord::start().await;          // or FakeDiscord::start_tls().await
//! let rest = Rest::new(fake.rest_config())?;      // base URL, token, CA file filled in
//! fake.push_n(2, Canned::status(503));            // next 2 calls (any route) → 503
//! fake.push(Canned::rate_limited(0.5, true));     // then one global 429
//! fake.push_for("PATCH", "/channels/1/messages/", 1, Canned::status(500)); // per-path script
//! fake.always(Canned::unauthorized());            // every call → 401 until clear_script()
//! fake.push_fault_for("POST", "/channels/", 1, Fault::ProcessThenDrop);  // created, answer lost
//! fake.push_fault_for("POST", "/channels/", 1, Fault::ProcessThenAnswer(Canned::html(200)));
//! fake.refuse_connections(true);                  // drop every connection unanswered
//! fake.refuse_for(Duration::from_secs(2));        // ... or only for a while
//! fake.stop_listening();                          // the fake is gone: connection refused
//! fake.listen_again().await;                      // ... and back on the same port
//! fake.always_fault(Fault::Stall);                // accept, never answer, until clear_script()
//! fake.set_rate_limit(Some(EmulatedLimit { limit: 5, window: Duration::from_secs(1) }));
//! fake.set_nonce_window(Duration::from_millis(300)); // nonces forgotten sooner
//! fake.set_read_history(false);                   // channel reads return []
//! fake.set_channel_access("222", false);          // 403 50001 on that channel
//! ...
//! fake.calls();                  // every request: method, path, headers, JSON body, time, status
//! fake.messages();               // message id → current message JSON (after edits)
//! fake.history(&id);             // every version of one message, creation first
//! fake.count("POST /channels/{id}/messages");   // calls per route template
//! fake.connections();            // TCP connections accepted, refused ones included
//! fake.wait_for_calls(3, Duration::from_secs(10)).await;
//! fake.wait_until(Duration::from_secs(10), |f| f.messages().len() == 2).await;
//! ```
//!
//! # What it implements
//!
//! Paths are accepted with or without the `/api/v10` prefix and recorded without it.
//!
//! * `POST /channels/{id}/messages`: assigns time-based snowflake ids and
//!   stores the body with `id`, `channel_id`, `author` (the caller's bot user)
//!   and `timestamp`. The body is checked as Discord does (see `form.rs`):
//!   limits → 400 50035 with an `errors` tree, nothing to show → 400 50006,
//!   non-JSON → 400 50109. A `nonce` longer than 25 characters → 400 50035.
//!   With `enforce_nonce: true`, a nonce the same author (token) used within
//!   the nonce window ([`FakeDiscord::set_nonce_window`], default
//!   [`DEFAULT_NONCE_WINDOW`]) returns that earlier message, whatever
//!   channel it is in; after the window the nonce is forgotten and a new
//!   message is created (message.mdx: "checked for uniqueness in the past few
//!   minutes ... created by the same author").
//! * `PATCH /channels/{id}/messages/{mid}`: merges the body into the stored
//!   message (a `null` clears a field) and checks the result as a create;
//!   unknown ids → 404 10008; another author's message → 403 50005.
//! * `GET /channels/{id}/messages?limit=&before=&after=&around=`: newest
//!   first, limit 1–100 (default 50), at most one of before/after/around,
//!   message objects as Discord returns them (no `nonce`, no request-only
//!   fields). Without READ_MESSAGE_HISTORY ([`FakeDiscord::set_read_history`])
//!   the answer is `200 []`.
//! * `GET /webhooks/{id}/{token}` for a webhook made with
//!   [`FakeDiscord::add_webhook`]: no `Authorization` needed (the token in the
//!   path is the authorization, as on Discord); an unknown id → 404 10015
//!   Unknown Webhook, a wrong token → 401 50027 Invalid Webhook Token; other
//!   methods → 405. Recorded with the route `GET /webhooks/{id}/{token}`.
//! * Threads, forum channels, `GET /channels/{id}` (see `threads.rs`),
//!   replies (`replies.rs`), `allowed_mentions` (`mentions.rs`), webhook
//!   execution and edits (`webhooks.rs`).
//! * Button clicks (see `interactions.rs`): [`FakeDiscord::click`] makes
//!   an interaction for the fake gateway to deliver;
//!   `POST /interactions/{id}/{token}/callback` (3 s deadline, once) and
//!   `PATCH /webhooks/{app}/{token}/messages/@original` answer it.
//! * `GET /users/@me` (the bot user of the calling token: the same id its
//!   messages carry as `author.id`), `GET /gateway/bot` (URL settable).
//! * Anything else → 404 `{"code": 0, "message": "404: Not Found"}`.
//! * `Authorization` must be `Bot <token>` for the token set with
//!   [`FakeDiscord::set_token`] (default `test-token`) or one added with
//!   [`FakeDiscord::add_token`], else 401. Each token is its own bot user.
//! * A channel without access ([`FakeDiscord::set_channel_access`]) answers
//!   every route under it with 403 50001 Missing Access.
//! * Multipart bodies (a create or edit with files) are parsed strictly
//!   (see `multipart.rs`): the message is `payload_json`, the files are
//!   recorded per message ([`FakeDiscord::files`]) and shown in the stored
//!   message's `attachments` (id, filename, size).
//!
//! # Rate limits
//!
//! Channel routes are limited per (bucket, channel), as Discord's are: a
//! bucket is a route family (message writes share one; reading messages and
//! reading the channel have their own), and its `X-RateLimit-Bucket` id does
//! not contain the channel id. Every answer of a limited route carries
//! `X-RateLimit-Limit`, `-Remaining`, `-Reset`, `-Reset-After` and `-Bucket`,
//! errors included, as Discord does on most answers. The default limit is
//! [`DEFAULT_LIMIT`] (generous); [`FakeDiscord::set_rate_limit`] changes it,
//! `None` turns limits and headers off (a Discord that sends none).
//! Every answer but an HTML one carries `Via: 1.1 google`, as Discord's
//! front end adds; clients take a 429 without it for a Cloudflare ban.
//!
//! # Precedence
//!
//! Scripted answers take precedence over everything: they are recorded (with
//! the status they got) but change nothing. A scripted [`Fault`] other than
//! [`Fault::Drop`] lets the request through authentication, the rate limit
//! and the handlers (so a create creates), then replaces the answer. Then
//! come authentication, channel access, the rate limit and the handlers.
pub mod form;
pub mod interactions;
pub mod mentions;
pub mod multipart;
pub mod replies;
pub mod threads;
pub mod webhooks;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drone_discord::discord::rest::RestConfig;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::tls::{make_test_tls, TestTls};

/// The token the fake accepts unless told otherwise.
pub const TEST_TOKEN: &str = "test-token";
/// How long a nonce is remembered unless told otherwise. Discord says "the
/// past few minutes"; two minutes keeps tests honest about forgetting.
pub const DEFAULT_NONCE_WINDOW: Duration = Duration::from_secs(120);
/// The limit channel routes have unless told otherwise: generous enough for
/// any test, strict enough that every answer carries the headers.
pub const DEFAULT_LIMIT: EmulatedLimit = EmulatedLimit {
    limit: 50,
    window: Duration::from_secs(1),
};
/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// The bot user's name in `GET /users/@me` and in message authors.
pub const BOT_USERNAME: &str = "fake-bot";

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path without the `/api/v10` prefix and without the query.
    pub path: String,
    /// Route template: numeric segments replaced by `{id}`, e.g. `PATCH /channels/{id}/messages/{id}`.
    pub route: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (a multipart body: its `payload_json`; None if
    /// empty or not JSON).
    pub body: Option<Value>,
    /// When the request was fully received.
    pub at: Instant,
    /// The status the fake answered; 0 when it dropped the connection instead.
    pub status: u16,
    /// The status the fake's own handling produced (authentication, rate
    /// limit, handlers), whether or not that answer was sent; None when a
    /// scripted answer or [`Fault::Drop`] stood in for the handling.
    pub processed: Option<u16>,
    /// Which accepted connection (1-based) carried it.
    pub connection: usize,
    /// The query string, without `?` (empty if none).
    pub query: String,
}

impl Call {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A canned response for scripting.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (timeout tests).
    pub delay: Option<Duration>,
}

impl Canned {
    /// A status with a Discord-style JSON error body.
    pub fn status(status: u16) -> Canned {
        Canned::json(
            status,
            json!({ "message": format!("{status}: canned"), "code": 0 }),
        )
    }

    pub fn json(status: u16, body: Value) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: None,
        }
    }

    /// A Discord 429: JSON body with `retry_after` (s) and `global`, plus the
    /// matching headers (`Retry-After` rounded up, `X-RateLimit-Scope`, `X-RateLimit-Global`).
    pub fn rate_limited(retry_after: f64, global: bool) -> Canned {
        let mut c = Canned::json(
            429,
            json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": global }),
        )
        .header("Retry-After", &format!("{}", retry_after.ceil() as u64))
        .header("X-RateLimit-Scope", if global { "global" } else { "user" });
        if global {
            c = c.header("X-RateLimit-Global", "true");
        } else {
            c = c
                .header("X-RateLimit-Bucket", "canned-bucket")
                .header("X-RateLimit-Limit", "5")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset-After", &format!("{retry_after:.3}"));
        }
        c
    }

    /// Discord's 401 body.
    pub fn unauthorized() -> Canned {
        Canned::json(401, json!({ "message": "401: Unauthorized", "code": 0 }))
    }

    /// A Cloudflare ban page: 429, HTML, no rate-limit headers.
    pub fn cloudflare_ban() -> Canned {
        Canned {
            status: 429,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><body>error code: 1015</body></html>".to_vec(),
            delay: None,
        }
    }

    /// An HTML page with this status, as a proxy or captive portal in front of
    /// Discord answers (`Canned::html(200)`: a 2xx that is not a message).
    pub fn html(status: u16) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: b"<!DOCTYPE html><html><head><title>Proxy</title></head><body>Request forwarded.</body></html>"
                .to_vec(),
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Canned {
        self.delay = Some(d);
        self
    }
}

/// A scripted fault: what happens to a request instead of its normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Do not handle it; close the connection without answering (the
    /// request was lost after it was sent).
    Drop,
    /// Handle it for real (a create creates, an edit edits), then close the
    /// connection without answering: the client sees EOF or a reset.
    ProcessThenDrop,
    /// Do not handle it and do not answer: hold the connection open until
    /// the client gives up (a Discord that accepts and then hangs).
    Stall,
    /// Handle it for real, then send this answer instead of the real one,
    /// e.g. [`Canned::html`]`(200)`, a 200 without `id`, or a real-looking
    /// answer [`Canned::delayed`] past the client's timeout.
    ProcessThenAnswer(Canned),
}

impl Fault {
    /// The message is created, and the answer is a 200 proxy page.
    pub fn process_then_html() -> Fault {
        Fault::ProcessThenAnswer(Canned::html(200))
    }
}

/// An emulated rate limit: `limit` calls per fixed `window`, per (bucket, channel).
#[derive(Clone, Copy, Debug)]
pub struct EmulatedLimit {
    pub limit: u32,
    pub window: Duration,
}

#[derive(Clone, Debug)]
enum Action {
    Answer(Canned),
    Fault(Fault),
}

struct Script {
    method: Option<String>,
    path_prefix: Option<String>,
    /// None: forever.
    left: Option<usize>,
    action: Action,
}

struct Window {
    start: Instant,
    used: u32,
}

/// A remembered nonce.
struct NonceUse {
    message_id: String,
    at: Instant,
}

struct State {
    token: String,
    /// More accepted tokens, each its own bot user.
    extra_tokens: Vec<String>,
    gateway_url: String,
    calls: Vec<Call>,
    messages: HashMap<String, Value>,
    /// Creation order of message ids.
    order: Vec<String>,
    /// (author id, nonce) → the message it created.
    nonces: HashMap<(String, String), NonceUse>,
    nonce_window: Duration,
    last_id: u64,
    scripts: VecDeque<Script>,
    refusing: bool,
    refusing_until: Option<Instant>,
    /// Message id → every version it had (creation first).
    history: HashMap<String, Vec<Value>>,
    limit: Option<EmulatedLimit>,
    /// (bucket id, channel id) → its current window.
    windows: HashMap<(String, String), Window>,
    read_history: bool,
    /// Channels the bot cannot access (403 50001).
    no_access: HashSet<String>,
    /// Webhook id → (token, channel id, name).
    webhooks: HashMap<String, (String, String, String)>,
    /// Channel types, unknown channels, threads.
    channels: threads::Channels,
    /// What webhook executions sent that Discord ignores.
    hooks: webhooks::Hooks,
    /// Message id → the files uploaded with it.
    uploads: HashMap<String, Vec<multipart::UploadedFile>>,
    interactions: Vec<interactions::Interaction>,
}

/// The fake Discord server. Stops accepting when dropped.
pub struct FakeDiscord {
    addr: SocketAddr,
    tls: Option<Arc<TestTls>>,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicUsize>,
    /// None while stopped ([`FakeDiscord::stop_listening`]).
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        if let Some(t) = drone_discord::sync::lock(&self.accept_task).take() {
            t.abort();
        }
    }
}

/// The bot user id of a token: stable, distinct per token, snowflake-sized.
pub fn user_id_for(token: &str) -> String {
    // FNV-1a: deterministic across runs (std's hasher is seeded).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (100_000_000_000_000_000 + h % 900_000_000_000_000_000).to_string()
}

fn bot_user(token: &str) -> Value {
    json!({ "id": user_id_for(token), "username": BOT_USERNAME, "discriminator": "0",
        "global_name": null, "avatar": null, "bot": true })
}

impl FakeDiscord {
    /// Plain HTTP on 127.0.0.1:0.
    pub async fn start() -> FakeDiscord {
        Self::start_inner(None).await
    }

    /// HTTPS on 127.0.0.1:0 with a certificate from a fresh test CA
    /// (see [`FakeDiscord::ca_file`]).
    pub async fn start_tls() -> FakeDiscord {
        Self::start_inner(Some(Arc::new(make_test_tls()))).await
    }

    async fn start_inner(tls: Option<Arc<TestTls>>) -> FakeDiscord {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            token: TEST_TOKEN.to_string(),
            extra_tokens: Vec::new(),
            gateway_url: "wss://gateway.invalid".to_string(),
            calls: Vec::new(),
            messages: HashMap::new(),
            order: Vec::new(),
            nonces: HashMap::new(),
            nonce_window: DEFAULT_NONCE_WINDOW,
            last_id: 0,
            scripts: VecDeque::new(),
            refusing: false,
            refusing_until: None,
            history: HashMap::new(),
            uploads: HashMap::new(),
            interactions: Vec::new(),
            limit: Some(DEFAULT_LIMIT),
            windows: HashMap::new(),
            read_history: true,
            no_access: HashSet::new(),
            webhooks: HashMap::new(),
            channels: threads::Channels::default(),
            hooks: webhooks::Hooks::default(),
        }));
        let connections = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(accept_loop(
            listener,
            tls.clone(),
            state.clone(),
            connections.clone(),
        ));
        FakeDiscord {
            addr,
            tls,
            state,
            connections,
            accept_task: Mutex::new(Some(accept_task)),
        }
    }

    /// Stop listening, as a Discord that is gone: new connections are
    /// refused by the kernel (nothing listens on the port), kept-alive ones
    /// are dropped at their next request. [`FakeDiscord::listen_again`] ends it.
    pub fn stop_listening(&self) {
        self.lock().refusing = true;
        if let Some(t) = drone_discord::sync::lock(&self.accept_task).take() {
            t.abort();
        }
    }

    /// Listen on the same port again after [`FakeDiscord::stop_listening`],
    /// with all the state (messages, nonces, limits) kept.
    pub async fn listen_again(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                // The aborted accept task may not have dropped its listener yet.
                Err(_) if tries < 200 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        let task = tokio::spawn(accept_loop(
            listener,
            self.tls.clone(),
            self.state.clone(),
            self.connections.clone(),
        ));
        *drone_discord::sync::lock(&self.accept_task) = Some(task);
        self.lock().refusing = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        drone_discord::sync::lock(&self.state)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:port/api/v10` (HTTPS uses `localhost` for SNI).
    pub fn base_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}/api/v10", self.addr.port()),
            None => format!("http://127.0.0.1:{}/api/v10", self.addr.port()),
        }
    }

    /// The test CA's PEM file (TLS fakes only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.ca_file.clone())
    }

    /// A [`RestConfig`] pointing at this fake with the accepted token and
    /// generous timeouts.
    pub fn rest_config(&self) -> RestConfig {
        RestConfig {
            base_url: self.base_url(),
            token: self.lock().token.clone(),
            extra_ca_file: self.ca_file(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The token the fake accepts (`Authorization: Bot <token>`).
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_string();
    }

    /// Accept one more token, as a second bot user (its own author id and
    /// its own nonces).
    pub fn add_token(&self, token: &str) {
        self.lock().extra_tokens.push(token.to_string());
    }

    /// The bot user id of the main token: `GET /users/@me`'s `id` and its
    /// messages' `author.id`.
    pub fn bot_user_id(&self) -> String {
        user_id_for(&self.lock().token)
    }

    /// The `url` returned by `GET /gateway/bot`.
    pub fn set_gateway_url(&self, url: &str) {
        self.lock().gateway_url = url.to_string();
    }

    /// How long a nonce is remembered (default [`DEFAULT_NONCE_WINDOW`]).
    pub fn set_nonce_window(&self, window: Duration) {
        self.lock().nonce_window = window;
    }

    /// Forget every nonce now, as after an outage longer than the window.
    pub fn forget_nonces(&self) {
        self.lock().nonces.clear();
    }

    /// Whether the bot has READ_MESSAGE_HISTORY (default true). Without it,
    /// `GET /channels/{id}/messages` answers `200 []`.
    pub fn set_read_history(&self, on: bool) {
        self.lock().read_history = on;
    }

    /// Whether the bot can access `channel` (default true). Without access,
    /// every route under `/channels/{channel}` answers 403 50001 Missing Access.
    pub fn set_channel_access(&self, channel: &str, on: bool) {
        let mut s = self.lock();
        if on {
            s.no_access.remove(channel);
        } else {
            s.no_access.insert(channel.to_string());
        }
    }

    /// Make a webhook named `name` that posts in `channel`; returns its URL
    /// (`<base>/webhooks/<id>/<token>`), which is all a caller needs.
    pub fn add_webhook(&self, channel: &str, name: &str) -> String {
        let mut s = self.lock();
        let id = next_snowflake(&mut s);
        let token = format!("wh-{id}-Tok_en");
        s.webhooks
            .insert(id.clone(), (token.clone(), channel.into(), name.into()));
        drop(s);
        format!("{}/webhooks/{id}/{token}", self.base_url())
    }

    /// Put a message into `channel` as `author` (a user object, e.g.
    /// `json!({"id": "42", "username": "alice"})`) without a request: someone
    /// else's message, or one the bot posted before the test began. Returns
    /// its id. The body is stored as given (not validated).
    pub fn seed_message(&self, channel: &str, author: Value, body: Value) -> String {
        let mut s = self.lock();
        let id = next_snowflake(&mut s);
        let mut msg = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        msg.insert("id".into(), json!(id));
        msg.insert("channel_id".into(), json!(channel));
        msg.insert("author".into(), author);
        msg.insert("timestamp".into(), json!(snowflake_timestamp(&id)));
        let msg = Value::Object(msg);
        s.messages.insert(id.clone(), msg.clone());
        s.history.insert(id.clone(), vec![msg]);
        s.order.push(id.clone());
        id
    }

    /// [`seed_message`](Self::seed_message) with a given id: a message an
    /// older release posted, whose id a store from that release holds.
    pub fn seed_message_with_id(&self, id: &str, channel: &str, author: Value, body: Value) {
        let msg = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        insert_message(&mut self.lock(), id, channel, author, msg);
    }

    /// Next call (any route) gets `resp`, once.
    pub fn push(&self, resp: Canned) {
        self.push_n(1, resp);
    }

    /// Next `n` calls (any route) get `resp`.
    pub fn push_n(&self, n: usize, resp: Canned) {
        self.script(None, None, Some(n), Action::Answer(resp));
    }

    /// Next `n` calls with this method whose path starts with `path_prefix`
    /// (without `/api/v10`) get `resp`.
    pub fn push_for(&self, method: &str, path_prefix: &str, n: usize, resp: Canned) {
        self.script(
            Some(method),
            Some(path_prefix),
            Some(n),
            Action::Answer(resp),
        );
    }

    /// Next `n` calls (any route) suffer `fault`.
    pub fn push_fault(&self, n: usize, fault: Fault) {
        self.script(None, None, Some(n), Action::Fault(fault));
    }

    /// Next `n` calls with this method whose path starts with `path_prefix`
    /// (without `/api/v10`) suffer `fault`.
    pub fn push_fault_for(&self, method: &str, path_prefix: &str, n: usize, fault: Fault) {
        self.script(
            Some(method),
            Some(path_prefix),
            Some(n),
            Action::Fault(fault),
        );
    }

    /// Every call gets `resp` until [`FakeDiscord::clear_script`].
    pub fn always(&self, resp: Canned) {
        self.script(None, None, None, Action::Answer(resp));
    }

    /// Every call suffers `fault` until [`FakeDiscord::clear_script`].
    pub fn always_fault(&self, fault: Fault) {
        self.script(None, None, None, Action::Fault(fault));
    }

    fn script(
        &self,
        method: Option<&str>,
        path_prefix: Option<&str>,
        left: Option<usize>,
        action: Action,
    ) {
        self.lock().scripts.push_back(Script {
            method: method.map(str::to_string),
            path_prefix: path_prefix.map(str::to_string),
            left,
            action,
        });
    }

    /// Forget all scripted responses.
    pub fn clear_script(&self) {
        self.lock().scripts.clear();
    }

    /// While on, accepted connections (new and kept-alive) are dropped unanswered.
    pub fn refuse_connections(&self, on: bool) {
        self.lock().refusing = on;
    }

    /// Drop connections unanswered for the next `d` (an outage that heals by itself).
    pub fn refuse_for(&self, d: Duration) {
        self.lock().refusing_until = Some(Instant::now() + d);
    }

    /// The limit of every channel route, per (bucket, channel), with correct
    /// `X-RateLimit-*` headers and 429s when exceeded (default
    /// [`DEFAULT_LIMIT`]; `None` turns limits and their headers off).
    pub fn set_rate_limit(&self, limit: Option<EmulatedLimit>) {
        let mut s = self.lock();
        s.limit = limit;
        s.windows.clear();
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Number of calls to a route template, e.g. `"PATCH /channels/{id}/messages/{id}"`.
    pub fn count(&self, route: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.route == route)
            .count()
    }

    /// Number of calls answered with `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.status == status)
            .count()
    }

    /// Message id → current message JSON (after edits), as stored: the
    /// request's fields (`nonce` included) plus `id`, `channel_id`, `author`
    /// and `timestamp`.
    pub fn messages(&self) -> HashMap<String, Value> {
        self.lock().messages.clone()
    }

    /// Message ids in creation order.
    pub fn message_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// Every version a message had, creation first (to check edit order).
    pub fn history(&self, id: &str) -> Vec<Value> {
        self.lock().history.get(id).cloned().unwrap_or_default()
    }

    /// One message's current JSON.
    /// A click on the button `custom_id` of `message` (as the fake stores
    /// it) by user `user`: in a server with `roles` (`member`), or in a DM
    /// (`user`) when `roles` is None. Returns the `INTERACTION_CREATE`
    /// payload's `d`; the interaction's 3 s start now.
    pub fn click(
        &self,
        custom_id: &str,
        user: &str,
        roles: Option<&[&str]>,
        message: Value,
    ) -> Value {
        let mut s = self.lock();
        let id = next_snowflake(&mut s);
        let token = format!("aW50ZXJhY3Rpb246{id}.tok-en_x");
        let app = user_id_for(&s.token);
        s.interactions.push(interactions::Interaction {
            id: id.clone(),
            token: token.clone(),
            application_id: app.clone(),
            created: Instant::now(),
            callback: None,
            edits: Vec::new(),
        });
        let who = json!({ "id": user, "username": format!("user{user}") });
        let mut d = json!({ "id": id, "application_id": app, "type": 3, "token": token, "version": 1,
            "channel_id": message["channel_id"], "message": message,
            "data": { "custom_id": custom_id, "component_type": 2 } });
        match roles {
            Some(r) => d["member"] = json!({ "user": who, "roles": r }),
            None => d["user"] = who,
        }
        d
    }

    /// Interaction `id` as the fake saw it answered.
    pub fn interaction(&self, id: &str) -> Option<interactions::Interaction> {
        self.lock()
            .interactions
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Make interaction `id` older by `by` (its 3 s pass without waiting).
    pub fn age_interaction(&self, id: &str, by: Duration) {
        for i in self.lock().interactions.iter_mut().filter(|i| i.id == id) {
            i.created -= by;
        }
    }

    /// The files uploaded with message `id`, in `files[n]` order.
    pub fn files(&self, id: &str) -> Vec<multipart::UploadedFile> {
        self.lock().uploads.get(id).cloned().unwrap_or_default()
    }

    pub fn message(&self, id: &str) -> Option<Value> {
        self.lock().messages.get(id).cloned()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` calls were recorded; false on timeout.
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.calls().len() >= n).await
    }

    /// Poll `cond` every 10 ms until it holds; false on timeout.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&FakeDiscord) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TestTls>>,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicUsize>,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let conn_no = connections.fetch_add(1, Ordering::SeqCst) + 1;
        if is_refusing(&state) {
            drop(sock);
            continue;
        }
        let _ = sock.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(t) => {
                    let hs = tokio::time::timeout(Duration::from_secs(10), t.acceptor.accept(sock))
                        .await;
                    if let Ok(Ok(s)) = hs {
                        serve_connection(s, state, conn_no).await;
                    }
                }
                None => serve_connection(sock, state, conn_no).await,
            }
        });
    }
}

fn is_refusing(state: &Mutex<State>) -> bool {
    let s = drone_discord::sync::lock(state);
    s.refusing || s.refusing_until.is_some_and(|t| Instant::now() < t)
}

struct Parsed {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

/// Read one request; None on EOF, error, timeout or garbage.
async fn read_request<S: AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) -> Option<Parsed> {
    loop {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut storage);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method?.to_string();
                let target = req.path?.to_string();
                let version = req.version.unwrap_or(1);
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let find = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                if find("transfer-encoding").is_some() {
                    return None;
                }
                let len: usize = find("content-length")
                    .map(|v| v.trim().parse().ok())
                    .unwrap_or(Some(0))?;
                // Discord takes up to 25 MiB in one request (files included).
                if len > 26 * 1024 * 1024 {
                    return None;
                }
                let conn = find("connection").unwrap_or_default().to_ascii_lowercase();
                let close =
                    conn.contains("close") || (version == 0 && !conn.contains("keep-alive"));
                buf.drain(..n);
                while buf.len() < len {
                    let mut chunk = [0u8; 8192];
                    let r =
                        tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk)).await;
                    match r {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                        Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body: Vec<u8> = buf.drain(..len).collect();
                return Some(Parsed {
                    method,
                    target,
                    headers,
                    body,
                    close,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return None,
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let r = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut chunk)).await;
        match r {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    state: Arc<Mutex<State>>,
    conn_no: usize,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        if is_refusing(&state) {
            return;
        }
        let resp = match handle(
            &state,
            req.method,
            &req.target,
            req.headers,
            &req.body,
            conn_no,
        ) {
            Reply::Answer(resp) => resp,
            // A fault: close without answering (the client sees EOF or a reset).
            Reply::Drop => return,
            Reply::Stall => {
                // Read (and ignore) until the client hangs up, or 10 minutes.
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(600), async {
                    while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                return;
            }
        };
        if let Some(d) = resp.delay {
            tokio::time::sleep(d).await;
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (n, v) in &resp.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        // Discord's answers pass Google's front end; a Cloudflare ban page
        // (HTML) does not, and clients tell the two apart by it.
        if !resp
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("text/html"))
        {
            out.push_str("Via: 1.1 google\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if req.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        if sock.write_all(&bytes).await.is_err() || sock.flush().await.is_err() {
            return;
        }
        if req.close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// `/channels/123/messages/456` → `/channels/{id}/messages/{id}`;
/// `/webhooks/123/<token>` → `/webhooks/{id}/{token}`.
fn route_template(path: &str) -> String {
    path.split('/')
        .enumerate()
        .map(|(i, seg)| {
            if i == 3 && (path.starts_with("/webhooks/") || path.starts_with("/interactions/")) {
                return "{token}";
            }
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn not_found() -> Canned {
    Canned::json(404, json!({ "message": "404: Not Found", "code": 0 }))
}

/// A Discord JSON error: `{"message", "code"}`.
fn error(status: u16, code: u32, message: &str) -> Canned {
    Canned::json(status, json!({ "message": message, "code": code }))
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(DISCORD_EPOCH_MS)
}

/// A time-based snowflake (ms since Discord's epoch << 22), strictly greater
/// than the last one: ids sort by creation, as Discord's do.
fn next_snowflake(s: &mut State) -> String {
    let t = unix_ms_now().saturating_sub(DISCORD_EPOCH_MS) << 22;
    s.last_id = t.max(s.last_id + 1);
    s.last_id.to_string()
}

/// The creation time a snowflake encodes, as Discord's ISO 8601 timestamp.
fn snowflake_timestamp(id: &str) -> String {
    let ms = id
        .parse::<u64>()
        .map(|n| (n >> 22) + DISCORD_EPOCH_MS)
        .unwrap_or(DISCORD_EPOCH_MS);
    iso8601(ms)
}

/// `2026-12-01T16:51:45.123000+00:00`, the form Discord uses.
fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `X-RateLimit-Bucket` id of a channel route. Discord's bucket ids name
/// the route, never the channel (the channel is the "top-level resource" the
/// limit is kept per). Message writes share one bucket.
fn bucket_of(method: &str, segs: &[&str]) -> Option<&'static str> {
    match segs {
        ["channels", _, "messages", ..] if method != "GET" => {
            Some("80c17d2f203122d936070c88c8d10f33")
        }
        ["channels", _, "messages", ..] => Some("4b0e37e1b6a5f2d9c84e1a7f03d5b269"),
        ["channels", _, ..] => Some("d1f3a9e5c7b20486e0a4c6b8d2f1e3a5"),
        _ => None,
    }
}

/// Charge one call to (bucket, channel): the headers for its answer, or the
/// 429 when the window is used up.
fn charge(
    s: &mut State,
    now: Instant,
    bucket: &str,
    channel: &str,
) -> Result<Vec<(String, String)>, Canned> {
    let Some(limit) = s.limit else {
        return Ok(Vec::new());
    };
    let w = s
        .windows
        .entry((bucket.to_string(), channel.to_string()))
        .or_insert(Window {
            start: now,
            used: 0,
        });
    if now.duration_since(w.start) >= limit.window {
        *w = Window {
            start: now,
            used: 0,
        };
    }
    let reset_after = limit
        .window
        .saturating_sub(now.duration_since(w.start))
        .as_secs_f64();
    let reset_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        + reset_after;
    let exhausted = w.used >= limit.limit;
    if !exhausted {
        w.used += 1;
    }
    let remaining = limit.limit.saturating_sub(w.used);
    let headers = vec![
        ("X-RateLimit-Bucket".to_string(), bucket.to_string()),
        ("X-RateLimit-Limit".to_string(), limit.limit.to_string()),
        ("X-RateLimit-Remaining".to_string(), remaining.to_string()),
        ("X-RateLimit-Reset".to_string(), format!("{reset_epoch:.3}")),
        (
            "X-RateLimit-Reset-After".to_string(),
            format!("{reset_after:.3}"),
        ),
    ];
    if exhausted {
        let mut c = Canned::json(
            429,
            json!({ "message": "You are being rate limited.", "retry_after": reset_after, "global": false }),
        )
        .header("Retry-After", &format!("{}", reset_after.ceil() as u64))
        .header("X-RateLimit-Scope", "user");
        c.headers.extend(headers);
        return Err(c);
    }
    Ok(headers)
}

/// A message as Discord returns it: its public fields with Discord's
/// defaults, without request-only fields (`nonce`, `enforce_nonce`,
/// `allowed_mentions`). Channel reads return messages without `nonce`
/// [observed: the nonce appears only in the create's answer and the
/// gateway's MESSAGE_CREATE], so a reconciliation cannot lean on it.
fn public_view(msg: &Value) -> Value {
    let defaults = [
        ("id", Value::Null),
        ("channel_id", Value::Null),
        ("author", Value::Null),
        ("type", json!(0)),
        ("content", json!("")),
        ("embeds", json!([])),
        ("components", json!([])),
        ("attachments", json!([])),
        ("mentions", json!([])),
        ("mention_roles", json!([])),
        ("mention_everyone", json!(false)),
        ("tts", json!(false)),
        ("pinned", json!(false)),
        ("flags", json!(0)),
        ("timestamp", Value::Null),
        ("edited_timestamp", Value::Null),
    ];
    let mut out = Map::new();
    for (k, default) in defaults {
        let v = msg
            .get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default);
        out.insert(k.to_string(), v);
    }
    if let Some(r) = msg.get("message_reference").filter(|v| !v.is_null()) {
        out.insert("message_reference".into(), r.clone());
    }
    Value::Object(out)
}

/// The create's answer: the message plus its `nonce` (message.mdx: the
/// nonce is echoed on create).
fn created_view(msg: &Value) -> Value {
    let mut v = public_view(msg);
    if let (Some(n), Value::Object(o)) = (msg.get("nonce").filter(|n| !n.is_null()), &mut v) {
        o.insert("nonce".into(), n.clone());
    }
    v
}

/// A nonce as the key Discord compares (an integer or a string).
fn nonce_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The request as the handlers see it.
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(String, String)],
    raw_body: &'a [u8],
}

impl Req<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn multipart(&self) -> Option<&str> {
        self.header("content-type")
            .filter(|c| c.to_ascii_lowercase().starts_with("multipart/"))
    }

    /// The JSON object body (a multipart body's `payload_json`) and the
    /// files uploaded with it; an empty body is an empty object.
    fn upload(&self) -> Result<(Map<String, Value>, Vec<multipart::UploadedFile>), Canned> {
        if let Some(ctype) = self.multipart() {
            let up =
                multipart::parse(ctype, self.raw_body).map_err(|(st, b)| Canned::json(st, b))?;
            return Ok((up.payload, up.files));
        }
        Ok((self.object()?, Vec::new()))
    }

    /// The JSON object body; an empty body is an empty object, a multipart
    /// one is its `payload_json` (its files are left out).
    fn object(&self) -> Result<Map<String, Value>, Canned> {
        if self.multipart().is_some() {
            return self.upload().map(|(m, _)| m);
        }
        if self.raw_body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(self.raw_body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Canned::json(
                400,
                form::invalid_form(
                    &[],
                    "DICT_TYPE_CONVERT",
                    "Only dictionaries may be used in a DictType",
                ),
            )),
            Err(_) => Err(error(400, 50109, "The request body contains invalid JSON.")),
        }
    }
}

/// Authentication, channel access, the rate limit and the handlers: what
/// Discord itself does with a request.
fn process(s: &mut State, now: Instant, req: &Req) -> Canned {
    let segs: Vec<&str> = req.path.split('/').filter(|x| !x.is_empty()).collect();
    match (req.method, segs.as_slice()) {
        ("POST", ["interactions", id, token, "callback"]) => {
            return match req.object() {
                Ok(b) => interactions::callback(&mut s.interactions, now, id, token, &b),
                Err(refused) => refused,
            }
        }
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            return match req.object() {
                Ok(b) => interactions::edit_original(&mut s.interactions, now, app, token, b),
                Err(refused) => refused,
            }
        }
        _ => {}
    }
    if let ["webhooks", id, token, rest @ ..] = segs.as_slice() {
        return webhook(s, req, id, token, rest);
    }
    let token = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bot "))
        .filter(|t| *t == s.token || s.extra_tokens.iter().any(|e| e == t))
        .map(str::to_string);
    let Some(token) = token else {
        return Canned::unauthorized();
    };
    let mut rl_headers = Vec::new();
    if let (["channels", ch, ..], Some(bucket)) = (segs.as_slice(), bucket_of(req.method, &segs)) {
        match charge(s, now, bucket, ch) {
            Ok(h) => rl_headers = h,
            Err(limited) => return limited,
        }
    }
    let mut resp = route(s, now, &token, req, &segs);
    resp.headers.extend(rl_headers);
    resp
}

fn route(s: &mut State, now: Instant, token: &str, req: &Req, segs: &[&str]) -> Canned {
    if let ["channels", ch, ..] = segs {
        if s.no_access.contains(*ch) {
            return error(403, 50001, "Missing Access");
        }
        if s.channels.is_unknown(ch) {
            return error(404, 10003, "Unknown Channel");
        }
    }
    match (req.method, segs) {
        ("POST", ["channels", ch, "messages"]) => create(s, now, token, ch, req),
        ("PATCH", ["channels", ch, "messages", mid]) => edit(s, token, ch, mid, req),
        ("GET", ["channels", ch, "messages"]) => list(s, ch, req.query),
        ("GET", ["users", "@me"]) => Canned::json(200, bot_user(token)),
        ("GET", ["channels", ch]) => threads::channel(s, ch),
        ("POST", ["channels", ch, "messages", mid, "threads"]) => {
            threads::start_thread(s, ch, mid, req)
        }
        ("POST", ["channels", ch, "threads"]) => threads::forum_post(s, token, ch, req),
        ("GET", ["gateway", "bot"]) => Canned::json(
            200,
            json!({ "url": s.gateway_url, "shards": 1,
                "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 } }),
        ),
        _ => not_found(),
    }
}

/// `/webhooks/{id}/{token}`: the token in the path authorizes, as on Discord.
fn webhook(s: &mut State, req: &Req, id: &str, token: &str, rest: &[&str]) -> Canned {
    let Some((real, channel, name)) = s.webhooks.get(id) else {
        return error(404, 10015, "Unknown Webhook");
    };
    if token != real {
        return error(401, 50027, "Invalid Webhook Token");
    }
    match (req.method, rest) {
        ("POST", []) => webhooks::execute(s, id, req),
        ("PATCH", ["messages", mid]) => webhooks::edit(s, id, mid, req),
        ("GET", []) => Canned::json(
            200,
            json!({ "id": id, "type": 1, "channel_id": channel, "name": name, "token": real,
                "avatar": null, "application_id": null }),
        ),
        _ => error(405, 0, "405: Method Not Allowed"),
    }
}

fn create(s: &mut State, now: Instant, token: &str, ch: &str, req: &Req) -> Canned {
    let (mut fields, files) = match req.upload() {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    if !files.is_empty() {
        let listed: Vec<Value> = files
            .iter()
            .map(|f| json!({ "id": next_snowflake(s), "filename": f.filename, "size": f.bytes.len() }))
            .collect();
        fields.insert("attachments".into(), Value::Array(listed));
    }
    if let Err(body) = form::check_message(&fields) {
        return Canned::json(400, body);
    }
    if let Err(refused) = create_rules(s, ch, &mut fields) {
        return refused;
    }
    let author = user_id_for(token);
    let nonce = fields.get("nonce").and_then(nonce_key);
    let enforce = fields
        .get("enforce_nonce")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Nonces are remembered for the window only, per author, any channel.
    let window = s.nonce_window;
    s.nonces.retain(|_, u| now.duration_since(u.at) < window);
    if let (Some(n), true) = (nonce.as_ref(), enforce) {
        if let Some(used) = s.nonces.get(&(author.clone(), n.clone())) {
            if let Some(m) = s.messages.get(&used.message_id) {
                return Canned::json(200, created_view(m));
            }
        }
    }
    let id = next_snowflake(s);
    let mut msg = fields;
    msg.remove("enforce_nonce");
    msg.insert("id".into(), json!(id));
    msg.insert("channel_id".into(), json!(ch));
    msg.insert("author".into(), bot_user(token));
    msg.insert("timestamp".into(), json!(snowflake_timestamp(&id)));
    let msg = Value::Object(msg);
    if let Some(n) = nonce {
        s.nonces.entry((author, n)).or_insert(NonceUse {
            message_id: id.clone(),
            at: now,
        });
    }
    if !files.is_empty() {
        s.uploads.insert(id.clone(), files);
    }
    s.messages.insert(id.clone(), msg.clone());
    s.history.insert(id.clone(), vec![msg.clone()]);
    s.order.push(id);
    Canned::json(200, created_view(&msg))
}

/// Fields an edit cannot change.
const FIXED_FIELDS: [&str; 7] = [
    "id",
    "channel_id",
    "author",
    "timestamp",
    "edited_timestamp",
    "nonce",
    "enforce_nonce",
];

fn edit(s: &mut State, token: &str, ch: &str, mid: &str, req: &Req) -> Canned {
    let Some(existing) = s
        .messages
        .get(mid)
        .filter(|m| m.get("channel_id") == Some(&json!(ch)))
        .cloned()
    else {
        return error(404, 10008, "Unknown Message");
    };
    if existing["author"]["id"] != json!(user_id_for(token)) {
        return error(403, 50005, "Cannot edit a message authored by another user");
    }
    let patch = match req.object() {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    apply_edit(s, mid, existing, patch)
}

/// The rules of `threads.rs`, `mentions.rs` and `replies.rs` for a new
/// message in `ch` (a reply's reference may be dropped from `fields`).
fn create_rules(s: &State, ch: &str, fields: &mut Map<String, Value>) -> Result<(), Canned> {
    threads::refuse_in_forum(s, ch)?;
    mentions::check(fields).map_err(|body| Canned::json(400, body))?;
    replies::resolve(s, ch, fields)
}

/// Store a message (request fields kept, so tests can read what was sent).
fn insert_message(
    s: &mut State,
    id: &str,
    ch: &str,
    author: Value,
    mut msg: Map<String, Value>,
) -> Value {
    msg.insert("id".into(), json!(id));
    msg.insert("channel_id".into(), json!(ch));
    msg.insert("author".into(), author);
    msg.insert("timestamp".into(), json!(snowflake_timestamp(id)));
    let msg = Value::Object(msg);
    s.messages.insert(id.to_string(), msg.clone());
    s.history.insert(id.to_string(), vec![msg.clone()]);
    s.order.push(id.to_string());
    msg
}

/// Merge `patch` into `existing` (a `null` clears a field), check the result
/// as a create, and store it as message `mid`'s newest version.
fn apply_edit(s: &mut State, mid: &str, existing: Value, patch: Map<String, Value>) -> Canned {
    if let Err(body) = mentions::check(&patch) {
        return Canned::json(400, body);
    }
    let mut merged = existing.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        if !FIXED_FIELDS.contains(&k.as_str()) {
            merged.insert(k, v);
        }
    }
    if let Err(body) = form::check_message(&merged) {
        return Canned::json(400, body);
    }
    merged.insert("edited_timestamp".into(), json!(iso8601(unix_ms_now())));
    let msg = Value::Object(merged);
    s.messages.insert(mid.to_string(), msg.clone());
    s.history
        .entry(mid.to_string())
        .or_default()
        .push(msg.clone());
    Canned::json(200, public_view(&msg))
}

/// `GET /channels/{id}/messages` (message.mdx "Get Channel Messages").
fn list(s: &State, ch: &str, query: &str) -> Canned {
    let bad = |field: &str, code: &str, message: &str| {
        Canned::json(400, form::invalid_form(&[field], code, message))
    };
    let mut limit = 50usize;
    let mut anchor: Option<(String, u64)> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => match v.parse::<i64>() {
                Ok(n) if n < 1 => {
                    return bad(
                        k,
                        "NUMBER_TYPE_MIN",
                        "int value should be greater than or equal to 1.",
                    )
                }
                Ok(n) if n > 100 => {
                    return bad(
                        k,
                        "NUMBER_TYPE_MAX",
                        "int value should be less than or equal to 100.",
                    )
                }
                Ok(n) => limit = n as usize,
                Err(_) => {
                    return bad(
                        k,
                        "NUMBER_TYPE_COERCE",
                        &format!("Value \"{v}\" is not int."),
                    )
                }
            },
            "before" | "after" | "around" => {
                let Ok(id) = v.parse::<u64>() else {
                    return bad(
                        k,
                        "NUMBER_TYPE_COERCE",
                        &format!("Value \"{v}\" is not snowflake."),
                    );
                };
                // "The before, after, and around parameters are mutually
                // exclusive, only one may be passed at a time."
                if anchor.is_some() {
                    return bad(
                        k,
                        "MUTUALLY_EXCLUSIVE",
                        "Only one of before, after and around may be passed.",
                    );
                }
                anchor = Some((k.to_string(), id));
            }
            _ => {}
        }
    }
    // message.mdx, Get Channel Messages: "If the current user is missing the
    // READ_MESSAGE_HISTORY permission in the channel, then no messages will
    // be returned." (a 200 with an empty list, not a 403; a 403 50001 is for
    // a channel the bot cannot see at all: see `set_channel_access`).
    if !s.read_history {
        return Canned::json(200, json!([]));
    }
    let mut ids: Vec<u64> = s
        .messages
        .values()
        .filter(|m| m.get("channel_id") == Some(&json!(ch)))
        .filter_map(|m| m.get("id")?.as_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    let newest_first: Vec<u64> = match anchor {
        None => ids.iter().rev().take(limit).copied().collect(),
        Some((kind, b)) if kind == "before" => ids
            .iter()
            .rev()
            .filter(|&&i| i < b)
            .take(limit)
            .copied()
            .collect(),
        // The `limit` messages right after the anchor, still newest first
        // [observed: discord.py pages `after` on from the first element].
        Some((kind, a)) if kind == "after" => {
            let mut v: Vec<u64> = ids
                .iter()
                .filter(|&&i| i > a)
                .take(limit)
                .copied()
                .collect();
            v.reverse();
            v
        }
        Some((_, c)) => {
            let older: Vec<u64> = ids
                .iter()
                .rev()
                .filter(|&&i| i < c)
                .take(limit / 2)
                .copied()
                .collect();
            let newer: Vec<u64> = ids
                .iter()
                .filter(|&&i| i >= c)
                .take(limit - older.len())
                .copied()
                .collect();
            newer.into_iter().rev().chain(older).collect()
        }
    };
    let list: Vec<Value> = newest_first
        .iter()
        .filter_map(|id| s.messages.get(&id.to_string()))
        .map(public_view)
        .collect();
    Canned::json(200, Value::Array(list))
}

/// The first matching script (used up when its count reaches 0).
fn take_script(s: &mut State, method: &str, path: &str) -> Option<Action> {
    let i = s.scripts.iter().position(|sc| {
        sc.left != Some(0)
            && sc.method.as_deref().map_or(true, |m| m == method)
            && sc
                .path_prefix
                .as_deref()
                .map_or(true, |p| path.starts_with(p))
    })?;
    let sc = s.scripts.get_mut(i)?;
    let action = sc.action.clone();
    if let Some(left) = sc.left.as_mut() {
        *left -= 1;
    }
    if sc.left == Some(0) {
        s.scripts.remove(i);
    }
    Some(action)
}

/// What the connection does after a request.
enum Reply {
    Answer(Canned),
    /// Close without answering.
    Drop,
    /// Never answer; wait for the client to hang up.
    Stall,
}

/// Handle one request.
fn handle(
    state: &Arc<Mutex<State>>,
    method: String,
    target: &str,
    headers: Vec<(String, String)>,
    raw_body: &[u8],
    conn_no: usize,
) -> Reply {
    let mut s = drone_discord::sync::lock(state);
    let now = Instant::now();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/api/v10").unwrap_or(path).to_string();
    let route = format!("{method} {}", route_template(&path));
    let mut body: Option<Value> = serde_json::from_slice(raw_body).ok();
    let req = Req {
        method: &method,
        path: &path,
        query,
        headers: &headers,
        raw_body,
    };
    if req.multipart().is_some() {
        body = req.object().ok().map(Value::Object);
    }
    let mut stall = false;
    let (answer, processed) = match take_script(&mut s, &method, &path) {
        Some(Action::Answer(c)) => (Some(c), None),
        Some(Action::Fault(Fault::Drop)) => (None, None),
        Some(Action::Fault(Fault::Stall)) => {
            stall = true;
            (None, None)
        }
        Some(Action::Fault(Fault::ProcessThenDrop)) => {
            let real = process(&mut s, now, &req);
            (None, Some(real.status))
        }
        Some(Action::Fault(Fault::ProcessThenAnswer(c))) => {
            let real = process(&mut s, now, &req);
            (Some(c), Some(real.status))
        }
        None => {
            let real = process(&mut s, now, &req);
            let status = real.status;
            (Some(real), Some(status))
        }
    };
    let query = query.to_string();
    s.calls.push(Call {
        method,
        path,
        route,
        headers,
        body,
        at: now,
        status: answer.as_ref().map_or(0, |c| c.status),
        processed,
        connection: conn_no,
        query,
    });
    match answer {
        Some(c) => Reply::Answer(c),
        None if stall => Reply::Stall,
        None => Reply::Drop,
    }
}
