//! End-to-end: the real binary accepts every signed fixture, keeps them
//! through a SIGKILL, refuses what it must, and delivers after a restart.
mod support;

use std::time::{Duration, SystemTime};
use support::binary::{run_cmd, start};
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fixtures::{fixture, fixture_names};
use support::webhook::{request_with, signed_request};

/// Discord unreachable (a closed loopback port): events must stay queued.
fn unreachable_discord() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
        ("NO_GATEWAY", "true"),
    ]
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn every_fixture_is_queued_survives_sigkill_and_is_delivered_after_restart() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &[], &unreachable_discord());
    let mut ids = Vec::new();
    let names = fixture_names();
    assert!(names.len() >= 9, "fixtures missing: {names:?}");
    for name in &names {
        let (status, body) = svc.post_signed(&fixture(name), SECRET);
        assert_eq!(status, 200, "{name}: {body}");
        let v = json(&body);
        assert_eq!(v["message"], "queued", "{name}: {body}");
        ids.push(v["id"].as_u64().expect("numeric id"));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "ids must be distinct: {ids:?}");

    // Health while Discord is unreachable: the store is fine, events pending.
    let (status, body) = svc.get("/health");
    let h = json(&body);
    assert_eq!(h["store"]["ok"], true, "{body}");
    assert!(status == 200 || status == 503, "{status}");

    svc.sigkill();

    // Everything is still there after the kill.
    let env = [("STATE_DIR", state.path().to_str().unwrap())];
    let (code, out, err) = run_cmd(&["queue", "--limit", "100"], &env);
    assert_eq!(code, 0, "queue failed: {err}");
    assert!(
        out.starts_with(&format!("{} pending", names.len())),
        "{out}"
    );
    for id in &ids {
        assert!(
            out.contains(&format!("#{id} ")),
            "event {id} missing after SIGKILL:\n{out}"
        );
    }

    // Restart in dry-run: the queue drains; every build coalesces into one message.
    let svc = start(state.path(), &["--dry-run"], &[]);
    svc.wait_log("dry-run: would create message", 1, Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = svc.get("/health");
        if json(&body)["queue"]["pending"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue never drained:\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(svc.sigterm(), Some(0), "SIGTERM must exit cleanly");
    let (_, out, _) = run_cmd(&["queue"], &env);
    assert!(out.starts_with("0 pending, 0 dead letters"), "{out}");
}

#[test]
fn refusals_and_replays() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[]);
    let body = fixture("user_created.json");

    // Replay of the very same signed request inside the window: one event.
    let req = signed_request(&body, SECRET, SystemTime::now());
    let (s1, b1) = svc.request(&req);
    let (s2, b2) = svc.request(&req);
    assert_eq!((s1, s2), (200, 200), "{b1} / {b2}");
    assert_eq!(json(&b1)["message"], "queued");
    assert_eq!(json(&b2)["message"], "duplicate");
    assert_eq!(json(&b1)["id"], json(&b2)["id"]);

    // The old static-signature curls (a 2021 Date, a Digest of another body).
    let legacy = vec![
        ("Date".to_string(), "Fri, 12 Nov 2021 23:33:47 GMT".to_string()),
        ("Digest".to_string(), "SHA-256=kCit1zUa+1aDpnZhDSBCa0iVYPTeF6k2jCjHwE2lnQY=".to_string()),
        (
            "Signature".to_string(),
            "keyId=\"hmac-key\",algorithm=\"hmac-sha256\",signature=\"nMQOWQSyloFPh3ZB8Uoh/D9QyzCtnVf0tk/jemJm058=\",headers=\"date digest\"".to_string(),
        ),
    ];
    for name in fixture_names() {
        let (s, b) = svc.request(&request_with(&fixture(&name), &legacy));
        assert_eq!(s, 401, "legacy curl for {name} must be refused: {b}");
    }

    // Wrong secret, no signature, stale date.
    assert_eq!(svc.post_signed(&body, "another-secret-entirely").0, 401);
    assert_eq!(svc.request(&request_with(&body, &[])).0, 401);
    let old = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(svc.request(&signed_request(&body, SECRET, old)).0, 401);

    // Signed but malformed, mismatched or unknown.
    let (s, b) = svc.post_signed(b"{not json", SECRET);
    assert_eq!(s, 400, "{b}");
    let mut mismatch = signed_request(&body, SECRET, SystemTime::now());
    let text = String::from_utf8(mismatch.clone()).unwrap().replacen(
        "X-Drone-Event: user",
        "X-Drone-Event: build",
        1,
    );
    mismatch = text.into_bytes();
    assert_eq!(svc.request(&mismatch).0, 400);
    let (s, b) = svc.post_signed(
        br#"{"event":"build","action":"exploded","build":{"id":1}}"#,
        SECRET,
    );
    assert_eq!(
        (s, json(&b)["message"].as_str().map(str::to_string)),
        (200, Some("ignored".into())),
        "{b}"
    );
    // repo:deleted is posted like repo:disabled: queued, not ignored, and delivered.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test/fixtures/synthetic/repo_deleted.json"
    );
    let deleted = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (s, b) = svc.post_signed(&deleted, SECRET);
    assert_eq!(
        (s, json(&b)["message"].as_str().map(str::to_string)),
        (200, Some("queued".into())),
        "{b}"
    );
    svc.wait_log("Repository deleted", 1, Duration::from_secs(60));

    // Routing.
    assert_eq!(svc.get("/").0, 405);
    assert_eq!(svc.get("/nope").0, 404);
    let (s, b) = svc.get("/health");
    assert_eq!(s, 200, "{b}");
    let h = json(&b);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["store"]["ok"], true);
    assert!(h["version"].is_string() && h["uptime_s"].is_u64(), "{b}");

    // Oversize body: refused before it is read.
    let big = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    assert_eq!(svc.request(big.as_bytes()).0, 413);

    // No secret in anything it logged.
    let log = svc.log_text();
    assert!(!log.contains(SECRET), "the webhook secret reached the log");
    assert_eq!(svc.sigterm(), Some(0));
}

#[test]
fn bad_configuration_stops_start_up_with_one_line() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("STATE_DIR", st)], "DRONE_WEBHOOK_SECRET"),
        (
            &[("STATE_DIR", st), ("DRONE_WEBHOOK_SECRET", SECRET)],
            "DISCORD_TOKEN",
        ),
        (
            &[
                ("STATE_DIR", st),
                ("DRONE_WEBHOOK_SECRET", SECRET),
                ("DISCORD_TOKEN", TOKEN),
                ("DISCORD_CHANNEL_ID", "general"),
            ],
            "DISCORD_CHANNEL_ID",
        ),
        (
            &[
                ("STATE_DIR", st),
                ("DRONE_WEBHOOK_SECRET", SECRET),
                ("DRY_RUN", "1"),
                ("LISTEN_ADDR", "nowhere"),
            ],
            "LISTEN_ADDR",
        ),
    ];
    for (env, setting) in cases {
        let (code, _out, err) = run_cmd(&["serve"], env);
        assert_eq!(code, 2, "{setting}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line expected: {err}"
        );
        assert!(err.contains(setting), "{setting} not named: {err}");
        assert!(
            !err.contains(SECRET) && !err.contains(TOKEN),
            "secret leaked: {err}"
        );
    }
    // A port that is taken is a start-up error naming LISTEN_ADDR.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run_cmd(
        &["serve", "--dry-run"],
        &[
            ("STATE_DIR", st),
            ("DRONE_WEBHOOK_SECRET", SECRET),
            ("LISTEN_ADDR", &addr),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LISTEN_ADDR"), "{err}");
}

#[test]
fn send_command_signs_like_drone() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[]);
    let url = format!("http://{}/", svc.addr);
    let f = format!(
        "{}/test/fixtures/drone/build_created.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out, err) = run_cmd(
        &["send", &f, "--url", &url],
        &[("DRONE_WEBHOOK_SECRET", SECRET)],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("200 ") && out.contains("queued"), "{out}");
    let (code, out, _) = run_cmd(
        &["send", &f, "--url", &url],
        &[("DRONE_WEBHOOK_SECRET", "not-the-right-secret")],
    );
    assert_eq!(code, 1);
    assert!(out.starts_with("401 "), "{out}");
}
