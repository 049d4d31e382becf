//! Property of the embedded store's record codec
//! (`store::embedded::codec`): every event, dead letter and message record
//! decodes to what was encoded; any bytes either decode, and then encode back
//! to exactly those bytes (one encoding per record), or are refused as
//! [`StoreError::Corrupt`] naming the record, never a panic.
use super::input::Input;
use crate::store::embedded::codec::{
    decode_dead, decode_event, decode_message, encode_dead, encode_event, encode_message,
};
use crate::store::{DeadLetter, Event, MessageRef, StoreError, UncertainCreate};

/// The property. Input: a mode byte, then fields (even) or a record (odd).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let seq = u64::from(input.u32());
    if mode % 2 == 0 {
        round_trip(seq, &mut input);
    } else {
        garbage(seq, input.rest());
    }
}

fn round_trip(seq: u64, input: &mut Input<'_>) {
    let key = input.short_string();
    let event_name = input.short_string();
    let action = input.short_string();
    let received_ms = u64::from(input.u32()) << (input.byte() % 33);
    let reason = input.short_string();
    let failed_ms = u64::from(input.u32());
    let status = input.short_string();
    let body = input.rest().to_vec();
    let event = Event {
        seq,
        key: key.clone(),
        event: event_name,
        action,
        received_ms,
        body,
    };
    let blob = encode_event(
        &event.key,
        &event.event,
        &event.action,
        received_ms,
        &event.body,
    );
    assert_eq!(
        decode_event(seq, &blob).ok().as_ref(),
        Some(&event),
        "an event did not round-trip"
    );

    let dead = encode_dead(&reason, failed_ms, &blob);
    let letter = DeadLetter {
        event,
        reason,
        failed_ms,
    };
    assert_eq!(
        decode_dead(seq, &dead).ok().as_ref(),
        Some(&letter),
        "a dead letter did not round-trip"
    );

    let message = MessageRef {
        channel_id: key,
        message_id: letter.reason.clone(),
        status,
        // Half the messages carry an uncertain create, so both shapes round-trip.
        uncertain: (seq % 2 == 1).then(|| UncertainCreate {
            channel_id: letter.event.key.clone(),
            generation: seq as u32,
            since_ms: failed_ms,
        }),
        // A quarter carry a thread and a ping, so the new fields round-trip.
        thread_id: (seq % 4 == 3).then(|| letter.event.action.clone()),
        pinged: seq % 4 == 3,
    };
    let blob = encode_message("k", &message);
    assert!(blob.is_ok(), "a message did not encode: {blob:?}");
    let back = blob.and_then(|b| decode_message("k", &b));
    assert_eq!(
        back.ok().as_ref(),
        Some(&message),
        "a message did not round-trip"
    );
}

fn garbage(seq: u64, blob: &[u8]) {
    match decode_event(seq, blob) {
        Ok(e) => {
            assert_eq!(e.seq, seq);
            let again = encode_event(&e.key, &e.event, &e.action, e.received_ms, &e.body);
            assert_eq!(again, blob, "a decoded event encodes to other bytes");
        }
        Err(e) => corrupt(e, &format!("event {seq}")),
    }
    match decode_dead(seq, blob) {
        Ok(d) => {
            let event = encode_event(
                &d.event.key,
                &d.event.event,
                &d.event.action,
                d.event.received_ms,
                &d.event.body,
            );
            let again = encode_dead(&d.reason, d.failed_ms, &event);
            assert_eq!(again, blob, "a decoded dead letter encodes to other bytes");
        }
        Err(e) => corrupt(e, &format!("dead letter {seq}")),
    }
    match decode_message("build:1", blob) {
        Ok(m) => {
            let again = encode_message("build:1", &m).and_then(|b| decode_message("build:1", &b));
            assert_eq!(
                again.ok().as_ref(),
                Some(&m),
                "a decoded message changed through encoding"
            );
        }
        Err(e) => corrupt(e, "message for build:1"),
    }
}

/// A refusal is `Corrupt` and names the record.
fn corrupt(e: StoreError, what: &str) {
    match e {
        StoreError::Corrupt(m) => assert!(m.starts_with(what), "{m:?} does not name {what:?}"),
        other => panic!("garbage gave {other:?}, not Corrupt"),
    }
}
