//! Benchmark knobs from the environment (`BURST_BUILDS=20`, `PI_BENCH_EVENTS=…`),
//! read the same way by every benchmark.

/// The variable `name` as a whole number, or `default` when it is unset or
/// not a number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
