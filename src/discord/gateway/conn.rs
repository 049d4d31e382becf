//! The gateway driver: runs the [`Machine`] over a real websocket.
//!
//! It only moves bytes and time: frames, closes, connection results and
//! deadlines become [`Event`]s, and the machine's [`Action`]s become socket
//! operations. All decisions live in the machine; the driver also keeps the
//! identify ledger file (read once at start, written before each Identify,
//! on the blocking pool). The loop never blocks
//! (JSON parsing of small frames is the heaviest thing it does), so
//! heartbeats go out on time (pitfall 8).
//!
//! How a stream is opened is injected through [`Connector`]; the shared
//! HTTP [`Client`] implements it (TCP for `ws://`, TLS for `wss://`), so TLS
//! stays out of this file.
use super::identify_ledger::IdentifyLedger;
use super::machine::{Action, Event, Machine, MachineConfig, SessionStartLimit, Token, Tuning};
use crate::health::{Component, Health, Status};
use crate::http::client::{Client, Url};
use crate::jitter::Jitter;
use crate::presence::Presence;
use crate::shutdown::Shutdown;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest frame / message we accept from the gateway (READY for a bot in a
/// few guilds is a few KiB; 1 MiB is generous and bounded).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// TCP + TLS + websocket upgrade must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A frame that cannot be written within this means a dead connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the server's side of a close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A byte stream a websocket can run over (TCP or TLS).
pub trait WsIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> WsIo for T {}

/// A boxed [`WsIo`].
pub type BoxIo = Box<dyn WsIo>;
/// What [`Connector::connect`] returns.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send + 'a>>;

/// Opens the byte stream for a `ws://` or `wss://` URL (TLS included); the
/// websocket upgrade is done by the driver.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, url: &'a str) -> ConnectFuture<'a>;
}

/// The shared HTTP client opens gateway streams too: plain TCP for `ws://`,
/// TLS with SNI and webpki roots for `wss://`, bounded by its connect timeout.
impl Connector for Client {
    fn connect<'a>(&'a self, url: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let url = Url::parse(url)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let stream = Client::connect(self, &url)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// How to reach the gateway.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The `url` from `GET /gateway/bot` (or `wss://gateway.discord.gg`).
    pub url: String,
    pub token: Token,
    pub connector: Arc<dyn Connector>,
    /// From `GET /gateway/bot`, if known: guards the daily identify budget.
    pub session_start_limit: Option<SessionStartLimit>,
    /// The identify ledger file (in the state directory), so the daily
    /// identify cap counts earlier runs; `None` keeps the count in memory.
    pub identify_ledger: Option<PathBuf>,
    pub tuning: Tuning,
    /// Where button clicks go (`crate::interactions::run`); `None` drops them.
    pub interactions: Option<tokio::sync::mpsc::Sender<serde_json::Value>>,
}

impl GatewayConfig {
    /// Defaults for everything but where and who.
    pub fn new(url: impl Into<String>, token: Token, connector: Arc<dyn Connector>) -> Self {
        GatewayConfig {
            url: url.into(),
            token,
            connector,
            session_start_limit: None,
            identify_ledger: None,
            tuning: Tuning::default(),
            interactions: None,
        }
    }
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("url", &self.url)
            .field("token", &self.token)
            .field("session_start_limit", &self.session_start_limit)
            .field("identify_ledger", &self.identify_ledger)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

type Ws = WebSocketStream<BoxIo>;

/// What woke the loop up.
enum Wake {
    Shutdown,
    Socket(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Tick,
    ConnectDue,
    Presence(bool),
}

/// Keep the bot connected to the gateway showing the desired presence until
/// `shutdown` (then close with 1000 so the bot goes offline) or a fatal close
/// code (then return with the reason in health; no reconnect loop).
pub async fn run(
    cfg: GatewayConfig,
    mut presence: watch::Receiver<Presence>,
    health: Arc<Health>,
    shutdown: Shutdown,
) {
    let connector = cfg.connector;
    let initial = presence.borrow_and_update().clone();
    let ledger_path = cfg.identify_ledger;
    let opened =
        tokio::task::spawn_blocking(move || IdentifyLedger::open(ledger_path, SystemTime::now()))
            .await;
    let (ledger, identify_history) = match opened {
        Ok(opened) => opened,
        Err(e) => (
            IdentifyLedger::in_memory(),
            super::identify_ledger::History::Unknown(e.to_string()),
        ),
    };
    if let super::identify_ledger::History::Unknown(why) = &identify_history {
        tracing::warn!(reason = %why, file = super::identify_ledger::FILE_NAME, "identify ledger unreadable");
    }
    let ledger = Arc::new(Mutex::new(ledger));
    crate::metrics::global().watch_identify_ledger(&ledger);
    let cfg_interactions = cfg.interactions;
    let machine_cfg = MachineConfig {
        url: cfg.url,
        token: cfg.token,
        session_start_limit: cfg.session_start_limit,
        identify_history,
        started_wall: SystemTime::now(),
        tuning: cfg.tuning,
    };
    let mut machine = Machine::new(machine_cfg, Jitter::random(), initial, Instant::now());
    let mut ws: Option<Ws> = None;
    let mut pending: Option<(String, Instant)> = None;
    let mut presence_open = true;
    let mut queue: VecDeque<Action> = machine.start(Instant::now()).into();

    loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Status(status) => health.set(Component::Gateway, status),
                Action::Stop(reason) => {
                    crate::metrics::global().gateway_phase(machine.phase());
                    tracing::error!(reason = %reason, "gateway stopped");
                    if let Some(w) = ws.take() {
                        close_ws(w, super::machine::CLOSE_RESUMABLE).await;
                    }
                    return;
                }
                Action::Close(code) => {
                    if let Some(w) = ws.take() {
                        close_ws(w, code).await;
                    }
                }
                Action::RecordIdentify => record_identify(&ledger).await,
                Action::Interaction(d) => {
                    // Never waits: a full queue drops the click (Discord
                    // tells the clicker it failed).
                    let sent = cfg_interactions.as_ref().map(|q| q.try_send(d).is_ok());
                    if sent == Some(false) {
                        tracing::warn!("interaction queue full; a click was dropped");
                    }
                }
                Action::Connect { url, delay } => {
                    crate::metrics::global().gateway_connect();
                    ws = None;
                    tracing::debug!(
                        delay_ms = delay.as_millis() as u64,
                        "gateway connect scheduled"
                    );
                    pending = Some((url, Instant::now() + delay));
                }
                Action::Send(payload) => {
                    let Some(w) = ws.as_mut() else { continue };
                    let op = payload.op;
                    let failure =
                        match timeout(SEND_TIMEOUT, w.send(Message::text(payload.json))).await {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some("send timed out".to_string()),
                        };
                    if let Some(error) = failure {
                        tracing::warn!(op, error = %error, "gateway send failed");
                        ws = None;
                        queue.extend(machine.handle(Instant::now(), Event::Closed(None, error)));
                    }
                }
            }
        }

        crate::metrics::global().gateway_phase(machine.phase());
        let deadline = machine.next_deadline();
        let connect_at = pending.as_ref().map(|(_, at)| *at);
        let wake = tokio::select! {
            _ = shutdown.wait() => Wake::Shutdown,
            msg = next_message(&mut ws), if ws.is_some() => Wake::Socket(msg),
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Wake::Tick,
            _ = sleep_until(connect_at.unwrap_or_else(Instant::now)), if connect_at.is_some() => Wake::ConnectDue,
            changed = presence.changed(), if presence_open => Wake::Presence(changed.is_ok()),
        };

        let now = Instant::now();
        match wake {
            Wake::Shutdown => {
                for action in machine.handle(now, Event::Shutdown) {
                    match action {
                        Action::Close(code) => {
                            if let Some(w) = ws.take() {
                                close_ws(w, code).await;
                            }
                        }
                        Action::Status(status) => health.set(Component::Gateway, status),
                        _ => {}
                    }
                }
                tracing::info!("gateway closed for shutdown");
                return;
            }
            Wake::Socket(msg) => match msg {
                Some(Ok(Message::Text(text))) => {
                    queue.extend(machine.handle(now, Event::Frame(text.as_str())))
                }
                Some(Ok(Message::Close(frame))) => {
                    ws = None;
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                        None => (None, "closed without a code".to_string()),
                    };
                    queue.extend(machine.handle(now, Event::Closed(code, reason)));
                }
                Some(Ok(Message::Binary(b))) => {
                    tracing::debug!(
                        bytes = b.len(),
                        "ignoring binary gateway frame (we asked for JSON)"
                    );
                }
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                Some(Err(e)) => {
                    ws = None;
                    queue.extend(machine.handle(now, Event::Closed(None, e.to_string())));
                }
                None => {
                    ws = None;
                    queue.extend(
                        machine.handle(now, Event::Closed(None, "connection ended".into())),
                    );
                }
            },
            Wake::Tick => queue.extend(machine.handle(now, Event::Tick)),
            Wake::Presence(open) => {
                if open {
                    let p = presence.borrow_and_update().clone();
                    queue.extend(machine.handle(now, Event::PresenceChanged(p)));
                } else {
                    // Nobody publishes presence any more; keep the last one.
                    presence_open = false;
                }
            }
            Wake::ConnectDue => {
                let Some((url, _)) = pending.take() else {
                    continue;
                };
                let attempt = tokio::select! {
                    _ = shutdown.wait() => {
                        health.set(Component::Gateway, Status::ok("stopped"));
                        return;
                    }
                    r = timeout(CONNECT_TIMEOUT, open(connector.as_ref(), &url)) => r,
                };
                let now = Instant::now();
                match attempt {
                    Ok(Ok(socket)) => {
                        tracing::info!("gateway connected");
                        ws = Some(socket);
                        queue.extend(machine.handle(now, Event::Connected));
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "gateway connect failed");
                        queue.extend(machine.handle(now, Event::Closed(None, error)));
                    }
                    Err(_) => {
                        tracing::warn!("gateway connect timed out");
                        queue.extend(
                            machine.handle(now, Event::Closed(None, "connect timed out".into())),
                        );
                    }
                }
            }
        }
    }
}

/// Note an Identify in the ledger before it goes out (off the async
/// threads: it writes and fsyncs a small file). A failed write is logged;
/// the count stays in memory for this run.
async fn record_identify(ledger: &Arc<Mutex<IdentifyLedger>>) {
    let ledger = ledger.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.record(SystemTime::now())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            error = %e,
            file = super::identify_ledger::FILE_NAME,
            "cannot write the identify ledger; a restart will not count this identify"
        ),
        Err(e) => tracing::warn!(error = %e, "identify ledger task failed"),
    }
}

async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Stream + websocket upgrade, with bounded frame and message sizes.
async fn open(connector: &dyn Connector, url: &str) -> Result<Ws, String> {
    let stream = connector
        .connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    super::upgrade::client(stream, url, config)
        .await
        .map_err(|e| format!("websocket upgrade: {e}"))
}

/// Send a close frame with `code` and give the server a moment to answer.
async fn close_ws(mut ws: Ws, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    tracing::debug!(code, "gateway connection closed by us");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::ClientOptions;

    #[test]
    fn config_debug_hides_the_token() {
        let client = Client::new(ClientOptions::default()).expect("client");
        let cfg = GatewayConfig::new(
            "wss://gateway.discord.gg",
            Token::new("very.SECRET.token"),
            Arc::new(client),
        );
        let printed = format!("{cfg:?}");
        assert!(printed.contains("gateway.discord.gg"));
        assert!(!printed.contains("SECRET"), "{printed}");
    }

    #[tokio::test]
    async fn client_connector_refuses_non_websocket_urls() {
        let client = Client::new(ClientOptions::default()).expect("client");
        let err = Connector::connect(&client, "not a url")
            .await
            .err()
            .map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }
}
