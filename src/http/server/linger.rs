//! Closing a connection so that the peer can still read our answer.
//!
//! Closing a socket with unread data in it makes the kernel send a reset,
//! and a reset can destroy a response the peer has not read yet: a client
//! still sending an oversized body would see a broken pipe instead of the
//! 413. So after an answer that ends the connection we send FIN and keep
//! reading and discarding, bounded in time and bytes, until the peer closes.
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// After an error answer, how long and how much we read and discard before
/// closing, so the peer sees our answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Sends FIN, then reads and discards what the peer still sends (bounded),
/// so that closing with unread data does not reset away our answer.
pub(super) async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = timeout(LINGER_TIME, async {
        io.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut discarded = 0usize;
        while discarded < LINGER_BYTES {
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
        linger_close(&mut ours).await;
        drop(ours);
        assert!(peer.await.unwrap().is_empty());
    }
}
