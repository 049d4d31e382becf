//! Every HTTP endpoint of the service, and the routing between them:
//! `POST /` (the Drone webhook: verify, parse, durably queue, answer),
//! `GET /health`, `GET /queue` (loopback only), `GET /metrics` (loopback and the
//! `METRICS_ALLOW` networks, see `allow_list`), and with `--dry-run` `GET /preview` and
//! `GET /preview/messages` (the same allow-list as `/metrics`).
//! The dead-letter actions under `POST /queue/dead/` are loopback only (see `queue_admin`).
//!
//! Drone gives each webhook one try and never retries, so the webhook
//! endpoint answers 200 only after the event is durably in the store, and answers
//! fast: all Discord work happens later in the relay. Everything it refuses
//! gets a specific status and a short JSON reason that never echoes a secret.
use crate::allow_list::AllowList;
use crate::drone;
use crate::health::{Component, Health, Status};
use crate::http::request::Head;
use crate::http::{Handler, HeadCheck, Request, Response};
use crate::metrics::{self, Answer};
use crate::preview::{self, Preview};
use crate::signature::Verifier;
use crate::store::{build_key, now_ms, Appended, NewEvent, Store, StoreError};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// The HTTP handler behind the listener: `POST /`, `GET /health`, `GET /queue`, `GET /metrics`,
/// and `GET /preview` when there is a dry-run preview board.
pub struct Endpoints<S> {
    store: Arc<S>,
    verifier: Verifier,
    health: Arc<Health>,
    /// Woken after every queued event so the relay starts at once.
    relay_wake: Arc<Notify>,
    /// The dry-run sink's board (`serve --dry-run` only).
    preview: Option<Arc<Preview>>,
    /// Who besides loopback may read `/metrics` and `/preview` (`METRICS_ALLOW`).
    allow: AllowList,
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
            preview: None,
            allow: AllowList::loopback_only(),
        }
    }

    /// Let the networks in `allow` read `/metrics` too (loopback always may).
    pub fn with_allow_list(mut self, allow: AllowList) -> Self {
        self.allow = allow;
        self
    }

    /// The Prometheus exposition of the process's metrics.
    async fn metrics_response(&self) -> Response {
        let figures = metrics::page::store_figures(&*self.store).await;
        let page = metrics::page::render(metrics::global(), &figures, SystemTime::now());
        Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), metrics::CONTENT_TYPE.into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: page.into_bytes(),
            log_note: None,
        }
    }

    /// Serve `GET /preview` from `preview` (the dry-run sink's board).
    pub fn with_preview(mut self, preview: Option<Arc<Preview>>) -> Self {
        self.preview = preview;
        self
    }

    /// `GET /preview` (the page) and `GET /preview/messages?since=V` (its cards).
    fn preview_response(&self, req: &Request) -> Response {
        let Some(board) = &self.preview else {
            return Response::error(404, "the preview is shown by `serve --dry-run` only");
        };
        let resp = match req.path() {
            "/preview" => Response {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "text/html; charset=utf-8".into()),
                    (
                        "Content-Security-Policy".into(),
                        format!(
                            "{}; frame-ancestors 'none'",
                            preview::content_security_policy(true)
                        ),
                    ),
                ],
                body: preview::live().as_bytes().to_vec(),
                log_note: None,
            },
            "/preview/messages" => {
                let since = req
                    .target
                    .split_once('?')
                    .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Response::json(200, &board.updates(since))
            }
            _ => return Response::error(404, "not found"),
        };
        resp.with_header("Cache-Control", "no-store")
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
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
            metrics::global().webhook(Answer::Ignored);
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
                metrics::global().webhook(Answer::Queued);
                if let Some(clock) = self.verifier.clock() {
                    clock.note_work();
                }
                Response::json(200, &json!({"message": "queued", "id": seq}))
                    .with_log_note(format!("event_id={seq}"))
            }
            Ok(Appended::Duplicate(seq)) => {
                metrics::global().webhook(Answer::Duplicate);
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
    /// over loopback) and Prometheus's scrapes are logged at debug: journald
    /// on an SD card is a writer.
    fn is_routine(&self, head: &Head, peer: SocketAddr) -> bool {
        match (head.path(), head.method.as_str()) {
            ("/health", "GET" | "HEAD") => operator_only(peer),
            ("/metrics", "GET") => self.allow.permits(peer.ip()),
            _ => false,
        }
    }

    /// Webhook answers other than 200 are counted here, by status, whoever
    /// gave them (the head check's 401, the handler's 400 and 503); the
    /// three kinds of 200 are counted where `webhook` decides them.
    fn answered(&self, method: &str, path: &str, status: u16, took: Duration) {
        if (path, method) == ("/", "POST") {
            metrics::global().webhook_answered(took);
            if let Some(answer) = Answer::of_refusal(status) {
                metrics::global().webhook(answer);
            }
        }
    }

    /// The server's own 400s and 413s for `POST /`, and for requests whose
    /// head was too broken (or too large) to tell where they went.
    fn refused(&self, route: Option<(&str, &str)>, status: u16) {
        let answer = match status {
            400 => Answer::BadRequest,
            413 => Answer::TooLarge,
            _ => return,
        };
        if matches!(route, None | Some(("POST", "/"))) {
            metrics::global().webhook(answer);
        }
    }

    async fn handle(&self, req: Request, peer: SocketAddr) -> Response {
        match (req.path(), req.method.as_str()) {
            ("/health", "GET") => self.health_response(false),
            ("/health", "HEAD") => self.health_response(true),
            ("/health", _) => Response::error(405, "use GET").with_header("Allow", "GET, HEAD"),
            // The queue is for the operator on the same machine only.
            ("/queue", "GET") if operator_only(peer) => self.queue_response().await,
            (p, "POST") if p.starts_with(crate::queue_admin::PREFIX) => {
                if !operator_only(peer) {
                    return Response::error(403, "the queue is managed from this machine only");
                }
                crate::queue_admin::handle(&*self.store, &self.relay_wake, p).await
            }
            // The preview, like /metrics, is for loopback and the METRICS_ALLOW networks,
            // so a laptop on the LAN can open it.
            ("/preview" | "/preview/messages", "GET") if self.allow.permits(peer.ip()) => {
                self.preview_response(&req)
            }
            ("/metrics", _) if !self.allow.permits(peer.ip()) => Response::error(
                403,
                "/metrics answers loopback and the networks in METRICS_ALLOW only",
            ),
            ("/metrics", "GET") => self.metrics_response().await,
            ("/metrics", _) => Response::error(405, "use GET").with_header("Allow", "GET"),
            ("/", "POST") => self.webhook(&req).await,
            ("/", _) => {
                Response::error(405, "webhooks are POSTed to /").with_header("Allow", "POST")
            }
            _ => Response::error(404, "not found"),
        }
    }
}

/// Who may read the operator's queue endpoint (`/queue`): clients on
/// this machine, also when a dual-stack listener (`LISTEN_ADDR=[::]:5000`)
/// shows them as IPv4-mapped (`::ffff:127.0.0.1`). Everyone else gets the
/// 404 an unknown path gets.
fn operator_only(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// Untrusted text cut to a log-friendly length, on a char boundary.
fn short(s: &str) -> String {
    crate::text::cut_chars_marked(s, 120)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn endpoints(dir: &std::path::Path, allow: &str) -> Endpoints<EmbeddedStore> {
        let store = Arc::new(EmbeddedStore::open(dir).unwrap());
        let verifier = Verifier::new(b"a-webhook-secret".to_vec(), None);
        Endpoints::new(
            store,
            verifier,
            Arc::new(Health::new()),
            Arc::new(Notify::new()),
        )
        .with_allow_list(AllowList::parse(allow).unwrap())
    }

    fn request(method: &str, target: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            version: 1,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn metrics_answer_loopback_and_the_allowed_networks_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = endpoints(dir.path(), "192.168.1.0/24,fd00::/8");
        for peer in ["127.0.0.1:9", "[::1]:9", "192.168.1.7:9", "[fd00::7]:9"] {
            let r = e
                .handle(request("GET", "/metrics"), peer.parse().unwrap())
                .await;
            assert_eq!(r.status, 200, "{peer}");
            assert_eq!(header(&r, "content-type"), Some(metrics::CONTENT_TYPE));
            let body = String::from_utf8(r.body).unwrap();
            assert!(
                body.contains("\ndrone_discord_queue_pending_events 0\n"),
                "{body}"
            );
        }
        for peer in ["192.168.2.7:9", "[fe80::1]:9", "10.0.0.1:9"] {
            let r = e
                .handle(request("GET", "/metrics"), peer.parse().unwrap())
                .await;
            assert_eq!(r.status, 403, "{peer}");
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains("METRICS_ALLOW") && !body.contains("drone_discord_"));
        }
        let r = e
            .handle(request("POST", "/metrics"), "127.0.0.1:9".parse().unwrap())
            .await;
        assert_eq!((r.status, header(&r, "allow")), (405, Some("GET")));

        let dir = tempfile::tempdir().unwrap();
        let default = endpoints(dir.path(), "");
        let lan = "192.168.1.7:9".parse().unwrap();
        assert_eq!(
            default.handle(request("GET", "/metrics"), lan).await.status,
            403
        );
        assert_eq!(
            default.handle(request("GET", "/queue"), lan).await.status,
            404
        );
    }

    #[test]
    fn operator_endpoints_are_for_this_machine_only() {
        for local in [
            "127.0.0.1:1",
            "127.0.0.2:80",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(operator_only(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "192.168.1.20:5000",
            "10.0.0.1:1",
            "[fe80::1]:1",
            "0.0.0.0:1",
            "[::ffff:192.168.1.20]:5000",
        ] {
            assert!(!operator_only(remote.parse().unwrap()), "{remote}");
        }
    }
}
