//! drone-discord as a library, so that the binary, the integration tests and the
//! benchmarks share one implementation.
pub mod config;
pub mod discord;
pub mod drone;
pub mod health;
pub mod httpdate;
pub mod http;
pub mod ingest;
pub mod jitter;
pub mod logging;
#[cfg(feature = "mongodb")]
pub mod migrate;
pub mod presence;
pub mod relay;
pub mod serve;
pub mod render;
pub mod shutdown;
pub mod signature;
pub mod store;
pub mod systemd;
