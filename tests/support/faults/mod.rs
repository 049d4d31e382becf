//! The fault suite's shared pieces (`tests/faults.rs` runs the scenarios):
//! its knobs and seed ([`knobs`]), its one random source ([`rng`]), Drone
//! posting a burst to a service that comes and goes ([`drone`]), and the
//! one invariant checker every scenario ends with ([`checker`]).
pub mod checker;
pub mod drone;
pub mod knobs;
pub mod rng;
