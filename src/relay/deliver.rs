//! The delivery of one claim: decode its events, pick the state to show,
//! render it, create or edit the build's message (storing a create's intent
//! first, and looking an uncertain one up before repeating it, see
//! [`super::reconcile`]), record the message id, and complete, release or
//! dead-letter the events, renewing the claim's lease while it runs. It
//! returns an [`Outcome`] for the scheduler and never retries on its own.
use super::nonce::{nonce_for, replacement_generation};
use super::reconcile;
use super::scheduler::Scope;
use super::sink::Sink;
use super::RelayConfig;
use crate::discord::rest::RestError;
use crate::drone::{self, Webhook};
use crate::render;
use crate::store::{
    channel_dest, now_ms, Claim, Completion, Event, MessageRef, Store, StoreError, UncertainCreate,
};
use serde_json::Value;
use std::time::{Duration, Instant};

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

/// What a delivery leaves for the driver besides its [`Outcome`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// A create was sent whose message id is not stored: its answer was
    /// lost or malformed, or the store failed after it. The scheduler
    /// starts trusting its nonce from this delivery
    /// ([`Scheduler::create_uncertain`](super::scheduler::Scheduler::create_uncertain)).
    pub create_uncertain: bool,
    /// Discord (or something in its place) answered a create or edit with a
    /// malformed 2xx: why, for `/health` (no secrets: a route and a cause).
    pub malformed: Option<String>,
}

/// Deliver one claim, renewing its lease while the delivery runs.
/// `nonce_trusted_until`: until when a create with an uncertain outcome may
/// be repeated as is (see [`super::reconcile`]); `None` looks it up first.
pub async fn deliver<S: Store, K: Sink>(
    cfg: &RelayConfig,
    store: &S,
    sink: &K,
    claim: Claim,
    nonce_trusted_until: Option<Instant>,
) -> (Outcome, Notes) {
    let mut notes = Notes::default();
    let renewing = keep_leased(cfg, store, claim.key.clone(), claim.token);
    let outcome = tokio::select! {
        biased;
        outcome = deliver_claim(cfg, store, sink, claim, nonce_trusted_until, &mut notes) => outcome,
        never = renewing => match never {},
    };
    (outcome, notes)
}

/// Renew the lease on `key` every third of its length for as long as the
/// delivery runs (a slow Discord, rate-limit waits, a stalled disk can
/// outlast it), so no other claim takes the key meanwhile. A lease found
/// lost stops the renewals; the delivery's writes are then fenced.
async fn keep_leased<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: String,
    token: u64,
) -> std::convert::Infallible {
    let every = (cfg.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match store.renew(&key, &cfg.owner, token, cfg.lease).await {
            Ok(()) => tracing::debug!(key = %key, "lease renewed"),
            Err(StoreError::Fenced(m)) => {
                tracing::warn!(key = %key, reason = %m, "lease lost during delivery; its writes will be refused");
                std::future::pending::<()>().await;
            }
            Err(e) => tracing::warn!(key = %key, error = %e, "cannot renew lease; trying again"),
        }
    }
}

/// Why showing the newest state failed.
enum Failure {
    Rest(RestError),
    Store(StoreError),
}

impl From<RestError> for Failure {
    fn from(e: RestError) -> Self {
        Failure::Rest(e)
    }
}

/// The message that shows the key now.
struct Shown {
    channel_id: String,
    message_id: String,
    /// Posted (or adopted) by this delivery: to be stored before completing.
    fresh: bool,
}

async fn deliver_claim<S: Store, K: Sink>(
    cfg: &RelayConfig,
    store: &S,
    sink: &K,
    claim: Claim,
    nonce_trusted_until: Option<Instant>,
    notes: &mut Notes,
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

    // A message stored at another destination (before the upgrade to the
    // per-destination map, or before DISCORD_CHANNEL_ID changed) is still
    // this build's message: edited where it is, as before.
    let shown = match store.message(&key, &channel_dest(&cfg.channel_id)).await {
        Ok(None) => store
            .messages(&key)
            .await
            .map(|all| all.into_iter().next().map(|(_, m)| m)),
        other => other,
    };
    let shown = match shown {
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
    let mut target = Target {
        cfg,
        store,
        sink,
        key: &key,
        token,
        server: hook.system.as_ref().map(|s| s.host.as_str()).unwrap_or(""),
        nonce_trusted_until,
        notes,
    };

    let result = match &shown {
        // A create of this key is uncertain: find its message, or repeat it.
        Some(
            m @ MessageRef {
                uncertain: Some(u), ..
            },
        ) => {
            let replaces = Some(m).filter(|m| !m.message_id.is_empty());
            target
                .post(&mut body, u.generation, replaces, Some(u))
                .await
        }
        Some(m) => match sink.edit(&m.channel_id, &m.message_id, &body).await {
            Err(RestError::NotFound { .. }) => {
                tracing::info!(key = %key, message_id = %m.message_id, "message was deleted; posting a fresh one");
                // A nonce of its own (derived from the deleted message, so a
                // retry after a crash still cannot post twice).
                target
                    .post(
                        &mut body,
                        replacement_generation(&m.message_id),
                        Some(m),
                        None,
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
                match target
                    .post(
                        &mut body,
                        replacement_generation(&m.message_id),
                        Some(m),
                        None,
                    )
                    .await
                {
                    Err(Failure::Rest(
                        e @ (RestError::Unauthorized { status: 403, .. }
                        | RestError::NotFound { .. }),
                    )) => {
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
            Err(RestError::Malformed { reason }) => {
                target.notes.malformed = Some(reason.clone());
                Err(Failure::Rest(RestError::Malformed { reason }))
            }
            other => other.map_err(Failure::Rest).map(|id| Shown {
                channel_id: m.channel_id.clone(),
                message_id: id,
                fresh: false,
            }),
        },
        None => target.post(&mut body, 0, None, None).await,
    };

    match result {
        Ok(now) => {
            crate::metrics::global().delivered(&claim);
            let m = MessageRef {
                channel_id: now.channel_id,
                message_id: now.message_id,
                status,
                ..MessageRef::default()
            };
            if now.fresh {
                // Remember the message before anything else can fail, so a
                // later retry edits it instead of posting a second one.
                if let Err(e) = store
                    .put_message(
                        &key,
                        &channel_dest(&cfg.channel_id),
                        &cfg.owner,
                        token,
                        m.clone(),
                    )
                    .await
                {
                    return release_after_store_error(cfg, store, &key, token, e).await;
                }
                notes.create_uncertain = false;
            }
            complete(cfg, store, &key, token, upto, Some(m)).await
        }
        Err(Failure::Store(e)) => release_after_store_error(cfg, store, &key, token, e).await,
        Err(Failure::Rest(RestError::Transient {
            reason,
            retry_after,
        })) => {
            release(cfg, store, &key, token).await;
            Outcome::Retry {
                after: retry_after.unwrap_or_default(),
                reason,
            }
        }
        Err(Failure::Rest(RestError::Malformed { reason })) => {
            release(cfg, store, &key, token).await;
            Outcome::Retry {
                after: Duration::ZERO,
                reason,
            }
        }
        Err(Failure::Rest(
            e @ (RestError::Unauthorized { .. }
            | RestError::Suspended { .. }
            | RestError::NotFound { .. }),
        )) => {
            release(cfg, store, &key, token).await;
            refused_create(cfg, &e)
        }
        Err(Failure::Rest(RestError::Rejected {
            status,
            code,
            message,
        })) => {
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

/// Everything a fresh message needs: where it goes, what its nonce is made
/// of, the lease it is written under, and what the delivery notes.
struct Target<'a, S, K> {
    cfg: &'a RelayConfig,
    store: &'a S,
    sink: &'a K,
    key: &'a str,
    token: u64,
    /// The Drone server that sent the shown event (`system.host`, or empty).
    server: &'a str,
    nonce_trusted_until: Option<Instant>,
    notes: &'a mut Notes,
}

impl<S: Store, K: Sink> Target<'_, S, K> {
    /// Post a fresh message for the key, the first (generation 0) or one
    /// that replaces `replaces`, so that at most one ever exists:
    ///
    /// * a first attempt stores its intent (an uncertain create) before the
    ///   create goes out, so no crash or lost answer can hide it;
    /// * a repeat (`pending`: the stored intent) goes out as is only while
    ///   Discord still remembers its nonce; later the channel is searched
    ///   first and a message found there is adopted (edited, then stored).
    async fn post(
        &mut self,
        body: &mut Value,
        generation: u32,
        replaces: Option<&MessageRef>,
        pending: Option<&UncertainCreate>,
    ) -> Result<Shown, Failure> {
        let channel = &self.cfg.channel_id;
        match pending {
            Some(u) => {
                let trusted = self
                    .nonce_trusted_until
                    .is_some_and(|until| Instant::now() < until);
                if !trusted {
                    if let Some(found) = self.look_up(body, u, replaces).await? {
                        return Ok(found);
                    }
                }
            }
            None => {
                let intent = MessageRef {
                    channel_id: replaces
                        .map(|m| m.channel_id.clone())
                        .unwrap_or_else(|| channel.clone()),
                    message_id: replaces.map(|m| m.message_id.clone()).unwrap_or_default(),
                    status: replaces.map(|m| m.status.clone()).unwrap_or_default(),
                    uncertain: Some(UncertainCreate {
                        channel_id: channel.clone(),
                        generation,
                        since_ms: now_ms(),
                    }),
                    ..MessageRef::default()
                };
                self.store
                    .put_message(
                        self.key,
                        &channel_dest(channel),
                        &self.cfg.owner,
                        self.token,
                        intent,
                    )
                    .await
                    .map_err(Failure::Store)?;
            }
        }
        if let Some(obj) = body.as_object_mut() {
            let nonce = nonce_for(self.server, self.key, channel, generation);
            obj.insert("nonce".into(), Value::String(nonce));
            obj.insert("enforce_nonce".into(), Value::Bool(true));
        }
        self.notes.create_uncertain = true;
        match self.sink.create_checked(channel, body).await {
            Ok((id, shows_body)) => {
                if !shows_body {
                    // Discord answered with the message an earlier attempt of
                    // this create made (the same nonce, after a lost answer or
                    // a crash): it shows that attempt's state. Bring it to this
                    // one before the events are completed, or the build would
                    // stay shown out of date. Should the edit fail, the create
                    // stays uncertain and the next attempt gets the same
                    // answer (or, past the nonce window, finds the message).
                    tracing::info!(key = %self.key, message_id = %id, "create answered with its nonce's earlier message; editing it to the newest state");
                    let mut edit = body.clone();
                    if let Some(obj) = edit.as_object_mut() {
                        obj.remove("nonce");
                        obj.remove("enforce_nonce");
                    }
                    if let Err(e) = self.sink.edit(channel, &id, &edit).await {
                        if let RestError::Malformed { reason } = &e {
                            self.notes.malformed = Some(reason.clone());
                        }
                        return Err(Failure::Rest(e));
                    }
                }
                Ok(Shown {
                    channel_id: channel.clone(),
                    message_id: id,
                    fresh: true,
                })
            }
            Err(e) => {
                match &e {
                    // Refused: nothing was created.
                    RestError::Unauthorized { .. }
                    | RestError::NotFound { .. }
                    | RestError::Rejected { .. }
                    | RestError::Suspended { .. } => self.notes.create_uncertain = false,
                    RestError::Malformed { reason } => self.notes.malformed = Some(reason.clone()),
                    RestError::Transient { .. } => {}
                }
                Err(Failure::Rest(e))
            }
        }
    }

    /// Search the channel of the uncertain create `u` for the bot's own
    /// message of this build; found, edit it to `body` and adopt it.
    async fn look_up(
        &mut self,
        body: &Value,
        u: &UncertainCreate,
        replaces: Option<&MessageRef>,
    ) -> Result<Option<Shown>, Failure> {
        let Some(mark) = reconcile::marker(body) else {
            tracing::warn!(key = %self.key, "a create's outcome is uncertain and its message has no link to find it by; repeating it with the same nonce");
            return Ok(None);
        };
        let bot = self.sink.own_user_id().await?;
        let recent = self
            .sink
            .recent_messages(&u.channel_id, reconcile::LOOKBACK)
            .await?;
        let except = replaces.map(|m| m.message_id.as_str());
        let Some(found) = reconcile::find_own(&recent, &bot, mark, except) else {
            tracing::info!(key = %self.key, channel = %u.channel_id, "the uncertain create left no message; creating it again");
            return Ok(None);
        };
        tracing::info!(key = %self.key, message_id = %found, "the uncertain create's message was found in the channel; adopting it");
        match self.sink.edit(&u.channel_id, found, body).await {
            Ok(id) => Ok(Some(Shown {
                channel_id: u.channel_id.clone(),
                message_id: id,
                fresh: true,
            })),
            // Gone or not editable since the read: post a fresh one instead.
            Err(RestError::NotFound { .. } | RestError::Unauthorized { status: 403, .. }) => {
                Ok(None)
            }
            Err(RestError::Malformed { reason }) => {
                self.notes.malformed = Some(reason.clone());
                Err(Failure::Rest(RestError::Malformed { reason }))
            }
            Err(e) => Err(Failure::Rest(e)),
        }
    }
}

async fn complete<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    upto: u64,
    m: Option<MessageRef>,
) -> Outcome {
    let done = Completion {
        messages: m
            .map(|m| (channel_dest(&cfg.channel_id), m))
            .into_iter()
            .collect(),
        outcome: None,
    };
    match store.complete(key, &cfg.owner, token, upto, done).await {
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
        Ok(()) => {
            crate::metrics::global().dead_lettered();
            Outcome::DeadLettered
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::threads::ChannelKind;
    use crate::discord::webhook::WebhookUrl;
    use crate::discord::webhook_exec::WebhookMessage;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::NewEvent;

    /// A sink whose create takes longer than a lease.
    struct Slow(Duration);

    impl Sink for Slow {
        async fn create(&self, _channel: &str, _body: &Value) -> Result<String, RestError> {
            tokio::time::sleep(self.0).await;
            Ok("1".into())
        }
        async fn edit(&self, _c: &str, id: &str, _body: &Value) -> Result<String, RestError> {
            Ok(id.into())
        }
        async fn recent_messages(&self, _c: &str, _limit: u8) -> Result<Vec<Value>, RestError> {
            Ok(Vec::new())
        }
        async fn own_user_id(&self) -> Result<String, RestError> {
            Ok("1".into())
        }
        async fn channel_kind(&self, _c: &str) -> Result<ChannelKind, RestError> {
            Ok(ChannelKind::Text)
        }
        async fn start_thread(&self, _c: &str, id: &str, _n: &str) -> Result<String, RestError> {
            Ok(id.into())
        }
        async fn create_forum_post(
            &self,
            _f: &str,
            _n: &str,
            _body: &Value,
        ) -> Result<(String, String), RestError> {
            tokio::time::sleep(self.0).await;
            Ok(("1".into(), "1".into()))
        }
        async fn execute_webhook(
            &self,
            _url: &WebhookUrl,
            _body: &Value,
            _thread: Option<&str>,
        ) -> Result<WebhookMessage, RestError> {
            tokio::time::sleep(self.0).await;
            Ok(WebhookMessage {
                channel_id: "1".into(),
                message_id: "1".into(),
            })
        }
        async fn edit_webhook_message(
            &self,
            _url: &WebhookUrl,
            id: &str,
            _body: &Value,
            _thread: Option<&str>,
        ) -> Result<String, RestError> {
            Ok(id.into())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_longer_than_its_lease_keeps_the_key_by_renewing_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test/fixtures/drone/build_created.json"
        ))
        .unwrap();
        store
            .append(NewEvent {
                key: Some("build:h:1:1".into()),
                event: "build".into(),
                action: "created".into(),
                received_ms: now_ms(),
                replay_key: None,
                body,
            })
            .await
            .unwrap();
        let mut cfg = RelayConfig::new("100000000000000001");
        cfg.lease = Duration::from_millis(150);
        let claim = store
            .claim(&cfg.owner, cfg.lease, 1)
            .await
            .unwrap()
            .remove(0);
        let sink = Slow(Duration::from_millis(900));
        let other = async {
            // Well past the first expiry: a second worker finds nothing to claim.
            tokio::time::sleep(Duration::from_millis(500)).await;
            store.claim("other", cfg.lease, 10).await.unwrap()
        };
        let ((outcome, notes), stolen) =
            tokio::join!(deliver(&cfg, &store, &sink, claim, None), other);
        assert!(stolen.is_empty(), "the renewed lease held: {stolen:?}");
        assert_eq!(outcome, Outcome::Done);
        assert!(!notes.create_uncertain, "the message id was stored");
        assert_eq!(store.stats().await.unwrap().pending, 0);
    }
}
