//! One connection, from its first byte to its close: wait for a request,
//! read its head, answer `100 Continue` when asked, read the body, call the
//! [`Handler`], write the response, and decide whether to keep the
//! connection. A protocol error gets its status and a lingering close.
//!
//! Checks that need only the head run between reading the head and sending
//! `100 Continue` (or reading the body), so that a refused request costs
//! neither the body's bytes nor its time: [`Handler::check_head`] verifies
//! the webhook signature over `Date` and `Digest` there, and a refusal is
//! answered at once and the connection closed (lingering). A head the
//! handler trusts makes the connection safe from eviction (`admission`).
//!
//! A connection accepted just before shutdown still gets its first request
//! served if its bytes arrive within [`FRESH_AT_SHUTDOWN`]: with socket
//! activation the next process takes over the listening socket, and a
//! connection dropped here would be a webhook lost.
use super::admission::Slot;
use super::linger::{linger_budget, linger_close};
use super::write_all;
use crate::http::request::{ReadError, RequestReader};
use crate::http::response::{self, CONTINUE};
use crate::http::{Handler, HeadCheck, Response, ServerLimits};
use crate::shutdown::Shutdown;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// Longest path written to the request log.
const MAX_LOGGED_PATH: usize = 200;
/// At shutdown, how long a connection that has not sent its first byte yet
/// is still waited for.
const FRESH_AT_SHUTDOWN: Duration = Duration::from_secs(1);

/// Serves requests on one connection until it should close. Generic over the
/// stream so tests can drive it through `tokio::io::duplex`.
pub async fn request_loop<S, H>(
    io: S,
    peer: SocketAddr,
    handler: &H,
    limits: &ServerLimits,
    shutdown: &Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    serve(io, peer, handler, limits, shutdown, &Slot::detached()).await
}

/// [`request_loop`] for a connection that holds `slot` in the listener's
/// table; ends early when the table evicts it.
pub(super) async fn serve_in_slot<S, H>(
    io: S,
    peer: SocketAddr,
    handler: &H,
    limits: &ServerLimits,
    shutdown: &Shutdown,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    tokio::select! {
        _ = serve(io, peer, handler, limits, shutdown, slot) => {}
        _ = slot.evicted() => tracing::debug!(%peer, "connection evicted"),
    }
}

async fn serve<S, H>(
    io: S,
    peer: SocketAddr,
    handler: &H,
    limits: &ServerLimits,
    shutdown: &Shutdown,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut reader = RequestReader::new(io, limits.clone());
    let mut served = 0usize;
    loop {
        let first = served == 0;
        // The first request must be complete within header_timeout of the
        // connect (slowloris); later ones may start after idle_timeout.
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        let wait_deadline = Instant::now() + wait;
        let started = tokio::select! {
            started = reader.wait_for_request(wait_deadline) => started,
            _ = shutdown.wait() => {
                if !first {
                    break;
                }
                let fresh = wait_deadline.min(Instant::now() + FRESH_AT_SHUTDOWN);
                reader.wait_for_request(fresh).await
            }
        };
        match started {
            Ok(()) => {}
            Err(ReadError::Idle) if first && !shutdown.is_triggered() => {
                let timed_out = ReadError::Reject {
                    status: 408,
                    reason: "timed out waiting for a request",
                };
                answer_error(&mut reader, timed_out, peer, limits, handler, None).await;
                return;
            }
            Err(ReadError::Io(error)) => {
                tracing::debug!(%peer, %error, "connection read failed");
                break;
            }
            Err(_) => break,
        }
        let started_at = Instant::now();
        let head_deadline = if first {
            wait_deadline
        } else {
            started_at + limits.header_timeout
        };
        let head = match reader.read_head(head_deadline).await {
            Ok(head) => head,
            Err(error) => {
                return answer_error(&mut reader, error, peer, limits, handler, None).await
            }
        };
        let routine = handler.is_routine(&head, peer);
        match handler.check_head(&head, peer) {
            HeadCheck::Accept => {}
            HeadCheck::Trusted => slot.trust(),
            HeadCheck::Refuse(resp) => {
                // The body (if any) is never read: answer, close, and let
                // the lingering close swallow whatever the client still sends.
                let bytes =
                    response::encode(&resp, head.method == "HEAD", false, SystemTime::now());
                let written = write_all(reader.get_mut(), &bytes, limits.write_timeout).await;
                log_request(&head.method, head.path(), &resp, started_at, peer, routine);
                handler.answered(&head.method, head.path(), resp.status, started_at.elapsed());
                if written.is_ok() {
                    linger_close(reader.get_mut(), linger_budget(limits)).await;
                }
                return;
            }
        }
        if head.expect_continue && head.has_body() && reader.buffered().is_empty() {
            if let Err(error) = write_all(reader.get_mut(), CONTINUE, limits.write_timeout).await {
                tracing::debug!(%peer, %error, "writing 100 Continue failed");
                return;
            }
        }
        let body = match reader
            .read_body(&head, Instant::now() + limits.body_timeout)
            .await
        {
            Ok(body) => body,
            Err(error) => {
                let route = Some((head.method.as_str(), head.path()));
                return answer_error(&mut reader, error, peer, limits, handler, route).await;
            }
        };
        if !slot.begin_handling() {
            // Evicted while the body arrived; the select in serve_in_slot ends us.
            return;
        }
        let (method, path) = (head.method.clone(), head.path().to_owned());
        let keep_alive = head.keep_alive;
        let resp = handler.handle(head.into_request(body), peer).await;
        slot.end_handling();
        served += 1;
        let keep = keep_alive
            && served < limits.max_requests_per_connection
            && !shutdown.is_triggered()
            && !response::wants_close(&resp);
        let bytes = response::encode(&resp, method == "HEAD", keep, SystemTime::now());
        let written = write_all(reader.get_mut(), &bytes, limits.write_timeout).await;
        log_request(&method, &path, &resp, started_at, peer, routine);
        handler.answered(&method, &path, resp.status, started_at.elapsed());
        if let Err(error) = written {
            tracing::debug!(%peer, %error, "writing response failed");
            return;
        }
        if !keep {
            // Any pipelined requests after this one stay unanswered; drain
            // them so the close does not reset away the response just sent.
            linger_close(reader.get_mut(), linger_budget(limits)).await;
            return;
        }
    }
    let _ = timeout(limits.write_timeout, reader.get_mut().shutdown()).await;
}

/// The one log line per request: info, or debug for a routine one.
fn log_request(
    method: &str,
    path: &str,
    resp: &Response,
    started_at: Instant,
    peer: SocketAddr,
    routine: bool,
) {
    let path: String = path.chars().take(MAX_LOGGED_PATH).collect();
    let duration_ms = started_at.elapsed().as_millis() as u64;
    let note = resp.log_note.as_deref().unwrap_or("");
    if routine {
        tracing::debug!(%method, path = %path, status = resp.status, duration_ms, %peer, note, "request");
    } else {
        tracing::info!(%method, path = %path, status = resp.status, duration_ms, %peer, note, "request");
    }
}

/// Answers a failed read (when it deserves an answer), tells the handler
/// ([`Handler::refused`]; `route` when the head was read), and closes.
async fn answer_error<S, H>(
    reader: &mut RequestReader<S>,
    error: ReadError,
    peer: SocketAddr,
    limits: &ServerLimits,
    handler: &H,
    route: Option<(&str, &str)>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    match error {
        ReadError::Reject { status, reason } => {
            tracing::info!(%peer, status, reason, "rejected request");
            handler.refused(route, status);
            let bytes = response::encode(
                &Response::error(status, reason),
                false,
                false,
                SystemTime::now(),
            );
            if write_all(reader.get_mut(), &bytes, limits.write_timeout)
                .await
                .is_ok()
            {
                linger_close(reader.get_mut(), linger_budget(limits)).await;
            }
        }
        ReadError::Truncated => tracing::debug!(%peer, "peer closed the connection mid-request"),
        ReadError::Io(error) => tracing::debug!(%peer, %error, "connection read failed"),
        ReadError::Closed | ReadError::Idle => {}
    }
}
