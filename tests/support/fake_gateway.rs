//! A fake Discord gateway for integration tests: a real websocket server on
//! 127.0.0.1 (plain `ws://`) that records every connection's request path,
//! counts connections, ACKs heartbeats (unless told to withhold or delay
//! them) and hands each connection to the test, which scripts Hello, READY,
//! op 7/9 and closes and asserts on what the client sends.
//!
//! It refuses what Discord refuses, by itself, so a test fails for the
//! reasons Discord would fail it:
//! * more than [`SEND_LIMIT`] payloads in [`SEND_WINDOW`] on one connection
//!   → close 4008 (settable: [`FakeGateway::set_send_limit`]);
//! * a payload over [`MAX_PAYLOAD`] bytes, or one that is not a JSON object
//!   with an `op` → close 4002;
//! * any op other than heartbeat (1), Identify (2) or Resume (6) before the
//!   connection identified or resumed → close 4003;
//! * a second Identify (or a Resume after one) on a connection → close 4005;
//! * an unknown op after authentication → close 4001;
//! * a Resume of a session that is not valid → op 9 `d: false`. A session is
//!   valid from the READY the test sends until the client closes with 1000
//!   or 1001 (Discord: that ends the session), the test closes with 4007,
//!   4009 or a fatal code, or the test sends op 9 `false` on it. A dropped
//!   TCP connection or any other close code keeps it resumable.
//!
//! READY's `resume_gateway_url` ([`FakeGateway::resume_url`]) is a second
//! listener with no path, like Discord's (`wss://gateway-….discord.gg`);
//! the client appends `/?v=10&encoding=json` to it, and
//! [`FakeConn::on_resume_url`] tells which listener a connection came in on.
//!
//! Identifies are counted (all of them, and the most within any 5 s) so
//! tests can assert the identify budget.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Generous wait for anything the client should do (a loaded 2-core box).
pub const WAIT: Duration = Duration::from_secs(10);
/// Discord's send limit per connection: 120 payloads ...
pub const SEND_LIMIT: usize = 120;
/// ... per 60 s.
pub const SEND_WINDOW: Duration = Duration::from_secs(60);
/// The largest payload Discord accepts, in bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// The window `max_concurrency` identifies are allowed in.
pub const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);

/// What the fake saw from the client on one connection.
#[derive(Debug)]
pub enum Got {
    Frame(Value),
    Closed(Option<u16>),
}

enum Cmd {
    Send(String),
    Close(u16),
}

/// State shared by all connections of one fake.
struct Shared {
    send_limit: usize,
    send_window: Duration,
    ack_delay: Duration,
    identifies: Vec<Instant>,
    resumes: usize,
    /// Session id → still resumable.
    sessions: HashMap<String, bool>,
    /// Close codes the fake sent, in order (its own refusals and the test's).
    closes: Vec<u16>,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> MutexGuard<'_, Shared> {
    drone_discord::sync::lock(shared)
}

/// The listening fake.
pub struct FakeGateway {
    pub addr: SocketAddr,
    resume_addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    count: Arc<AtomicUsize>,
    shared: SharedRef,
}

/// One accepted connection, driven by the test.
pub struct FakeConn {
    /// The request path + query the client asked for, e.g. `/?v=10&encoding=json`.
    pub path: String,
    /// Whether the client came in on READY's resume URL rather than the base URL.
    pub on_resume_url: bool,
    frames: mpsc::UnboundedReceiver<Got>,
    cmds: mpsc::UnboundedSender<Cmd>,
    withhold: Arc<AtomicBool>,
    ack_delay: Arc<Mutex<Option<Duration>>>,
    closed_by_fake: Arc<Mutex<Option<u16>>>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let resume = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let resume_addr = resume.local_addr().expect("local addr");
        let (tx, conns) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Mutex::new(Shared {
            send_limit: SEND_LIMIT,
            send_window: SEND_WINDOW,
            ack_delay: Duration::ZERO,
            identifies: Vec::new(),
            resumes: 0,
            sessions: HashMap::new(),
            closes: Vec::new(),
        }));
        for (listener, on_resume_url) in [(listener, false), (resume, true)] {
            let (tx, counter, shared) = (tx.clone(), count.clone(), shared.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(tcp, on_resume_url, tx.clone(), shared.clone()));
                }
            });
        }
        FakeGateway {
            addr,
            resume_addr,
            conns,
            count,
            shared,
        }
    }

    /// The base URL to configure the client with (no path, no query).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The resume URL to hand out in READY: another listener, and like
    /// Discord's `resume_gateway_url` it has no path and no query.
    pub fn resume_url(&self) -> String {
        format!("ws://{}", self.resume_addr)
    }

    /// TCP connections accepted so far (both URLs).
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub async fn next_conn(&mut self) -> FakeConn {
        self.next_conn_within(WAIT).await
    }

    /// The next connection, waiting up to `wait` (a client backing off
    /// after many failures takes longer than [`WAIT`]).
    pub async fn next_conn_within(&mut self, wait: Duration) -> FakeConn {
        tokio::time::timeout(wait, self.conns.recv())
            .await
            .expect("client did not connect in time")
            .expect("fake gateway stopped")
    }

    /// A connection if the client opens one within `wait`, else None.
    pub async fn try_next_conn(&mut self, wait: Duration) -> Option<FakeConn> {
        tokio::time::timeout(wait, self.conns.recv())
            .await
            .ok()
            .flatten()
    }

    /// Close a connection with 4008 once it sent more than `limit` payloads
    /// within `window` (default [`SEND_LIMIT`] per [`SEND_WINDOW`]).
    pub fn set_send_limit(&self, limit: usize, window: Duration) {
        let mut s = lock(&self.shared);
        s.send_limit = limit;
        s.send_window = window;
    }

    /// Delay every heartbeat ACK by `d` (connections can override it with
    /// [`FakeConn::delay_acks`]).
    pub fn set_ack_delay(&self, d: Duration) {
        lock(&self.shared).ack_delay = d;
    }

    /// Identify payloads received so far, on all connections.
    pub fn identifies(&self) -> usize {
        lock(&self.shared).identifies.len()
    }

    /// When each Identify arrived.
    pub fn identify_times(&self) -> Vec<Instant> {
        lock(&self.shared).identifies.clone()
    }

    /// The most identifies that arrived within any span of `window`.
    pub fn max_identifies_within(&self, window: Duration) -> usize {
        let times = self.identify_times();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The most identifies within any 5 s (Discord allows `max_concurrency`, 1 here).
    pub fn max_identifies_per_5s(&self) -> usize {
        self.max_identifies_within(IDENTIFY_WINDOW)
    }

    /// Resume payloads received so far (they do not count as identifies).
    pub fn resumes(&self) -> usize {
        lock(&self.shared).resumes
    }

    /// Close codes the fake sent so far, in order: its own refusals (4001,
    /// 4002, 4003, 4005, 4008) and the test's [`FakeConn::close`]s.
    pub fn closes(&self) -> Vec<u16> {
        lock(&self.shared).closes.clone()
    }

    /// Whether a session can still be resumed (None: never seen in a READY).
    pub fn session_valid(&self, session_id: &str) -> Option<bool> {
        lock(&self.shared).sessions.get(session_id).copied()
    }

    /// End a session, as Discord does when it times out: a later Resume of
    /// it gets op 9 `false`.
    pub fn invalidate_session(&self, session_id: &str) {
        lock(&self.shared)
            .sessions
            .insert(session_id.to_string(), false);
    }
}

/// What one connection has done so far.
#[derive(Default)]
struct ConnState {
    /// Identified or resumed (a valid session).
    authenticated: bool,
    /// The session this connection carries (READY sent, or resumed).
    session: Option<String>,
    /// When the client's payloads arrived, within the send window.
    sent: VecDeque<Instant>,
    /// The fake closed: no more judging, only recording.
    closing: bool,
}

/// What the fake does about one client payload.
enum Verdict {
    Fine,
    Ack,
    InvalidSession,
    Close(u16, &'static str),
}

fn judge(cs: &mut ConnState, shared: &SharedRef, raw_len: usize, value: &Value) -> Verdict {
    let now = Instant::now();
    let mut s = lock(shared);
    cs.sent.push_back(now);
    while cs
        .sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= s.send_window)
    {
        cs.sent.pop_front();
    }
    if cs.sent.len() > s.send_limit {
        return Verdict::Close(4008, "Rate limited.");
    }
    if raw_len > MAX_PAYLOAD {
        return Verdict::Close(4002, "Payload too large.");
    }
    let Some(op) = value.get("op").and_then(Value::as_u64) else {
        return Verdict::Close(4002, "Error while decoding payload.");
    };
    match op {
        1 => Verdict::Ack,
        2 | 6 if cs.authenticated => Verdict::Close(4005, "Already authenticated."),
        2 => {
            cs.authenticated = true;
            s.identifies.push(now);
            Verdict::Fine
        }
        6 => {
            s.resumes += 1;
            let sid = value["d"]["session_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if s.sessions.get(&sid).copied().unwrap_or(false) {
                cs.authenticated = true;
                cs.session = Some(sid);
                Verdict::Fine
            } else {
                Verdict::InvalidSession
            }
        }
        _ if !cs.authenticated => Verdict::Close(4003, "Not authenticated."),
        // Presence, voice state, request guild members, request soundboard sounds.
        3 | 4 | 8 | 31 => Verdict::Fine,
        _ => Verdict::Close(4001, "Unknown opcode."),
    }
}

/// Track sessions through what the test sends: READY starts one, op 9
/// `false` ends the connection's one.
fn note_sent(cs: &mut ConnState, shared: &SharedRef, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let mut s = lock(shared);
    if v["op"] == 0 && v["t"] == "READY" {
        if let Some(sid) = v["d"]["session_id"].as_str() {
            s.sessions.insert(sid.to_string(), true);
            cs.session = Some(sid.to_string());
        }
    } else if v["op"] == 9 && v["d"] == false {
        if let Some(sid) = cs.session.take() {
            s.sessions.insert(sid, false);
        }
    }
}

fn end_session(cs: &mut ConnState, shared: &SharedRef) {
    if let Some(sid) = cs.session.take() {
        lock(shared).sessions.insert(sid, false);
    }
}

/// Server close codes after which Discord does not let the session resume:
/// 4007 invalid seq, 4009 session timed out, and the fatal ones.
fn close_ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009..=4014)
}

// tungstenite's handshake callback type fixes the large error variant.
#[allow(clippy::result_large_err)]
async fn serve(
    tcp: tokio::net::TcpStream,
    on_resume_url: bool,
    tx: mpsc::UnboundedSender<FakeConn>,
    shared: SharedRef,
) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let callback = move |req: &Request, resp: Response| {
        if let Ok(mut p) = seen.lock() {
            *p = req.uri().to_string();
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let path = path.lock().map(|p| p.clone()).unwrap_or_default();
    let (frames_tx, frames) = mpsc::unbounded_channel();
    let (cmds, mut cmds_rx) = mpsc::unbounded_channel();
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<()>();
    let withhold = Arc::new(AtomicBool::new(false));
    let ack_delay = Arc::new(Mutex::new(None));
    let closed_by_fake = Arc::new(Mutex::new(None));
    let conn = FakeConn {
        path,
        on_resume_url,
        frames,
        cmds,
        withhold: withhold.clone(),
        ack_delay: ack_delay.clone(),
        closed_by_fake: closed_by_fake.clone(),
    };
    if tx.send(conn).is_err() {
        return;
    }
    let mut cs = ConnState::default();
    let ack = || Message::text(json!({"op": 11}).to_string());
    macro_rules! close_with {
        ($code:expr, $reason:expr) => {{
            let code: u16 = $code;
            cs.closing = true;
            lock(&shared).closes.push(code);
            if let Ok(mut c) = closed_by_fake.lock() {
                *c = Some(code);
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: $reason.into(),
            };
            let _ = ws.close(Some(frame)).await;
            // Keep reading until the client answers or drops.
        }};
    }
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let raw = text.as_str();
                    let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
                    let verdict = if cs.closing {
                        Verdict::Fine
                    } else {
                        judge(&mut cs, &shared, raw.len(), &value)
                    };
                    let _ = frames_tx.send(Got::Frame(value));
                    match verdict {
                        Verdict::Fine => {}
                        Verdict::Ack if withhold.load(Ordering::SeqCst) => {}
                        Verdict::Ack => {
                            let own = ack_delay.lock().ok().and_then(|d| *d);
                            let delay = own.unwrap_or_else(|| lock(&shared).ack_delay);
                            if delay.is_zero() {
                                let _ = ws.send(ack()).await;
                            } else {
                                let acks_tx = acks_tx.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    let _ = acks_tx.send(());
                                });
                            }
                        }
                        Verdict::InvalidSession => {
                            let _ = ws.send(Message::text(json!({"op": 9, "d": false}).to_string())).await;
                        }
                        Verdict::Close(code, reason) => close_with!(code, reason),
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // encoding=json: a binary frame cannot be decoded.
                    let _ = frames_tx.send(Got::Frame(Value::Null));
                    if !cs.closing {
                        close_with!(4002, "Error while decoding payload.");
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    // Discord: closing with 1000 or 1001 ends the session.
                    if matches!(code, Some(1000 | 1001)) {
                        end_session(&mut cs, &shared);
                    }
                    let _ = frames_tx.send(Got::Closed(code));
                    let _ = ws.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = frames_tx.send(Got::Closed(None));
                    return;
                }
            },
            cmd = cmds_rx.recv() => match cmd {
                Some(Cmd::Send(text)) => {
                    note_sent(&mut cs, &shared, &text);
                    let _ = ws.send(Message::text(text)).await;
                }
                Some(Cmd::Close(code)) => {
                    if close_ends_session(code) {
                        end_session(&mut cs, &shared);
                    }
                    close_with!(code, "fake closes");
                }
                None => return,
            },
            Some(()) = acks_rx.recv() => {
                if !cs.closing {
                    let _ = ws.send(ack()).await;
                }
            }
        }
    }
}

impl FakeConn {
    pub fn send(&self, value: Value) {
        let _ = self.cmds.send(Cmd::Send(value.to_string()));
    }

    pub fn hello(&self, interval_ms: u64) {
        self.send(
            json!({"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": null, "t": null}),
        );
    }

    /// READY for a new session (which the fake then lets the client resume).
    pub fn ready(&self, seq: u64, session_id: &str, resume_url: &str) {
        self.send(json!({"op": 0, "s": seq, "t": "READY", "d": {
            "v": 10, "session_id": session_id, "resume_gateway_url": resume_url,
            "user": {"id": "1", "username": "drone"}, "guilds": []
        }}));
    }

    pub fn dispatch(&self, seq: u64, t: &str) {
        self.send(json!({"op": 0, "s": seq, "t": t, "d": {}}));
    }

    pub fn close(&self, code: u16) {
        let _ = self.cmds.send(Cmd::Close(code));
    }

    /// Stop (or resume) answering heartbeats with op 11.
    pub fn withhold_acks(&self, on: bool) {
        self.withhold.store(on, Ordering::SeqCst);
    }

    /// Answer this connection's heartbeats `d` late (overrides
    /// [`FakeGateway::set_ack_delay`]; `Duration::ZERO` answers at once).
    pub fn delay_acks(&self, d: Duration) {
        if let Ok(mut own) = self.ack_delay.lock() {
            *own = Some(d);
        }
    }

    /// The close code the fake sent on this connection, if it closed it.
    pub fn closed_by_fake(&self) -> Option<u16> {
        self.closed_by_fake.lock().ok().and_then(|c| *c)
    }

    /// The next thing the client did, within [`WAIT`].
    pub async fn recv(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("client sent nothing in time")
            .unwrap_or(Got::Closed(None))
    }

    /// The next frame with opcode `op`; heartbeats in between are skipped.
    pub async fn expect_op(&mut self, op: u64) -> Value {
        loop {
            match self.recv().await {
                Got::Frame(v) if v["op"] == op => return v,
                Got::Frame(v) if v["op"] == 1 => continue,
                Got::Frame(v) => panic!("expected op {op}, got op {}", v["op"]),
                Got::Closed(code) => panic!("expected op {op}, client closed with {code:?}"),
            }
        }
    }

    /// Skip frames until the client closes; returns the close code.
    pub async fn expect_closed(&mut self) -> Option<u16> {
        loop {
            if let Got::Closed(code) = self.recv().await {
                return code;
            }
        }
    }
}

/// The presence a healthy service sends: online, "Watching Drone" (activity type 3).
pub fn is_watching_drone(p: &Value) -> bool {
    p["status"] == "online"
        && p["activities"][0]["type"] == 3
        && p["activities"][0]["name"] == "Drone"
}
