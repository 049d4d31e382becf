//! A cursor over a fuzzer's bytes: the property functions draw their choices
//! (chunk sizes, which mutation, how far time moves) from it, so one byte
//! string replays exactly, in libFuzzer and in the test suite alike. Reading
//! past the end yields zeros and empty slices, never a panic.

/// The bytes left to draw from.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 when none is left.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// At most `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length-prefixed (one byte) slice.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// A length-prefixed (one byte) string; invalid UTF-8 is replaced.
    pub fn short_string(&mut self) -> String {
        String::from_utf8_lossy(self.short_bytes()).into_owned()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_then_zeros() {
        let mut input = Input::new(&[1, 2, 3, 2, b'a', b'b', b'c']);
        assert_eq!(input.byte(), 1);
        assert_eq!(input.u16(), 0x0302);
        assert_eq!(input.short_bytes(), b"ab");
        assert_eq!(input.rest(), b"c");
        assert!(input.is_empty());
        assert_eq!(input.u32(), 0);
        assert_eq!(input.short_string(), "");
    }
}
