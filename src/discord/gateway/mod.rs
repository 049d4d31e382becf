//! The Discord gateway client: the one websocket that keeps the bot's
//! presence honest. Hand-rolled because we need very little of it (no
//! intents, no events beyond READY/RESUMED) but need that little to be right:
//! heartbeats with ACK tracking, resume versus identify, fatal close codes,
//! backoff and send budgets.
//!
//! * [`machine`]: the pure state machine (frames and time in, actions out).
//! * [`identify_budget`]: when the machine may Identify (spacing, daily cap,
//!   `session_start_limit`).
//! * [`identify_ledger`]: the file in the state directory that makes the
//!   daily cap survive restarts.
//! * [`conn`]: the driver that runs it over tokio-tungstenite.
//! * [`upgrade`]: the websocket opening handshake the driver does first.
//!   Heartbeat and reconnect jitter come from `crate::jitter`.
pub mod conn;
pub mod identify_budget;
pub mod identify_ledger;
pub mod machine;
mod upgrade;

pub use conn::{run, BoxIo, ConnectFuture, Connector, GatewayConfig, WsIo};
pub use machine::{SessionStartLimit, Token, Tuning};
