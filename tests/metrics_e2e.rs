//! `GET /metrics` through the real binary: webhooks of every kind of answer
//! (queued, duplicate, ignored, bad signature, not JSON, oversize) and
//! deliveries against the fake Discord (a 429 that is retried, a create, an
//! edit, a create Discord rejects for good), then one scrape, parsed by a
//! real Prometheus parser (Python's `prometheus_client`, Debian's
//! `python3-prometheus-client`, installed by `.ci/deps.sh`), and the
//! counters, gauges and histograms checked against what was driven. Against
//! the fake gateway: the gateway's state, reconnects and identifies.
//!
//! A non-loopback peer cannot be faked over loopback, so `METRICS_ALLOW`'s
//! refusal of other peers is tested in `endpoints.rs`; here a bad value
//! must stop start-up with one line naming the setting.
mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use support::binary::{run_cmd, start, wait_health, Service};
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::{Canned, FakeDiscord};
use support::fixtures::fixture_json;
use support::raw_http::http_full;
use support::webhook::signed_request;

const LONG: Duration = Duration::from_secs(60);

/// The fixture `name` as build `id` with `status`.
fn build(name: &str, id: i64, status: &str) -> Vec<u8> {
    let mut v = fixture_json(name);
    v["build"]["id"] = id.into();
    v["build"]["number"] = id.into();
    v["build"]["status"] = status.into();
    serde_json::to_vec(&v).unwrap()
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait::wait_for(what, LONG, cond)
}

fn post(svc: &Service, raw: &[u8], status: u16, message: Option<&str>) {
    let (got, body) = svc.request(raw);
    assert_eq!(got, status, "{body}");
    if let Some(m) = message {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], m, "{body}");
    }
}

/// The parser: Debian's python3 first (a pyenv or venv `python3` earlier in
/// PATH may lack the Debian package), then whatever `python3` is.
fn python_with_parser() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import prometheus_client.parser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([
    {"name": f.name, "type": f.type, "help": f.documentation,
     "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]))
"#;

/// What the parser made of a page: family name → (type, help), and
/// (sample name, labels) → value.
struct Parsed {
    families: BTreeMap<String, (String, String)>,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Parsed {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        match self.samples.get(&key) {
            Some(v) => *v,
            None => panic!("no sample {name}{labels:?}"),
        }
    }

    fn kind(&self, family: &str) -> &str {
        match self.families.get(family) {
            Some((kind, help)) => {
                assert!(!help.is_empty(), "{family} has no help");
                kind
            }
            None => panic!("no family {family}; have {:?}", self.families.keys()),
        }
    }
}

fn parse(python: &str, page: &str) -> Parsed {
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(page.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut parsed = Parsed {
        families: BTreeMap::new(),
        samples: BTreeMap::new(),
    };
    for f in families {
        let name = f["name"].as_str().unwrap().to_string();
        let kind = f["type"].as_str().unwrap().to_string();
        let help = f["help"].as_str().unwrap().to_string();
        assert!(
            parsed.families.insert(name.clone(), (kind, help)).is_none(),
            "{name} twice"
        );
        for s in f["samples"].as_array().unwrap() {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let key = (s[0].as_str().unwrap().to_string(), labels);
            let value = s[2].as_f64().unwrap();
            assert!(parsed.samples.insert(key, value).is_none(), "{s} twice");
        }
    }
    parsed
}

/// Checks a histogram as a strict consumer would: cumulative buckets, a
/// `+Inf` bucket equal to `_count`; returns the count.
fn histogram_count(p: &Parsed, name: &str) -> f64 {
    assert_eq!(p.kind(name), "histogram", "{name}");
    let mut buckets: Vec<(f64, f64)> = p
        .samples
        .iter()
        .filter(|((n, _), _)| *n == format!("{name}_bucket"))
        .map(|((_, l), v)| (l["le"].parse::<f64>().unwrap(), *v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 2, "{name}: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name} not cumulative: {buckets:?}"
    );
    let (inf, total) = *buckets.last().unwrap();
    assert!(inf.is_infinite());
    let count = p.value(&format!("{name}_count"), &[]);
    assert_eq!(total, count, "{name}: +Inf ≠ _count");
    assert!(p.value(&format!("{name}_sum"), &[]) >= 0.0);
    count
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_count_what_the_service_did_and_parse_with_prometheus_client() {
    let Some(python) = python_with_parser() else {
        let why = "python3 with prometheus_client is not installed (Debian: python3-prometheus-client; .ci/deps.sh installs it)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("metrics_e2e cannot run: {why}");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDiscord::start());
    fake.set_token(TOKEN);
    let state = tempfile::tempdir().unwrap();
    let started = unix_now();
    let base_url = fake.base_url();
    let svc = start(
        state.path(),
        &[],
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_CHANNEL_ID", CHANNEL),
            ("DISCORD_API_BASE_URL", &base_url),
            ("NO_GATEWAY", "true"),
        ],
    );

    // Build 1: the first create meets a 429 (retried), then an edit.
    fake.push_for("POST", "/channels/", 1, Canned::rate_limited(0.2, false));
    post(
        &svc,
        &signed_request(
            &build("build_created.json", 1, "pending"),
            SECRET,
            SystemTime::now(),
        ),
        200,
        Some("queued"),
    );
    wait_for("the create", || fake.messages().len() == 1);
    let replayed = signed_request(
        &build("build_updated.json", 1, "running"),
        SECRET,
        SystemTime::now(),
    );
    post(&svc, &replayed, 200, Some("queued"));
    post(&svc, &replayed, 200, Some("duplicate"));
    wait_for("the edit", || {
        let ids = fake.message_ids();
        ids.len() == 1 && fake.history(&ids[0]).len() == 2
    });
    // Build 2: Discord rejects the create for good → a dead letter.
    fake.push_for(
        "POST",
        "/channels/",
        1,
        Canned::json(
            400,
            serde_json::json!({"code": 50035, "message": "Invalid Form Body"}),
        ),
    );
    post(
        &svc,
        &signed_request(
            &build("build_created.json", 2, "pending"),
            SECRET,
            SystemTime::now(),
        ),
        200,
        Some("queued"),
    );
    wait_health(&svc, LONG, |_, h| {
        h["queue"]["pending"] == 0 && h["queue"]["dead_letters"] == 1
    });
    // The refusals.
    let hook = build("build_created.json", 3, "pending");
    post(
        &svc,
        &signed_request(&hook, "not-the-secret", SystemTime::now()),
        401,
        None,
    );
    post(
        &svc,
        &signed_request(
            b"{\"event\": \"cron\", \"action\": \"fired\"}",
            SECRET,
            SystemTime::now(),
        ),
        200,
        Some("ignored"),
    );
    post(
        &svc,
        &signed_request(b"{not json", SECRET, SystemTime::now()),
        400,
        None,
    );
    post(
        &svc,
        b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2000000\r\n\r\n",
        413,
        None,
    );

    let (status, headers, page) = http_full(
        &svc.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{page}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let p = parse(python, &page);

    // Webhooks, by answer (the parser names a counter's family without `_total`).
    assert_eq!(p.kind("drone_discord_webhooks_received"), "counter");
    for (answer, n) in [
        ("queued", 3.0),
        ("duplicate", 1.0),
        ("ignored", 1.0),
        ("401", 1.0),
        ("400", 1.0),
        ("413", 1.0),
        ("503", 0.0),
    ] {
        let got = p.value(
            "drone_discord_webhooks_received_total",
            &[("answer", answer)],
        );
        assert_eq!(got, n, "answer={answer}");
    }
    // Every answer the handler gave (the 413 came from the HTTP layer).
    assert_eq!(
        histogram_count(&p, "drone_discord_webhook_answer_duration_seconds"),
        7.0
    );

    // Discord: the 429 and the rejected create are 4xx, the rest 2xx.
    assert_eq!(p.kind("drone_discord_discord_requests"), "counter");
    let calls = |route: &str, class: &str| {
        p.value(
            "drone_discord_discord_requests_total",
            &[("route", route), ("class", class)],
        )
    };
    assert_eq!(
        (
            calls("create", "2xx"),
            calls("create", "4xx"),
            calls("create", "5xx")
        ),
        (1.0, 2.0, 0.0)
    );
    assert_eq!((calls("edit", "2xx"), calls("edit", "4xx")), (1.0, 0.0));
    for route in ["thread", "upload", "interaction"] {
        for class in ["2xx", "4xx", "5xx", "error"] {
            assert_eq!(calls(route, class), 0.0, "{route} {class}");
        }
    }
    let limited = |scope: &str| {
        p.value(
            "drone_discord_discord_rate_limited_total",
            &[("scope", scope)],
        )
    };
    assert_eq!(
        [
            limited("user"),
            limited("global"),
            limited("shared"),
            limited("cloudflare")
        ],
        [1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(p.value("drone_discord_messages_created_total", &[]), 1.0);
    assert_eq!(p.value("drone_discord_messages_edited_total", &[]), 1.0);
    assert_eq!(p.value("drone_discord_dead_letters_total", &[]), 1.0);
    // Build 1's two events reached Discord; build 2's never did.
    assert_eq!(
        histogram_count(&p, "drone_discord_delivery_latency_seconds"),
        2.0
    );

    // The queue, the gateway (off: NO_GATEWAY), the process.
    assert_eq!(p.kind("drone_discord_queue_pending_events"), "gauge");
    assert_eq!(p.value("drone_discord_queue_pending_events", &[]), 0.0);
    assert_eq!(
        p.value("drone_discord_queue_oldest_event_age_seconds", &[]),
        0.0
    );
    assert_eq!(p.value("drone_discord_queue_dead_letters", &[]), 1.0);
    for state in [
        "off",
        "disconnected",
        "connecting",
        "awaiting_hello",
        "identifying",
        "resuming",
        "active",
        "fatal",
    ] {
        let on = p.value("drone_discord_gateway_state", &[("state", state)]);
        assert_eq!(on, if state == "off" { 1.0 } else { 0.0 }, "{state}");
    }
    assert_eq!(p.value("drone_discord_gateway_reconnects_total", &[]), 0.0);
    assert!(
        !p.families
            .contains_key("drone_discord_gateway_identifies_used"),
        "no gateway, no ledger"
    );
    let now = unix_now();
    let start = p.value("drone_discord_process_start_time_seconds", &[]);
    assert!(start >= started - 1.0 && start <= now, "{start}");
    let commit = p.value("drone_discord_store_last_commit_timestamp_seconds", &[]);
    assert!(commit >= start && commit <= now, "{commit}");
    assert!(p.value("drone_discord_store_size_bytes", &[]) > 0.0);
    let rss = p.value("drone_discord_process_resident_memory_bytes", &[]);
    assert!(rss > 1024.0 * 1024.0, "{rss}");
    assert_eq!(
        p.value(
            "drone_discord_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Every family follows the naming conventions.
    for (name, (kind, _)) in &p.families {
        assert!(name.starts_with("drone_discord_"), "{name}");
        if kind == "histogram" {
            assert!(name.ends_with("_seconds"), "{name}");
        }
    }

    // Scrapes are routine: logged at debug, not at info.
    svc.wait_log("path=/metrics", 1, LONG);
    let log = svc.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO") && l.contains("path=/metrics")),
        "a scrape was logged at info"
    );
    assert_eq!(svc.sigterm(), Some(0));
    drop(fake);
}

#[test]
fn a_bad_metrics_allow_stops_start_up_with_one_line_naming_it() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_string_lossy().to_string();
    let (code, out, err) = run_cmd(
        &["serve", "--dry-run"],
        &[
            ("DRONE_WEBHOOK_SECRET", SECRET),
            ("STATE_DIR", &state_dir),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("METRICS_ALLOW", "192.168.1.0/24,10.0.0.1/8"),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("drone-discord: ")
            && err.contains("METRICS_ALLOW")
            && err.contains("10.0.0.0/8"),
        "{err}"
    );
}

/// The value of the series `series` (name and labels exactly as written) on a page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrape until `series` has `value`; returns that page.
fn scrape_until(svc: &Service, series: &str, value: f64) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let (status, page) = svc.get("/metrics");
        if status == 200 && sample(&page, series) == Some(value) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {value}; last page ({status}):\n{page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway's state, reconnects and identifies, against the fake gateway:
/// Identify → READY (active, one identify), a resumable close from the
/// server (one reconnect, resumed: still one identify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_state_reconnects_and_identifies() {
    use support::fake_gateway::FakeGateway;
    use tokio::task::block_in_place;
    const ACTIVE: &str = "drone_discord_gateway_state{state=\"active\"}";

    let rest = FakeDiscord::start().await;
    rest.set_token(TOKEN);
    let mut gw = FakeGateway::start().await;
    let state = tempfile::tempdir().unwrap();
    let (base, url) = (rest.base_url(), gw.url());
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", base.as_str()),
        ("DISCORD_GATEWAY_URL", url.as_str()),
    ];
    let svc = block_in_place(|| start(state.path(), &[], &env));

    let mut conn = gw.next_conn().await;
    conn.hello(500);
    conn.expect_op(2).await;
    conn.ready(1, "session-metrics", &gw.resume_url());
    let page = block_in_place(|| scrape_until(&svc, ACTIVE, 1.0));
    assert_eq!(
        sample(&page, "drone_discord_gateway_state{state=\"off\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&page, "drone_discord_gateway_identifies_used"),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "drone_discord_gateway_reconnects_total"),
        Some(0.0)
    );

    // 4000 (unknown error) is resumable: the client comes back and resumes.
    conn.close(4000);
    let mut again = gw.next_conn().await;
    again.hello(500);
    again.expect_op(6).await;
    again.dispatch(2, "RESUMED");
    let page = block_in_place(|| {
        scrape_until(&svc, "drone_discord_gateway_reconnects_total", 1.0);
        scrape_until(&svc, ACTIVE, 1.0)
    });
    assert_eq!(
        sample(&page, "drone_discord_gateway_identifies_used"),
        Some(1.0)
    );
    assert_eq!(gw.identifies(), 1);
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
}
