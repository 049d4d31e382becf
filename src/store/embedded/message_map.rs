//! The rows of the (key, destination) → message map and of the `changed`
//! outcome records, inside a transaction the caller owns (the writer's
//! batch, the open's migration, or a read).
//!
//! A key's messages are contiguous in `dest_messages` (its key is the tuple
//! (key, destination)), so every destination of a key is one range scan.
use super::codec::{decode_message, encode_message};
use super::errors::Ctx;
use super::retention::RetentionTables;
use super::tables::{OutcomeRow, Tables};
use crate::store::{MessageRef, OutcomeRecord, Result};
use redb::ReadableTable;

/// Store `m` as the message of `key` at `dest`.
pub(super) fn put_message(t: &mut Tables<'_>, key: &str, dest: &str, m: &MessageRef) -> Result<()> {
    let json = encode_message(key, m)?;
    t.messages
        .insert((key, dest), json.as_slice())
        .ctx("insert message")?;
    Ok(())
}

/// Every (destination, encoded message) of `key`, in destination order.
pub(super) fn raw_messages(
    messages: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in messages.range((key, "")..).ctx("scan messages")? {
        let (k, v) = item.ctx("scan messages")?;
        let (k, dest) = k.value();
        if k != key {
            break;
        }
        out.push((dest.to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// Every (destination, message) of `key`, decoded, in destination order.
pub(super) fn key_messages(
    messages: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &str,
) -> Result<Vec<(String, MessageRef)>> {
    raw_messages(messages, key)?
        .into_iter()
        .map(|(dest, blob)| Ok((dest, decode_message(key, &blob)?)))
        .collect()
}

/// Remove every message of `key`.
pub(super) fn remove_messages(t: &mut Tables<'_>, key: &str) -> Result<()> {
    for (dest, _) in raw_messages(&t.messages, key)? {
        t.messages
            .remove((key, dest.as_str()))
            .ctx("remove message")?;
    }
    Ok(())
}

/// A stored outcome row as a record.
pub(super) fn outcome_of(row: OutcomeRow) -> OutcomeRecord {
    let (passing, number, created, at_ms) = row;
    OutcomeRecord {
        passing,
        number,
        created,
        at_ms,
    }
}

/// Store `rec` for `change_key` if it is newer than the stored record
/// ([`OutcomeRecord::newer_than`]), with its time for retention.
pub(super) fn put_outcome(
    t: &mut Tables<'_>,
    kept: &mut RetentionTables<'_>,
    change_key: &str,
    rec: &OutcomeRecord,
) -> Result<()> {
    let stored = t
        .outcomes
        .get(change_key)
        .ctx("read outcome")?
        .map(|g| outcome_of(g.value()));
    if stored.as_ref().is_some_and(|s| !rec.newer_than(s)) {
        return Ok(());
    }
    t.outcomes
        .insert(
            change_key,
            (rec.passing, rec.number, rec.created, rec.at_ms),
        )
        .ctx("write outcome")?;
    kept.touch_outcome(change_key, stored.map(|s| s.at_ms), rec.at_ms)
}
