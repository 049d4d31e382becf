//! The byte layout of the records the embedded store keeps: events, dead
//! letters and messages.
//!
//! Events and dead letters are a small hand-made binary format (a webhook
//! body is stored as is, without JSON escaping or base64); messages are JSON.
//! Decoding never panics and never trusts a length: a damaged record is a
//! [`StoreError::Corrupt`] that names it (`event 7`, `dead letter 3`,
//! `message for build:1`).
//!
//! Event: `[version][received_ms u64][key][event][action] body…`, strings as
//! u32 length + UTF-8, integers little-endian. Dead letter:
//! `[version][failed_ms u64][reason] event…` (the event's own encoding).
use crate::store::{DeadLetter, Event, MessageRef, Result, Seq, StoreError};

/// Version byte in front of every encoded event / dead letter.
pub(super) const ENCODING_V1: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings here are keys and Drone's event/action names; far below 4 GiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn encode_event(
    key: &str,
    event: &str,
    action: &str,
    received_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(1 + 8 + 12 + key.len() + event.len() + action.len() + body.len());
    out.push(ENCODING_V1);
    out.extend_from_slice(&received_ms.to_le_bytes());
    put_str(&mut out, key);
    put_str(&mut out, event);
    put_str(&mut out, action);
    out.extend_from_slice(body);
    out
}

pub(crate) fn encode_dead(reason: &str, failed_ms: u64, event_blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + reason.len() + event_blob.len());
    out.push(ENCODING_V1);
    out.extend_from_slice(&failed_ms.to_le_bytes());
    put_str(&mut out, reason);
    out.extend_from_slice(event_blob);
    out
}

/// Reads an encoded record; every failure names the record.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {detail}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn version(&mut self) -> Result<()> {
        match self.take(1)? {
            [ENCODING_V1] => Ok(()),
            _ => Err(self.corrupt("unknown encoding version")),
        }
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b.try_into().map_err(|_| self.corrupt("truncated"))?;
        Ok(u64::from_le_bytes(arr))
    }

    fn string(&mut self) -> Result<String> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| self.corrupt("truncated"))?;
        let len =
            usize::try_from(u32::from_le_bytes(arr)).map_err(|_| self.corrupt("bad length"))?;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.corrupt("invalid UTF-8"))
    }

    fn rest(self) -> &'a [u8] {
        self.buf
    }
}

pub(crate) fn decode_event(seq: Seq, blob: &[u8]) -> Result<Event> {
    let what = format!("event {seq}");
    let mut r = Reader {
        buf: blob,
        what: &what,
    };
    r.version()?;
    let received_ms = r.u64()?;
    let key = r.string()?;
    let event = r.string()?;
    let action = r.string()?;
    let body = r.rest().to_vec();
    Ok(Event {
        seq,
        key,
        event,
        action,
        received_ms,
        body,
    })
}

pub(crate) fn decode_dead(seq: Seq, blob: &[u8]) -> Result<DeadLetter> {
    let what = format!("dead letter {seq}");
    let mut r = Reader {
        buf: blob,
        what: &what,
    };
    r.version()?;
    let failed_ms = r.u64()?;
    let reason = r.string()?;
    let event = decode_event(seq, r.rest()).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("dead letter {seq}: {m}")),
        other => other,
    })?;
    Ok(DeadLetter {
        event,
        reason,
        failed_ms,
    })
}

/// A [`MessageRef`] as stored in `messages`: JSON, so a field can be added
/// (or dropped) without a new encoding version.
pub(crate) fn encode_message(key: &str, m: &MessageRef) -> Result<Vec<u8>> {
    serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(format!("message for {key}: {e}")))
}

pub(crate) fn decode_message(key: &str, blob: &[u8]) -> Result<MessageRef> {
    serde_json::from_slice(blob).map_err(|e| StoreError::Corrupt(format!("message for {key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{ev, msg};
    use super::super::tables::{DEAD, EVENTS, MESSAGES};
    use super::super::EmbeddedStore;
    use super::*;
    use crate::store::Store;
    use std::time::Duration;

    #[tokio::test]
    async fn undecodable_records_are_reported_as_corrupt_naming_the_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.append(ev(Some("build:1"), 1, None, b"ok")).await.unwrap();
            assert!(s
                .import_message("build:1", "channel:111", msg("m"))
                .await
                .unwrap());
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            {
                txn.open_table(EVENTS)
                    .unwrap()
                    .insert(1, &[ENCODING_V1, 1, 2][..])
                    .unwrap();
                txn.open_table(MESSAGES)
                    .unwrap()
                    .insert(("build:1", "channel:111"), &b"{not json"[..])
                    .unwrap();
                txn.open_table(DEAD).unwrap().insert(5, &[9u8][..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let is_corrupt = |r: std::result::Result<(), StoreError>, needle: &str| match r {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected Corrupt naming {needle}, got {other:?}"),
        };
        is_corrupt(s.pending(10).await.map(drop), "event 1");
        is_corrupt(
            s.message("build:1", "channel:111").await.map(drop),
            "message for build:1",
        );
        is_corrupt(s.dead_letters(10).await.map(drop), "dead letter 5");
        // A claim moves an undecodable event aside instead of failing: it
        // becomes a dead letter with the reason and its raw bytes.
        assert!(s
            .claim("w", Duration::from_secs(9), 5)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.stats().await.unwrap(),
            crate::store::Stats {
                pending: 0,
                dead_letters: 2
            }
        );
    }

    /// One corrupt event among others: every other key is claimed, the bad
    /// one is a dead letter naming why, and the next claim is clean.
    #[tokio::test]
    async fn a_corrupt_event_is_moved_aside_and_every_other_key_is_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.append(ev(Some("build:1"), 1, None, b"ok-1"))
            .await
            .unwrap();
        s.append(ev(Some("build:2"), 2, None, b"bad"))
            .await
            .unwrap();
        s.append(ev(Some("build:3"), 3, None, b"ok-3"))
            .await
            .unwrap();
        s.append(ev(Some("build:2"), 4, None, b"after"))
            .await
            .unwrap();
        {
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            txn.open_table(EVENTS)
                .unwrap()
                .insert(2, &[7u8, 7, 7][..])
                .unwrap();
            txn.commit().unwrap();
        }
        let c = s.claim("w", Duration::from_secs(60), 10).await.unwrap();
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["build:1", "build:3"]);
        let dead = s.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                dead[0].event.seq,
                dead[0].event.key.as_str(),
                dead[0].event.body.as_slice()
            ),
            (2, "build:2", &[7u8, 7, 7][..])
        );
        assert!(
            dead[0].reason.contains("could not be decoded") && dead[0].reason.contains("event 2"),
            "{}",
            dead[0].reason
        );
        // The rest of build:2 is delivered on the next claim.
        let c = s.claim("w2", Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(
            c.iter()
                .map(|c| (c.key.as_str(), c.upto()))
                .collect::<Vec<_>>(),
            vec![("build:2", 4)]
        );
    }

    /// A `messages` record exactly as releases up to 0.1.0 wrote it (made
    /// with that release's encoder): its `updated_ms`, never read, is gone
    /// from [`MessageRef`], and the record must still decode, also through
    /// the store.
    const MESSAGE_0_1_0: &[u8] =
        br#"{"channel_id":"111","message_id":"1100000000000000001","status":"success","updated_ms":1700000000123}"#;

    #[tokio::test]
    async fn a_message_written_by_0_1_0_still_decodes() {
        let want = MessageRef {
            channel_id: "111".into(),
            message_id: "1100000000000000001".into(),
            status: "success".into(),
            ..MessageRef::default()
        };
        assert_eq!(decode_message("build:1", MESSAGE_0_1_0).unwrap(), want);
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let txn = s.shared.current().unwrap().begin_write().unwrap();
        txn.open_table(MESSAGES)
            .unwrap()
            .insert(("build:1", "channel:111"), MESSAGE_0_1_0)
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(
            s.message("build:1", "channel:111").await.unwrap(),
            Some(want.clone())
        );
        // What this release writes reads back the same.
        assert_eq!(
            decode_message("build:1", &encode_message("build:1", &want).unwrap()).unwrap(),
            want
        );
    }

    #[test]
    fn decoding_never_panics_on_truncated_input() {
        let blob = encode_event("build:1", "build", "created", 42, b"body");
        for cut in 0..blob.len() {
            let r = decode_event(1, &blob[..cut]);
            // Only a cut inside the body is still a (shorter) valid event.
            let header = blob.len() - 4;
            assert_eq!(r.is_ok(), cut >= header, "cut {cut}");
        }
        let e = decode_event(1, &blob).unwrap();
        assert_eq!(
            (
                e.key.as_str(),
                e.action.as_str(),
                e.received_ms,
                e.body.as_slice()
            ),
            ("build:1", "created", 42, &b"body"[..])
        );
        let dead = encode_dead("HTTP 400", 77, &blob);
        let d = decode_dead(3, &dead).unwrap();
        assert_eq!(
            (d.reason.as_str(), d.failed_ms, d.event.seq),
            ("HTTP 400", 77, 3)
        );
        let mut bad_len = blob.clone();
        bad_len[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_event(1, &bad_len),
            Err(StoreError::Corrupt(_))
        ));
    }
}
