//! End-to-end: past `QUEUE_MAX_EVENTS` the real binary answers `503` with
//! `Retry-After`, `/health` says the queue is full, and every webhook it did
//! accept is still delivered once Discord can be reached.
mod support;

use std::time::{Duration, Instant, SystemTime};
use support::binary::start;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fixtures::{fixture, fixture_names};
use support::raw_http::http_full;
use support::webhook::signed_request;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_drops_nothing() {
    let state = tempfile::tempdir().unwrap();
    // Discord unreachable (a closed loopback port): nothing drains.
    let stalled = [
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
        ("NO_GATEWAY", "true"),
        ("QUEUE_MAX_EVENTS", "3"),
    ];
    let svc = start(state.path(), &[], &stalled);
    let names = fixture_names();
    assert!(names.len() >= 4, "fixtures missing: {names:?}");
    let mut accepted = Vec::new();
    for name in &names[..3] {
        let (status, _, body) = http_full(
            &svc.addr,
            &signed_request(&fixture(name), SECRET, SystemTime::now()),
        );
        assert_eq!(status, 200, "{name}: {body}");
        accepted.push(json(&body)["id"].as_u64().expect("numeric id"));
    }
    let (status, headers, body) = http_full(
        &svc.addr,
        &signed_request(&fixture(&names[3]), SECRET, SystemTime::now()),
    );
    assert_eq!(status, 503, "past the bound: {body}");
    let retry = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.as_str());
    assert!(
        retry.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0)),
        "Retry-After: {headers:?}"
    );
    assert!(body.contains("full"), "{body}");

    let (_, body) = svc.get("/health");
    let h = json(&body);
    assert_eq!(h["queue_usage"]["full"], true, "{body}");
    assert_eq!(h["queue_usage"]["events"], 3, "{body}");
    assert_eq!(svc.sigterm(), Some(0));

    // Restart in dry-run (delivery works): the three accepted drain, the
    // queue has room again.
    let svc = start(state.path(), &["--dry-run"], &[("QUEUE_MAX_EVENTS", "3")]);
    // Health starts with empty figures: first see delivery happen.
    svc.wait_log("dry-run: would create message", 1, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = svc.get("/health");
        let h = json(&body);
        if h["queue"]["pending"] == 0 && h["queue_usage"]["full"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue never drained:\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = svc.post_signed(&fixture(&names[3]), SECRET);
    assert_eq!(status, 200, "room again after the drain: {body}");
    assert_eq!(svc.sigterm(), Some(0));
}
