//! The operator's hand on the dead letters (`drone-discord queue retry|purge
//! ID|all`): queueing them again, or removing them for good, inside the
//! writer's transaction.
//!
//! A retried dead letter becomes a new event of its key under a fresh seq,
//! after everything pending, so per-key order among pending events holds and
//! a final status already shown is still never overwritten (the relay's
//! rule). The whole selection is checked against the queue's bounds first:
//! it goes back as a whole or not at all. With `all`, a record that cannot
//! be decoded is left where it is (and logged); it can still be purged.
use super::codec::{decode_dead, encode_event};
use super::errors::Ctx;
use super::queue::enqueue;
use super::tables::Tables;
use crate::store::{fits_all, full_message, Bounds, DeadSelection, Event, Result, Seq};
use redb::{ReadableTable, ReadableTableMetadata};

/// What a retry did.
pub(super) enum Retried {
    /// This many were queued again.
    Queued(u64),
    /// They do not fit below the bounds (the text says which); nothing changed.
    Full(String),
}

/// The selected dead letters' seqs and raw records.
fn selected(t: &Tables<'_>, which: DeadSelection) -> Result<Vec<(Seq, Vec<u8>)>> {
    match which {
        DeadSelection::One(seq) => Ok(t
            .dead
            .get(seq)
            .ctx("read dead letter")?
            .map(|g| vec![(seq, g.value().to_vec())])
            .unwrap_or_default()),
        DeadSelection::All => {
            let mut out = Vec::new();
            for item in t.dead.iter().ctx("scan dead letters")? {
                let (seq, blob) = item.ctx("scan dead letters")?;
                out.push((seq.value(), blob.value().to_vec()));
            }
            Ok(out)
        }
    }
}

/// Queue the selected dead letters again (see the module docs).
pub(super) fn retry(
    t: &mut Tables<'_>,
    which: DeadSelection,
    next_seq: &mut Seq,
    bytes: &mut u64,
    bounds: &Bounds,
) -> Result<Retried> {
    let mut events: Vec<(Seq, Event)> = Vec::new();
    for (seq, blob) in selected(t, which)? {
        match decode_dead(seq, &blob) {
            Ok(d) => events.push((seq, d.event)),
            Err(e) if which == DeadSelection::All => {
                tracing::warn!(error = %e, "dead letter cannot be decoded; left for purge");
            }
            Err(e) => return Err(e),
        }
    }
    let blobs: Vec<(Seq, String, Vec<u8>)> = events
        .into_iter()
        .map(|(seq, e)| {
            let blob = encode_event(&e.key, &e.event, &e.action, e.received_ms, &e.body);
            (seq, e.key, blob)
        })
        .collect();
    let more: u64 = blobs.iter().map(|(_, _, b)| b.len() as u64).sum();
    let pending = t.events.len().ctx("count events")?;
    if !fits_all(pending, *bytes, blobs.len() as u64, more, bounds) {
        return Ok(Retried::Full(full_message(bounds)));
    }
    for (dead_seq, key, blob) in &blobs {
        enqueue(t, key, blob, next_seq, bytes)?;
        t.dead.remove(*dead_seq).ctx("remove dead letter")?;
    }
    Ok(Retried::Queued(blobs.len() as u64))
}

/// Remove the selected dead letters; how many.
pub(super) fn purge(t: &mut Tables<'_>, which: DeadSelection) -> Result<u64> {
    let seqs: Vec<Seq> = selected(t, which)?.into_iter().map(|(s, _)| s).collect();
    for seq in &seqs {
        t.dead.remove(*seq).ctx("purge dead letter")?;
    }
    Ok(seqs.len() as u64)
}
