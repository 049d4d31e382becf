//! The queue's rows: how appending, replay refusal, taking a key's events
//! and pruning old replay keys change the tables, inside a transaction the
//! caller owns (the writer's batch, or a read for a claim).
//!
//! A key's pending events are indexed by `(key, seq)` in `key_seqs`; `heads`
//! maps each key's oldest pending seq to the key, so a claim walks keys in
//! the order their oldest event arrived. Replay keys (webhook signatures)
//! are kept for [`REPLAY_RETENTION_MS`] and pruned a bounded number per
//! commit.
use super::codec::encode_event;
use super::errors::Ctx;
use super::tables::Tables;
use crate::store::{
    fits, full_message, Appended, Bounds, NewEvent, Result, Seq, StoreError, REPLAY_RETENTION_MS,
};
use redb::{ReadableTable, ReadableTableMetadata};

/// Most expired replay keys removed per commit, so pruning never makes one
/// commit slow; a backlog drains over the following commits.
pub(super) const PRUNE_PER_COMMIT: usize = 64;

/// `meta` entry: the stored size (encoded bytes) of every pending event, so
/// the queue's byte bound and [`Usage`](crate::store::Usage) are O(1).
pub(super) const META_QUEUE_BYTES: &str = "queue_bytes";

/// The pending events' stored size, from `meta`; a store written before the
/// counter existed gets it computed once (one scan) and recorded.
pub(super) fn ensure_queue_bytes(t: &mut Tables<'_>) -> Result<u64> {
    if let Some(n) = t
        .meta
        .get(META_QUEUE_BYTES)
        .ctx("read queue_bytes")?
        .map(|g| g.value())
    {
        return Ok(n);
    }
    let mut n = 0u64;
    for item in t.events.iter().ctx("scan events")? {
        let (_, blob) = item.ctx("scan events")?;
        n = n.saturating_add(blob.value().len() as u64);
    }
    t.meta
        .insert(META_QUEUE_BYTES, n)
        .ctx("write queue_bytes")?;
    Ok(n)
}

/// Queue `ev` under the next seq, or report it as a replay. With the queue at
/// `bounds`, changes nothing and answers [`StoreError::Full`]; `bytes` is
/// the pending events' stored size, kept up to date.
pub(super) fn append(
    t: &mut Tables<'_>,
    ev: &NewEvent,
    next_seq: &mut Seq,
    bytes: &mut u64,
    bounds: &Bounds,
) -> Result<Appended> {
    let mut expired = None;
    if let Some(rk) = ev.replay_key.as_deref() {
        let seen = t.replay.get(rk).ctx("read replay key")?.map(|g| g.value());
        if let Some((seq, seen_ms)) = seen {
            if ev.received_ms.saturating_sub(seen_ms) < REPLAY_RETENTION_MS {
                return Ok(Appended::Duplicate(seq));
            }
            expired = Some(seen_ms);
        }
    }
    let key = match &ev.key {
        Some(k) => k.clone(),
        None => format!("event:{}", *next_seq),
    };
    let blob = encode_event(&key, &ev.event, &ev.action, ev.received_ms, &ev.body);
    if !fits(
        t.events.len().ctx("count events")?,
        *bytes,
        blob.len(),
        bounds,
    ) {
        return Err(StoreError::Full(full_message(bounds)));
    }
    if let (Some(seen_ms), Some(rk)) = (expired, ev.replay_key.as_deref()) {
        // Expired but not pruned yet: forget it and accept the event.
        t.replay_by_time
            .remove((seen_ms, rk))
            .ctx("remove replay key")?;
    }
    super::migrations::adopt_legacy_message(t, &key)?;
    let seq = enqueue(t, &key, &blob, next_seq, bytes)?;
    if let Some(rk) = ev.replay_key.as_deref() {
        t.replay
            .insert(rk, (seq, ev.received_ms))
            .ctx("insert replay key")?;
        t.replay_by_time
            .insert((ev.received_ms, rk), ())
            .ctx("insert replay time")?;
    }
    Ok(Appended::Queued(seq))
}

/// Insert the encoded event `blob` of `key` under the next seq, after every
/// pending event, and index it; returns its seq. No bound is checked here.
pub(super) fn enqueue(
    t: &mut Tables<'_>,
    key: &str,
    blob: &[u8],
    next_seq: &mut Seq,
    bytes: &mut u64,
) -> Result<Seq> {
    let seq = *next_seq;
    *next_seq = seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("meta next_seq: exhausted".into()))?;
    t.events.insert(seq, blob).ctx("insert event")?;
    *bytes = bytes.saturating_add(blob.len() as u64);
    let had_pending = first_seq(&t.key_seqs, key)?.is_some();
    t.key_seqs.insert((key, seq), ()).ctx("insert key index")?;
    if !had_pending {
        t.heads.insert(seq, key).ctx("insert head")?;
    }
    Ok(seq)
}

/// Oldest pending seq of `key`.
fn first_seq(
    key_seqs: &impl ReadableTable<(&'static str, u64), ()>,
    key: &str,
) -> Result<Option<Seq>> {
    let mut range = key_seqs
        .range((key, 0u64)..=(key, u64::MAX))
        .ctx("scan key index")?;
    match range.next() {
        Some(item) => {
            let (k, _) = item.ctx("scan key index")?;
            Ok(Some(k.value().1))
        }
        None => Ok(None),
    }
}

/// Remove `key`'s events with seq ≤ `upto`; returns them (seq, encoded) and
/// takes their size off `bytes`.
pub(super) fn take_events(
    t: &mut Tables<'_>,
    key: &str,
    upto: Seq,
    bytes: &mut u64,
) -> Result<Vec<(Seq, Vec<u8>)>> {
    let mut seqs = Vec::new();
    for item in t
        .key_seqs
        .range((key, 0u64)..=(key, upto))
        .ctx("scan key index")?
    {
        let (k, _) = item.ctx("scan key index")?;
        seqs.push(k.value().1);
    }
    let Some(&old_head) = seqs.first() else {
        return Ok(Vec::new());
    };
    let mut taken = Vec::with_capacity(seqs.len());
    for seq in seqs {
        t.key_seqs.remove((key, seq)).ctx("remove key index")?;
        let blob = t
            .events
            .remove(seq)
            .ctx("remove event")?
            .map(|g| g.value().to_vec());
        match blob {
            Some(b) => {
                *bytes = bytes.saturating_sub(b.len() as u64);
                taken.push((seq, b))
            }
            None => tracing::warn!(
                seq,
                key,
                "key index pointed at a missing event; dropped the index entry"
            ),
        }
    }
    t.heads.remove(old_head).ctx("remove head")?;
    if let Some(next) = first_seq(&t.key_seqs, key)? {
        t.heads.insert(next, key).ctx("insert head")?;
    }
    Ok(taken)
}

/// Forget a bounded number of replay keys older than the retention window.
pub(super) fn prune_replay(t: &mut Tables<'_>, now_ms: u64) -> Result<()> {
    let cutoff = now_ms.saturating_sub(REPLAY_RETENTION_MS);
    let mut expired = Vec::new();
    for item in t
        .replay_by_time
        .range::<(u64, &str)>(..)
        .ctx("scan replay keys")?
    {
        if expired.len() >= PRUNE_PER_COMMIT {
            break;
        }
        let (k, _) = item.ctx("scan replay keys")?;
        let (ms, rk) = k.value();
        if ms >= cutoff {
            break;
        }
        expired.push((ms, rk.to_owned()));
    }
    for (ms, rk) in expired {
        t.replay_by_time
            .remove((ms, rk.as_str()))
            .ctx("prune replay time")?;
        let current = t
            .replay
            .get(rk.as_str())
            .ctx("read replay key")?
            .map(|g| g.value());
        if current.is_some_and(|(_, seen)| seen == ms) {
            t.replay.remove(rk.as_str()).ctx("prune replay key")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::ev;
    use super::super::tables::{REPLAY, REPLAY_BY_TIME};
    use super::super::EmbeddedStore;
    use super::*;
    use crate::store::Store;
    use redb::{ReadableDatabase, ReadableTableMetadata};
    use std::sync::Arc;

    #[tokio::test]
    async fn replay_key_is_refused_within_retention_and_accepted_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let t0 = 1_000_000;
        assert_eq!(
            s.append(ev(None, t0, Some("sig-a"), b"x")).await.unwrap(),
            Appended::Queued(1)
        );
        assert_eq!(
            s.append(ev(None, t0 + 5, Some("sig-a"), b"x"))
                .await
                .unwrap(),
            Appended::Duplicate(1)
        );
        assert_eq!(
            s.append(ev(None, t0 + 5, Some("sig-b"), b"y"))
                .await
                .unwrap(),
            Appended::Queued(2)
        );
        assert_eq!(s.stats().await.unwrap().pending, 2);
        // A duplicate stays a duplicate across a restart.
        drop(s);
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(
            s.append(ev(None, t0 + REPLAY_RETENTION_MS - 1, Some("sig-a"), b"x"))
                .await
                .unwrap(),
            Appended::Duplicate(1)
        );
        assert_eq!(
            s.append(ev(None, t0 + REPLAY_RETENTION_MS, Some("sig-a"), b"x"))
                .await
                .unwrap(),
            Appended::Queued(3)
        );
        assert_eq!(s.stats().await.unwrap().pending, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_with_one_replay_key_store_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    s.append(ev(None, 100 + i, Some("same-signature"), b"x"))
                        .await
                })
            })
            .collect();
        let mut queued = Vec::new();
        let mut dups = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Appended::Queued(q) => queued.push(q),
                Appended::Duplicate(d) => dups.push(d),
            }
        }
        assert_eq!(queued.len(), 1, "exactly one append may win");
        assert_eq!(dups.len(), 47);
        assert!(
            dups.iter().all(|d| *d == queued[0]),
            "duplicates name the first seq"
        );
        assert_eq!(s.stats().await.unwrap().pending, 1);
    }

    #[tokio::test]
    async fn expired_replay_keys_are_pruned_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let n = PRUNE_PER_COMMIT as u64 + 10;
        for i in 0..n {
            s.append(ev(None, 1 + i, Some(&format!("old-{i}")), b""))
                .await
                .unwrap();
        }
        let count = |s: &EmbeddedStore| {
            let txn = s.shared.current().unwrap().begin_read().unwrap();
            let a = txn.open_table(REPLAY).unwrap().len().unwrap();
            let b = txn.open_table(REPLAY_BY_TIME).unwrap().len().unwrap();
            (a, b)
        };
        assert_eq!(count(&s), (n, n));
        let later = REPLAY_RETENTION_MS + 1_000;
        s.append(ev(None, later, Some("new-1"), b"")).await.unwrap();
        // One commit prunes at most PRUNE_PER_COMMIT; the rest goes next time.
        assert_eq!(
            count(&s),
            (
                n + 1 - PRUNE_PER_COMMIT as u64,
                n + 1 - PRUNE_PER_COMMIT as u64
            )
        );
        s.append(ev(None, later, Some("new-2"), b"")).await.unwrap();
        assert_eq!(count(&s), (2, 2));
        // A pruned key is accepted again.
        assert!(matches!(
            s.append(ev(None, later, Some("old-0"), b"")).await.unwrap(),
            Appended::Queued(_)
        ));
    }
}
