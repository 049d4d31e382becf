//! The delivery of one claim: decode its events, pick the state to show,
//! render it, create or edit the build's message, record the message id,
//! and complete, release or dead-letter the events. It returns an
//! [`Outcome`] for the scheduler and never retries on its own.
use super::nonce::{nonce_for, replacement_generation};
use super::scheduler::Scope;
use super::sink::Sink;
use super::RelayConfig;
use crate::discord::rest::RestError;
use crate::drone::{self, Webhook};
use crate::render;
use crate::store::{now_ms, Claim, Event, MessageRef, Store, StoreError};
use serde_json::Value;
use std::time::Duration;

/// What became of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (or nothing needed sending); events completed.
    Done,
    /// Could not deliver now; released for a retry after this delay.
    Retry { after: Duration, reason: String },
    /// Discord refuses us; released, and `scope` pauses.
    Refused { scope: Scope, reason: String },
    /// Discord rejected the message for good; events moved aside.
    DeadLettered,
    /// The store failed; released (if it could be) and retried later.
    StoreFailed(String),
}

/// The decoded events of a claim that can be shown, with the seqs of any that cannot.
struct Decoded {
    hooks: Vec<(Event, Webhook)>,
    undecodable: Vec<(u64, String)>,
}

fn decode(claim: &Claim) -> Decoded {
    let mut d = Decoded {
        hooks: Vec::new(),
        undecodable: Vec::new(),
    };
    for ev in &claim.events {
        match drone::parse(&ev.body) {
            Ok(h) => d.hooks.push((ev.clone(), h)),
            Err(e) => d.undecodable.push((ev.seq, e.to_string())),
        }
    }
    d
}

/// Pick the event whose state to show: the newest, unless that would move a
/// final status back to a non-final one (a late, stale update).
fn choose<'a>(hooks: &'a [(Event, Webhook)], shown: Option<&MessageRef>) -> Option<&'a Webhook> {
    let newest = &hooks.last()?.1;
    let newest_status = newest
        .build
        .as_ref()
        .map(|b| b.status.as_str())
        .unwrap_or("");
    if drone::is_final(newest_status) {
        return Some(newest);
    }
    // The newest is not final: prefer a final one from this claim, if any.
    if let Some((_, h)) = hooks
        .iter()
        .rev()
        .find(|(_, h)| h.build.as_ref().is_some_and(|b| drone::is_final(&b.status)))
    {
        return Some(h);
    }
    // Nor may it undo a final state already shown.
    if shown.is_some_and(|m| drone::is_final(&m.status)) {
        return None;
    }
    Some(newest)
}

/// Deliver one claim.
pub async fn deliver<S: Store, K: Sink>(
    cfg: &RelayConfig,
    store: &S,
    sink: &K,
    claim: Claim,
) -> Outcome {
    let key = claim.key.clone();
    let token = claim.token;
    let upto = claim.upto();
    let decoded = decode(&claim);

    // An undecodable event cannot ever be shown: set it aside (with everything
    // before it of this key, as dead letters work up to a seq) and go on.
    if let Some((seq, err)) = decoded.undecodable.first() {
        let reason = format!("stored event {seq} is not a Drone webhook: {err}");
        return finish_dead(cfg, store, &key, token, upto, &reason).await;
    }

    let shown = match store.message(&key).await {
        Ok(m) => m,
        Err(e) => return release_after_store_error(cfg, store, &key, token, e).await,
    };
    let Some(hook) = choose(&decoded.hooks, shown.as_ref()) else {
        tracing::debug!(key = %key, "only stale updates after a final status; nothing to send");
        return complete(cfg, store, &key, token, upto, None).await;
    };
    let Some(mut body) = render::render(hook) else {
        // Ingest only queues kinds it knows; an unknown one here came from an
        // older/newer version's queue. Nothing to show.
        tracing::warn!(key = %key, event = %hook.event, action = %hook.action, "no rendering for queued event; dropped");
        return complete(cfg, store, &key, token, upto, None).await;
    };
    let status = hook
        .build
        .as_ref()
        .map(|b| b.status.clone())
        .unwrap_or_default();
    let target = Target {
        cfg,
        key: &key,
        server: hook.system.as_ref().map(|s| s.host.as_str()).unwrap_or(""),
    };

    let result = match &shown {
        Some(m) => match sink.edit(&m.channel_id, &m.message_id, &body).await {
            Err(RestError::NotFound { .. }) => {
                tracing::info!(key = %key, message_id = %m.message_id, "message was deleted; posting a fresh one");
                // A nonce of its own (derived from the deleted message, so a
                // retry after a crash still cannot post twice).
                create(
                    sink,
                    &target,
                    &mut body,
                    replacement_generation(&m.message_id),
                )
                .await
            }
            // Discord refuses this edit (50001 Missing Access after the bot
            // lost an old message's channel, 50005 another author's message,
            // 50013): that concerns this message only. Post a fresh one; if
            // that is refused too, set the build aside.
            Err(RestError::Unauthorized {
                status: 403,
                message,
            }) => {
                tracing::warn!(key = %key, message_id = %m.message_id, reason = %message, "Discord refuses to edit the message (403); posting a fresh one");
                match create(
                    sink,
                    &target,
                    &mut body,
                    replacement_generation(&m.message_id),
                )
                .await
                {
                    Err(
                        e @ (RestError::Unauthorized { status: 403, .. }
                        | RestError::NotFound { .. }),
                    ) => {
                        let reason = format!(
                            "Discord refused to edit message {} (403: {message}) and to post a fresh one in channel {}: {e}",
                            m.message_id, cfg.channel_id
                        );
                        tracing::error!(key = %key, reason = %reason, "moving events aside as dead letters");
                        return match finish_dead(cfg, store, &key, token, upto, &reason).await {
                            // The create was refused: the channel pauses like after any refused create.
                            Outcome::DeadLettered => refused_create(cfg, &e),
                            other => other,
                        };
                    }
                    other => other,
                }
            }
            other => other.map(|id| (id, false)),
        },
        None => create(sink, &target, &mut body, 0).await,
    };

    match result {
        Ok((message_id, created)) => {
            let m = MessageRef {
                channel_id: shown
                    .as_ref()
                    .filter(|_| !created)
                    .map(|m| m.channel_id.clone())
                    .unwrap_or_else(|| cfg.channel_id.clone()),
                message_id,
                status,
            };
            if created {
                // Remember the message before anything else can fail, so a
                // later retry edits it instead of posting a second one.
                if let Err(e) = store.put_message(&key, m.clone()).await {
                    return release_after_store_error(cfg, store, &key, token, e).await;
                }
            }
            complete(cfg, store, &key, token, upto, Some(m)).await
        }
        Err(RestError::Transient {
            reason,
            retry_after,
        }) => {
            release(cfg, store, &key, token).await;
            Outcome::Retry {
                after: retry_after.unwrap_or_default(),
                reason,
            }
        }
        Err(
            e @ (RestError::Unauthorized { .. }
            | RestError::Suspended { .. }
            | RestError::NotFound { .. }),
        ) => {
            release(cfg, store, &key, token).await;
            refused_create(cfg, &e)
        }
        Err(RestError::Rejected {
            status,
            code,
            message,
        }) => {
            let reason = format!(
                "Discord rejected the message: {status} code {} {message}",
                code.unwrap_or(0)
            );
            tracing::error!(key = %key, reason = %reason, "moving events aside as dead letters");
            finish_dead(cfg, store, &key, token, upto, &reason).await
        }
    }
}

/// What a refusal pauses. Here every 403/404 is a create's (an edit's is
/// handled above): a 403 or 404 (10003 unknown channel, a setup problem,
/// not a bad message) pauses that destination; a 401 or a client that
/// suspended itself (after a 401, or with its invalid-request budget spent)
/// pauses everything.
fn refused_create(cfg: &RelayConfig, e: &RestError) -> Outcome {
    let channel = &cfg.channel_id;
    match e {
        RestError::Unauthorized {
            status: 403,
            message,
        } => Outcome::Refused {
            scope: Scope::Destination(channel.clone()),
            reason: format!("Discord answered 403 for channel {channel}: {message}"),
        },
        RestError::NotFound { code, message } => Outcome::Refused {
            scope: Scope::Destination(channel.clone()),
            reason: format!(
                "channel {channel} not found ({}): {message}",
                code.unwrap_or(0)
            ),
        },
        RestError::Unauthorized { status, message } => Outcome::Refused {
            scope: Scope::Everything,
            reason: format!("Discord answered {status}: {message}"),
        },
        RestError::Suspended { reason } => Outcome::Refused {
            scope: Scope::Everything,
            reason: reason.clone(),
        },
        other => Outcome::Refused {
            scope: Scope::Everything,
            reason: other.to_string(),
        },
    }
}

/// Where a create goes and what its nonce is made of.
struct Target<'a> {
    cfg: &'a RelayConfig,
    key: &'a str,
    /// The Drone server that sent the shown event (`system.host`, or empty).
    server: &'a str,
}

async fn create<K: Sink>(
    sink: &K,
    t: &Target<'_>,
    body: &mut Value,
    generation: u32,
) -> Result<(String, bool), RestError> {
    let channel = &t.cfg.channel_id;
    if let Some(obj) = body.as_object_mut() {
        let nonce = nonce_for(t.server, t.key, channel, generation);
        obj.insert("nonce".into(), Value::String(nonce));
        obj.insert("enforce_nonce".into(), Value::Bool(true));
    }
    let (id, shows_body) = sink.create_checked(channel, body).await?;
    if !shows_body {
        // Discord answered with the message an earlier attempt of this
        // create made (the same nonce, after a lost answer or a crash): it
        // shows that attempt's state. Bring it to this one before the
        // events are completed, or the build would stay shown out of date.
        tracing::info!(key = %t.key, message_id = %id, "create answered with its nonce's earlier message; editing it to the newest state");
        let mut edit = body.clone();
        if let Some(obj) = edit.as_object_mut() {
            obj.remove("nonce");
            obj.remove("enforce_nonce");
        }
        sink.edit(channel, &id, &edit).await?;
    }
    Ok((id, true))
}

async fn complete<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    upto: u64,
    m: Option<MessageRef>,
) -> Outcome {
    match store.complete(key, &cfg.owner, token, upto, m).await {
        Ok(()) => Outcome::Done,
        Err(e) => release_after_store_error(cfg, store, key, token, e).await,
    }
}

async fn finish_dead<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    upto: u64,
    reason: &str,
) -> Outcome {
    match store
        .dead_letter(key, &cfg.owner, token, upto, reason, now_ms())
        .await
    {
        Ok(()) => Outcome::DeadLettered,
        Err(e) => release_after_store_error(cfg, store, key, token, e).await,
    }
}

/// Hand `key`'s lease back (the driver does too, for keys it does not deliver).
pub async fn release<S: Store>(cfg: &RelayConfig, store: &S, key: &str, token: u64) {
    if let Err(e) = store.release(key, &cfg.owner, token).await {
        tracing::warn!(key = %key, error = %e, "cannot release lease; it will expire");
    }
}

async fn release_after_store_error<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    e: StoreError,
) -> Outcome {
    if let StoreError::Fenced(m) = &e {
        // Our lease expired and another delivery owns the key: the store
        // refused our write and changed nothing. Not a store failure.
        tracing::warn!(key = %key, reason = %m, "lease lost during delivery; the new holder delivers");
        return Outcome::Retry {
            after: Duration::ZERO,
            reason: e.to_string(),
        };
    }
    tracing::error!(key = %key, error = %e, "store failed during delivery; will retry");
    release(cfg, store, key, token).await;
    Outcome::StoreFailed(e.to_string())
}
