//! Discord ids ("snowflakes"): the one rule for what counts as one.
//!
//! Every id that enters the program is checked here: the configured channel
//! (`DISCORD_CHANNEL_ID`), message ids imported from the old service's
//! MongoDB, and every id the REST client puts into a request path (so a
//! malformed id can never reach a URL).
//!
//! Discord sends a snowflake as an unsigned 64-bit integer written in decimal.
//! We accept exactly the strings Discord itself would produce:
//!
//! * ASCII decimal digits only: no sign, no whitespace, no other Unicode digits;
//! * no leading zero (so `0` itself is refused: Discord never issues id 0);
//! * 1 to 20 digits, and the value fits in a `u64`.
//!
//! Callers keep their own error text; they trim their input first where that
//! is their job (settings, old database fields), never here.

/// Whether `s` is a Discord id, written the way Discord writes one.
pub fn is_snowflake(s: &str) -> bool {
    let bytes = s.as_bytes();
    (1..=20).contains(&bytes.len())
        && bytes.first() != Some(&b'0')
        && bytes.iter().all(u8::is_ascii_digit)
        && s.parse::<u64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_ids_and_the_edges_of_u64() {
        assert!(is_snowflake("123456789012345678"));
        assert!(is_snowflake("1"));
        assert!(is_snowflake(&u64::MAX.to_string()));
        // u64::MAX + 1: 20 digits, but too large.
        assert!(!is_snowflake("18446744073709551616"));
        assert!(!is_snowflake("99999999999999999999"));
    }

    #[test]
    fn length_zero_and_leading_zeros() {
        assert!(!is_snowflake(""));
        assert!(!is_snowflake("0"));
        assert!(!is_snowflake("00"));
        assert!(!is_snowflake("0123456789012345678"));
        // 21 digits, even when the value would fit once the zero is dropped.
        assert!(!is_snowflake("012345678901234567890"));
        assert!(!is_snowflake("123456789012345678901"));
    }

    #[test]
    fn only_ascii_digits() {
        assert!(!is_snowflake("12a"));
        assert!(!is_snowflake("+123"));
        assert!(!is_snowflake("-123"));
        assert!(!is_snowflake(" 123"));
        assert!(!is_snowflake("123 "));
        assert!(!is_snowflake("12 3"));
        assert!(!is_snowflake("123\n"));
        assert!(!is_snowflake("1_000"));
        assert!(!is_snowflake("1e9"));
        assert!(!is_snowflake("../users/@me"));
        assert!(!is_snowflake("2?x=1"));
        // Other Unicode decimal digits: Arabic-Indic, fullwidth.
        assert!(!is_snowflake("١٢٣"));
        assert!(!is_snowflake("１２３"));
    }
}
