//! A tiny source of jitter in `[0, 1)`: gateway heartbeats and reconnects,
//! relay retry backoff, unique lease-owner names.
//!
//! Jitter only has to spread clients apart, not be unpredictable, so a
//! xorshift64* seeded from `RandomState` (the std hasher's per-process random
//! keys) is enough and spares us the `rand` crate. Tests inject fixed values
//! through [`Jitter::fixed`] instead.
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// Produces numbers in `[0, 1)`.
pub struct Jitter(Source);

enum Source {
    Xorshift(u64),
    Fixed(f64),
}

impl Jitter {
    /// Seeded from the process's random hasher keys.
    pub fn random() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9E37_79B9_7F4A_7C15);
        // xorshift must never be seeded with 0.
        Jitter(Source::Xorshift(hasher.finish() | 1))
    }

    /// Always returns `value` (clamped into `[0, 1)`): for deterministic tests.
    pub fn fixed(value: f64) -> Self {
        let v = if value.is_finite() {
            value.clamp(0.0, 0.999_999)
        } else {
            0.0
        };
        Jitter(Source::Fixed(v))
    }

    /// The next value in `[0, 1)`.
    pub fn sample(&mut self) -> f64 {
        match &mut self.0 {
            Source::Fixed(v) => *v,
            Source::Xorshift(state) => {
                let mut x = *state;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                *state = x;
                let out = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                // Top 53 bits → a double in [0, 1).
                (out >> 11) as f64 / (1u64 << 53) as f64
            }
        }
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::Fixed(v) => write!(f, "Jitter::fixed({v})"),
            Source::Xorshift(_) => f.write_str("Jitter::random"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_stays_in_unit_interval_and_varies() {
        let mut j = Jitter::random();
        let values: Vec<f64> = (0..1000).map(|_| j.sample()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let first = values.first().copied().unwrap_or_default();
        assert!(values.iter().any(|v| (*v - first).abs() > 1e-9));
    }

    #[test]
    fn fixed_is_clamped() {
        assert_eq!(Jitter::fixed(0.25).sample(), 0.25);
        assert!(Jitter::fixed(7.0).sample() < 1.0);
        assert_eq!(Jitter::fixed(f64::NAN).sample(), 0.0);
    }
}
