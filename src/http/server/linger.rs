//! Closing a connection so that the peer can still read our answer.
//!
//! Closing a socket with unread data in it makes the kernel send a reset,
//! and a reset can destroy a response the peer has not read yet: a client
//! still sending an oversized body would see a broken pipe instead of the
//! 413. So after an answer that ends the connection we send FIN and keep
//! reading and discarding, bounded in time and bytes, until the peer closes.
//!
//! Every answer that closes the connection goes through here: the protocol
//! errors (400, 408, 411, 413, 417, 431, 501, 505), a head refused by the
//! handler (401), a response after which the connection is not kept, and
//! the 503 of a full table. The byte budget ([`linger_budget`]) lets a
//! client finish sending a body twice the size limit (a 2 MiB webhook to a
//! 1 MiB limit), so that even a client that writes everything before it
//! reads gets the 413.
use crate::http::ServerLimits;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// After an error answer, how long and how much (at least) we read and
/// discard before closing, so the peer sees our answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
pub(super) const LINGER_BYTES: usize = 256 * 1024;

/// How much a lingering close reads and discards at most: twice the body
/// limit plus a head, and never less than [`LINGER_BYTES`]. Reading costs
/// only time (one 4 KiB scratch buffer), and the time is bounded too.
pub(super) fn linger_budget(limits: &ServerLimits) -> usize {
    limits
        .max_body_bytes
        .saturating_mul(2)
        .saturating_add(limits.max_header_bytes)
        .max(LINGER_BYTES)
}

/// Sends FIN, then reads and discards what the peer still sends (at most
/// `max_bytes`, for at most [`LINGER_TIME`]), so that closing with unread
/// data does not reset away our answer.
pub(super) async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, max_bytes: usize) {
    let _ = timeout(LINGER_TIME, async {
        io.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut discarded = 0usize;
        while discarded < max_bytes {
            match io.read(&mut scratch).await? {
                0 => break,
                n => discarded += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_fin_then_discards_until_the_peer_closes() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            // Still sending when the server is done with us.
            theirs.write_all(&[b'x'; 4000]).await.unwrap();
            let mut rest = Vec::new();
            theirs.read_to_end(&mut rest).await.unwrap();
            rest
        });
        // Our side writes nothing more: the peer reads an immediate end of stream.
        linger_close(&mut ours, LINGER_BYTES).await;
        drop(ours);
        assert!(peer.await.unwrap().is_empty());
    }

    #[test]
    fn budget_covers_twice_the_body_limit() {
        let limits = ServerLimits::default();
        assert!(linger_budget(&limits) >= 2 * limits.max_body_bytes);
        let tiny = ServerLimits {
            max_body_bytes: 1024,
            ..ServerLimits::default()
        };
        assert_eq!(linger_budget(&tiny), LINGER_BYTES);
    }
}
