//! drone-discord as a library, so that the binary, the integration tests and the
//! benchmarks share one implementation.
pub mod allow_list;
pub mod atomic_file;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod discord;
pub mod drone;
pub mod drone_api;
pub mod endpoints;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzz_props;
pub mod health;
pub mod http;
pub mod httpdate;
pub mod interactions;
pub mod jitter;
pub mod logging;
pub mod metrics;
#[cfg(feature = "mongodb")]
pub mod migrate;
pub mod presence;
pub mod preview;
pub mod queue_admin;
pub mod relay;
pub mod render;
pub mod rlimit;
pub mod routes;
pub mod service;
pub mod shutdown;
pub mod signature;
pub mod socket_activation;
pub mod store;
pub mod sync;
pub mod systemd;
pub mod text;
