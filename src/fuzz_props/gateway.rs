//! Property of the gateway state machine ([`crate::discord::gateway::machine`]):
//! a driver that honours every `Connect` delay feeds it fuzzer-chosen frames
//! (templates of every opcode, and raw text), closes with any code, ticks,
//! time jumps and presence changes; the machine never panics and:
//!
//! * never sends two Identifies on one connection, each one right after its
//!   `RecordIdentify`, and none within the identify spacing of the last;
//! * sends only on an open connection, at most [`SEND_LIMIT`] frames in any
//!   [`SEND_WINDOW`], each valid JSON of its opcode within [`MAX_PAYLOAD_BYTES`];
//! * keeps a heartbeat or handshake deadline whenever a session is being set
//!   up or is up, never more than the longest heartbeat away, and after a
//!   tick never asks to be woken in the past (no busy loop);
//! * connects only over `wss://` with the API version in the URL, after a
//!   bounded delay; never again after a fatal close code, nor after shutdown.
use std::collections::VecDeque;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use tokio::time::Instant;

use super::input::Input;
use crate::discord::gateway::identify_ledger::History;
use crate::discord::gateway::machine::{
    Action, Event, Machine, MachineConfig, Phase, Token, Tuning, MAX_PAYLOAD_BYTES, SEND_LIMIT,
    SEND_WINDOW,
};
use crate::jitter::Jitter;
use crate::presence::{Presence, UnhealthyMode};

/// Events fed to one machine at most.
const MAX_STEPS: usize = 400;
/// The longest heartbeat interval the machine accepts from a Hello.
const MAX_HEARTBEAT: Duration = Duration::from_secs(600);
/// Longest a reconnect may wait: a daily identify cap can hold it for a day.
const MAX_CONNECT_DELAY: Duration = Duration::from_secs(24 * 3600 + 120);

/// What the driver has seen so far.
#[derive(Default)]
struct Driver {
    /// When the requested connection may open (its delay waited out).
    connect_at: Option<Instant>,
    open: bool,
    identifies_on_this_connection: usize,
    last_identify: Option<Instant>,
    record_pending: bool,
    sends: VecDeque<Instant>,
    stopped: bool,
    shut_down: bool,
}

impl Driver {
    fn observe(&mut self, now: Instant, actions: Vec<Action>, spacing: Duration) {
        for action in actions {
            let record_pending = std::mem::take(&mut self.record_pending);
            match action {
                Action::Connect { url, delay } => {
                    assert!(!self.stopped, "connects after a fatal close");
                    assert!(!self.shut_down, "connects after shutdown");
                    assert!(url.starts_with("wss://"), "connects to {url}");
                    assert!(
                        url.contains("v=10&encoding=json"),
                        "no API version in {url}"
                    );
                    assert!(delay <= MAX_CONNECT_DELAY, "reconnect waits {delay:?}");
                    self.connect_at = Some(now + delay);
                    self.open = false;
                    self.identifies_on_this_connection = 0;
                    self.sends.clear();
                }
                Action::Close(_) => self.open = false,
                Action::Stop(_) => self.stopped = true,
                Action::RecordIdentify => self.record_pending = true,
                Action::Status(_) | Action::Interaction(_) => {}
                Action::Send(payload) => {
                    assert!(
                        self.open,
                        "op {} sent without an open connection",
                        payload.op
                    );
                    assert!(payload.json.len() <= MAX_PAYLOAD_BYTES, "payload too large");
                    let json: Value = match serde_json::from_str(&payload.json) {
                        Ok(v) => v,
                        Err(e) => panic!("op {} is not JSON: {e}", payload.op),
                    };
                    assert_eq!(
                        json.get("op").and_then(Value::as_u64),
                        Some(u64::from(payload.op)),
                        "payload op differs"
                    );
                    while self
                        .sends
                        .front()
                        .is_some_and(|t| now.saturating_duration_since(*t) >= SEND_WINDOW)
                    {
                        self.sends.pop_front();
                    }
                    self.sends.push_back(now);
                    assert!(self.sends.len() <= SEND_LIMIT, "send budget exceeded");
                    if payload.op == 2 {
                        assert!(record_pending, "an Identify without RecordIdentify first");
                        assert_eq!(
                            self.identifies_on_this_connection, 0,
                            "two Identifies on one connection"
                        );
                        if let Some(last) = self.last_identify {
                            let gap = now.saturating_duration_since(last);
                            assert!(gap >= spacing, "Identifies {gap:?} apart");
                        }
                        self.identifies_on_this_connection += 1;
                        self.last_identify = Some(now);
                    }
                }
            }
        }
    }
}

fn frame(input: &mut Input<'_>) -> String {
    let seq = input.u16();
    match input.byte() % 10 {
        0 => {
            let interval = match input.byte() % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => u64::from(input.u32()),
            };
            format!(r#"{{"op":10,"d":{{"heartbeat_interval":{interval}}}}}"#)
        }
        1 => {
            let url = match input.byte() % 4 {
                0 => "wss://resume.example".to_owned(),
                1 => "ws://insecure.example".to_owned(),
                2 => "x".repeat(600),
                _ => input.short_string(),
            };
            let ready = serde_json::json!({
                "op": 0, "t": "READY", "s": seq,
                "d": { "session_id": input.short_string(), "resume_gateway_url": url },
            });
            ready.to_string()
        }
        2 => format!(r#"{{"op":0,"t":"RESUMED","s":{seq},"d":null}}"#),
        3 => r#"{"op":11}"#.to_owned(),
        4 => r#"{"op":1,"d":null}"#.to_owned(),
        5 => r#"{"op":7,"d":null}"#.to_owned(),
        6 => format!(r#"{{"op":9,"d":{}}}"#, input.byte() % 2 == 0),
        7 => format!(r#"{{"op":0,"t":"MESSAGE_CREATE","s":{seq},"d":{{}}}}"#),
        8 => format!(r#"{{"op":{},"d":null,"s":{seq}}}"#, input.byte()),
        _ => input.short_string(),
    }
}

fn close_code(input: &mut Input<'_>) -> Option<u16> {
    match input.byte() % 4 {
        0 => None,
        1 => Some(1000 + u16::from(input.byte() % 16)),
        2 => Some(4000 + u16::from(input.byte() % 16)),
        _ => Some(input.u16()),
    }
}

fn presence(input: &mut Input<'_>) -> Presence {
    match input.byte() % 3 {
        0 => Presence::healthy(),
        1 => Presence::unhealthy(UnhealthyMode::Invisible, ""),
        _ => Presence::unhealthy(UnhealthyMode::Dnd, &input.short_string()),
    }
}

/// The property. Input: jitter, then one event per step.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let jitter = f64::from(input.byte()) / 256.0;
    let tuning = Tuning::default();
    let spacing = tuning.identify_spacing;
    let cfg = MachineConfig {
        url: "wss://gateway.example".into(),
        token: Token::new("fuzz-token"),
        session_start_limit: None,
        identify_history: History::default(),
        started_wall: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        tuning,
    };
    let mut now = Instant::now();
    let mut machine = Machine::new(cfg, Jitter::fixed(jitter), Presence::healthy(), now);
    let mut driver = Driver::default();
    let actions = machine.start(now);
    driver.observe(now, actions, spacing);

    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let mut ticked = false;
        let actions = match input.byte() % 12 {
            0 | 1 => {
                // The driver opens the connection only once its delay is waited out.
                if let Some(at) = driver.connect_at.take() {
                    now = now.max(at);
                    let actions = machine.handle(now, Event::Connected);
                    driver.open = machine.phase() == Phase::AwaitingHello;
                    actions
                } else {
                    Vec::new()
                }
            }
            2..=5 => {
                let text = frame(&mut input);
                machine.handle(now, Event::Frame(&text))
            }
            6 => {
                let code = close_code(&mut input);
                driver.open = false;
                machine.handle(now, Event::Closed(code, "fuzz".into()))
            }
            7 | 8 => {
                // Wake when the machine asked to, or a little later.
                let late = Duration::from_millis(u64::from(input.byte()) * 10);
                now = machine.next_deadline().map_or(now, |d| now.max(d)) + late;
                ticked = true;
                machine.handle(now, Event::Tick)
            }
            9 => {
                now += Duration::from_millis(u64::from(input.u16()) * 16);
                Vec::new()
            }
            10 => machine.handle(now, Event::PresenceChanged(presence(&mut input))),
            _ if input.byte() == 0xff => {
                driver.shut_down = true;
                machine.handle(now, Event::Shutdown)
            }
            _ => Vec::new(),
        };
        driver.observe(now, actions, spacing);
        let deadline = machine.next_deadline();
        if ticked {
            assert!(
                deadline.map_or(true, |d| d > now),
                "asks to be woken in the past after a tick"
            );
        }
        if matches!(
            machine.phase(),
            Phase::AwaitingHello | Phase::Identifying | Phase::Resuming | Phase::Active
        ) {
            match deadline {
                Some(d) => assert!(
                    d <= now + MAX_HEARTBEAT.max(Duration::from_secs(30)),
                    "the next deadline is {:?} away",
                    d.saturating_duration_since(now)
                ),
                None => panic!(
                    "{:?} without any deadline: zombie detection is off",
                    machine.phase()
                ),
            }
        }
        if driver.stopped && !driver.shut_down {
            assert_eq!(machine.phase(), Phase::Fatal, "stopped but not fatal");
        }
    }
}
