//! The Discord gateway client: the one websocket that keeps the bot's
//! presence honest. Hand-rolled because we need very little of it (no
//! intents, no events beyond READY/RESUMED) but need that little to be right:
//! heartbeats with ACK tracking, resume versus identify, fatal close codes,
//! backoff and send budgets.
//!
//! * [`machine`]: the pure state machine (frames and time in, actions out).
//! * [`conn`]: the driver that runs it over tokio-tungstenite.
//! * [`upgrade`]: the websocket opening handshake the driver does first.
//! * [`jitter`]: tiny randomness for heartbeats and backoff.
pub mod conn;
pub mod machine;
mod upgrade;

pub use conn::{run, BoxIo, ConnectFuture, Connector, GatewayConfig, WsIo};
pub use machine::{SessionStartLimit, Token, Tuning};
