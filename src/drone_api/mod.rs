//! The Drone API: why a build failed (the failed steps' logs) and the
//! Restart button, for webhooks from `DRONE_SERVER` only, with a token
//! (`DRONE_TOKEN`) that is a secret.
//!
//! One concept per file: `client` (the calls: who the token is, a step's
//! log, restart), `error` (401, 404, unreachable, other), `log_reader` (a
//! log streamed into a bounded tail), `user` (the token's user and what it
//! reaches, for `check`), `origin` (which webhooks are this server's),
//! `flush_retry` (retrying a log Drone has not stored yet), `clean` (ANSI,
//! carriage returns and backticks out of a log), `excerpt` (which steps
//! failed, the excerpt message of each, the attachments' names and budget).
//! Everything but `client` is pure and takes time as an input.
mod clean;
mod client;
mod error;
mod excerpt;
mod flush_retry;
mod log_reader;
mod origin;
mod user;

pub use clean::{clean_log, neutralise_fences};
pub use client::{DroneApi, DroneTuning, NewBuild};
pub use error::DroneError;
pub use excerpt::{
    attachment_cap, attachment_name, excerpt_embed, failed_steps, more_steps_line, FailedStep,
    MAX_EXCERPT_STEPS,
};
pub use flush_retry::{FlushRetry, GiveUp, Next};
pub use log_reader::{LogReader, StepLog, MAX_LINE_BYTES};
pub use origin::serves;
pub use user::DroneUser;
