//! Waiting for Drone to store a log: when a build ends, Drone may still be
//! writing its steps' logs, and answers an empty log or a 404 meanwhile. So
//! a log is retried with backoff for about a minute after the build was seen
//! finished; after that (or at once on a 401, which waiting does not fix)
//! the message goes out without it, saying why. A pure state machine: the
//! caller feeds it each attempt's result and the time, and sleeps as told.
use std::fmt;
use std::time::{Duration, Instant};

use super::{DroneError, StepLog};
use crate::backoff::ExponentialBackoff;

/// How long after the build finished a log is waited for.
pub const FLUSH_WINDOW: Duration = Duration::from_secs(60);
/// 1–2 s, then doubling to at most 15 s: about seven attempts in the window.
const BACKOFF: ExponentialBackoff =
    ExponentialBackoff::new(Duration::from_secs(2), Duration::from_secs(15));

/// One log's retries.
#[derive(Clone, Debug)]
pub struct FlushRetry {
    deadline: Instant,
    retries: u32,
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The log is there.
    Done,
    /// Try again after this long.
    Retry(Duration),
    /// Post without the log, for this reason.
    GiveUp(GiveUp),
}

/// Why a log is not shown: the last attempt's error, or `None` when Drone
/// kept answering an empty log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GiveUp {
    pub last: Option<DroneError>,
}

impl FlushRetry {
    /// Retries for a build seen finished at `finished`.
    pub fn new(finished: Instant) -> FlushRetry {
        FlushRetry {
            deadline: finished + FLUSH_WINDOW,
            retries: 0,
        }
    }

    /// The next step after an attempt that ended at `now` with `result`;
    /// `jitter` in `[0, 1)` spreads the waits.
    pub fn after(
        &mut self,
        result: &Result<StepLog, DroneError>,
        now: Instant,
        jitter: f64,
    ) -> Next {
        let last = match result {
            Ok(log) if !log.is_empty() => return Next::Done,
            Ok(_) => None,
            Err(DroneError::Unauthorized) => {
                return Next::GiveUp(GiveUp {
                    last: Some(DroneError::Unauthorized),
                })
            }
            Err(e) => Some(e.clone()),
        };
        let Some(left) = self
            .deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
        else {
            return Next::GiveUp(GiveUp { last });
        };
        self.retries += 1;
        Next::Retry(BACKOFF.delay(self.retries, jitter).min(left))
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.last {
            None => f.write_str("the log was still empty a minute after the build finished"),
            Some(DroneError::NotFound) => f.write_str(
                "no log a minute after the build finished: Drone answered 404, so it has not \
                 stored the log, or the token's user has no access to the repository (Drone \
                 answers 404 for both)",
            ),
            Some(DroneError::Unauthorized) => DroneError::Unauthorized.fmt(f),
            Some(e) => write!(f, "no log a minute after the build finished: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn log(lines: u64) -> Result<StepLog, DroneError> {
        Ok(StepLog {
            lines,
            ..StepLog::default()
        })
    }

    #[test]
    fn empty_and_404_are_retried_with_backoff_for_about_a_minute() {
        let t0 = Instant::now();
        let mut r = FlushRetry::new(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        loop {
            let result = if waits.len() % 2 == 0 {
                log(0)
            } else {
                Err(DroneError::NotFound)
            };
            match r.after(&result, now, 0.0) {
                Next::Retry(d) => {
                    waits.push(d.as_millis());
                    now += d;
                }
                Next::GiveUp(g) => {
                    assert_eq!(g.last, Some(DroneError::NotFound));
                    let why = g.to_string();
                    assert!(
                        why.contains("not stored") && why.contains("no access"),
                        "{why}"
                    );
                    break;
                }
                Next::Done => unreachable!(),
            }
        }
        assert_eq!(
            waits,
            [1000, 2000, 4000, 7500, 7500, 7500, 7500, 7500, 7500, 7500, 500]
        );
        assert_eq!(now, t0 + FLUSH_WINDOW);
    }

    #[test]
    fn a_log_ends_it_and_a_401_gives_up_at_once() {
        let t0 = Instant::now();
        let mut r = FlushRetry::new(t0);
        assert_eq!(
            r.after(&log(0), t0, 0.5),
            Next::Retry(Duration::from_millis(1500))
        );
        assert_eq!(r.after(&log(3), t0 + 2 * S, 0.5), Next::Done);
        let g = r.after(&Err(DroneError::Unauthorized), t0 + 3 * S, 0.5);
        assert!(matches!(
            &g,
            Next::GiveUp(GiveUp {
                last: Some(DroneError::Unauthorized)
            })
        ));
        let late = FlushRetry::new(t0).after(&log(0), t0 + 2 * FLUSH_WINDOW, 0.0);
        assert_eq!(late, Next::GiveUp(GiveUp { last: None }));
        let unreachable = Err(DroneError::Unreachable("connect failed".into()));
        match FlushRetry::new(t0).after(&unreachable, t0 + FLUSH_WINDOW, 0.0) {
            Next::GiveUp(g) => assert!(g.to_string().contains("cannot be reached"), "{g}"),
            other => panic!("{other:?}"),
        }
    }
}
