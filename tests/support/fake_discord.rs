//! A fake Discord REST API for end-to-end tests: a real HTTP/1.1 server on
//! 127.0.0.1 (port 0), hand-written on tokio + httparse, with keep-alive and
//! optional TLS (a test CA made at test time), so the real client code runs
//! over the real wire protocol.
//!
//! # Quick start
//!
//! ```ignore
//! mod support;
//! use support::fake_discord::{Canned, FakeDiscord};
//!
//! let fake = FakeDiscord::start().await;          // or FakeDiscord::start_tls().await
//! let rest = Rest::new(fake.rest_config())?;      // base URL, token, CA file filled in
//! fake.push_n(2, Canned::status(503));            // next 2 calls (any route) → 503
//! fake.push(Canned::rate_limited(0.5, true));     // then one global 429
//! fake.push_for("PATCH", "/channels/1/messages/", 1, Canned::status(500)); // per-path script
//! fake.always(Canned::unauthorized());            // every call → 401 until clear_script()
//! fake.refuse_connections(true);                  // drop every connection unanswered
//! fake.refuse_for(Duration::from_secs(2));        // ... or only for a while
//! fake.set_rate_limit(Some(EmulatedLimit { limit: 5, window: Duration::from_secs(1) }));
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
//! * `POST /channels/{id}/messages`: assigns snowflake-like ids; with `nonce` +
//!   `enforce_nonce: true`, a repeated nonce returns the existing message.
//! * `PATCH /channels/{id}/messages/{mid}`: merges the body into the stored
//!   message; unknown ids → 404 `{"code": 10008, "message": "Unknown Message"}`.
//! * `GET /users/@me`, `GET /channels/{id}`, `GET /gateway/bot` (URL settable).
//! * Anything else → 404 `{"code": 0, "message": "404: Not Found"}`.
//! * `Authorization` must be `Bot <token>` for the token set with
//!   [`FakeDiscord::set_token`] (default `test-token`), else 401.
//!
//! Scripted responses take precedence over the emulated rate limit, which takes
//! precedence over the real handlers. Scripted and rate-limited calls are
//! recorded too (with the status they got) but change no messages.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drone_discord::discord::rest::RestConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::tls::{make_test_tls, TestTls};

/// The token the fake accepts unless told otherwise.
pub const TEST_TOKEN: &str = "test-token";
/// The first message id the fake hands out.
const FIRST_MESSAGE_ID: u64 = 1_100_000_000_000_000_001;

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
    /// The body parsed as JSON (None if empty or not JSON).
    pub body: Option<Value>,
    /// When the request was fully received.
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
    /// Which accepted connection (1-based) carried it.
    pub connection: usize,
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

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Canned {
        self.delay = Some(d);
        self
    }
}

/// An emulated per-channel rate limit: `limit` calls per fixed `window`.
#[derive(Clone, Copy, Debug)]
pub struct EmulatedLimit {
    pub limit: u32,
    pub window: Duration,
}

struct Script {
    method: Option<String>,
    path_prefix: Option<String>,
    /// None: forever.
    left: Option<usize>,
    resp: Canned,
}

struct Window {
    start: Instant,
    used: u32,
}

struct State {
    token: String,
    gateway_url: String,
    calls: Vec<Call>,
    messages: HashMap<String, Value>,
    /// Creation order of message ids.
    order: Vec<String>,
    nonces: HashMap<(String, String), String>,
    next_id: u64,
    scripts: VecDeque<Script>,
    refusing: bool,
    refusing_until: Option<Instant>,
    /// Message id → every version it had (creation first).
    history: HashMap<String, Vec<Value>>,
    limit: Option<EmulatedLimit>,
    windows: HashMap<String, Window>,
}

/// The fake Discord server. Stops accepting when dropped.
pub struct FakeDiscord {
    addr: SocketAddr,
    tls: Option<Arc<TestTls>>,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicUsize>,
    accept_task: JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
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
            gateway_url: "wss://gateway.invalid".to_string(),
            calls: Vec::new(),
            messages: HashMap::new(),
            order: Vec::new(),
            nonces: HashMap::new(),
            next_id: FIRST_MESSAGE_ID,
            scripts: VecDeque::new(),
            refusing: false,
            refusing_until: None,
            history: HashMap::new(),
            limit: None,
            windows: HashMap::new(),
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
            accept_task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// The `url` returned by `GET /gateway/bot`.
    pub fn set_gateway_url(&self, url: &str) {
        self.lock().gateway_url = url.to_string();
    }

    /// Next call (any route) gets `resp`, once.
    pub fn push(&self, resp: Canned) {
        self.push_n(1, resp);
    }

    /// Next `n` calls (any route) get `resp`.
    pub fn push_n(&self, n: usize, resp: Canned) {
        self.lock().scripts.push_back(Script {
            method: None,
            path_prefix: None,
            left: Some(n),
            resp,
        });
    }

    /// Next `n` calls with this method whose path starts with `path_prefix`
    /// (without `/api/v10`) get `resp`.
    pub fn push_for(&self, method: &str, path_prefix: &str, n: usize, resp: Canned) {
        self.lock().scripts.push_back(Script {
            method: Some(method.to_string()),
            path_prefix: Some(path_prefix.to_string()),
            left: Some(n),
            resp,
        });
    }

    /// Every call gets `resp` until [`FakeDiscord::clear_script`].
    pub fn always(&self, resp: Canned) {
        self.lock().scripts.push_back(Script {
            method: None,
            path_prefix: None,
            left: None,
            resp,
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

    /// Emulate a per-channel rate limit with correct `X-RateLimit-*` headers
    /// and 429s when exceeded (`None` turns it off).
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

    /// Message id → current message JSON (after edits).
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
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
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
                if len > 1024 * 1024 {
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
        let resp = handle(
            &state,
            req.method,
            &req.target,
            req.headers,
            &req.body,
            conn_no,
        );
        if let Some(d) = resp.delay {
            tokio::time::sleep(d).await;
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (n, v) in &resp.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        // Discord's answers pass Google's front end; a Cloudflare ban page
        // (HTML) does not, and clients tell the two apart by it.
        if !resp.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("text/html")) {
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

/// `/channels/123/messages/456` → `/channels/{id}/messages/{id}`.
fn route_template(path: &str) -> String {
    path.split('/')
        .map(|seg| {
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

fn handle(
    state: &Arc<Mutex<State>>,
    method: String,
    target: &str,
    headers: Vec<(String, String)>,
    raw_body: &[u8],
    conn_no: usize,
) -> Canned {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let path = target.split('?').next().unwrap_or("");
    let path = path.strip_prefix("/api/v10").unwrap_or(path).to_string();
    let route = format!("{method} {}", route_template(&path));
    let body: Option<Value> = serde_json::from_slice(raw_body).ok();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let channel = match segs.as_slice() {
        ["channels", ch, ..] => Some(ch.to_string()),
        _ => None,
    };

    let resp = 'resp: {
        // 1. Scripted responses.
        let pos = s.scripts.iter().position(|sc| {
            sc.left != Some(0)
                && sc.method.as_deref().map_or(true, |m| m == method)
                && sc
                    .path_prefix
                    .as_deref()
                    .map_or(true, |p| path.starts_with(p))
        });
        if let Some(i) = pos {
            if let Some(sc) = s.scripts.get_mut(i) {
                let resp = sc.resp.clone();
                if let Some(left) = sc.left.as_mut() {
                    *left -= 1;
                }
                if sc.left == Some(0) {
                    s.scripts.remove(i);
                }
                break 'resp resp;
            }
        }
        // 2. Authentication.
        let auth = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str());
        if auth != Some(&format!("Bot {}", s.token)) {
            break 'resp Canned::unauthorized();
        }
        // 3. Emulated rate limit (per channel).
        let mut rl_headers = Vec::new();
        if let (Some(limit), Some(ch)) = (s.limit, channel.as_ref()) {
            let w = s.windows.entry(ch.clone()).or_insert(Window {
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
            let bucket = format!("fake-{ch}");
            if w.used >= limit.limit {
                break 'resp Canned::json(
                    429,
                    json!({ "message": "You are being rate limited.", "retry_after": reset_after, "global": false }),
                )
                .header("Retry-After", &format!("{}", reset_after.ceil() as u64))
                .header("X-RateLimit-Bucket", &bucket)
                .header("X-RateLimit-Limit", &limit.limit.to_string())
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", &format!("{reset_epoch:.3}"))
                .header("X-RateLimit-Reset-After", &format!("{reset_after:.3}"))
                .header("X-RateLimit-Scope", "user");
            }
            w.used += 1;
            let remaining = limit.limit - w.used;
            rl_headers = vec![
                ("X-RateLimit-Bucket".to_string(), bucket),
                ("X-RateLimit-Limit".to_string(), limit.limit.to_string()),
                ("X-RateLimit-Remaining".to_string(), remaining.to_string()),
                ("X-RateLimit-Reset".to_string(), format!("{reset_epoch:.3}")),
                (
                    "X-RateLimit-Reset-After".to_string(),
                    format!("{reset_after:.3}"),
                ),
            ];
        }
        // 4. The real handlers.
        let mut resp = match (method.as_str(), segs.as_slice()) {
            ("POST", ["channels", ch, "messages"]) => {
                let Some(Value::Object(fields)) = body.clone() else {
                    break 'resp Canned::json(
                        400,
                        json!({ "message": "Cannot send an empty message", "code": 50006 }),
                    );
                };
                let nonce = fields.get("nonce").and_then(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .or_else(|| Some(n.to_string()))
                });
                let enforce = fields
                    .get("enforce_nonce")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if let (Some(n), true) = (nonce.as_ref(), enforce) {
                    if let Some(existing) = s.nonces.get(&(ch.to_string(), n.clone())).cloned() {
                        if let Some(m) = s.messages.get(&existing) {
                            break 'resp Canned::json(200, m.clone());
                        }
                    }
                }
                let id = s.next_id.to_string();
                s.next_id += 1;
                let mut msg = fields;
                msg.remove("enforce_nonce");
                msg.insert("id".into(), json!(id));
                msg.insert("channel_id".into(), json!(ch));
                let msg = Value::Object(msg);
                if let (Some(n), true) = (nonce, enforce) {
                    s.nonces.insert((ch.to_string(), n), id.clone());
                }
                s.messages.insert(id.clone(), msg.clone());
                s.history.insert(id.clone(), vec![msg.clone()]);
                s.order.push(id);
                Canned::json(200, msg)
            }
            ("PATCH", ["channels", ch, "messages", mid]) => {
                let known = s
                    .messages
                    .get(*mid)
                    .is_some_and(|m| m.get("channel_id") == Some(&json!(ch)));
                if !known {
                    break 'resp Canned::json(
                        404,
                        json!({ "message": "Unknown Message", "code": 10008 }),
                    );
                }
                let Some(Value::Object(fields)) = body.clone() else {
                    break 'resp Canned::json(
                        400,
                        json!({ "message": "Invalid Form Body", "code": 50035 }),
                    );
                };
                let Some(Value::Object(msg)) = s.messages.get_mut(*mid) else {
                    break 'resp not_found();
                };
                for (k, v) in fields {
                    if k != "id" && k != "channel_id" {
                        msg.insert(k, v);
                    }
                }
                msg.insert(
                    "edited_timestamp".into(),
                    json!("2026-01-01T00:00:00+00:00"),
                );
                let msg = Value::Object(msg.clone());
                s.history
                    .entry(mid.to_string())
                    .or_default()
                    .push(msg.clone());
                Canned::json(200, msg)
            }
            ("GET", ["users", "@me"]) => Canned::json(
                200,
                json!({ "id": "1000000000000000001", "username": "fake-bot", "bot": true }),
            ),
            ("GET", ["channels", ch]) => {
                Canned::json(200, json!({ "id": ch, "type": 0, "name": "builds" }))
            }
            ("GET", ["gateway", "bot"]) => Canned::json(
                200,
                json!({ "url": s.gateway_url, "shards": 1,
                    "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 } }),
            ),
            _ => not_found(),
        };
        resp.headers.extend(rl_headers);
        resp
    };

    s.calls.push(Call {
        method,
        path,
        route,
        headers,
        body,
        at: now,
        status: resp.status,
        connection: conn_no,
    });
    resp
}
