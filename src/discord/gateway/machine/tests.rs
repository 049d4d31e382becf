//! Unit tests for the gateway state machine: frames and instants in, actions out.
use super::*;
use crate::presence::{Presence, UnhealthyMode};

const TOKEN: &str = "tok.SECRET.value";

fn cfg() -> MachineConfig {
    MachineConfig {
        url: "wss://gateway.example".into(),
        token: Token::new(TOKEN),
        session_start_limit: None,
        identify_history: History::default(),
        started_wall: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        tuning: Tuning::default(),
    }
}

fn machine_with(cfg: MachineConfig, jitter: f64) -> (Machine, Instant) {
    let now = Instant::now();
    (
        Machine::new(cfg, Jitter::fixed(jitter), Presence::healthy(), now),
        now,
    )
}

fn sends(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => serde_json::from_str(&p.json).ok(),
            _ => None,
        })
        .collect()
}

fn ops(actions: &[Action]) -> Vec<u64> {
    sends(actions)
        .iter()
        .filter_map(|v| v["op"].as_u64())
        .collect()
}

fn connect_of(actions: &[Action]) -> Option<(String, Duration)> {
    actions.iter().find_map(|a| match a {
        Action::Connect { url, delay } => Some((url.clone(), *delay)),
        _ => None,
    })
}

fn closes(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn hello(ms: u64) -> String {
    json!({"op": 10, "d": {"heartbeat_interval": ms}, "s": null, "t": null}).to_string()
}

fn ready(seq: u64) -> String {
    json!({"op": 0, "s": seq, "t": "READY", "d": {
        "session_id": "sess-1", "resume_gateway_url": "wss://resume.example"
    }})
    .to_string()
}

fn dispatch(seq: u64) -> String {
    json!({"op": 0, "s": seq, "t": "MESSAGE_CREATE", "d": {}}).to_string()
}

/// Start, connect, Hello (interval 1000 ms), READY with seq 1. Returns the
/// machine and the instant at which READY arrived.
fn active(jitter: f64) -> (Machine, Instant) {
    let (mut m, t0) = machine_with(cfg(), jitter);
    m.start(t0);
    m.handle(t0, Event::Connected);
    m.handle(t0, Event::Frame(&hello(1000)));
    m.handle(t0, Event::Frame(&ready(1)));
    assert_eq!(m.phase(), Phase::Active);
    (m, t0)
}

#[test]
fn gateway_url_appends_query_correctly() {
    assert_eq!(
        gateway_url("wss://gateway.discord.gg"),
        "wss://gateway.discord.gg/?v=10&encoding=json"
    );
    assert_eq!(
        gateway_url("wss://gateway.discord.gg/"),
        "wss://gateway.discord.gg/?v=10&encoding=json"
    );
    assert_eq!(
        gateway_url("wss://g.example/?v=6"),
        "wss://g.example/?v=10&encoding=json"
    );
    assert_eq!(
        gateway_url("wss://g.example?encoding=etf&x=1"),
        "wss://g.example/?x=1&v=10&encoding=json"
    );
    assert_eq!(
        gateway_url("ws://127.0.0.1:9/resume"),
        "ws://127.0.0.1:9/resume?v=10&encoding=json"
    );
}

#[test]
fn start_connects_to_base_url_at_once() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    let a = m.start(t0);
    assert_eq!(
        connect_of(&a),
        Some((
            "wss://gateway.example/?v=10&encoding=json".to_string(),
            Duration::ZERO
        ))
    );
    assert_eq!(m.phase(), Phase::Connecting);
    assert!(m.start(t0).is_empty(), "start is idempotent");
}

#[test]
fn hello_identifies_with_presence_and_schedules_jittered_heartbeat() {
    let (mut m, t0) = machine_with(cfg(), 0.25);
    m.start(t0);
    m.handle(t0, Event::Connected);
    let a = m.handle(t0, Event::Frame(&hello(1000)));
    let s = sends(&a);
    assert_eq!(s.len(), 1);
    let d = &s[0]["d"];
    assert_eq!(s[0]["op"], 2);
    assert_eq!(d["token"], TOKEN);
    assert_eq!(d["intents"], 0);
    assert_eq!(d["properties"]["browser"], "drone-discord");
    assert_eq!(d["properties"]["device"], "drone-discord");
    assert!(d["properties"]["os"].is_string());
    assert_eq!(d["presence"]["status"], "online");
    assert_eq!(d["presence"]["activities"][0]["type"], 3);
    assert_eq!(d["presence"]["activities"][0]["name"], "Drone");
    assert_eq!(m.phase(), Phase::Identifying);
    // First beat at interval × jitter = 250 ms (the handshake deadline is later).
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_millis(250)));
    assert!(m
        .handle(t0 + Duration::from_millis(249), Event::Tick)
        .is_empty());
    let a = m.handle(t0 + Duration::from_millis(250), Event::Tick);
    assert_eq!(
        sends(&a),
        vec![json!({"op": 1, "d": null})],
        "no seq yet → null"
    );
}

#[test]
fn heartbeats_carry_last_non_null_seq_and_follow_interval() {
    let (mut m, t0) = active(0.0);
    m.handle(t0, Event::Frame(&dispatch(5)));
    // A dispatch with s null must not clear the seq.
    m.handle(
        t0,
        Event::Frame(&json!({"op": 0, "s": null, "t": "X", "d": {}}).to_string()),
    );
    let a = m.handle(t0, Event::Tick);
    assert_eq!(sends(&a), vec![json!({"op": 1, "d": 5})]);
    m.handle(t0, Event::Frame(r#"{"op":11}"#));
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_millis(1000)));
    let a = m.handle(t0 + Duration::from_millis(1000), Event::Tick);
    assert_eq!(ops(&a), vec![1]);
}

#[test]
fn server_heartbeat_request_is_answered_at_once() {
    let (mut m, t0) = active(0.9);
    m.handle(t0, Event::Frame(&dispatch(7)));
    let a = m.handle(t0, Event::Frame(r#"{"op":1,"d":null}"#));
    assert_eq!(sends(&a), vec![json!({"op": 1, "d": 7})]);
}

#[test]
fn unacked_beat_is_a_zombie_closed_with_4000_then_resumed() {
    let (mut m, t0) = active(0.0);
    m.handle(t0, Event::Frame(&dispatch(3)));
    assert_eq!(ops(&m.handle(t0, Event::Tick)), vec![1]); // beat, no ACK follows
    let a = m.handle(t0 + Duration::from_millis(1000), Event::Tick);
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert!(ops(&a).is_empty(), "no second beat on a zombie");
    let (url, _) = connect_of(&a).expect("reconnects");
    assert_eq!(url, "wss://resume.example/?v=10&encoding=json");
    // Next connection resumes with the kept session and seq.
    let t1 = t0 + Duration::from_secs(2);
    m.handle(t1, Event::Connected);
    let a = m.handle(t1, Event::Frame(&hello(1000)));
    assert_eq!(
        sends(&a),
        vec![json!({"op": 6, "d": {"token": TOKEN, "session_id": "sess-1", "seq": 3}})]
    );
    assert_eq!(m.phase(), Phase::Resuming);
    m.handle(t1, Event::Frame(&dispatch(4))); // replayed event
    m.handle(t1, Event::Frame(r#"{"op":0,"s":5,"t":"RESUMED","d":{}}"#));
    assert_eq!(m.phase(), Phase::Active);
    assert_eq!(m.seq(), Some(5));
}

#[test]
fn op7_reconnect_closes_resumably_and_resumes() {
    let (mut m, t0) = active(0.5);
    let a = m.handle(t0, Event::Frame(r#"{"op":7,"d":null}"#));
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert_eq!(
        connect_of(&a).map(|c| c.0),
        Some("wss://resume.example/?v=10&encoding=json".into())
    );
    assert_eq!(m.session_id(), Some("sess-1"));
}

#[test]
fn op7_before_hello_is_honoured() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    m.start(t0);
    m.handle(t0, Event::Connected);
    let a = m.handle(t0, Event::Frame(r#"{"op":7,"d":null}"#));
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert!(connect_of(&a).is_some());
}

#[test]
fn op9_true_resumes_op9_false_identifies_on_base_after_1_to_5_s() {
    let (mut m, t0) = active(0.5);
    let a = m.handle(t0, Event::Frame(r#"{"op":9,"d":true}"#));
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert!(connect_of(&a).is_some_and(|c| c.0.starts_with("wss://resume.example")));
    assert_eq!(m.session_id(), Some("sess-1"));

    let (mut m, t0) = active(0.5);
    let t1 = t0 + Duration::from_secs(100); // past identify spacing
    let a = m.handle(t1, Event::Frame(r#"{"op":9,"d":false}"#));
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    let (url, delay) = connect_of(&a).expect("reconnects");
    assert_eq!(url, "wss://gateway.example/?v=10&encoding=json");
    assert!(
        delay >= Duration::from_secs(1) && delay <= Duration::from_secs(5),
        "{delay:?}"
    );
    assert_eq!(m.session_id(), None);
    m.handle(t1 + delay, Event::Connected);
    let a = m.handle(t1 + delay, Event::Frame(&hello(1000)));
    assert_eq!(ops(&a), vec![2]);
    // Seq resets only on Identify.
    let a = m.handle(t1 + delay + Duration::from_secs(1), Event::Tick);
    assert_eq!(sends(&a), vec![json!({"op": 1, "d": null})]);
}

#[test]
fn close_codes_map_to_resume_identify_backoff_or_fatal() {
    for code in [4000u16, 4001, 4002, 1000, 1001, 4999] {
        assert_eq!(classify_close(Some(code)), CloseKind::Resume, "{code}");
    }
    assert_eq!(classify_close(None), CloseKind::Resume);
    for code in [4003u16, 4005, 4007, 4009] {
        assert_eq!(classify_close(Some(code)), CloseKind::Identify, "{code}");
    }
    assert_eq!(classify_close(Some(4008)), CloseKind::BackOff);
    for code in [4004u16, 4010, 4011, 4012, 4013, 4014] {
        assert!(
            matches!(classify_close(Some(code)), CloseKind::Fatal(_)),
            "{code}"
        );
    }
}

#[test]
fn resumable_and_new_session_closes_pick_the_right_url() {
    for (code, resume) in [
        (4000u16, true),
        (1000, true),
        (4007, false),
        (4009, false),
        (4003, false),
    ] {
        let (mut m, t0) = active(0.5);
        let a = m.handle(t0, Event::Closed(Some(code), String::new()));
        let (url, _) = connect_of(&a).expect("reconnects");
        assert_eq!(url.starts_with("wss://resume.example"), resume, "{code}");
        assert_eq!(m.session_id().is_some(), resume, "{code}");
        assert!(closes(&a).is_empty(), "socket is already closed");
    }
    let (mut m, t0) = active(0.5);
    let a = m.handle(t0, Event::Closed(None, "reset".into()));
    assert!(connect_of(&a).is_some_and(|c| c.0.starts_with("wss://resume.example")));
}

#[test]
fn close_4008_backs_off_at_least_the_rate_limit_wait() {
    let (mut m, t0) = active(0.0);
    let a = m.handle(t0, Event::Closed(Some(4008), "rate limited".into()));
    let (url, delay) = connect_of(&a).expect("reconnects");
    assert!(url.starts_with("wss://resume.example"));
    assert!(delay >= Tuning::default().rate_limited_wait);
}

#[test]
fn fatal_close_stops_reports_and_never_reconnects() {
    let (mut m, t0) = active(0.5);
    let a = m.handle(
        t0,
        Event::Closed(Some(4004), "Authentication failed.".into()),
    );
    assert!(connect_of(&a).is_none());
    let stop = a.iter().find_map(|a| match a {
        Action::Stop(r) => Some(r.clone()),
        _ => None,
    });
    assert!(stop
        .as_deref()
        .is_some_and(|r| r.contains("4004") && r.contains("authentication")));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Status(s) if !s.ok && s.detail.contains("4004"))));
    assert_eq!(m.phase(), Phase::Fatal);
    assert_eq!(m.next_deadline(), None);
    // Nothing revives it.
    assert!(m
        .handle(t0 + Duration::from_secs(999), Event::Tick)
        .is_empty());
    assert!(m.handle(t0, Event::Closed(None, String::new())).is_empty());
}

#[test]
fn backoff_grows_exponentially_to_60s_and_resets_after_stable_session() {
    let (mut m, t0) = active(0.999);
    let mut delays = Vec::new();
    let mut t = t0;
    for _ in 0..9 {
        let a = m.handle(t, Event::Closed(None, "drop".into()));
        delays.push(connect_of(&a).expect("reconnects").1);
        t += Duration::from_secs(1);
    }
    let secs: Vec<u64> = delays.iter().map(|d| d.as_millis() as u64 / 100).collect();
    // equal jitter at 0.999 ≈ the full step: 1, 2, 4, 8, 16, 32, 60, 60, 60 s
    assert_eq!(secs, vec![9, 19, 39, 79, 159, 319, 599, 599, 599]);
    // A session that stays up for a minute resets the backoff.
    m.handle(t, Event::Connected);
    m.handle(t, Event::Frame(&hello(1000)));
    m.handle(t, Event::Frame(r#"{"op":0,"s":9,"t":"RESUMED","d":{}}"#));
    let later = t + Duration::from_secs(61);
    let a = m.handle(later, Event::Closed(None, "drop".into()));
    assert!(connect_of(&a).expect("reconnects").1 < Duration::from_secs(1));
}

#[test]
fn presence_change_sends_op3_with_all_four_fields() {
    let (mut m, t0) = active(0.5);
    let dnd = Presence::unhealthy(UnhealthyMode::Dnd, "discord: 401 Unauthorized");
    let a = m.handle(t0, Event::PresenceChanged(dnd));
    assert_eq!(
        sends(&a),
        vec![json!({"op": 3, "d": {
            "since": null, "afk": false, "status": "dnd",
            "activities": [{"type": 4, "name": "Custom Status", "state": "discord: 401 Unauthorized"}]
        }})]
    );
    // Same presence again → nothing sent.
    let dnd = Presence::unhealthy(UnhealthyMode::Dnd, "discord: 401 Unauthorized");
    assert!(sends(&m.handle(t0, Event::PresenceChanged(dnd))).is_empty());
}

#[test]
fn presence_before_ready_goes_into_identify_not_op3() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    m.start(t0);
    let invisible = Presence::unhealthy(UnhealthyMode::Invisible, "x");
    assert!(m.handle(t0, Event::PresenceChanged(invisible)).is_empty());
    m.handle(t0, Event::Connected);
    let a = m.handle(t0, Event::Frame(&hello(1000)));
    assert_eq!(sends(&a)[0]["d"]["presence"]["status"], "invisible");
    let a = m.handle(t0, Event::Frame(&ready(1)));
    assert!(ops(&a).is_empty(), "identify already carried it");
}

#[test]
fn presence_changed_during_outage_is_sent_after_resume() {
    let (mut m, t0) = active(0.5);
    m.handle(t0, Event::Closed(None, "drop".into()));
    m.handle(
        t0,
        Event::PresenceChanged(Presence::unhealthy(UnhealthyMode::Invisible, "")),
    );
    m.handle(t0, Event::Connected);
    assert_eq!(ops(&m.handle(t0, Event::Frame(&hello(1000)))), vec![6]);
    let a = m.handle(t0, Event::Frame(r#"{"op":0,"s":2,"t":"RESUMED","d":{}}"#));
    assert_eq!(
        sends(&a).first().map(|v| v["d"]["status"].clone()),
        Some(json!("invisible"))
    );
}

#[test]
fn send_budget_coalesces_presence_and_keeps_slots_for_heartbeats() {
    let (mut m, t0) = active(0.5);
    let flip = |i: usize| {
        if i % 2 == 0 {
            Presence::unhealthy(UnhealthyMode::Dnd, &format!("reason {i}"))
        } else {
            Presence::healthy()
        }
    };
    let mut sent = 0;
    for i in 0..200 {
        sent += ops(&m.handle(t0, Event::PresenceChanged(flip(i)))).len();
    }
    // Identify used one slot; presence may use the rest minus the heartbeat reserve.
    assert_eq!(sent, SEND_LIMIT - HEARTBEAT_RESERVE - 1);
    // Heartbeats still go out.
    let a = m.handle(t0 + Duration::from_millis(500), Event::Tick);
    assert_eq!(ops(&a), vec![1]);
    m.handle(t0, Event::Frame(r#"{"op":11}"#));
    // The newest desired presence is sent once, when the window frees a slot.
    let newest = Presence::unhealthy(UnhealthyMode::Dnd, "newest");
    assert!(ops(&m.handle(t0, Event::PresenceChanged(newest))).is_empty());
    let free = m.next_deadline().expect("a retry is scheduled");
    assert!(free <= t0 + SEND_WINDOW);
    let mut t = t0 + Duration::from_millis(500);
    let mut presence_sends = Vec::new();
    while t <= t0 + SEND_WINDOW {
        t = m.next_deadline().expect("deadline");
        let a = m.handle(t, Event::Tick);
        m.handle(t, Event::Frame(r#"{"op":11}"#));
        presence_sends.extend(sends(&a).into_iter().filter(|v| v["op"] == 3));
    }
    assert_eq!(presence_sends.len(), 1, "{presence_sends:?}");
    assert_eq!(presence_sends[0]["d"]["activities"][0]["state"], "newest");
}

#[test]
fn oversized_payload_is_refused_locally() {
    let (mut m, t0) = active(0.5);
    let huge = Presence {
        status: crate::presence::OnlineStatus::Online,
        activity: Some(crate::presence::Activity {
            kind: 3,
            name: "x".repeat(5000),
            state: None,
        }),
    };
    assert!(sends(&m.handle(t0, Event::PresenceChanged(huge))).is_empty());
    assert_eq!(m.phase(), Phase::Active);
}

#[test]
fn identify_budget_exhausted_waits_for_reset() {
    let mut c = cfg();
    c.session_start_limit = Some(SessionStartLimit {
        total: 1000,
        remaining: 0,
        reset_after: Duration::from_secs(3600),
        max_concurrency: 1,
    });
    let (mut m, t0) = machine_with(c, 0.5);
    let (_, delay) = connect_of(&m.start(t0)).expect("connect");
    assert_eq!(delay, Duration::from_secs(3600));

    let mut c = cfg();
    c.session_start_limit = Some(SessionStartLimit {
        total: 1000,
        remaining: 1,
        reset_after: Duration::from_secs(3600),
        max_concurrency: 1,
    });
    let (mut m, t0) = machine_with(c, 0.5);
    assert_eq!(connect_of(&m.start(t0)).map(|c| c.1), Some(Duration::ZERO));
    m.handle(t0, Event::Connected);
    assert_eq!(ops(&m.handle(t0, Event::Frame(&hello(1000)))), vec![2]);
    // That was the last one: a session-killing close must wait for the reset.
    let a = m.handle(
        t0 + Duration::from_secs(10),
        Event::Closed(Some(4009), String::new()),
    );
    assert_eq!(connect_of(&a).map(|c| c.1), Some(Duration::from_secs(3590)));
}

#[test]
fn identifies_are_spaced_five_seconds_apart() {
    let (mut m, t0) = active(0.0);
    let a = m.handle(
        t0 + Duration::from_secs(1),
        Event::Closed(Some(4007), String::new()),
    );
    assert_eq!(connect_of(&a).map(|c| c.1), Some(Duration::from_secs(4)));
}

#[test]
fn handshake_timeouts_close_resumably_and_retry() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    m.start(t0);
    m.handle(t0, Event::Connected);
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(20)));
    let a = m.handle(t0 + Duration::from_secs(20), Event::Tick);
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert!(connect_of(&a).is_some());

    let (mut m, t0) = machine_with(cfg(), 0.999);
    m.start(t0);
    m.handle(t0, Event::Connected);
    m.handle(t0, Event::Frame(&hello(60_000)));
    // Heartbeat at ~59.9 s is after the 30 s READY deadline.
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(30)));
    let a = m.handle(t0 + Duration::from_secs(30), Event::Tick);
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
    assert!(connect_of(&a).is_some());
    assert_eq!(m.phase(), Phase::Connecting);
}

#[test]
fn shutdown_closes_with_1000() {
    let (mut m, t0) = active(0.5);
    let a = m.handle(t0, Event::Shutdown);
    assert_eq!(closes(&a), vec![CLOSE_NORMAL]);
    assert!(connect_of(&a).is_none());
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn malformed_frames_are_ignored() {
    let (mut m, t0) = active(0.5);
    for junk in [
        "",
        "{",
        "[]",
        r#"{"op":"x"}"#,
        r#"{"op":300}"#,
        r#"{"op":0,"s":-1}"#,
        "null",
    ] {
        assert!(m.handle(t0, Event::Frame(junk)).is_empty(), "{junk}");
    }
    assert_eq!(m.phase(), Phase::Active);
}

#[test]
fn ready_cannot_downgrade_resume_url_to_plain_ws() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    m.start(t0);
    m.handle(t0, Event::Connected);
    m.handle(t0, Event::Frame(&hello(1000)));
    let r = json!({"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"ws://evil.example"}});
    m.handle(t0, Event::Frame(&r.to_string()));
    let a = m.handle(t0, Event::Closed(None, String::new()));
    assert!(connect_of(&a).is_some_and(|c| c.0.starts_with("wss://gateway.example")));
}

#[test]
fn token_never_in_debug_output() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    let mut all = m.start(t0);
    all.extend(m.handle(t0, Event::Connected));
    all.extend(m.handle(t0, Event::Frame(&hello(1000))));
    assert!(all
        .iter()
        .any(|a| matches!(a, Action::Send(p) if p.json.contains(TOKEN))));
    let printed = format!("{m:?} {all:?} {:?}", cfg());
    assert!(!printed.contains("SECRET"), "{printed}");
}

#[test]
fn presence_is_reasserted_after_resume() {
    let (mut m, t0) = active(0.5);
    m.handle(t0, Event::Frame(r#"{"op":7,"d":null}"#));
    m.handle(t0, Event::Connected);
    assert_eq!(ops(&m.handle(t0, Event::Frame(&hello(1000)))), vec![6]);
    let a = m.handle(t0, Event::Frame(r#"{"op":0,"s":2,"t":"RESUMED","d":{}}"#));
    assert_eq!(
        sends(&a),
        vec![json!({"op": 3, "d": Presence::healthy().to_json()})]
    );
}

#[test]
fn session_start_limit_from_rest_is_clamped() {
    let rest = crate::discord::rest::SessionStartLimit {
        total: 1000,
        remaining: 3,
        reset_after: u64::MAX,
        max_concurrency: 1,
    };
    let l = SessionStartLimit::from(&rest);
    assert_eq!((l.total, l.remaining), (1000, 3));
    assert_eq!(l.reset_after, Duration::from_secs(24 * 3600));
}

#[test]
fn absurd_heartbeat_intervals_are_clamped() {
    let (mut m, t0) = machine_with(cfg(), 0.999);
    m.start(t0);
    m.handle(t0, Event::Connected);
    m.handle(t0, Event::Frame(&hello(1)));
    let first = m.next_deadline().expect("beat scheduled");
    assert!(first >= t0 + Duration::from_millis(99), "{:?}", first - t0);
    let (mut m, t0) = machine_with(cfg(), 0.0);
    m.start(t0);
    m.handle(t0, Event::Connected);
    m.handle(
        t0,
        Event::Frame(&json!({"op": 10, "d": {"heartbeat_interval": u64::MAX}}).to_string()),
    );
    m.handle(t0, Event::Frame(&ready(1)));
    assert_eq!(ops(&m.handle(t0, Event::Tick)), vec![1]);
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(600)));
}

/// Statuses reported for health, in order.
fn statuses(actions: &[Action]) -> Vec<Status> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Status(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Connect, Hello, and answer the Identify with op 9 false; returns the
/// actions from Hello on and the delay of the reconnect that follows.
fn identify_then_op9_false(m: &mut Machine, t: Instant) -> (Vec<Action>, Duration) {
    m.handle(t, Event::Connected);
    let mut a = m.handle(t, Event::Frame(&hello(1000)));
    a.extend(m.handle(t, Event::Frame(r#"{"op":9,"d":false}"#)));
    let delay = connect_of(&a).expect("reconnects").1;
    (a, delay)
}

#[test]
fn each_identify_is_recorded_just_before_it_is_sent() {
    let (mut m, t0) = machine_with(cfg(), 0.5);
    m.start(t0);
    m.handle(t0, Event::Connected);
    let a = m.handle(t0, Event::Frame(&hello(1000)));
    let record = a.iter().position(|a| matches!(a, Action::RecordIdentify));
    let send = a
        .iter()
        .position(|a| matches!(a, Action::Send(p) if p.op == 2));
    assert!(record.is_some() && record < send, "{a:?}");
    // A resume is no identify: nothing to record.
    m.handle(t0, Event::Frame(&ready(1)));
    m.handle(t0, Event::Closed(None, "drop".into()));
    m.handle(t0, Event::Connected);
    let a = m.handle(t0, Event::Frame(&hello(1000)));
    assert_eq!(ops(&a), vec![6]);
    assert!(!a.iter().any(|a| matches!(a, Action::RecordIdentify)));
}

#[test]
fn op9_false_storm_spaces_identifies_five_seconds_apart() {
    let (mut m, t0) = machine_with(cfg(), 0.0);
    m.start(t0);
    let mut t = t0;
    let mut identifies = Vec::new();
    for _ in 0..20 {
        let (a, delay) = identify_then_op9_false(&mut m, t);
        if ops(&a).contains(&2) {
            identifies.push(t);
        }
        // The reconnect waits for op 9's 1–5 s and for the spacing.
        t += delay;
    }
    assert_eq!(identifies.len(), 20, "every connection identified once");
    for pair in identifies.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(5),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}

#[test]
fn daily_cap_holds_across_a_restart_through_the_ledger() {
    use super::super::identify_ledger::{IdentifyLedger, FILE_NAME};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let wall0 = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut c = cfg();
    c.tuning.identify_daily_cap = 3;
    c.started_wall = wall0;

    // First run: three identifies (each answered with op 9 false), as the
    // driver does it: the ledger records on RecordIdentify.
    let (mut ledger, history) = IdentifyLedger::open(Some(path.clone()), wall0);
    assert_eq!(history, History::default());
    let (mut m, t0) = machine_with(c.clone(), 0.0);
    let wall = |t: Instant| wall0 + (t - t0);
    m.start(t0);
    let mut t = t0;
    let mut sent = 0;
    let mut last_delay = Duration::ZERO;
    for i in 0..3 {
        if i > 0 {
            t += last_delay;
        }
        let (a, delay) = identify_then_op9_false(&mut m, t);
        for action in &a {
            if matches!(action, Action::RecordIdentify) {
                ledger.record(wall(t)).expect("ledger written");
                sent += 1;
            }
        }
        last_delay = delay;
    }
    assert_eq!(sent, 3);
    let first = t0;
    // The cap is reached: the next connect waits for the first to age out.
    assert_eq!(t + last_delay, first + Duration::from_secs(24 * 3600));

    // Restart one hour later: the new machine reads the ledger and waits
    // until the first identify of the earlier run is 24 h old.
    let restart = t + Duration::from_secs(3600);
    let (_, history) = IdentifyLedger::open(Some(path), wall(restart));
    assert!(
        matches!(&history, History::Known(ages) if ages.len() == 3),
        "{history:?}"
    );
    let mut c2 = c.clone();
    c2.identify_history = history;
    c2.started_wall = wall(restart);
    let mut m2 = Machine::new(c2, Jitter::fixed(0.0), Presence::healthy(), restart);
    let a = m2.start(restart);
    let (_, delay) = connect_of(&a).expect("connect scheduled");
    assert_eq!(restart + delay, first + Duration::from_secs(24 * 3600));
    // Health says why and until when.
    let s = statuses(&a);
    assert_eq!(s.len(), 1);
    assert!(!s[0].ok);
    assert!(
        s[0].detail.contains("identify budget")
            && s[0].detail.contains("3 identifies in the last 24 h"),
        "{}",
        s[0].detail
    );
    let until = crate::httpdate::format(wall(first + Duration::from_secs(24 * 3600)));
    assert!(
        s[0].detail.contains(&until),
        "{} should name {until}",
        s[0].detail
    );
    // Without the ledger (a fresh state directory) it would connect at once.
    let (mut fresh, t) = machine_with(c, 0.0);
    assert_eq!(
        connect_of(&fresh.start(t)).map(|c| c.1),
        Some(Duration::ZERO)
    );
}

#[test]
fn unreadable_ledger_without_session_start_limit_waits_a_day() {
    let mut c = cfg();
    c.identify_history = History::Unknown("garbled".into());
    let (mut m, t0) = machine_with(c.clone(), 0.0);
    let a = m.start(t0);
    assert_eq!(
        connect_of(&a).map(|c| c.1),
        Some(Duration::from_secs(24 * 3600))
    );
    assert!(
        statuses(&a)
            .iter()
            .any(|s| !s.ok && s.detail.contains("unreadable")),
        "{a:?}"
    );
    // Discord's own count replaces the lost history.
    c.session_start_limit = Some(SessionStartLimit {
        total: 1000,
        remaining: 10,
        reset_after: Duration::from_secs(3600),
        max_concurrency: 1,
    });
    let (mut m, t0) = machine_with(c, 0.0);
    assert_eq!(connect_of(&m.start(t0)).map(|c| c.1), Some(Duration::ZERO));
}

#[test]
fn session_start_limit_exhausted_says_so_in_health() {
    let mut c = cfg();
    c.session_start_limit = Some(SessionStartLimit {
        total: 1000,
        remaining: 0,
        reset_after: Duration::from_secs(600),
        max_concurrency: 1,
    });
    let (mut m, t0) = machine_with(c, 0.0);
    let a = m.start(t0);
    let s = statuses(&a);
    assert!(
        s[0].detail.contains("session_start_limit") && s[0].detail.contains("in 600s"),
        "{}",
        s[0].detail
    );
    // Resuming a session is not an identify and never waits for the budget.
}

#[test]
fn op1_beats_at_once_and_moves_the_next_regular_beat() {
    let (mut m, t0) = active(0.0);
    // The first regular beat is due at t0 (jitter 0); ACKed.
    assert_eq!(ops(&m.handle(t0, Event::Tick)), vec![1]);
    m.handle(t0, Event::Frame(r#"{"op":11}"#));
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_millis(1000)));
    // 700 ms later the server asks for a beat: sent at once, and the next
    // regular one moves to 700 + 1000 ms.
    let t1 = t0 + Duration::from_millis(700);
    assert_eq!(
        ops(&m.handle(t1, Event::Frame(r#"{"op":1,"d":null}"#))),
        vec![1]
    );
    assert_eq!(m.next_deadline(), Some(t1 + Duration::from_millis(1000)));
    assert!(ops(&m.handle(t0 + Duration::from_millis(1000), Event::Tick)).is_empty());
    // Its ACK comes late, at 1.5 s: no zombie, the next beat at 1.7 s.
    m.handle(
        t0 + Duration::from_millis(1500),
        Event::Frame(r#"{"op":11}"#),
    );
    let a = m.handle(t1 + Duration::from_millis(1000), Event::Tick);
    assert_eq!(ops(&a), vec![1]);
    assert!(closes(&a).is_empty());
}

#[test]
fn any_frame_after_a_beat_counts_as_liveness() {
    let (mut m, t0) = active(0.0);
    assert_eq!(ops(&m.handle(t0, Event::Tick)), vec![1]);
    // No ACK yet, but a dispatch arrives: the connection is alive.
    m.handle(t0 + Duration::from_millis(400), Event::Frame(&dispatch(2)));
    let a = m.handle(t0 + Duration::from_millis(1000), Event::Tick);
    assert!(
        closes(&a).is_empty(),
        "a frame after the beat is liveness: {a:?}"
    );
    assert_eq!(sends(&a), vec![json!({"op": 1, "d": 2})]);
    // The slow ACK of the first beat arrives after the second beat: fine.
    m.handle(
        t0 + Duration::from_millis(1100),
        Event::Frame(r#"{"op":11}"#),
    );
    let a = m.handle(t0 + Duration::from_millis(2000), Event::Tick);
    assert!(closes(&a).is_empty());
    assert_eq!(ops(&a), vec![1]);
    // Even a frame we cannot parse shows the socket carries data.
    m.handle(t0 + Duration::from_millis(2500), Event::Frame("{not json"));
    assert!(closes(&m.handle(t0 + Duration::from_millis(3000), Event::Tick)).is_empty());
    // But a whole interval with nothing at all after a beat is a zombie.
    let a = m.handle(t0 + Duration::from_millis(4000), Event::Tick);
    assert_eq!(closes(&a), vec![CLOSE_RESUMABLE]);
}

#[test]
fn a_button_click_is_handed_to_the_driver_and_counts_as_a_dispatch() {
    let (mut m, t0) = active(0.5);
    let click = json!({"op": 0, "s": 2, "t": "INTERACTION_CREATE",
        "d": {"id": "5", "type": 3, "data": {"custom_id": "restart:1:a/b"}}});
    let out = m.handle(t0, Event::Frame(&click.to_string()));
    assert_eq!(out, vec![Action::Interaction(click["d"].clone())]);
    assert_eq!(m.seq(), Some(2));
}
