//! A fake Discord gateway for integration tests: a real websocket server on
//! 127.0.0.1:0 (plain `ws://`) that records every connection's request path,
//! counts connections, ACKs heartbeats (unless told to withhold them) and
//! hands each connection to the test, which scripts Hello, READY, op 7/9 and
//! closes and asserts on what the client sends.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Generous wait for anything the client should do (a loaded 2-core box).
pub const WAIT: Duration = Duration::from_secs(10);

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

/// The listening fake.
pub struct FakeGateway {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    count: Arc<AtomicUsize>,
}

/// One accepted connection, driven by the test.
pub struct FakeConn {
    /// The request path + query the client asked for, e.g. `/?v=10&encoding=json`.
    pub path: String,
    frames: mpsc::UnboundedReceiver<Got>,
    cmds: mpsc::UnboundedSender<Cmd>,
    withhold: Arc<AtomicBool>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, conns) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(serve(tcp, tx));
            }
        });
        FakeGateway { addr, conns, count }
    }

    /// The base URL to configure the client with (no path, no query).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The resume URL the fake hands out in READY.
    pub fn resume_url(&self) -> String {
        format!("ws://{}/resume", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub async fn next_conn(&mut self) -> FakeConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("client did not connect in time")
            .expect("fake gateway stopped")
    }
}

// tungstenite's handshake callback type fixes the large error variant.
#[allow(clippy::result_large_err)]
async fn serve(tcp: tokio::net::TcpStream, tx: mpsc::UnboundedSender<FakeConn>) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let callback = move |req: &Request, resp: Response| {
        if let Ok(mut p) = seen.lock() {
            *p = req.uri().to_string();
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
    let path = path.lock().map(|p| p.clone()).unwrap_or_default();
    let (frames_tx, frames) = mpsc::unbounded_channel();
    let (cmds, mut cmds_rx) = mpsc::unbounded_channel();
    let withhold = Arc::new(AtomicBool::new(false));
    let conn = FakeConn { path, frames, cmds, withhold: withhold.clone() };
    if tx.send(conn).is_err() {
        return;
    }
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if value["op"] == 1 && !withhold.load(Ordering::SeqCst) {
                        let _ = ws.send(Message::text(json!({"op": 11}).to_string())).await;
                    }
                    let _ = frames_tx.send(Got::Frame(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = frames_tx.send(Got::Closed(frame.map(|f| u16::from(f.code))));
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
                Some(Cmd::Send(text)) => { let _ = ws.send(Message::text(text)).await; }
                Some(Cmd::Close(code)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "fake closes".into() };
                    let _ = ws.close(Some(frame)).await;
                    // Keep reading until the client answers or drops.
                }
                None => return,
            },
        }
    }
}

impl FakeConn {
    pub fn send(&self, value: Value) {
        let _ = self.cmds.send(Cmd::Send(value.to_string()));
    }

    pub fn hello(&self, interval_ms: u64) {
        self.send(json!({"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": null, "t": null}));
    }

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
