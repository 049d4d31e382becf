//! Shared helpers for the integration tests: a fake Discord (REST over
//! HTTP/1.1, optionally TLS) and a throw-away test CA.
//!
//! Each test binary compiles this module separately and uses only part of it,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod builds;
pub mod fake_discord;
pub mod tls;
