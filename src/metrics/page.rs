//! The `/metrics` page: every metric family in a fixed order with its help
//! text, from the [`Registry`], the store's figures read at scrape time, and
//! the process. The README's "Metrics" section lists the same families.
//!
//! A scrape reads the store the way `/health`'s figures are read (redb read
//! transactions, which never wait for the writer) and otherwise only loads
//! atomics, so it cannot hold up ingest or the relay. A family whose value
//! is unknown (no gateway, the MongoDB store, a store read that failed) is
//! left out rather than shown as 0.
use super::exposition::{Exposition, Kind, Value};
use super::{process, Answer, LimitScope, Registry, RouteKind, CLASSES, GATEWAY_STATES};
use crate::store::{now_ms, Store, StoreError};
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

/// What a scrape learns from the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// The queue, when the store could be read.
    pub queue: Option<QueueFigures>,
    /// The store file's size (embedded store only).
    pub file_bytes: Option<u64>,
}

/// The queue as read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueFigures {
    pub pending: u64,
    pub dead_letters: u64,
    /// When the oldest pending event was accepted (Unix ms); `None`: no pending event.
    pub oldest_received_ms: Option<u64>,
}

/// Read the store's figures for one scrape.
pub async fn store_figures<S: Store>(store: &S) -> StoreFigures {
    let queue = async {
        let stats = store.stats().await?;
        let oldest = store.pending(1).await?;
        Ok::<_, StoreError>(QueueFigures {
            pending: stats.pending,
            dead_letters: stats.dead_letters,
            oldest_received_ms: oldest.first().map(|e| e.received_ms),
        })
    }
    .await;
    if let Err(e) = &queue {
        tracing::debug!(error = %e, "metrics: cannot read the queue's figures");
    }
    StoreFigures {
        queue: queue.ok(),
        file_bytes: store.file_bytes(),
    }
}

/// Room for the whole page, which has a fixed number of samples (8.3 KiB
/// with every counter at its largest value).
const PAGE_CAPACITY: usize = 12 * 1024;

const WEBHOOKS: &str = "drone_discord_webhooks_received_total";
const DISCORD_REQUESTS: &str = "drone_discord_discord_requests_total";
const RATE_LIMITED: &str = "drone_discord_discord_rate_limited_total";
const GATEWAY_STATE: &str = "drone_discord_gateway_state";

/// The page for `registry` with the store's `figures`, as of `now`.
pub fn render(registry: &Registry, figures: &StoreFigures, now: SystemTime) -> String {
    let mut e = Exposition::with_capacity(PAGE_CAPACITY);
    let count = |n: &std::sync::atomic::AtomicU64| Value::Int(n.load(Relaxed));

    e.family(
        "drone_discord_build_info",
        Kind::Gauge,
        "Always 1; the version label says which release runs.",
    );
    e.sample(
        "drone_discord_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        Value::Int(1),
    );

    e.family(
        WEBHOOKS,
        Kind::Counter,
        "Webhooks received (POST /), by how they were answered.",
    );
    for a in Answer::ALL {
        let n = count(&registry.webhooks[a as usize]);
        e.sample(WEBHOOKS, &[("answer", a.label())], n);
    }
    e.histogram(
        "drone_discord_webhook_answer_duration_seconds",
        "Time from a webhook's first byte to its answer.",
        &registry.webhook_latency.snapshot(),
    );

    e.family(
        DISCORD_REQUESTS,
        Kind::Counter,
        "Discord REST calls, by route kind and answer status class (error: no usable answer).",
    );
    for r in RouteKind::ALL {
        for (c, class) in CLASSES.iter().enumerate() {
            let n = count(&registry.rest_calls[r as usize][c]);
            e.sample(
                DISCORD_REQUESTS,
                &[("route", r.label()), ("class", class)],
                n,
            );
        }
    }
    e.family(
        RATE_LIMITED,
        Kind::Counter,
        "429 answers, by the scope of the limit (cloudflare: not from Discord's API).",
    );
    for s in LimitScope::ALL {
        let n = count(&registry.rate_limited[s as usize]);
        e.sample(RATE_LIMITED, &[("scope", s.label())], n);
    }
    for (name, help, n) in [
        (
            "drone_discord_messages_created_total",
            "Discord messages created.",
            &registry.messages_created,
        ),
        (
            "drone_discord_messages_edited_total",
            "Discord messages edited.",
            &registry.messages_edited,
        ),
        (
            "drone_discord_dead_letters_total",
            "Deliveries whose events were moved aside as dead letters (Discord rejected them for good).",
            &registry.dead_letters,
        ),
    ] {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[], count(n));
    }
    e.histogram(
        "drone_discord_delivery_latency_seconds",
        "Time from accepting an event to the Discord call that showed it.",
        &registry.delivery_latency.snapshot(),
    );

    if let Some(q) = figures.queue {
        let age_ms = q
            .oldest_received_ms
            .map_or(0, |at| now_ms().saturating_sub(at));
        for (name, kind, help, value) in [
            (
                "drone_discord_queue_pending_events",
                Kind::Gauge,
                "Events accepted and not yet delivered.",
                Value::Int(q.pending),
            ),
            (
                "drone_discord_queue_oldest_event_age_seconds",
                Kind::Gauge,
                "Age of the oldest pending event (0 when none is pending).",
                Value::Micros(age_ms.saturating_mul(1000)),
            ),
            (
                "drone_discord_queue_dead_letters",
                Kind::Gauge,
                "Dead letters kept in the store.",
                Value::Int(q.dead_letters),
            ),
        ] {
            e.family(name, kind, help);
            e.sample(name, &[], value);
        }
    }

    e.family(
        GATEWAY_STATE,
        Kind::Gauge,
        "1 for the gateway connection's current state, 0 for the others.",
    );
    let state = usize::from(registry.gateway_state.load(Relaxed));
    for (i, name) in GATEWAY_STATES.iter().enumerate() {
        let on = Value::Int(u64::from(i == state));
        e.sample(GATEWAY_STATE, &[("state", name)], on);
    }
    let connects = registry.gateway_connects.load(Relaxed);
    for (name, kind, help, value) in [
        (
            "drone_discord_gateway_reconnects_total",
            Kind::Counter,
            "Gateway connections made after the first.",
            Some(Value::Int(connects.saturating_sub(1))),
        ),
        (
            "drone_discord_gateway_identifies_used",
            Kind::Gauge,
            "Identifies sent in the last 24 hours, earlier runs included (Discord allows 1000).",
            registry.identifies_used(now).map(Value::Int),
        ),
        (
            "drone_discord_store_size_bytes",
            Kind::Gauge,
            "Size of the embedded store's file.",
            figures.file_bytes.map(Value::Int),
        ),
        (
            "drone_discord_store_last_commit_timestamp_seconds",
            Kind::Gauge,
            "When the store last committed a write successfully (Unix time).",
            nonzero(registry.last_commit_us.load(Relaxed)).map(Value::Micros),
        ),
        (
            "drone_discord_process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory of the process.",
            process::resident_bytes().map(Value::Int),
        ),
        (
            "drone_discord_process_start_time_seconds",
            Kind::Gauge,
            "When the service started (Unix time).",
            nonzero(registry.start_us.load(Relaxed)).map(Value::Micros),
        ),
    ] {
        if let Some(value) = value {
            e.family(name, kind, help);
            e.sample(name, &[], value);
        }
    }
    e.finish()
}

fn nonzero(n: u64) -> Option<u64> {
    (n != 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::gateway::machine::Phase;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    const FIGURES: StoreFigures = StoreFigures {
        queue: Some(QueueFigures {
            pending: 3,
            dead_letters: 1,
            oldest_received_ms: None,
        }),
        file_bytes: Some(4096),
    };

    fn value_of<'a>(page: &'a str, series: &str) -> Option<&'a str> {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    /// The checks a strict reader makes: HELP then TYPE before a family's
    /// samples, names by the conventions, each family once, histograms
    /// cumulative with `+Inf` equal to `_count`.
    fn check_structure(page: &str) -> Vec<(String, String)> {
        let valid_name = |n: &str| {
            n.starts_with("drone_discord_")
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let mut families: Vec<(String, String)> = Vec::new();
        let mut help: Option<String> = None;
        let mut buckets: Vec<u64> = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(valid_name(name), "{name}");
                help = Some(name.to_string());
                buckets.clear();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help.as_deref(), Some(name), "TYPE without HELP: {line}");
                assert!(!families.iter().any(|(n, _)| n == name), "{name} twice");
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                    other => panic!("type {other}"),
                }
                families.push((name.to_string(), kind.to_string()));
            } else {
                let (family, kind) = families.last().expect("a sample before any TYPE");
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                if kind == "histogram" {
                    let suffix = name.strip_prefix(family.as_str()).unwrap();
                    assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
                    if suffix == "_bucket" {
                        let n = value as u64;
                        assert!(
                            buckets.last().map_or(true, |&prev| prev <= n),
                            "not cumulative: {line}"
                        );
                        buckets.push(n);
                    }
                    if suffix == "_count" {
                        assert!(series_has_inf(page, family));
                        assert_eq!(
                            Some(&(value as u64)),
                            buckets.last(),
                            "+Inf ≠ _count for {family}"
                        );
                    }
                } else {
                    assert_eq!(name, family, "{line}");
                }
            }
        }
        families
    }

    fn series_has_inf(page: &str, family: &str) -> bool {
        page.contains(&format!("{family}_bucket{{le=\"+Inf\"}}"))
    }

    #[test]
    fn a_fresh_page_declares_every_family_with_zeros() {
        let r = Registry::new();
        let page = render(&r, &FIGURES, SystemTime::now());
        let families = check_structure(&page);
        let names: Vec<&str> = families.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "drone_discord_build_info",
                "drone_discord_webhooks_received_total",
                "drone_discord_webhook_answer_duration_seconds",
                "drone_discord_discord_requests_total",
                "drone_discord_discord_rate_limited_total",
                "drone_discord_messages_created_total",
                "drone_discord_messages_edited_total",
                "drone_discord_dead_letters_total",
                "drone_discord_delivery_latency_seconds",
                "drone_discord_queue_pending_events",
                "drone_discord_queue_oldest_event_age_seconds",
                "drone_discord_queue_dead_letters",
                "drone_discord_gateway_state",
                "drone_discord_gateway_reconnects_total",
                "drone_discord_store_size_bytes",
                "drone_discord_process_resident_memory_bytes",
            ],
            "no gateway, no commit, not started: those families are left out"
        );
        for answer in ["queued", "duplicate", "ignored", "401", "400", "413", "503"] {
            let series = format!("drone_discord_webhooks_received_total{{answer=\"{answer}\"}}");
            assert_eq!(value_of(&page, &series), Some("0"), "{series}");
        }
        for route in ["create", "edit", "thread", "upload", "interaction", "other"] {
            for class in ["2xx", "4xx", "5xx", "error"] {
                let series = format!(
                    "drone_discord_discord_requests_total{{route=\"{route}\",class=\"{class}\"}}"
                );
                assert_eq!(value_of(&page, &series), Some("0"), "{series}");
            }
        }
        assert_eq!(
            value_of(&page, "drone_discord_gateway_state{state=\"off\"}"),
            Some("1")
        );
        assert_eq!(
            value_of(&page, "drone_discord_queue_pending_events"),
            Some("3")
        );
        assert_eq!(
            value_of(&page, "drone_discord_queue_oldest_event_age_seconds"),
            Some("0")
        );
        assert_eq!(
            value_of(&page, "drone_discord_store_size_bytes"),
            Some("4096")
        );
    }

    #[test]
    fn recorded_events_show_under_their_labels() {
        let r = Registry::new();
        r.webhook(Answer::Queued);
        r.webhook(Answer::Queued);
        r.webhook(Answer::TooLarge);
        r.webhook_answered(Duration::from_millis(3));
        r.rest_call(RouteKind::Create, Some(200));
        r.rest_call(RouteKind::Edit, Some(429));
        r.rest_call(RouteKind::Edit, Some(502));
        r.rest_call(RouteKind::Other, None);
        r.rest_call(RouteKind::Other, Some(302));
        r.rate_limited(LimitScope::Shared);
        r.message_created();
        r.dead_lettered();
        r.gateway_phase(Phase::Active);
        r.gateway_connect();
        r.gateway_connect();
        r.committed(SystemTime::UNIX_EPOCH + Duration::from_millis(1_733_000_000_250));
        r.started(SystemTime::UNIX_EPOCH + Duration::from_secs(1_733_000_000));
        let figures = StoreFigures {
            queue: Some(QueueFigures {
                pending: 1,
                dead_letters: 0,
                oldest_received_ms: Some(now_ms() - 90_000),
            }),
            file_bytes: None,
        };
        let page = render(&r, &figures, SystemTime::now());
        check_structure(&page);
        for (series, value) in [
            (
                "drone_discord_webhooks_received_total{answer=\"queued\"}",
                "2",
            ),
            ("drone_discord_webhooks_received_total{answer=\"413\"}", "1"),
            ("drone_discord_webhooks_received_total{answer=\"401\"}", "0"),
            (
                "drone_discord_webhook_answer_duration_seconds_bucket{le=\"0.0025\"}",
                "0",
            ),
            (
                "drone_discord_webhook_answer_duration_seconds_bucket{le=\"0.005\"}",
                "1",
            ),
            ("drone_discord_webhook_answer_duration_seconds_sum", "0.003"),
            ("drone_discord_webhook_answer_duration_seconds_count", "1"),
            (
                "drone_discord_discord_requests_total{route=\"create\",class=\"2xx\"}",
                "1",
            ),
            (
                "drone_discord_discord_requests_total{route=\"edit\",class=\"4xx\"}",
                "1",
            ),
            (
                "drone_discord_discord_requests_total{route=\"edit\",class=\"5xx\"}",
                "1",
            ),
            (
                "drone_discord_discord_requests_total{route=\"other\",class=\"error\"}",
                "2",
            ),
            (
                "drone_discord_discord_rate_limited_total{scope=\"shared\"}",
                "1",
            ),
            ("drone_discord_messages_created_total", "1"),
            ("drone_discord_messages_edited_total", "0"),
            ("drone_discord_dead_letters_total", "1"),
            ("drone_discord_gateway_state{state=\"off\"}", "0"),
            ("drone_discord_gateway_state{state=\"active\"}", "1"),
            ("drone_discord_gateway_reconnects_total", "1"),
            (
                "drone_discord_store_last_commit_timestamp_seconds",
                "1733000000.25",
            ),
            ("drone_discord_process_start_time_seconds", "1733000000"),
        ] {
            assert_eq!(value_of(&page, series), Some(value), "{series}\n{page}");
        }
        let age: f64 = value_of(&page, "drone_discord_queue_oldest_event_age_seconds")
            .unwrap()
            .parse()
            .unwrap();
        assert!(age >= 90.0, "{age}");
        assert_eq!(value_of(&page, "drone_discord_store_size_bytes"), None);
    }

    #[test]
    fn an_unreadable_store_leaves_the_queue_families_out() {
        let page = render(
            &Registry::new(),
            &StoreFigures::default(),
            SystemTime::now(),
        );
        check_structure(&page);
        assert!(!page.contains("drone_discord_queue_"), "{page}");
    }

    #[test]
    fn the_page_stays_small_with_every_counter_at_its_largest() {
        let r = Registry::new();
        let max = |a: &AtomicU64| a.store(u64::MAX, Relaxed);
        r.webhooks.iter().for_each(max);
        r.rest_calls.iter().flatten().for_each(max);
        r.rate_limited.iter().for_each(max);
        for a in [&r.messages_created, &r.messages_edited, &r.dead_letters] {
            max(a);
        }
        for h in [&r.webhook_latency, &r.delivery_latency] {
            h.observe(Duration::MAX);
        }
        r.committed(SystemTime::now());
        r.started(SystemTime::now());
        let page = render(&r, &FIGURES, SystemTime::now());
        check_structure(&page);
        assert!(page.len() <= PAGE_CAPACITY, "{} bytes", page.len());
    }
}
