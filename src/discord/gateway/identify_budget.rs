//! The identify budget: when the gateway may send its next Identify. Pure
//! (instants in, verdicts out), owned by the gateway machine.
//!
//! Three rules, all of which must allow it:
//! * spacing: at most `max_concurrency` Identifies (default 1) per
//!   `Tuning::identify_spacing` (5 s);
//! * a daily cap: at most `Tuning::identify_daily_cap` (1000, or the
//!   `session_start_limit.total` if lower) in any 24 h, counting the
//!   Identifies of earlier runs from the identify ledger;
//! * `session_start_limit` from `GET /gateway/bot`, when known: never more
//!   than its `remaining` before its `reset_after`, then `total` per 24 h.
//!
//! When the ledger could not be read ([`History::Unknown`]), Discord's
//! `session_start_limit` alone covers the past if it is known (it is
//! Discord's own count); if it is not, the worst case is assumed — the day's
//! budget was spent just before this start — and nothing is identified for
//! 24 h. A bad token reset is worse than a day without presence, and
//! deleting the file lifts it.
use super::identify_ledger::{History, WINDOW};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// `session_start_limit` from `GET /gateway/bot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStartLimit {
    pub total: u32,
    pub remaining: u32,
    /// Until `remaining` is refilled to `total`.
    pub reset_after: Duration,
    /// Identifies allowed per 5 s (at least 1).
    pub max_concurrency: u32,
}

/// Why an Identify must wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// `max_concurrency` Identifies in the last spacing window.
    Spacing,
    /// The daily cap is reached (`count` in the last 24 h).
    DailyCap { count: usize, cap: u32 },
    /// `session_start_limit.remaining` is used up until its reset.
    SessionStartLimit { total: u32 },
    /// The ledger is unreadable and Discord's limit unknown: worst case assumed.
    UnknownHistory(String),
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Spacing => f.write_str("identify spacing (max_concurrency per 5 s)"),
            Blocked::DailyCap { count, cap } => {
                write!(f, "{count} identifies in the last 24 h, the cap is {cap}")
            }
            Blocked::SessionStartLimit { total } => {
                write!(f, "session_start_limit used up ({total} a day)")
            }
            Blocked::UnknownHistory(why) => write!(
                f,
                "identify ledger unreadable ({why}) and session_start_limit unknown: \
                 assuming the day's budget is spent (delete {} in STATE_DIR to override)",
                super::identify_ledger::FILE_NAME
            ),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Limit {
    total: u32,
    /// `remaining` as fetched, for the period before `reset_at`.
    remaining: u32,
    /// ms after `origin`.
    reset_at: i64,
}

/// The budget. Times are ms relative to `origin` (the machine's start), so
/// Identifies of earlier runs are negative and nothing underflows.
#[derive(Clone, Debug)]
pub struct IdentifyBudget {
    origin: Instant,
    /// When each Identify was sent, oldest first, the last 24 h at most.
    sent: VecDeque<i64>,
    spacing: i64,
    per_spacing: usize,
    daily_cap: u32,
    limit: Option<Limit>,
    /// No Identify before this (unknown history, worst case assumed).
    not_before: Option<(i64, String)>,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX / 4)
        .min(i64::MAX / 4)
}

impl IdentifyBudget {
    pub fn new(
        history: &History,
        limit: Option<SessionStartLimit>,
        spacing: Duration,
        daily_cap: u32,
        now: Instant,
    ) -> Self {
        let mut sent: Vec<i64> = match history {
            History::Known(ages) => ages
                .iter()
                .filter(|a| **a < WINDOW)
                .map(|a| -ms(*a))
                .collect(),
            History::Unknown(_) => Vec::new(),
        };
        sent.sort_unstable();
        let not_before = match (history, limit) {
            (History::Unknown(why), None) => Some((DAY_MS, why.clone())),
            _ => None,
        };
        let daily_cap = match limit {
            Some(l) => daily_cap.min(l.total.max(1)),
            None => daily_cap,
        }
        .max(1);
        IdentifyBudget {
            origin: now,
            sent: sent.into(),
            spacing: ms(spacing),
            per_spacing: limit.map_or(1, |l| l.max_concurrency.max(1) as usize),
            daily_cap,
            limit: limit.map(|l| Limit {
                total: l.total,
                remaining: l.remaining,
                reset_at: ms(l.reset_after.min(WINDOW)),
            }),
            not_before,
        }
    }

    fn at(&self, now: Instant) -> i64 {
        ms(now.saturating_duration_since(self.origin))
    }

    fn instant(&self, t: i64) -> Instant {
        self.origin + Duration::from_millis(t.max(0) as u64)
    }

    /// `None` when an Identify may go out at `now`; otherwise the earliest
    /// instant it may, and why not before.
    pub fn blocked(&self, now: Instant) -> Option<(Instant, Blocked)> {
        let t = self.at(now);
        let mut worst: Option<(i64, Blocked)> = None;
        let mut consider = |until: i64, why: Blocked| {
            if until > t && !worst.as_ref().is_some_and(|(w, _)| until <= *w) {
                worst = Some((until, why));
            }
        };
        if let Some((until, why)) = &self.not_before {
            consider(*until, Blocked::UnknownHistory(why.clone()));
        }
        // Spacing: the per_spacing-th newest send must have left the window.
        let recent = self
            .sent
            .iter()
            .rev()
            .take_while(|s| t - **s < self.spacing)
            .count();
        if recent >= self.per_spacing {
            if let Some(s) = self.sent.get(self.sent.len() - self.per_spacing) {
                consider(s + self.spacing, Blocked::Spacing);
            }
        }
        let day: Vec<i64> = self
            .sent
            .iter()
            .copied()
            .filter(|s| t - s < DAY_MS)
            .collect();
        let cap = self.daily_cap as usize;
        if day.len() >= cap {
            consider(
                day[day.len() - cap] + DAY_MS,
                Blocked::DailyCap {
                    count: day.len(),
                    cap: self.daily_cap,
                },
            );
        }
        if let Some(l) = self.limit {
            // Period 0 runs from the fetch (origin) to reset_at with
            // `remaining`; then periods of 24 h with `total` each.
            let (start, end, allowed) = if t < l.reset_at {
                (0, l.reset_at, l.remaining)
            } else {
                let k = (t - l.reset_at) / DAY_MS;
                let start = l.reset_at + k * DAY_MS;
                (start, start + DAY_MS, l.total)
            };
            let used = self.sent.iter().filter(|s| **s >= start).count();
            if used >= allowed as usize {
                consider(end, Blocked::SessionStartLimit { total: l.total });
            }
        }
        worst.map(|(until, why)| (self.instant(until), why))
    }

    /// How long until an Identify may go out (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        self.blocked(now)
            .map_or(Duration::ZERO, |(at, _)| at.saturating_duration_since(now))
    }

    /// An Identify goes out at `now`.
    pub fn record(&mut self, now: Instant) {
        // Rounded up to the next whole ms: rounded down, the next Identify could
        // be allowed up to 1 ms before the spacing has really passed.
        let since = now.saturating_duration_since(self.origin);
        let t = self
            .at(now)
            .saturating_add(i64::from(since.subsec_nanos() % 1_000_000 != 0));
        self.sent.push_back(t);
        while self.sent.front().is_some_and(|s| t - s >= DAY_MS) {
            self.sent.pop_front();
        }
        // Older entries than the cap can never matter again.
        while self.sent.len() > (self.daily_cap as usize).max(self.per_spacing) + 1 {
            self.sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACING: Duration = Duration::from_secs(5);

    fn budget(
        history: History,
        limit: Option<SessionStartLimit>,
        cap: u32,
    ) -> (IdentifyBudget, Instant) {
        let now = Instant::now();
        (IdentifyBudget::new(&history, limit, SPACING, cap, now), now)
    }

    #[test]
    fn spacing_allows_max_concurrency_per_window() {
        let (mut b, t0) = budget(History::default(), None, 1000);
        assert_eq!(b.blocked(t0), None);
        b.record(t0);
        assert_eq!(
            b.blocked(t0 + Duration::from_secs(1)),
            Some((t0 + SPACING, Blocked::Spacing))
        );
        assert_eq!(b.blocked(t0 + SPACING), None);

        let limit = SessionStartLimit {
            total: 1000,
            remaining: 1000,
            reset_after: WINDOW,
            max_concurrency: 2,
        };
        let (mut b, t0) = budget(History::default(), Some(limit), 1000);
        b.record(t0);
        assert_eq!(b.blocked(t0), None, "two per window");
        b.record(t0 + Duration::from_secs(1));
        assert_eq!(
            b.blocked(t0 + Duration::from_secs(2)),
            Some((t0 + SPACING, Blocked::Spacing))
        );
    }

    /// Found by the `gateway` fuzz target: an Identify sent at a fraction of a
    /// millisecond was recorded rounded down, so the next one was allowed
    /// 4.9997 s after it.
    #[test]
    fn spacing_is_never_short_by_a_fraction_of_a_millisecond() {
        let (mut b, t0) = budget(History::default(), None, 1000);
        let first = t0 + Duration::from_micros(1_000_900);
        b.record(first);
        let next = first + b.wait(first);
        assert!(next - first >= SPACING, "{:?} apart", next - first);
        assert!(b
            .blocked(first + SPACING - Duration::from_micros(1))
            .is_some());
        assert_eq!(b.blocked(next), None);
    }

    #[test]
    fn earlier_runs_count_toward_spacing_and_the_daily_cap() {
        let ages = vec![Duration::from_secs(3600), Duration::from_secs(2)];
        let (b, t0) = budget(History::Known(ages.clone()), None, 1000);
        assert_eq!(
            b.blocked(t0),
            Some((t0 + Duration::from_secs(3), Blocked::Spacing))
        );
        let (b, t0) = budget(History::Known(ages), None, 2);
        let (until, why) = b
            .blocked(t0 + Duration::from_secs(10))
            .expect("cap reached");
        assert_eq!(why, Blocked::DailyCap { count: 2, cap: 2 });
        assert_eq!(until, t0 + WINDOW - Duration::from_secs(3600));
    }

    #[test]
    fn session_start_limit_remaining_then_total_per_day() {
        let limit = SessionStartLimit {
            total: 3,
            remaining: 1,
            reset_after: Duration::from_secs(60),
            max_concurrency: 1,
        };
        let (mut b, t0) = budget(History::default(), Some(limit), 1000);
        b.record(t0);
        let (until, why) = b.blocked(t0 + SPACING).expect("remaining used");
        assert_eq!(
            (until, why),
            (
                t0 + Duration::from_secs(60),
                Blocked::SessionStartLimit { total: 3 }
            )
        );
        // After the reset: total (3) per period, but also at most 3 in any
        // sliding 24 h (the daily cap is lowered to total), so the one
        // before the reset still counts.
        let t1 = t0 + Duration::from_secs(60);
        for i in 0..2 {
            let t = t1 + SPACING * i;
            assert_eq!(b.blocked(t), None, "{i}");
            b.record(t);
        }
        let (until, why) = b.blocked(t1 + Duration::from_secs(3600)).expect("cap");
        assert_eq!(why, Blocked::DailyCap { count: 3, cap: 3 });
        assert_eq!(until, t0 + WINDOW);
    }

    #[test]
    fn unknown_history_waits_a_day_unless_discord_says_how_many_are_left() {
        let (b, t0) = budget(History::Unknown("garbled".into()), None, 1000);
        let (until, why) = b.blocked(t0).expect("worst case");
        assert_eq!(until, t0 + WINDOW);
        assert!(
            why.to_string().contains("garbled") && why.to_string().contains("STATE_DIR"),
            "{why}"
        );
        assert_eq!(b.blocked(t0 + WINDOW), None);
        let limit = SessionStartLimit {
            total: 1000,
            remaining: 5,
            reset_after: WINDOW,
            max_concurrency: 1,
        };
        let (b, t0) = budget(History::Unknown("garbled".into()), Some(limit), 1000);
        assert_eq!(b.blocked(t0), None);
    }

    #[test]
    fn history_older_than_a_day_is_ignored() {
        let (b, t0) = budget(History::Known(vec![WINDOW, WINDOW * 2]), None, 1);
        assert_eq!(b.blocked(t0), None);
    }
}
