//! The fault suite's knobs, read from the environment once per scenario,
//! and the seed line every scenario prints first:
//!
//! * `FAULTS_SEED`: the run's seed (decimal or `0x` hex); unset, a fresh one
//!   from the clock. Each scenario derives its own from it and its name, so
//!   one scenario run alone replays the same faults.
//! * `FAULTS_SCALE`: `ci` (default; what `cargo test` runs) or `long`
//!   (`make faults`): more builds, events, kills and rounds.
//! * `FAULTS_BUILDS`, `FAULTS_EVENTS` (per build), `FAULTS_KILLS`,
//!   `FAULTS_ROUNDS`: override one figure of the scale.
use super::rng::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

/// One scenario's settings.
#[derive(Clone, Debug)]
pub struct Knobs {
    pub scenario: &'static str,
    pub seed: u64,
    pub long: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The run's seed: `FAULTS_SEED`, or one from the clock (printed, so the run
/// can be replayed).
pub fn run_seed() -> u64 {
    env_u64("FAULTS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000_007
    })
}

impl Knobs {
    /// The knobs of `scenario`; prints its seed line.
    pub fn from_env(scenario: &'static str) -> Knobs {
        let run = run_seed();
        // FNV-1a of the name, mixed into the run seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in scenario.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let seed = Rng::new(run ^ h).next_u64();
        let long = std::env::var("FAULTS_SCALE").is_ok_and(|s| s.trim() == "long");
        eprintln!(
            "faults: scenario {scenario}: seed {seed:#x} (run seed {run}; replay with FAULTS_SEED={run}), scale {}",
            if long { "long" } else { "ci" }
        );
        Knobs {
            scenario,
            seed,
            long,
        }
    }

    /// `ci` or `long` by the scale, unless `override_var` is set.
    pub fn figure(&self, override_var: &str, ci: u64, long: u64) -> u64 {
        env_u64(override_var).unwrap_or(if self.long { long } else { ci })
    }

    pub fn rng(&self) -> Rng {
        Rng::new(self.seed)
    }
}
