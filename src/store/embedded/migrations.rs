//! The embedded store's implementation of each step of the schema chain
//! ([`crate::store::schema`]), run when the file is opened, and the adoption
//! of a legacy build message by its build's first namespaced event.
//!
//! All pending steps run inside the open's one write transaction, together
//! with the new `schema_version`: a crash half-way leaves the file exactly as
//! the old release wrote it, and the next open starts again.
use super::codec::{decode_event, decode_message, encode_event};
use super::errors::Ctx;
use super::message_map::raw_messages;
use super::tables::{Tables, LEGACY_MESSAGES, META_SCHEMA_VERSION};
use crate::store::schema::{self, Step, UNVERSIONED};
use crate::store::{build_key_of_body, channel_dest, legacy_build_id, legacy_key_of, Result, Seq};
use redb::{ReadableTable, WriteTransaction};
use std::collections::BTreeMap;

/// Bring the tables in `t` (opened in `txn`) up to [`schema::CURRENT`];
/// returns the version the file had.
pub(super) fn migrate(txn: &WriteTransaction, t: &mut Tables<'_>) -> Result<u64> {
    let found = t
        .meta
        .get(META_SCHEMA_VERSION)
        .ctx("read schema_version")?
        .map(|g| g.value());
    let from = found.unwrap_or(UNVERSIONED);
    for step in schema::steps_from(from)? {
        apply(txn, t, *step)?;
        tracing::info!(to = step.to(), what = step.what(), "store migrated");
    }
    if found != Some(schema::CURRENT) {
        t.meta
            .insert(META_SCHEMA_VERSION, schema::CURRENT)
            .ctx("write schema_version")?;
    }
    Ok(from)
}

fn apply(txn: &WriteTransaction, t: &mut Tables<'_>, step: Step) -> Result<()> {
    match step {
        Step::NamespacedKeys => namespace_keys(txn, t),
        Step::MessagesPerDestination => messages_per_destination(txn, t),
    }
}

/// 1 → 2: every pending event under a legacy key `build:<id>` gets the key its
/// own webhook body names (`build:<host>:<repo>:<id>`); an event whose body is
/// not a build webhook keeps its key (the relay dead-letters it). A legacy
/// message moves to the new key of its oldest pending event; without pending
/// events it stays where it is, and [`adopt_legacy_message`] hands it to the
/// build's next webhook while it is not final. Leases live in memory: none
/// exist while the file is being opened. Messages are still in the schema-2
/// table `messages`, keyed by key alone.
fn namespace_keys(txn: &WriteTransaction, t: &mut Tables<'_>) -> Result<()> {
    let mut messages = txn.open_table(LEGACY_MESSAGES).ctx("open messages")?;
    let mut legacy: Vec<(String, Seq)> = Vec::new();
    for item in t.key_seqs.iter().ctx("scan key index")? {
        let (k, _) = item.ctx("scan key index")?;
        let (key, seq) = k.value();
        if legacy_build_id(key).is_some() {
            legacy.push((key.to_owned(), seq));
        }
    }
    // Old key → new key of its oldest pending event (the message follows it).
    let mut moved: BTreeMap<String, String> = BTreeMap::new();
    for (old, seq) in legacy {
        let Some(blob) = t
            .events
            .get(seq)
            .ctx("read event")?
            .map(|g| g.value().to_vec())
        else {
            continue;
        };
        let ev = match decode_event(seq, &blob) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(seq, error = %e, "migration: undecodable event keeps its key");
                continue;
            }
        };
        let Some(new) = build_key_of_body(&ev.body) else {
            continue;
        };
        let re = encode_event(&new, &ev.event, &ev.action, ev.received_ms, &ev.body);
        t.events.insert(seq, re.as_slice()).ctx("rewrite event")?;
        t.key_seqs
            .remove((old.as_str(), seq))
            .ctx("rewrite key index")?;
        t.key_seqs
            .insert((new.as_str(), seq), ())
            .ctx("rewrite key index")?;
        moved.entry(old).or_insert(new);
    }
    // Heads are rebuilt from the index: one per key, its oldest seq.
    let mut heads: BTreeMap<String, Seq> = BTreeMap::new();
    for item in t.key_seqs.iter().ctx("scan key index")? {
        let (k, _) = item.ctx("scan key index")?;
        let (key, seq) = k.value();
        heads.entry(key.to_owned()).or_insert(seq);
    }
    let old_heads: Vec<Seq> = t
        .heads
        .iter()
        .ctx("scan heads")?
        .map(|i| i.map(|(s, _)| s.value()))
        .collect::<std::result::Result<_, _>>()
        .ctx("scan heads")?;
    for seq in old_heads {
        t.heads.remove(seq).ctx("rewrite heads")?;
    }
    for (key, seq) in &heads {
        t.heads.insert(*seq, key.as_str()).ctx("rewrite heads")?;
    }
    for (old, new) in moved {
        let Some(m) = messages
            .remove(old.as_str())
            .ctx("move message")?
            .map(|g| g.value().to_vec())
        else {
            continue;
        };
        if messages.get(new.as_str()).ctx("read message")?.is_none() {
            messages
                .insert(new.as_str(), m.as_slice())
                .ctx("move message")?;
        }
    }
    Ok(())
}

/// 2 → 3: each message of the key → message table `messages` moves to
/// (key, `channel:<its channel id>`) in `dest_messages` (a message with only
/// an uncertain create has no channel id yet: the create's channel), and the
/// old table is deleted. Relays of schema 2 posted to one channel only, so
/// that is the destination the relay looks the message up under. A message
/// that cannot be decoded could never be edited: it is dropped, with a log
/// line.
fn messages_per_destination(txn: &WriteTransaction, t: &mut Tables<'_>) -> Result<()> {
    {
        let old = txn.open_table(LEGACY_MESSAGES).ctx("open messages")?;
        for item in old.iter().ctx("scan messages")? {
            let (k, v) = item.ctx("scan messages")?;
            let (key, blob) = (k.value(), v.value());
            let m = match decode_message(key, blob) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(key, error = %e, "migration: undecodable message dropped");
                    continue;
                }
            };
            let channel = match &m.uncertain {
                Some(u) if m.channel_id.is_empty() => &u.channel_id,
                _ => &m.channel_id,
            };
            let dest = channel_dest(channel);
            if t.messages
                .get((key, dest.as_str()))
                .ctx("read message")?
                .is_none()
            {
                t.messages
                    .insert((key, dest.as_str()), blob)
                    .ctx("move message")?;
            }
        }
    }
    txn.delete_table(LEGACY_MESSAGES)
        .ctx("delete the old messages table")?;
    Ok(())
}

/// When `key` (a namespaced build key) has no message yet and the legacy key
/// of its build id holds some that are not final, move those (each at its
/// destination) to `key`.
///
/// That is a build that was running when the store was upgraded (or that
/// `migrate` imported): its next webhook must edit its existing message. A
/// final legacy message is never adopted, so a reused build id (another
/// server, a reset Drone database) gets a message of its own. The first
/// namespaced key to arrive wins; with two Drone servers sending the same
/// running build id right after the upgrade, the other one posts anew.
pub(super) fn adopt_legacy_message(t: &mut Tables<'_>, key: &str) -> Result<()> {
    let Some(legacy) = legacy_key_of(key) else {
        return Ok(());
    };
    if !raw_messages(&t.messages, key)?.is_empty() {
        return Ok(());
    }
    for (dest, blob) in raw_messages(&t.messages, &legacy)? {
        match decode_message(&legacy, &blob) {
            Ok(m) if !crate::drone::is_final(&m.status) => {
                let d = dest.as_str();
                t.messages
                    .remove((legacy.as_str(), d))
                    .ctx("adopt message")?;
                t.messages
                    .insert((key, d), blob.as_slice())
                    .ctx("adopt message")?;
                tracing::info!(key, from = %legacy, dest = d, "build message from before the upgrade adopted");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tables::META;
    use super::super::{EmbeddedStore, FILE_NAME};
    use crate::store::{schema, MessageRef, NewEvent, Store, StoreError};
    use redb::ReadableDatabase;
    use std::time::Duration;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test/fixtures/store/0.1.0.redb"
    );
    const K2088: &str = "build:drone.kiwi-labs.net:35:2088";

    fn fixture_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(FIXTURE, dir.path().join(FILE_NAME)).unwrap();
        dir
    }

    fn version(s: &EmbeddedStore) -> Option<u64> {
        let txn = s.shared.current().unwrap().begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let v = meta
            .get(super::META_SCHEMA_VERSION)
            .unwrap()
            .map(|g| g.value());
        v
    }

    fn msg(id: &str, status: &str) -> MessageRef {
        MessageRef {
            channel_id: "111".into(),
            message_id: id.into(),
            status: status.into(),
            ..MessageRef::default()
        }
    }

    fn webhook(file: &str, host: &str) -> NewEvent {
        let path = format!("{}/test/fixtures/drone/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v["system"]["host"] = host.into();
        let build = &v["build"];
        let key = crate::store::build_key(
            host,
            build["repo_id"].as_i64().unwrap(),
            build["id"].as_i64().unwrap(),
        );
        NewEvent {
            key: Some(key),
            event: "build".into(),
            action: "updated".into(),
            received_ms: 1_764_600_000_000,
            replay_key: None,
            body: serde_json::to_vec(&v).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_store_written_by_0_1_0_is_migrated_in_place_and_keeps_its_messages() {
        let dir = fixture_copy();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(version(&s), Some(schema::CURRENT));
        // The pending update of build 2088 now carries its server's key, and
        // its message followed it, so the relay edits it.
        let pending = s.pending(10).await.unwrap();
        let keys: Vec<(u64, &str)> = pending.iter().map(|e| (e.seq, e.key.as_str())).collect();
        assert_eq!(keys, vec![(2, K2088), (3, "event:3")]);
        assert_eq!(
            s.message(K2088, "channel:111").await.unwrap(),
            Some(msg("1100000000000002088", "pending"))
        );
        assert_eq!(s.message("build:2088", "channel:111").await.unwrap(), None);
        // Builds without pending events keep their legacy keys.
        assert_eq!(
            s.message("build:2087", "channel:111").await.unwrap(),
            Some(msg("1100000000000002087", "running"))
        );
        assert_eq!(
            s.message("build:2000", "channel:111").await.unwrap(),
            Some(msg("1100000000000002000", "success"))
        );
        // Dead letters, replay keys and the seq counter are untouched.
        let dead = s.dead_letters(10).await.unwrap();
        assert_eq!(
            (dead.len(), dead[0].event.seq, dead[0].reason.as_str()),
            (1, 4, "HTTP 400: fixture")
        );
        assert_eq!(
            s.append(webhook("build_success.json", "x")).await.unwrap(),
            crate::store::Appended::Queued(5)
        );
        let mut replay = webhook("build_success.json", "x");
        replay.replay_key = Some("sig-updated".into());
        assert_eq!(
            s.append(replay).await.unwrap(),
            crate::store::Appended::Duplicate(2)
        );
        // The claim order follows the migrated heads.
        let c = s.claim("w", Duration::from_secs(60), 10).await.unwrap();
        let claimed: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(claimed, vec![K2088, "event:3", "build:x:35:2088"]);
        drop(s);
        // A second open finds the current version and changes nothing.
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(
            s.message(K2088, "channel:111").await.unwrap(),
            Some(msg("1100000000000002088", "pending"))
        );
        assert_eq!(s.stats().await.unwrap().pending, 3);
    }

    #[tokio::test]
    async fn a_running_legacy_message_is_adopted_by_its_builds_next_webhook_a_final_one_never() {
        let dir = fixture_copy();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        // Build 2087 was running at the upgrade: its next update edits its message.
        let mut next = webhook("build_updated.json", "drone.kiwi-labs.net");
        let k2087 = "build:drone.kiwi-labs.net:35:2087".to_string();
        next.key = Some(k2087.clone());
        s.append(next.clone()).await.unwrap();
        assert_eq!(
            s.message(&k2087, "channel:111").await.unwrap(),
            Some(msg("1100000000000002087", "running"))
        );
        assert_eq!(
            s.message("build:2087", "channel:111").await.unwrap(),
            None,
            "adopted once, by one key"
        );
        // Another server's build 2087 gets a message of its own.
        next.key = Some("build:other:35:2087".into());
        s.append(next.clone()).await.unwrap();
        assert_eq!(
            s.message("build:other:35:2087", "channel:111")
                .await
                .unwrap(),
            None
        );
        // Build 2000 had finished: a reused id never edits its message.
        next.key = Some("build:drone.kiwi-labs.net:35:2000".into());
        s.append(next).await.unwrap();
        assert_eq!(
            s.message("build:drone.kiwi-labs.net:35:2000", "channel:111")
                .await
                .unwrap(),
            None
        );
        assert!(s
            .message("build:2000", "channel:111")
            .await
            .unwrap()
            .is_some());
    }

    /// A store of a release with the queue byte counter but no schema
    /// version: the migration rewrites its events under longer keys, and the
    /// counter is counted afresh, so the queue bound stays exact.
    #[tokio::test]
    async fn a_migration_counts_the_queue_bytes_afresh() {
        use redb::{ReadableTable, WriteTransaction};
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            let ev = NewEvent {
                key: Some("build:2088".into()),
                ..webhook("build_updated.json", "drone.kiwi-labs.net")
            };
            s.append(ev).await.unwrap();
            let txn: WriteTransaction = s.shared.current().unwrap().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .remove(super::META_SCHEMA_VERSION)
                .unwrap();
            txn.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let pending = s.pending(10).await.unwrap();
        assert_ne!(
            pending[0].key, "build:2088",
            "the event was rewritten under its server's key"
        );
        let stored: u64 = {
            let txn = s.shared.current().unwrap().begin_read().unwrap();
            let events = txn.open_table(super::super::tables::EVENTS).unwrap();
            events
                .iter()
                .unwrap()
                .map(|i| i.unwrap().1.value().len() as u64)
                .sum()
        };
        assert_eq!(s.usage().await.unwrap().bytes, stored);
    }

    #[tokio::test]
    async fn a_store_from_a_newer_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(super::META_SCHEMA_VERSION, schema::CURRENT + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        match EmbeddedStore::open(dir.path()) {
            Err(StoreError::Config(m)) => assert!(m.contains("newer"), "{m}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}
