//! An [`AsyncRead`] that hands out its bytes in chunks of chosen sizes, so a
//! reader under test sees every way a request or response can be split
//! across reads (down to one byte at a time), and then end of stream.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

use super::input::Input;

/// Bytes served in chunks whose sizes cycle through `sizes` (each at least 1).
pub struct SplitReader<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl<'a> SplitReader<'a> {
    /// Chunk sizes drawn from `input`: one count byte, then one byte per size
    /// (`0xf0` and above mean a large read, otherwise 1..=64 bytes). A count
    /// of zero serves everything in one read.
    pub fn from_input(input: &mut Input<'_>, data: &'a [u8]) -> Self {
        let count = usize::from(input.byte() % 9);
        let sizes = if count == 0 {
            vec![usize::MAX]
        } else {
            (0..count)
                .map(|_| match input.byte() {
                    b @ 0xf0.. => 4096 * usize::from(b - 0xef),
                    b => usize::from(b % 64) + 1,
                })
                .collect()
        };
        SplitReader {
            data,
            sizes,
            next: 0,
        }
    }

    /// The whole of `data` in one read.
    pub fn whole(data: &'a [u8]) -> Self {
        SplitReader {
            data,
            sizes: vec![usize::MAX],
            next: 0,
        }
    }
}

impl AsyncRead for SplitReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let size = this
            .sizes
            .get(this.next % this.sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        this.next = this.next.wrapping_add(1);
        let n = size.min(out.remaining()).min(this.data.len());
        let (head, rest) = this.data.split_at(n);
        out.put_slice(head);
        this.data = rest;
        Poll::Ready(Ok(()))
    }
}
