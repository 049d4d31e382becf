//! The one rule for a signed webhook's `Date`: given whether the system
//! clock is synchronised, the last time this service knew for certain, the
//! window, now and the `Date`, accept or refuse it, and say why.
//!
//! A Pi without a real-time clock boots with a stale time (fake-hwclock's
//! last save, or 1970) until NTP syncs. Judged against that clock, every
//! webhook Drone signs is "out of window" and, since Drone never retries,
//! lost. So while the clock is not synchronised the system clock is not
//! used at all: a `Date` is accepted when it is no older than the last time
//! known for certain (persisted by `clock::known_time`) minus the window,
//! with no upper bound (the clock cannot tell what "too new" is, and only
//! Drone can sign). A captured webhook can then be replayed only if it was
//! signed after that time; the replay store refuses a second copy of every
//! webhook this service accepted. With nothing known yet (a fresh state
//! directory) the system clock is all there is, and the ordinary window
//! applies.
//!
//! Pure: no clock, no file, no log; `clock::Clock` feeds it and logs.
use std::time::{Duration, SystemTime};

/// Whether the system clock can be trusted right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockState {
    /// Synchronised (or nothing says otherwise: see `clock::sync_source`).
    Synced,
    /// Not synchronised yet: the system clock may be far off.
    Unsynced,
}

/// The decision and its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the window around the system clock.
    InWindow,
    /// The clock is not synchronised; the date is no older than the last
    /// time known for certain minus the window.
    AfterKnownTime,
    /// Refused: further from the system clock than the window (`skew_s` is
    /// positive for a date in the past).
    OutOfWindow { skew_s: i64 },
    /// Refused: the clock is not synchronised and the date is older than the
    /// last time known for certain minus the window, by `behind_s` seconds.
    BeforeKnownTime { behind_s: i64 },
}

impl Verdict {
    pub fn accepted(self) -> bool {
        matches!(self, Verdict::InWindow | Verdict::AfterKnownTime)
    }

    /// Whether the unsynchronised rule decided (what `Clock` logs once).
    pub fn by_known_time(self) -> bool {
        matches!(
            self,
            Verdict::AfterKnownTime | Verdict::BeforeKnownTime { .. }
        )
    }
}

/// Judge `date` (see the module docs).
pub fn judge(
    state: ClockState,
    known: Option<SystemTime>,
    window: Duration,
    now: SystemTime,
    date: SystemTime,
) -> Verdict {
    match (state, known) {
        (ClockState::Unsynced, Some(known)) => {
            let floor = known.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
            let behind_s = skew_seconds(floor, date);
            if behind_s > 0 {
                Verdict::BeforeKnownTime { behind_s }
            } else {
                Verdict::AfterKnownTime
            }
        }
        (ClockState::Synced, _) | (ClockState::Unsynced, None) => {
            let skew_s = skew_seconds(now, date);
            if skew_s.unsigned_abs() > window.as_secs() {
                Verdict::OutOfWindow { skew_s }
            } else {
                Verdict::InWindow
            }
        }
    }
}

/// `now - date` in whole seconds (positive when the date is in the past).
pub fn skew_seconds(now: SystemTime, date: SystemTime) -> i64 {
    match now.duration_since(date) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClockState::{Synced, Unsynced};

    const WINDOW: Duration = Duration::from_secs(300);

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    /// 2024-06-01: the real time in these tests.
    const REAL: u64 = 1_717_200_000;

    #[test]
    fn synced_is_the_ordinary_window_whatever_is_known() {
        for known in [None, Some(at(REAL)), Some(at(REAL + 86_400))] {
            let j = |date| judge(Synced, known, WINDOW, at(REAL), date);
            assert_eq!(j(at(REAL)), Verdict::InWindow);
            assert_eq!(j(at(REAL - 300)), Verdict::InWindow, "edges pass");
            assert_eq!(j(at(REAL + 300)), Verdict::InWindow);
            assert_eq!(j(at(REAL - 301)), Verdict::OutOfWindow { skew_s: 301 });
            assert_eq!(j(at(REAL + 301)), Verdict::OutOfWindow { skew_s: -301 });
        }
    }

    #[test]
    fn unsynced_without_a_known_time_falls_back_to_the_system_clock() {
        let booted_in_1970 = at(60);
        assert_eq!(
            judge(Unsynced, None, WINDOW, booted_in_1970, at(REAL)),
            Verdict::OutOfWindow {
                skew_s: 60 - REAL as i64
            }
        );
        assert_eq!(
            judge(Unsynced, None, WINDOW, at(REAL), at(REAL)),
            Verdict::InWindow
        );
    }

    #[test]
    fn unsynced_accepts_dates_after_the_known_time_minus_the_window() {
        let known = Some(at(REAL));
        // The Pi booted in 1970, or with fake-hwclock's time of a day ago:
        // the system clock plays no part.
        for now in [at(60), at(REAL - 86_400), at(REAL + 7 * 86_400)] {
            let j = |date| judge(Unsynced, known, WINDOW, now, date);
            assert_eq!(j(at(REAL)), Verdict::AfterKnownTime);
            assert_eq!(j(at(REAL - 300)), Verdict::AfterKnownTime, "edge passes");
            assert_eq!(
                j(at(REAL + 3 * 86_400)),
                Verdict::AfterKnownTime,
                "no upper bound: only Drone can sign, and the clock cannot say what is too new"
            );
            assert_eq!(
                j(at(REAL - 301)),
                Verdict::BeforeKnownTime { behind_s: 1 },
                "a captured webhook from before the known time is refused"
            );
            assert_eq!(
                j(at(REAL - 86_400)),
                Verdict::BeforeKnownTime {
                    behind_s: 86_400 - 300
                }
            );
        }
    }

    #[test]
    fn a_known_time_inside_the_first_window_does_not_underflow() {
        assert_eq!(
            judge(Unsynced, Some(at(10)), WINDOW, at(0), at(0)),
            Verdict::AfterKnownTime
        );
    }

    #[test]
    fn which_rule_decided() {
        assert!(Verdict::InWindow.accepted() && !Verdict::InWindow.by_known_time());
        assert!(Verdict::AfterKnownTime.accepted() && Verdict::AfterKnownTime.by_known_time());
        let before = Verdict::BeforeKnownTime { behind_s: 1 };
        assert!(!before.accepted() && before.by_known_time());
        let out = Verdict::OutOfWindow { skew_s: 1 };
        assert!(!out.accepted() && !out.by_known_time());
    }

    #[test]
    fn skew_is_signed_and_saturates() {
        assert_eq!(skew_seconds(at(10), at(4)), 6);
        assert_eq!(skew_seconds(at(4), at(10)), -6);
        assert_eq!(skew_seconds(at(4), at(4)), 0);
    }
}
