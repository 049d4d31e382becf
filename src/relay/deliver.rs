//! The delivery of one claim: decode its events, pick the state to show,
//! render it, find the destinations its routes send it to
//! (`routes::matching`) and what each gets (`routes::plan`), deliver each
//! destination's share ([`super::destination`]), then complete the events
//! with every destination's message and the build's new outcome record (for
//! `when = "changed"`) in one write, or release or dead-letter them,
//! renewing the claim's lease while it runs. It returns an [`Outcome`] for
//! the scheduler and never retries on its own.
//!
//! Partial failures: each destination's message, thread and ping are stored
//! as each step succeeds, so when one destination fails and the claim is
//! retried, the destinations already done get at most an idempotent edit,
//! never a second create, thread or ping. The failure that decides the
//! outcome is the one that concerns the most ([`super::combine`]).
use super::combine::{worst, DestFailure};
use super::destination::{dest_key, Share};
use super::scheduler::Scope;
use super::sink::Sink;
use super::RelayConfig;
use crate::discord::rest::RestError;
use crate::drone::{self, Webhook};
use crate::render;
use crate::routes::{self, ChangeKey, Destination};
use crate::store::{now_ms, Claim, Completion, Event, MessageRef, Store, StoreError};
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
    /// The event matched no route: not posted, counted for `/health`.
    pub unmatched: bool,
    /// Destinations (store keys) this delivery reached: a refusal pause of
    /// theirs that began before it is over.
    pub reached: Vec<String>,
}

/// Deliver one claim, renewing its lease while the delivery runs.
/// `nonce_trusted_until`: until when a create with an uncertain outcome may
/// be repeated as is (see [`super::reconcile`]); `None` looks it up first.
/// `paused`: destinations (store keys) Discord refused lately: skipped, and
/// the claim retried later for them.
pub async fn deliver<S: Store, K: Sink>(
    cfg: &RelayConfig,
    store: &S,
    sink: &K,
    claim: Claim,
    nonce_trusted_until: Option<Instant>,
    paused: &[String],
) -> (Outcome, Notes) {
    let mut notes = Notes::default();
    let renewing = keep_leased(cfg, store, claim.key.clone(), claim.token);
    let outcome = tokio::select! {
        biased;
        outcome = deliver_claim(cfg, store, sink, claim, nonce_trusted_until, paused, &mut notes) => outcome,
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

/// Why one destination's share failed.
#[derive(Debug)]
pub(super) enum Failure {
    Rest(RestError),
    Store(StoreError),
    /// Discord refused an edit (403) and the fresh message replacing it:
    /// the events are set aside and the destination pauses.
    DeadAndPause {
        reason: String,
        error: RestError,
    },
}

impl From<RestError> for Failure {
    fn from(e: RestError) -> Self {
        Failure::Rest(e)
    }
}

/// What one destination's share needs: the relay, the claim's lease, the
/// nonces' parts, and the delivery's notes.
pub(super) struct Ctx<'a, S, K> {
    pub cfg: &'a RelayConfig,
    pub store: &'a S,
    pub sink: &'a K,
    pub key: &'a str,
    pub token: u64,
    /// The Drone server that sent the shown event (`system.host`, or empty).
    pub server: &'a str,
    pub nonce_trusted_until: Option<Instant>,
    pub notes: &'a mut Notes,
}

/// How a destination is named in reasons and logs (never a webhook's URL).
fn place(d: &Destination, default_channel: &str) -> String {
    match d {
        Destination::Channel(id) => format!("channel {id}"),
        Destination::Webhook(name) => format!("webhook {name}"),
        Destination::Default => format!("channel {default_channel}"),
    }
}

/// A stored outcome as the `changed` decision reads it.
fn record_of(r: &crate::store::OutcomeRecord) -> routes::Record {
    routes::Record {
        outcome: if r.passing {
            routes::Outcome::Passing
        } else {
            routes::Outcome::Failing
        },
        build: routes::BuildOrder {
            number: r.number,
            created: r.created,
        },
    }
}

async fn deliver_claim<S: Store, K: Sink>(
    cfg: &RelayConfig,
    store: &S,
    sink: &K,
    claim: Claim,
    nonce_trusted_until: Option<Instant>,
    paused: &[String],
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

    let stored = match store.messages(&key).await {
        Ok(m) => m,
        Err(e) => return release_after_store_error(cfg, store, &key, token, e).await,
    };
    let shown_final = stored
        .iter()
        .map(|(_, m)| m)
        .find(|m| drone::is_final(&m.status));
    let Some(hook) = choose(&decoded.hooks, shown_final) else {
        tracing::debug!(key = %key, "only stale updates after a final status; nothing to send");
        return complete(cfg, store, &key, token, upto, Completion::default()).await;
    };
    let Some(mut base) = render::render(hook) else {
        // Ingest only queues kinds it knows; an unknown one here came from an
        // older/newer version's queue. Nothing to show.
        tracing::warn!(key = %key, event = %hook.event, action = %hook.action, "no rendering for queued event; dropped");
        return complete(cfg, store, &key, token, upto, Completion::default()).await;
    };
    if cfg.restart_buttons {
        crate::interactions::button::add_for_failure(&mut base, hook);
    }
    let routing = cfg.routing.routing();
    let matches = routes::matching(&routing, hook, Some(&cfg.channel_id));
    if matches.is_empty() {
        tracing::info!(key = %key, event = %hook.event, action = %hook.action, "no route matches the event; not posted");
        notes.unmatched = true;
        return complete(cfg, store, &key, token, upto, Completion::default()).await;
    }

    // `changed`: the build's previous outcome, and the record this final
    // status leaves (written with the completion, so a crash before it
    // decides the same way again).
    let mut previous = None;
    let mut record = None;
    if let (Some(change), Some(build)) = (ChangeKey::of(hook), hook.build.as_ref()) {
        if routes::outcome(&build.status).is_some() {
            let change_key = change.store_key();
            previous = match store.outcome(&change_key).await {
                Ok(r) => r.as_ref().map(record_of),
                Err(e) => return release_after_store_error(cfg, store, &key, token, e).await,
            };
            let order = routes::BuildOrder {
                number: build.number,
                created: build.created,
            };
            record = routes::changed(previous.as_ref(), order, &build.status)
                .record
                .map(|r| {
                    let stored = crate::store::OutcomeRecord {
                        passing: r.outcome == routes::Outcome::Passing,
                        number: r.build.number,
                        created: r.build.created,
                        at_ms: now_ms(),
                    };
                    (change_key, stored)
                });
        }
    }

    let mut ctx = Ctx {
        cfg,
        store,
        sink,
        key: &key,
        token,
        server: hook.system.as_ref().map(|s| s.host.as_str()).unwrap_or(""),
        nonce_trusted_until,
        notes,
    };
    let mut settled = Vec::new();
    let mut failures: Vec<DestFailure> = Vec::new();
    let mut skipped = Vec::new();
    for m in &matches {
        let dest = dest_key(&m.destination, &cfg.channel_id);
        if paused.contains(&dest) {
            skipped.push(dest);
            continue;
        }
        let from_file = m.route.line > 0;
        // Without routes the key's one message is the build's, wherever it
        // is: one posted before DISCORD_CHANNEL_ID changed, or by a release
        // that kept one message per key, is edited as before.
        let here = stored
            .iter()
            .find(|(d, _)| *d == dest)
            .or_else(|| stored.first().filter(|_| !from_file))
            .map(|(_, m)| m.clone());
        let plan = routes::plan(
            m.route,
            &m.destination,
            &routing.users,
            hook,
            previous.as_ref(),
            here.as_ref().is_some_and(|m| m.pinged),
        );
        let share = Share {
            dest,
            destination: &m.destination,
            plan,
            from_file,
        };
        match ctx.deliver_share(&share, hook, &base, here).await {
            Ok(Some(done)) => {
                ctx.notes.reached.push(share.dest.clone());
                settled.push((share.dest, done));
            }
            Ok(None) => {}
            Err(failure) => {
                let stop = super::combine::stops_all(&failure);
                failures.push(DestFailure {
                    dest: share.dest,
                    place: place(&m.destination, &cfg.channel_id),
                    failure,
                });
                if stop {
                    break;
                }
            }
        }
    }
    if !settled.is_empty() {
        crate::metrics::global().delivered(&claim);
    }
    if let Some(f) = worst(failures) {
        return failed(cfg, store, &key, token, upto, f).await;
    }
    if let Some(dest) = skipped.first() {
        release(cfg, store, &key, token).await;
        return Outcome::Retry {
            after: Duration::ZERO,
            reason: format!("{dest} is paused after Discord refused it"),
        };
    }
    let done = Completion {
        messages: settled,
        outcome: record,
    };
    complete(cfg, store, &key, token, upto, done).await
}

/// The outcome of a claim one of whose destinations failed with `f`.
async fn failed<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    upto: u64,
    f: DestFailure,
) -> Outcome {
    match f.failure {
        Failure::Store(e) => release_after_store_error(cfg, store, key, token, e).await,
        Failure::DeadAndPause { reason, error } => {
            tracing::error!(key = %key, reason = %reason, "moving events aside as dead letters");
            match finish_dead(cfg, store, key, token, upto, &reason).await {
                // The create was refused: the destination pauses like after any refused create.
                Outcome::DeadLettered => refused_create(&f.dest, &f.place, &error),
                other => other,
            }
        }
        Failure::Rest(RestError::Transient {
            reason,
            retry_after,
        }) => {
            release(cfg, store, key, token).await;
            Outcome::Retry {
                after: retry_after.unwrap_or_default(),
                reason,
            }
        }
        Failure::Rest(RestError::Malformed { reason }) => {
            release(cfg, store, key, token).await;
            Outcome::Retry {
                after: Duration::ZERO,
                reason,
            }
        }
        Failure::Rest(
            e @ (RestError::Unauthorized { .. }
            | RestError::Suspended { .. }
            | RestError::NotFound { .. }),
        ) => {
            release(cfg, store, key, token).await;
            refused_create(&f.dest, &f.place, &e)
        }
        Failure::Rest(RestError::Rejected {
            status,
            code,
            message,
        }) => {
            let reason = format!(
                "Discord rejected the message: {status} code {} {message}",
                code.unwrap_or(0)
            );
            tracing::error!(key = %key, reason = %reason, "moving events aside as dead letters");
            finish_dead(cfg, store, key, token, upto, &reason).await
        }
    }
}

/// What a refusal pauses. Here every 403/404 is a create's (an edit's is
/// handled by the destination): a 403 or 404 (10003 unknown channel, a
/// setup problem, not a bad message) pauses that destination (`dest`, named
/// `place` in the reason); a 401 or a client that suspended itself (after a
/// 401, or with its invalid-request budget spent) pauses everything.
fn refused_create(dest: &str, place: &str, e: &RestError) -> Outcome {
    match e {
        RestError::Unauthorized {
            status: 403,
            message,
        } => Outcome::Refused {
            scope: Scope::Destination(dest.to_string()),
            reason: format!("Discord answered 403 for {place}: {message}"),
        },
        RestError::NotFound { code, message } => Outcome::Refused {
            scope: Scope::Destination(dest.to_string()),
            reason: format!("{place} not found ({}): {message}", code.unwrap_or(0)),
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

async fn complete<S: Store>(
    cfg: &RelayConfig,
    store: &S,
    key: &str,
    token: u64,
    upto: u64,
    done: Completion,
) -> Outcome {
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
    use serde_json::Value;

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
            tokio::join!(deliver(&cfg, &store, &sink, claim, None, &[]), other);
        assert!(stolen.is_empty(), "the renewed lease held: {stolen:?}");
        assert_eq!(outcome, Outcome::Done);
        assert!(!notes.create_uncertain, "the message id was stored");
        assert_eq!(store.stats().await.unwrap().pending, 0);
    }
}
