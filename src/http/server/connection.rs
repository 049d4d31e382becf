//! One connection, from its first byte to its close: wait for a request,
//! read its head, answer `100 Continue` when asked, read the body, call the
//! [`Handler`], write the response, and decide whether to keep the
//! connection. A protocol error gets its status and a lingering close.
//!
//! Checks that need only the head belong between reading the head and
//! sending `100 Continue` (or reading the body), so that a refused request
//! costs neither the body's bytes nor its time: that is where a signature
//! over `Date` and `Digest` can be verified before the body is read.
use super::linger::linger_close;
use super::write_all;
use crate::http::request::{ReadError, RequestReader};
use crate::http::response::{self, CONTINUE};
use crate::http::{Handler, Response, ServerLimits};
use crate::shutdown::Shutdown;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// Longest path written to the request log.
const MAX_LOGGED_PATH: usize = 200;

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
            _ = shutdown.wait() => break,
        };
        match started {
            Ok(()) => {}
            Err(ReadError::Idle) if first => {
                let timed_out = ReadError::Reject {
                    status: 408,
                    reason: "timed out waiting for a request",
                };
                answer_error(&mut reader, timed_out, peer, limits).await;
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
            Err(error) => return answer_error(&mut reader, error, peer, limits).await,
        };
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
            Err(error) => return answer_error(&mut reader, error, peer, limits).await,
        };
        let method = head.method.clone();
        let path: String = head.path().chars().take(MAX_LOGGED_PATH).collect();
        let keep_alive = head.keep_alive;
        let resp = handler.handle(head.into_request(body), peer).await;
        served += 1;
        let keep = keep_alive
            && served < limits.max_requests_per_connection
            && !shutdown.is_triggered()
            && !response::wants_close(&resp);
        let bytes = response::encode(&resp, method == "HEAD", keep, SystemTime::now());
        let written = write_all(reader.get_mut(), &bytes, limits.write_timeout).await;
        tracing::info!(
            method = %method,
            path = %path,
            status = resp.status,
            duration_ms = started_at.elapsed().as_millis() as u64,
            %peer,
            note = resp.log_note.as_deref().unwrap_or(""),
            "request"
        );
        if let Err(error) = written {
            tracing::debug!(%peer, %error, "writing response failed");
            return;
        }
        if !keep {
            // Any pipelined requests after this one stay unanswered; drain
            // them so the close does not reset away the response just sent.
            linger_close(reader.get_mut()).await;
            return;
        }
    }
    let _ = timeout(limits.write_timeout, reader.get_mut().shutdown()).await;
}

/// Answers a failed read (when it deserves an answer) and closes.
async fn answer_error<S>(
    reader: &mut RequestReader<S>,
    error: ReadError,
    peer: SocketAddr,
    limits: &ServerLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match error {
        ReadError::Reject { status, reason } => {
            tracing::info!(%peer, status, reason, "rejected request");
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
                linger_close(reader.get_mut()).await;
            }
        }
        ReadError::Truncated => tracing::debug!(%peer, "peer closed the connection mid-request"),
        ReadError::Io(error) => tracing::debug!(%peer, %error, "connection read failed"),
        ReadError::Closed | ReadError::Idle => {}
    }
}
