//! Every HTTP endpoint of the service, and the routing between them:
//! `POST /` (the Drone webhook: verify, parse, durably queue, answer),
//! `GET /health`, `GET /queue` and the dead-letter actions under
//! `POST /queue/dead/` (loopback only; see `queue_admin`).
//!
//! Drone gives each webhook one try and never retries, so the webhook
//! endpoint answers 200 only after the event is durably in the store, and answers
//! fast: all Discord work happens later in the relay. Everything it refuses
//! gets a specific status and a short JSON reason that never echoes a secret.
use crate::drone;
use crate::health::{Component, Health, Status};
use crate::http::request::Head;
use crate::http::{Handler, HeadCheck, Request, Response};
use crate::signature::Verifier;
use crate::store::{build_key, now_ms, Appended, NewEvent, Store, StoreError};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;

/// The HTTP handler behind the listener: `POST /`, `GET /health`, `GET /queue`.
pub struct Endpoints<S> {
    store: Arc<S>,
    verifier: Verifier,
    health: Arc<Health>,
    /// Woken after every queued event so the relay starts at once.
    relay_wake: Arc<Notify>,
}

impl<S: Store> Endpoints<S> {
    pub fn new(
        store: Arc<S>,
        verifier: Verifier,
        health: Arc<Health>,
        relay_wake: Arc<Notify>,
    ) -> Self {
        Endpoints {
            store,
            verifier,
            health,
            relay_wake,
        }
    }

    fn health_response(&self, head: bool) -> Response {
        let report = self.health.report();
        let status = if report.healthy { 200 } else { 503 };
        let value = serde_json::to_value(&report).unwrap_or_else(|_| json!({"status": "unknown"}));
        let mut resp = Response::json(status, &value).with_header("Cache-Control", "no-store");
        if head {
            resp.body.clear();
        }
        resp
    }

    /// Pending events and dead letters (no bodies), for `drone-discord queue`.
    async fn queue_response(&self) -> Response {
        const LIMIT: usize = 100;
        let result = async {
            Ok::<_, StoreError>((
                self.store.stats().await?,
                self.store.pending(LIMIT).await?,
                self.store.dead_letters(LIMIT).await?,
            ))
        }
        .await;
        match result {
            Ok((stats, pending, dead)) => Response::json(
                200,
                &json!({
                    "pending": stats.pending,
                    "dead_letters": stats.dead_letters,
                    "events": pending.iter().map(|e| json!({
                        "id": e.seq, "key": e.key, "event": e.event, "action": e.action, "received_ms": e.received_ms,
                    })).collect::<Vec<_>>(),
                    "dead": dead.iter().map(|d| json!({
                        "id": d.event.seq, "key": d.event.key, "event": d.event.event, "action": d.event.action,
                        "reason": d.reason, "failed_ms": d.failed_ms,
                    })).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => Response::error(503, &format!("store: {}", short(&e.to_string()))),
        }
    }

    async fn webhook(&self, req: &Request) -> Response {
        // The head was checked before the body was read (check_head); this
        // is the whole check again, digest included, so that `handle` is
        // complete on its own.
        let verified = match self.verifier.verify(
            &req.method,
            &req.target,
            &req.headers,
            &req.body,
            SystemTime::now(),
        ) {
            Ok(v) => v,
            Err(e) => return refused_signature(&e),
        };

        let hook = match drone::parse(&req.body) {
            Ok(h) => h,
            Err(e) => {
                return Response::error(
                    400,
                    &format!("body is not a Drone webhook: {}", short(&e.to_string())),
                )
                .with_log_note("refused=json");
            }
        };
        if hook.event.is_empty() {
            return Response::error(400, "body has no \"event\"");
        }
        if let Some(header) = req.header("x-drone-event") {
            if !header.trim().eq_ignore_ascii_case(&hook.event) {
                return Response::error(400, "X-Drone-Event does not match the body's \"event\"")
                    .with_log_note("refused=event-mismatch");
            }
        }

        let Some(kind) = hook.kind() else {
            tracing::info!(event = %short(&hook.event), action = %short(&hook.action), "ignored: event/action not handled by this version");
            return Response::json(200, &json!({"message": "ignored"})).with_log_note(format!(
                "ignored={}:{}",
                short(&hook.event),
                short(&hook.action)
            ));
        };

        let key = match (&hook.build, kind) {
            // Keyed by Drone server and repository too: build ids are only
            // unique within one Drone database (see `store::build_key`).
            (Some(b), drone::Kind::BuildCreated | drone::Kind::BuildUpdated) if b.id > 0 => {
                let host = hook.system.as_ref().map(|s| s.host.as_str()).unwrap_or("");
                Some(build_key(host, b.repo_id, b.id))
            }
            (_, drone::Kind::BuildCreated | drone::Kind::BuildUpdated) => {
                return Response::error(400, "build event without a build id")
                    .with_log_note("refused=no-build-id");
            }
            _ => None,
        };

        let event = NewEvent {
            key,
            event: hook.event.clone(),
            action: hook.action.clone(),
            received_ms: now_ms(),
            replay_key: Some(verified.signature),
            body: req.body.clone(),
        };
        match self.store.append(event).await {
            Ok(Appended::Queued(seq)) => {
                // Health is not set back to ok here: on a nearly full disk redb
                // can still append inside its file while the store probe (the
                // one authority for "writable") fails; flapping would follow.
                self.relay_wake.notify_one();
                if let Some(clock) = self.verifier.clock() {
                    clock.note_work();
                }
                Response::json(200, &json!({"message": "queued", "id": seq}))
                    .with_log_note(format!("event_id={seq}"))
            }
            Ok(Appended::Duplicate(seq)) => {
                tracing::info!(
                    event_id = seq,
                    "replayed webhook: already queued, not queued again"
                );
                Response::json(200, &json!({"message": "duplicate", "id": seq}))
                    .with_log_note(format!("event_id={seq} duplicate"))
            }
            Err(StoreError::Full(m)) => {
                // Nothing already accepted is dropped: the newest is refused,
                // and Drone (or whoever resends) may try again later.
                tracing::warn!(reason = %m, "queue full: webhook refused");
                match self.store.usage().await {
                    Ok(u) => self
                        .health
                        .set_queue_usage(crate::store::Usage { full: true, ..u }),
                    Err(_) => self.health.set_queue_full(),
                }
                Response::error(503, "the queue is full; the event was not accepted")
                    .with_header("Retry-After", "60")
                    .with_log_note("refused=queue-full")
            }
            Err(e) => {
                tracing::error!(error = %e, "could not queue webhook");
                if matches!(e, StoreError::Unavailable(_)) {
                    self.health
                        .set(Component::Store, Status::failed(short(&e.to_string())));
                }
                Response::error(503, "cannot store the event right now; it was not accepted")
                    .with_header("Retry-After", "30")
                    .with_log_note("refused=store")
            }
        }
    }
}

/// The 401 for a webhook whose signature, digest or date is wrong.
fn refused_signature(e: &crate::signature::VerifyError) -> Response {
    tracing::warn!(reason = %e, "webhook refused: signature");
    Response::error(401, &format!("signature: {e}")).with_log_note("refused=signature")
}

impl<S: Store> Handler for Endpoints<S> {
    /// `POST /`: the signature covers `Date` and `Digest`, which are headers,
    /// so a forged or stale webhook is refused before its body is read, and
    /// an authentic one makes its connection trusted (never evicted).
    fn check_head(&self, head: &Head, _peer: SocketAddr) -> HeadCheck {
        if (head.path(), head.method.as_str()) != ("/", "POST") {
            return HeadCheck::Accept;
        }
        match self.verifier.verify_head(
            &head.method,
            &head.target,
            &head.headers,
            SystemTime::now(),
        ) {
            Ok(_) => HeadCheck::Trusted,
            Err(e) => HeadCheck::Refuse(refused_signature(&e)),
        }
    }

    /// The service's own health checks (the presence task's `GET /health`
    /// over loopback) are logged at debug: journald on an SD card is a writer.
    fn is_routine(&self, head: &Head, peer: SocketAddr) -> bool {
        head.path() == "/health"
            && matches!(head.method.as_str(), "GET" | "HEAD")
            && peer.ip().is_loopback()
    }

    async fn handle(&self, req: Request, peer: SocketAddr) -> Response {
        match (req.path(), req.method.as_str()) {
            ("/health", "GET") => self.health_response(false),
            ("/health", "HEAD") => self.health_response(true),
            ("/health", _) => Response::error(405, "use GET").with_header("Allow", "GET, HEAD"),
            // The queue is for the operator on the same machine only.
            ("/queue", "GET") if peer.ip().is_loopback() => self.queue_response().await,
            (p, "POST") if p.starts_with(crate::queue_admin::PREFIX) => {
                if !peer.ip().is_loopback() {
                    return Response::error(403, "the queue is managed from this machine only");
                }
                crate::queue_admin::handle(&*self.store, &self.relay_wake, p).await
            }
            ("/", "POST") => self.webhook(&req).await,
            ("/", _) => {
                Response::error(405, "webhooks are POSTed to /").with_header("Allow", "POST")
            }
            _ => Response::error(404, "not found"),
        }
    }
}

/// Untrusted text cut to a log-friendly length, on a char boundary.
fn short(s: &str) -> String {
    crate::text::cut_chars_marked(s, 120)
}
