//! The one tree of helpers for the integration tests and the benchmarks:
//! the real binary driven from outside ([`binary`]), the requests sent to it
//! ([`webhook`], [`raw_http`]), its inputs ([`credentials`], [`fixtures`],
//! [`builds`]), the fakes it talks to ([`fake_discord`], [`fake_gateway`], [`fake_drone`],
//! over [`tls`] when asked), a disk that fills up ([`tmpfs`]) or stalls and fails ([`loopfs`]), a
//! slowloris swarm ([`swarm`]), a systemd notify socket that counts watchdog pings ([`watchdog`]),
//! the fault suite's Drone, seed and invariant checker ([`faults`]), and the one polling loop the
//! tests wait with ([`wait`]).
//!
//! Each test binary declares `mod support;` and compiles this tree
//! separately, using only part of it, hence the `dead_code` allowance; the
//! benchmarks include it with `#[path = "../tests/support/mod.rs"]` and
//! read their knobs with [`bench_env`].
#![allow(dead_code)]

pub mod bench_env;
pub mod binary;
pub mod builds;
pub mod credentials;
pub mod fake_discord;
pub mod fake_drone;
pub mod fake_gateway;
pub mod faults;
pub mod fixtures;
pub mod loopfs;
pub mod raw_http;
pub mod swarm;
pub mod tls;
pub mod tmpfs;
pub mod wait;
pub mod watchdog;
pub mod webhook;
