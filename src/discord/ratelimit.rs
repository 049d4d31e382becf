//! Discord's REST rate limits, kept apart from the HTTP client so they can be
//! unit tested with injected time and no network.
//!
//! [`RateLimitState`] is the pure state machine: [`RateLimitState::acquire`] says
//! whether a call may go out *now* (or how long to wait), and
//! [`RateLimitState::update`] learns from each response's `X-RateLimit-*`
//! headers and 429 bodies. It tracks:
//!
//! * per-bucket state keyed by (bucket id, top-level resource), with the
//!   route → bucket mapping learned from responses (until then, the route key
//!   stands in for the bucket);
//! * the global limit: a proactive cap below Discord's 50/s, and pauses on
//!   global 429s;
//! * Cloudflare-style bans (a 429 whose body is not JSON or that lacks the
//!   `Via` header Discord's front end adds): a long global pause; a JSON 429
//!   with `Via` but without `X-RateLimit-*` headers is an ordinary limit of
//!   its bucket (or route);
//! * 30046 (edit limit of one old message): no pause at all, the caller
//!   retries that message after its `retry_after`;
//! * the invalid-request budget (401/403/429 over ten minutes): all calls stop
//!   well before Discord's 10 000 so a bad token can never get the IP banned.
//!
//! [`RateLimitGate`] is its async front, the one the REST client holds: it
//! sleeps through short waits and keeps one request in flight per
//! [`RouteLane`] (route key + major).
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A REST route as the limiter sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Method + path template, e.g. `PATCH /channels/{id}/messages/{id}`.
    pub key: String,
    /// The top-level resource (channel id), or empty when there is none.
    pub major: String,
}

impl Route {
    pub fn new(method: &str, template: &str, major: &str) -> Route {
        Route {
            key: format!("{method} {template}"),
            major: major.to_string(),
        }
    }
}

/// Tunables. The defaults follow Discord's documented limits with headroom.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Proactive global cap, requests per second (Discord allows 50).
    pub global_per_second: usize,
    /// Invalid requests (401/403/429) allowed in `invalid_window` before all
    /// calls stop. Discord bans at 10 000 per 10 minutes.
    pub invalid_budget: usize,
    pub invalid_window: Duration,
    /// Pause after a Cloudflare-style 429 (not JSON, or no `Via` header).
    pub cloudflare_pause: Duration,
    /// Upper bound for any single server-supplied wait (defends against absurd values).
    pub max_retry_after: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            global_per_second: 45,
            invalid_budget: 1000,
            invalid_window: Duration::from_secs(600),
            cloudflare_pause: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// Why a call may not go out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Try again after this long.
    Wait(Duration),
    /// Too many invalid requests recently; no calls until this much time passes.
    InvalidRequestBudget { retry_after: Duration },
}

/// What a 429 response told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// How long the limited scope is paused.
    pub retry_after: Duration,
    /// Whether every call is paused (global limit or Cloudflare).
    pub global: bool,
    /// Whether it looked like a Cloudflare ban rather than a Discord 429.
    pub cloudflare: bool,
}

#[derive(Clone, Debug)]
struct Bucket {
    limit: u64,
    remaining: u64,
    reset_at: Instant,
    /// Longest `Reset-After` seen: our guess of the window length, used when
    /// the bucket refills before a response tells us the new reset time.
    window: Duration,
}

/// The rate-limit state machine. All methods take `now` so tests drive time.
#[derive(Debug)]
pub struct RateLimitState {
    cfg: RateLimitConfig,
    /// Route key → bucket id from `X-RateLimit-Bucket`.
    route_buckets: HashMap<String, String>,
    /// (bucket id or route key, major) → state.
    buckets: HashMap<(String, String), Bucket>,
    global_until: Option<Instant>,
    /// Send times within the last second (proactive global cap).
    recent: VecDeque<Instant>,
    /// Times of invalid requests within the window.
    invalid: VecDeque<Instant>,
}

const MIN_WAIT: Duration = Duration::from_millis(1);
/// "Maximum number of edits to messages older than 1 hour reached": a 429
/// about one message, not about a bucket.
pub const EDIT_LIMIT_CODE: u64 = 30046;
const MAX_BUCKETS: usize = 4096;

impl RateLimitState {
    pub fn new(cfg: RateLimitConfig) -> Self {
        RateLimitState {
            cfg,
            route_buckets: HashMap::new(),
            buckets: HashMap::new(),
            global_until: None,
            recent: VecDeque::new(),
            invalid: VecDeque::new(),
        }
    }

    fn bucket_key(&self, route: &Route) -> (String, String) {
        let id = self
            .route_buckets
            .get(&route.key)
            .cloned()
            .unwrap_or_else(|| route.key.clone());
        (id, route.major.clone())
    }

    /// Invalid requests counted in the current window.
    pub fn invalid_count(&mut self, now: Instant) -> usize {
        self.prune_invalid(now);
        self.invalid.len()
    }

    fn prune_invalid(&mut self, now: Instant) {
        while let Some(t) = self.invalid.front() {
            if now.saturating_duration_since(*t) >= self.cfg.invalid_window {
                self.invalid.pop_front();
            } else {
                break;
            }
        }
    }

    /// May a call on `route` go out at `now`? On `Ok` the call is counted
    /// (global cap, and one use of the bucket's remaining quota).
    pub fn acquire(&mut self, route: &Route, now: Instant) -> Result<(), Denied> {
        self.prune_invalid(now);
        if self.invalid.len() >= self.cfg.invalid_budget {
            // Calls resume once enough old entries leave the window.
            let excess = self.invalid.len() + 1 - self.cfg.invalid_budget;
            let oldest_needed = self.invalid.get(excess - 1).copied().unwrap_or(now);
            let retry_after =
                (oldest_needed + self.cfg.invalid_window).saturating_duration_since(now);
            return Err(Denied::InvalidRequestBudget {
                retry_after: retry_after.max(MIN_WAIT),
            });
        }
        if let Some(until) = self.global_until {
            if until > now {
                return Err(Denied::Wait((until - now).max(MIN_WAIT)));
            }
            self.global_until = None;
        }
        while let Some(t) = self.recent.front() {
            if now.saturating_duration_since(*t) >= Duration::from_secs(1) {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.cfg.global_per_second.max(1) {
            let oldest = self.recent.front().copied().unwrap_or(now);
            let wait = (oldest + Duration::from_secs(1)).saturating_duration_since(now);
            return Err(Denied::Wait(wait.max(MIN_WAIT)));
        }
        let key = self.bucket_key(route);
        if let Some(b) = self.buckets.get_mut(&key) {
            if b.reset_at <= now {
                b.remaining = b.limit;
                b.reset_at = now + b.window;
            }
            if b.remaining == 0 {
                return Err(Denied::Wait((b.reset_at - now).max(MIN_WAIT)));
            }
            b.remaining -= 1;
        }
        self.recent.push_back(now);
        Ok(())
    }

    /// Learn from a response to a call on `route`. Returns what a 429 said.
    pub fn update(
        &mut self,
        route: &Route,
        headers: &[(String, String)],
        status: u16,
        body: &[u8],
        now: Instant,
    ) -> Option<Limited> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        let scope = header("x-ratelimit-scope").map(str::to_ascii_lowercase);
        if status == 401 || status == 403 || (status == 429 && scope.as_deref() != Some("shared")) {
            self.invalid.push_back(now);
            self.prune_invalid(now);
        }

        if let Some(bucket) =
            header("x-ratelimit-bucket").filter(|b| !b.is_empty() && b.len() <= 128)
        {
            if self.route_buckets.len() < MAX_BUCKETS || self.route_buckets.contains_key(&route.key)
            {
                self.route_buckets
                    .insert(route.key.clone(), bucket.to_string());
            }
        }
        let key = self.bucket_key(route);
        let limit = header("x-ratelimit-limit").and_then(|v| v.parse::<u64>().ok());
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(|v| self.seconds(v));
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            self.prune_buckets(now);
            if self.buckets.len() < MAX_BUCKETS || self.buckets.contains_key(&key) {
                let limit = limit.unwrap_or(remaining.max(1)).max(1);
                // Calls acquired after this one went out (on another route of
                // the same bucket) used quota this answer does not count yet:
                // within the current window never hand quota back, or the
                // last slot is spent twice and a 429 follows.
                let remaining = match self.buckets.get(&key) {
                    Some(b) if b.reset_at > now && b.limit == limit => remaining.min(b.remaining),
                    _ => remaining,
                };
                let window = self
                    .buckets
                    .get(&key)
                    .map_or(reset_after, |b| b.window.max(reset_after));
                self.buckets.insert(
                    key.clone(),
                    Bucket {
                        limit,
                        remaining,
                        reset_at: now + reset_after,
                        window,
                    },
                );
            }
        }

        if status != 429 {
            return None;
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(body)
            .ok()
            .filter(|v: &serde_json::Value| v.is_object());
        let body_retry = json
            .as_ref()
            .and_then(|v| v.get("retry_after"))
            .and_then(|v| v.as_f64())
            .and_then(|s| self.seconds_f64(s));
        let header_retry = header("retry-after").and_then(|v| self.seconds(v));
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(|v| v.as_u64());
        if code == Some(EDIT_LIMIT_CODE) {
            // 30046 limits the edits of one old message: only that message
            // waits (the caller retries it after `retry_after`); neither the
            // bucket nor any other call is paused, whatever else it says.
            let retry_after = body_retry
                .or(header_retry)
                .unwrap_or(Duration::from_secs(1));
            return Some(Limited {
                retry_after,
                global: false,
                cloudflare: false,
            });
        }
        // discord.py's rule: Discord's own 429s are JSON and come through
        // Google's front end (`Via: 1.1 google`); a Cloudflare ban page is
        // HTML or lacks `Via`. Rate-limit headers are promised on "most"
        // answers only, so their absence alone is an ordinary limit.
        let via = header("via").is_some_and(|v| !v.is_empty());
        let cloudflare = json.is_none() || !via;
        if cloudflare {
            let pause = self
                .cfg
                .cloudflare_pause
                .max(body_retry.or(header_retry).unwrap_or(Duration::ZERO));
            let pause = pause.min(self.cfg.max_retry_after.max(self.cfg.cloudflare_pause));
            self.pause_global(now + pause);
            tracing::warn!(
                pause_s = pause.as_secs(),
                "429 that is not JSON or has no Via header (Cloudflare?): pausing all calls"
            );
            return Some(Limited {
                retry_after: pause,
                global: true,
                cloudflare: true,
            });
        }
        let retry_after = body_retry
            .or(header_retry)
            .unwrap_or(Duration::from_secs(1));
        let global = json
            .as_ref()
            .and_then(|v| v.get("global"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
            || header("x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || scope.as_deref() == Some("global");
        if global {
            self.pause_global(now + retry_after);
        } else {
            // This bucket (or, before its id is known, this route) only.
            let reset_at = now + retry_after;
            match self.buckets.get_mut(&key) {
                Some(b) => {
                    b.remaining = 0;
                    b.reset_at = b.reset_at.max(reset_at);
                }
                None => {
                    if self.buckets.len() < MAX_BUCKETS {
                        self.buckets.insert(
                            key,
                            Bucket {
                                limit: 1,
                                remaining: 0,
                                reset_at,
                                window: retry_after,
                            },
                        );
                    }
                }
            }
        }
        Some(Limited {
            retry_after,
            global,
            cloudflare: false,
        })
    }

    fn pause_global(&mut self, until: Instant) {
        self.global_until = Some(self.global_until.map_or(until, |g| g.max(until)));
    }

    fn prune_buckets(&mut self, now: Instant) {
        if self.buckets.len() >= MAX_BUCKETS {
            self.buckets.retain(|_, b| b.reset_at > now);
        }
    }

    fn seconds(&self, v: &str) -> Option<Duration> {
        self.seconds_f64(super::decimal::parse_f64(v)?)
    }

    fn seconds_f64(&self, s: f64) -> Option<Duration> {
        if !s.is_finite() || s < 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(
            s.min(self.cfg.max_retry_after.as_secs_f64()),
        ))
    }
}

/// Async front of [`RateLimitState`]: sleeps through waits up to `max_wait` and
/// keeps one request in flight per [`RouteLane`] (route key + major).
#[derive(Debug)]
pub struct RateLimitGate {
    state: Mutex<RateLimitState>,
    /// The lanes, by (route key, major).
    queues: Mutex<HashMap<(String, String), RouteLane>>,
    max_wait: Duration,
}

/// One route's lane: at most one request in flight on it.
type RouteLane = Arc<tokio::sync::Mutex<()>>;

/// Held while a request is in flight; dropping it frees the route's lane.
#[derive(Debug)]
pub struct Permit {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl RateLimitGate {
    /// `max_wait`: waits longer than this are returned to the caller as
    /// [`Denied::Wait`] instead of being slept through.
    pub fn new(cfg: RateLimitConfig, max_wait: Duration) -> Self {
        RateLimitGate {
            state: Mutex::new(RateLimitState::new(cfg)),
            queues: Mutex::new(HashMap::new()),
            max_wait,
        }
    }

    /// Wait for this route's lane and for the limits, then return a permit.
    pub async fn acquire(&self, route: &Route) -> Result<Permit, Denied> {
        let lane = {
            let mut queues = crate::sync::lock(&self.queues);
            if queues.len() >= MAX_BUCKETS {
                queues.retain(|_, q| Arc::strong_count(q) > 1);
            }
            queues
                .entry((route.key.clone(), route.major.clone()))
                .or_default()
                .clone()
        };
        let guard = lane.lock_owned().await;
        loop {
            let verdict = {
                let mut state = crate::sync::lock(&self.state);
                state.acquire(route, Instant::now())
            };
            match verdict {
                Ok(()) => return Ok(Permit { _guard: guard }),
                Err(Denied::Wait(d)) if d <= self.max_wait => {
                    tracing::debug!(route = %route.key, wait_ms = d.as_millis() as u64, "rate limited, waiting");
                    tokio::time::sleep(d).await;
                }
                Err(denied) => return Err(denied),
            }
        }
    }

    /// Feed a response into the state machine.
    pub fn update(
        &self,
        route: &Route,
        headers: &[(String, String)],
        status: u16,
        body: &[u8],
    ) -> Option<Limited> {
        let mut state = crate::sync::lock(&self.state);
        state.update(route, headers, status, body, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// What Discord's front end adds to every answer (Cloudflare ban pages lack it).
    const VIA: &str = "1.1 google";

    fn create(ch: &str) -> Route {
        Route::new("POST", "/channels/{id}/messages", ch)
    }

    fn edit(ch: &str) -> Route {
        Route::new("PATCH", "/channels/{id}/messages/{id}", ch)
    }

    fn bucket_headers(
        bucket: &str,
        limit: u64,
        remaining: u64,
        reset_after: &str,
    ) -> Vec<(String, String)> {
        h(&[
            ("Via", VIA),
            ("X-RateLimit-Bucket", bucket),
            ("X-RateLimit-Limit", &limit.to_string()),
            ("X-RateLimit-Remaining", &remaining.to_string()),
            ("X-RateLimit-Reset-After", reset_after),
        ])
    }

    #[test]
    fn unknown_route_goes_straight_through() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(rl.acquire(&create("1"), t0), Ok(()));
        }
    }

    #[test]
    fn exhausted_bucket_waits_until_reset() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let r = create("1");
        rl.acquire(&r, t0).unwrap();
        assert_eq!(
            rl.update(&r, &bucket_headers("abc", 5, 0, "2.5"), 200, b"{}", t0),
            None
        );
        assert_eq!(
            rl.acquire(&r, t0 + Duration::from_secs(1)),
            Err(Denied::Wait(Duration::from_millis(1500)))
        );
        // After the reset the full limit is available again.
        let t1 = t0 + Duration::from_millis(2500);
        for _ in 0..5 {
            assert_eq!(rl.acquire(&r, t1), Ok(()));
        }
        assert!(matches!(rl.acquire(&r, t1), Err(Denied::Wait(_))));
    }

    #[test]
    fn acquire_counts_down_remaining_before_responses_arrive() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let r = create("1");
        rl.update(&r, &bucket_headers("abc", 5, 2, "1"), 200, b"{}", t0);
        assert_eq!(rl.acquire(&r, t0), Ok(()));
        assert_eq!(rl.acquire(&r, t0), Ok(()));
        assert_eq!(
            rl.acquire(&r, t0),
            Err(Denied::Wait(Duration::from_secs(1)))
        );
    }

    #[test]
    fn a_late_answer_does_not_hand_back_quota_already_used() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let (c, e) = (create("1"), edit("1"));
        rl.update(&c, &bucket_headers("shared", 5, 2, "4"), 200, b"{}", t0);
        rl.update(&e, &bucket_headers("shared", 5, 2, "4"), 200, b"{}", t0);
        // Two calls go out on the two routes; the first answer still says 1 left
        // (it was counted before the second call reached Discord).
        assert_eq!(rl.acquire(&c, t0), Ok(()));
        assert_eq!(rl.acquire(&e, t0), Ok(()));
        rl.update(&c, &bucket_headers("shared", 5, 1, "4"), 200, b"{}", t0);
        assert!(
            matches!(rl.acquire(&c, t0), Err(Denied::Wait(_))),
            "the last slot was already taken by the edit in flight"
        );
    }

    #[test]
    fn buckets_are_per_channel() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        rl.update(
            &create("1"),
            &bucket_headers("abc", 5, 0, "3"),
            200,
            b"{}",
            t0,
        );
        assert!(matches!(rl.acquire(&create("1"), t0), Err(Denied::Wait(_))));
        assert_eq!(rl.acquire(&create("2"), t0), Ok(()));
    }

    #[test]
    fn routes_sharing_a_bucket_share_its_quota() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        // Both routes learn they map to bucket "shared".
        rl.update(
            &create("1"),
            &bucket_headers("shared", 5, 3, "4"),
            200,
            b"{}",
            t0,
        );
        rl.update(
            &edit("1"),
            &bucket_headers("shared", 5, 0, "4"),
            200,
            b"{}",
            t0,
        );
        assert_eq!(
            rl.acquire(&create("1"), t0),
            Err(Denied::Wait(Duration::from_secs(4)))
        );
        assert_eq!(
            rl.acquire(&edit("1"), t0),
            Err(Denied::Wait(Duration::from_secs(4)))
        );
    }

    #[test]
    fn global_429_pauses_every_route() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let hdrs = h(&[
            ("Via", VIA),
            ("X-RateLimit-Global", "true"),
            ("X-RateLimit-Scope", "global"),
            ("Retry-After", "1"),
        ]);
        let body = br#"{"message":"You are being rate limited.","retry_after":0.75,"global":true}"#;
        let l = rl.update(&create("1"), &hdrs, 429, body, t0).unwrap();
        assert_eq!(
            l,
            Limited {
                retry_after: Duration::from_millis(750),
                global: true,
                cloudflare: false
            }
        );
        assert_eq!(
            rl.acquire(&edit("9"), t0),
            Err(Denied::Wait(Duration::from_millis(750)))
        );
        assert_eq!(
            rl.acquire(&create("2"), t0 + Duration::from_millis(750)),
            Ok(())
        );
    }

    #[test]
    fn per_route_429_prefers_body_retry_after_and_blocks_only_that_bucket() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let mut hdrs = bucket_headers("abc", 5, 0, "0.1");
        hdrs.extend(h(&[("Retry-After", "3"), ("X-RateLimit-Scope", "user")]));
        let body = br#"{"message":"slow down","retry_after":2.25,"global":false}"#;
        let l = rl.update(&create("1"), &hdrs, 429, body, t0).unwrap();
        assert_eq!(l.retry_after, Duration::from_millis(2250));
        assert!(!l.global);
        assert_eq!(
            rl.acquire(&create("1"), t0),
            Err(Denied::Wait(Duration::from_millis(2250)))
        );
        assert_eq!(rl.acquire(&edit("1"), t0), Ok(()));
        assert_eq!(
            rl.acquire(&create("1"), t0 + Duration::from_millis(2250)),
            Ok(())
        );
    }

    #[test]
    fn retry_after_header_is_the_fallback() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let mut hdrs = bucket_headers("abc", 5, 0, "0");
        hdrs.extend(h(&[("Retry-After", "3")]));
        let l = rl
            .update(&create("1"), &hdrs, 429, br#"{"message":"x"}"#, t0)
            .unwrap();
        assert_eq!(l.retry_after, Duration::from_secs(3));
    }

    #[test]
    fn edit_limit_30046_does_not_block_the_bucket() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let hdrs = bucket_headers("edits", 5, 4, "1");
        let body = br#"{"message":"Maximum number of edits","code":30046,"retry_after":300,"global":false}"#;
        let l = rl.update(&edit("1"), &hdrs, 429, body, t0).unwrap();
        assert_eq!(l.retry_after, Duration::from_secs(300));
        assert_eq!(rl.acquire(&edit("1"), t0), Ok(()));
    }

    #[test]
    fn cloudflare_style_429_pauses_everything_for_long() {
        let cfg = RateLimitConfig {
            cloudflare_pause: Duration::from_secs(90),
            ..RateLimitConfig::default()
        };
        let mut rl = RateLimitState::new(cfg);
        let t0 = Instant::now();
        let l = rl
            .update(
                &create("1"),
                &h(&[("Content-Type", "text/html")]),
                429,
                b"<html>error code: 1015</html>",
                t0,
            )
            .unwrap();
        assert!(l.cloudflare && l.global);
        assert_eq!(l.retry_after, Duration::from_secs(90));
        assert_eq!(
            rl.acquire(&edit("7"), t0 + Duration::from_secs(60)),
            Err(Denied::Wait(Duration::from_secs(30)))
        );
        // A JSON 429 without any X-RateLimit header is treated the same way.
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let l = rl
            .update(&create("1"), &[], 429, br#"{"retry_after":1}"#, t0)
            .unwrap();
        assert!(l.cloudflare);
        assert!(l.retry_after >= Duration::from_secs(60));
    }

    #[test]
    fn json_429_with_via_but_no_rate_limit_headers_limits_only_its_route() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let body = br#"{"message":"You are being rate limited.","retry_after":2.5,"global":false}"#;
        let l = rl
            .update(&create("1"), &h(&[("Via", VIA)]), 429, body, t0)
            .unwrap();
        assert_eq!(
            l,
            Limited {
                retry_after: Duration::from_millis(2500),
                global: false,
                cloudflare: false
            }
        );
        assert_eq!(
            rl.acquire(&create("1"), t0 + Duration::from_secs(1)),
            Err(Denied::Wait(Duration::from_millis(1500)))
        );
        // Other routes, and the same route on another channel, go on.
        assert_eq!(rl.acquire(&edit("1"), t0), Ok(()));
        assert_eq!(rl.acquire(&create("2"), t0), Ok(()));
        assert_eq!(
            rl.acquire(&create("1"), t0 + Duration::from_millis(2500)),
            Ok(())
        );
    }

    #[test]
    fn cloudflare_is_a_non_json_body_or_a_missing_via_header() {
        let t0 = Instant::now();
        let json = br#"{"message":"You are being rate limited.","retry_after":1,"global":false}"#;
        let with_headers = bucket_headers("abc", 5, 0, "1");
        let without_via: Vec<_> = with_headers
            .iter()
            .filter(|(n, _)| n != "Via")
            .cloned()
            .collect();
        // (headers, body, taken for a ban?)
        type Case<'a> = (&'a [(String, String)], &'a [u8], bool);
        let cases: [Case; 4] = [
            (&with_headers, json, false),
            (&without_via, json, true),
            (&with_headers, b"<html>error code: 1015</html>", true),
            (&with_headers, b"[1]", true),
        ];
        for (i, (hdrs, body, ban)) in cases.into_iter().enumerate() {
            let mut rl = RateLimitState::new(RateLimitConfig::default());
            let l = rl.update(&create("1"), hdrs, 429, body, t0).unwrap();
            assert_eq!(l.cloudflare, ban, "case {i}");
            assert_eq!(l.global, ban, "case {i}");
            let other = rl.acquire(&edit("9"), t0 + Duration::from_secs(60));
            assert_eq!(other.is_err(), ban, "case {i}: {other:?}");
        }
    }

    #[test]
    fn edit_limit_30046_pauses_nothing_even_without_headers_or_with_global() {
        let t0 = Instant::now();
        let body = br#"{"message":"Maximum number of edits to messages older than 1 hour reached.","code":30046,"retry_after":42.5,"global":true}"#;
        let header_sets = [
            h(&[]),
            h(&[("Via", VIA)]),
            bucket_headers("edits", 5, 4, "1"),
        ];
        for (i, hdrs) in header_sets.iter().enumerate() {
            let mut rl = RateLimitState::new(RateLimitConfig::default());
            let l = rl.update(&edit("1"), hdrs, 429, body, t0).unwrap();
            assert_eq!(
                l,
                Limited {
                    retry_after: Duration::from_millis(42_500),
                    global: false,
                    cloudflare: false
                },
                "case {i}"
            );
            // The same route (another old message's edit) and every other
            // route go out at once; only the caller's message waits.
            assert_eq!(rl.acquire(&edit("1"), t0), Ok(()), "case {i}");
            assert_eq!(rl.acquire(&create("1"), t0), Ok(()), "case {i}");
        }
        // Without retry_after in the body, the header's value is used.
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let l = rl
            .update(
                &edit("1"),
                &h(&[("Retry-After", "7")]),
                429,
                br#"{"code":30046,"message":"x"}"#,
                t0,
            )
            .unwrap();
        assert_eq!(l.retry_after, Duration::from_secs(7));
        assert!(!l.global && !l.cloudflare);
    }

    #[test]
    fn proactive_global_cap() {
        let cfg = RateLimitConfig {
            global_per_second: 3,
            ..RateLimitConfig::default()
        };
        let mut rl = RateLimitState::new(cfg);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                rl.acquire(&create(&i.to_string()), t0 + Duration::from_millis(i * 100)),
                Ok(())
            );
        }
        assert_eq!(
            rl.acquire(&create("x"), t0 + Duration::from_millis(500)),
            Err(Denied::Wait(Duration::from_millis(500)))
        );
        assert_eq!(
            rl.acquire(&create("x"), t0 + Duration::from_millis(1000)),
            Ok(())
        );
    }

    #[test]
    fn invalid_request_budget_stops_all_calls_until_the_window_slides() {
        let cfg = RateLimitConfig {
            invalid_budget: 3,
            invalid_window: Duration::from_secs(600),
            ..RateLimitConfig::default()
        };
        let mut rl = RateLimitState::new(cfg);
        let t0 = Instant::now();
        let r = create("1");
        rl.update(
            &r,
            &[],
            401,
            br#"{"message":"401: Unauthorized","code":0}"#,
            t0,
        );
        rl.update(&r, &[], 403, b"{}", t0 + Duration::from_secs(10));
        // A shared-scope 429 does not count.
        let mut shared = bucket_headers("abc", 5, 0, "0.01");
        shared.push(("X-RateLimit-Scope".into(), "shared".into()));
        rl.update(
            &r,
            &shared,
            429,
            br#"{"retry_after":0.01}"#,
            t0 + Duration::from_secs(20),
        );
        assert_eq!(rl.invalid_count(t0 + Duration::from_secs(20)), 2);
        assert_eq!(rl.acquire(&edit("1"), t0 + Duration::from_secs(20)), Ok(()));
        rl.update(&r, &[], 404, b"{}", t0 + Duration::from_secs(25));
        rl.update(&r, &[], 403, b"{}", t0 + Duration::from_secs(30));
        assert_eq!(
            rl.acquire(&edit("1"), t0 + Duration::from_secs(40)),
            Err(Denied::InvalidRequestBudget {
                retry_after: Duration::from_secs(560)
            })
        );
        assert_eq!(
            rl.acquire(&edit("1"), t0 + Duration::from_secs(600)),
            Ok(())
        );
    }

    #[test]
    fn absurd_header_values_are_ignored_or_capped() {
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let r = create("1");
        let hdrs = h(&[
            ("X-RateLimit-Bucket", "b"),
            ("X-RateLimit-Limit", "nan"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset-After", "1e300"),
        ]);
        rl.update(&r, &hdrs, 200, b"", t0);
        assert_eq!(
            rl.acquire(&r, t0),
            Err(Denied::Wait(Duration::from_secs(3600)))
        );
        let mut rl = RateLimitState::new(RateLimitConfig::default());
        let hdrs = h(&[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset-After", "-5"),
        ]);
        rl.update(&r, &hdrs, 200, b"", t0);
        assert_eq!(rl.acquire(&r, t0), Ok(()));
    }

    #[tokio::test]
    async fn async_limiter_returns_long_waits_instead_of_sleeping() {
        let limiter = RateLimitGate::new(RateLimitConfig::default(), Duration::from_secs(5));
        let r = create("1");
        let hdrs = h(&[
            ("Via", VIA),
            ("X-RateLimit-Global", "true"),
            ("X-RateLimit-Scope", "global"),
        ]);
        limiter.update(&r, &hdrs, 429, br#"{"retry_after":30,"global":true}"#);
        match limiter.acquire(&r).await {
            Err(Denied::Wait(d)) => assert!(d > Duration::from_secs(5)),
            other => panic!("expected a long wait, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn async_limiter_keeps_one_request_in_flight_per_route() {
        let limiter = Arc::new(RateLimitGate::new(
            RateLimitConfig::default(),
            Duration::from_secs(5),
        ));
        let first = limiter.acquire(&create("1")).await.unwrap();
        // Another channel's lane is independent.
        let other = limiter.acquire(&create("2")).await;
        assert!(other.is_ok());
        let l2 = limiter.clone();
        let second = tokio::spawn(async move { l2.acquire(&create("1")).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "second request must wait for the first to finish"
        );
        drop(first);
        let joined = tokio::time::timeout(Duration::from_secs(10), second).await;
        assert!(matches!(joined, Ok(Ok(Ok(())))));
    }

    #[tokio::test]
    async fn async_limiter_sleeps_through_short_waits() {
        let limiter = RateLimitGate::new(RateLimitConfig::default(), Duration::from_secs(5));
        let r = create("1");
        limiter.update(&r, &bucket_headers("b", 1, 0, "0.05"), 200, b"{}");
        let start = Instant::now();
        let permit = limiter.acquire(&r).await;
        assert!(permit.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
