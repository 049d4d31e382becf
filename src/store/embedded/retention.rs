//! Retention: forgetting the message ids of builds nobody updates any more,
//! the `changed` outcome records of branches nobody builds any more, and dead
//! letters nobody retried, so the store does not grow for ever.
//!
//! A message's time is the last time it was stored (created or edited); it
//! lives in two tables of its own, so the `messages` record keeps its
//! format (records written by 0.1.0 stay as they are):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `message_times` | key | ms of the last update |
//! | `messages_by_time` | (ms, key) | () — pruning order |
//! | `outcomes_by_time` | (at_ms, change key) | () — pruning order of `outcomes` |
//!
//! A key's time covers its messages at every destination; they are pruned
//! together. An outcome record is pruned once it is older than the message
//! retention (its `at_ms`, the time it was written).
//!
//! Messages stored before these tables existed get the time of the first
//! open that knows them (`meta` `message_times` marks that this was done),
//! so they are pruned one retention after the upgrade.
//!
//! Pruning is piggy-backed on commits that append or dead-letter (real work),
//! judged by the newest time those callers handed in, and removes at most
//! [`PRUNE_PER_COMMIT`] of each kind per commit (like replay keys), so no
//! commit becomes slow and an idle service writes nothing for it. Dead
//! letters are pruned oldest seq first by the time they were set aside,
//! stopping at the first one still within its retention.
use super::codec::decode_dead;
use super::errors::Ctx;
use super::queue::PRUNE_PER_COMMIT;
use super::tables::Tables;
use crate::store::{Bounds, Result};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

pub(super) const MESSAGE_TIMES: TableDefinition<&str, u64> = TableDefinition::new("message_times");
pub(super) const MESSAGES_BY_TIME: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("messages_by_time");
pub(super) const OUTCOMES_BY_TIME: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("outcomes_by_time");

/// `meta` entry: set once the messages of an older store were given a time.
const META_MESSAGE_TIMES: &str = "message_times";

/// The retention tables, opened for writing next to [`Tables`].
pub(super) struct RetentionTables<'t> {
    times: redb::Table<'t, &'static str, u64>,
    by_time: redb::Table<'t, (u64, &'static str), ()>,
    outcomes_by_time: redb::Table<'t, (u64, &'static str), ()>,
}

impl<'t> RetentionTables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(RetentionTables {
            times: txn.open_table(MESSAGE_TIMES).ctx("open message_times")?,
            by_time: txn
                .open_table(MESSAGES_BY_TIME)
                .ctx("open messages_by_time")?,
            outcomes_by_time: txn
                .open_table(OUTCOMES_BY_TIME)
                .ctx("open outcomes_by_time")?,
        })
    }

    /// Record that `key`'s message was stored at `now_ms`.
    pub(super) fn touch(&mut self, key: &str, now_ms: u64) -> Result<()> {
        let old = self
            .times
            .insert(key, now_ms)
            .ctx("write message time")?
            .map(|g| g.value());
        if let Some(old) = old {
            self.by_time.remove((old, key)).ctx("remove message time")?;
        }
        self.by_time
            .insert((now_ms, key), ())
            .ctx("write message time index")?;
        Ok(())
    }

    /// Record that `change_key`'s outcome, written at `old_ms` before (if
    /// ever), was written at `now_ms`.
    pub(super) fn touch_outcome(
        &mut self,
        change_key: &str,
        old_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<()> {
        if let Some(old) = old_ms {
            self.outcomes_by_time
                .remove((old, change_key))
                .ctx("remove outcome time")?;
        }
        self.outcomes_by_time
            .insert((now_ms, change_key), ())
            .ctx("write outcome time")?;
        Ok(())
    }

    /// Give every message without a time `now_ms`, once per store.
    pub(super) fn backfill(&mut self, t: &mut Tables<'_>, now_ms: u64) -> Result<()> {
        if t.meta.get(META_MESSAGE_TIMES).ctx("read meta")?.is_some() {
            return Ok(());
        }
        let mut keys = Vec::new();
        for item in t.messages.iter().ctx("scan messages")? {
            let (k, _) = item.ctx("scan messages")?;
            let key = k.value().0;
            if keys.last().map(String::as_str) != Some(key) {
                keys.push(key.to_owned());
            }
        }
        for k in keys {
            if self
                .times
                .get(k.as_str())
                .ctx("read message time")?
                .is_none()
            {
                self.touch(&k, now_ms)?;
            }
        }
        t.meta.insert(META_MESSAGE_TIMES, 1).ctx("write meta")?;
        Ok(())
    }

    /// Remove a bounded number of messages, outcome records and dead letters
    /// past their retention. A message whose key still has pending events is kept (its
    /// delivery will edit it, which renews it).
    pub(super) fn prune(&mut self, t: &mut Tables<'_>, now_ms: u64, bounds: &Bounds) -> Result<()> {
        let cutoff = now_ms.saturating_sub(bounds.message_retention_ms);
        let mut old = Vec::new();
        for item in self
            .by_time
            .range::<(u64, &str)>(..)
            .ctx("scan message times")?
        {
            if old.len() >= PRUNE_PER_COMMIT {
                break;
            }
            let (k, _) = item.ctx("scan message times")?;
            let (ms, key) = k.value();
            if ms >= cutoff {
                break;
            }
            old.push((ms, key.to_owned()));
        }
        for (ms, key) in old {
            let pending = t
                .key_seqs
                .range((key.as_str(), 0u64)..=(key.as_str(), u64::MAX))
                .ctx("scan key index")?
                .next()
                .is_some();
            if pending {
                continue;
            }
            self.by_time
                .remove((ms, key.as_str()))
                .ctx("prune message time index")?;
            self.times.remove(key.as_str()).ctx("prune message time")?;
            super::message_map::remove_messages(t, &key)?;
        }
        let mut old = Vec::new();
        for item in self
            .outcomes_by_time
            .range::<(u64, &str)>(..)
            .ctx("scan outcome times")?
            .take(PRUNE_PER_COMMIT)
        {
            let (k, _) = item.ctx("scan outcome times")?;
            let (ms, ck) = k.value();
            if ms >= cutoff {
                break;
            }
            old.push((ms, ck.to_owned()));
        }
        for (ms, ck) in old {
            self.outcomes_by_time
                .remove((ms, ck.as_str()))
                .ctx("prune outcome time")?;
            t.outcomes.remove(ck.as_str()).ctx("prune outcome")?;
        }

        let cutoff = now_ms.saturating_sub(bounds.dead_letter_retention_ms);
        let mut expired = Vec::new();
        for item in t
            .dead
            .iter()
            .ctx("scan dead letters")?
            .take(PRUNE_PER_COMMIT)
        {
            let (seq, blob) = item.ctx("scan dead letters")?;
            let d = decode_dead(seq.value(), blob.value())?;
            if d.failed_ms >= cutoff {
                break;
            }
            expired.push(seq.value());
        }
        for seq in expired {
            t.dead.remove(seq).ctx("prune dead letter")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{ev, msg};
    use super::super::EmbeddedStore;
    use super::*;
    use crate::store::{now_ms, Store, DAY_MS};
    use redb::{ReadableDatabase, ReadableTableMetadata};

    #[tokio::test]
    async fn old_messages_and_dead_letters_are_pruned_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let b = Bounds::default();
        assert!(s
            .import_message("build:old", "channel:111", msg("m-old"))
            .await
            .unwrap());
        assert!(s
            .import_message("build:new", "channel:111", msg("m-new"))
            .await
            .unwrap());
        assert!(s
            .import_message("build:busy", "channel:111", msg("m-busy"))
            .await
            .unwrap());
        // A key with pending events keeps its message.
        s.append(ev(Some("build:busy"), 1, None, b"z"))
            .await
            .unwrap();
        // Make two of them older than the retention.
        let long_ago = now_ms() - b.message_retention_ms - DAY_MS;
        {
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            let mut r = RetentionTables::open(&txn).unwrap();
            r.touch("build:old", long_ago).unwrap();
            r.touch("build:busy", long_ago).unwrap();
            drop(r);
            txn.commit().unwrap();
        }
        // Dead letters: more old ones than one commit prunes, and a young one.
        let n = PRUNE_PER_COMMIT + 5;
        for i in 0..n {
            s.append(ev(Some("build:dead"), i as u64, None, b"x"))
                .await
                .unwrap();
        }
        let old_failure = now_ms() - b.dead_letter_retention_ms - DAY_MS;
        let claims = s
            .claim("w", std::time::Duration::from_secs(60), 10)
            .await
            .unwrap();
        let token = claims.iter().find(|c| c.key == "build:dead").unwrap().token;
        s.dead_letter("build:dead", "w", token, u64::MAX, "HTTP 400", old_failure)
            .await
            .unwrap();
        s.append(ev(Some("build:young"), 0, None, b"y"))
            .await
            .unwrap();
        let claims = s
            .claim("w", std::time::Duration::from_secs(60), 10)
            .await
            .unwrap();
        let token = claims
            .iter()
            .find(|c| c.key == "build:young")
            .unwrap()
            .token;
        s.dead_letter("build:young", "w", token, u64::MAX, "HTTP 400", now_ms())
            .await
            .unwrap();
        let dead = |s: &EmbeddedStore| {
            let txn = s.shared.current().unwrap().begin_read().unwrap();
            txn.open_table(super::super::tables::DEAD)
                .unwrap()
                .len()
                .unwrap()
        };
        // The young dead letter's commit (now, by the callers' clock) pruned
        // one bounded step; the next commit that appends prunes the rest.
        assert_eq!(
            dead(&s),
            (n + 1 - PRUNE_PER_COMMIT) as u64,
            "one bounded step"
        );
        s.append(ev(None, now_ms(), None, b"")).await.unwrap();
        assert_eq!(dead(&s), 1, "only the young dead letter is left");
        assert_eq!(
            s.dead_letters(10).await.unwrap()[0].event.key,
            "build:young"
        );
        assert_eq!(
            s.message("build:old", "channel:111").await.unwrap(),
            None,
            "an old message is forgotten"
        );
        assert_eq!(
            s.message("build:new", "channel:111").await.unwrap(),
            Some(msg("m-new"))
        );
        assert_eq!(
            s.message("build:busy", "channel:111").await.unwrap(),
            Some(msg("m-busy")),
            "pending events keep it"
        );
    }

    #[tokio::test]
    async fn messages_of_an_older_store_get_a_time_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            assert!(s
                .import_message("build:1", "channel:111", msg("m1"))
                .await
                .unwrap());
            // As if written by a release without the retention tables.
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            txn.delete_table(MESSAGE_TIMES).unwrap();
            txn.delete_table(MESSAGES_BY_TIME).unwrap();
            txn.open_table(super::super::tables::META)
                .unwrap()
                .remove(META_MESSAGE_TIMES)
                .unwrap();
            txn.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let txn = s.shared.current().unwrap().begin_read().unwrap();
        let times = txn.open_table(MESSAGE_TIMES).unwrap();
        let t = times.get("build:1").unwrap().map(|g| g.value());
        assert!(t.is_some_and(|t| t + DAY_MS > now_ms()), "{t:?}");
        assert_eq!(
            s.message("build:1", "channel:111").await.unwrap(),
            Some(msg("m1"))
        );
    }
}
