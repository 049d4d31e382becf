//! Parses the decimal numbers in Discord's rate-limit headers
//! (`X-RateLimit-Reset-After: 1.234`, `Retry-After: 5`) into an `f64`.
//!
//! `str::parse::<f64>` would do, but it is the only float parse in the
//! binary and brings core's general algorithm with it (about 12 KiB of code
//! and tables in the Pi build). This accepts exactly the strings it accepts
//! (optional sign, digits with an optional point, optional exponent, `inf`,
//! `infinity`, `nan`) and returns exactly its value whenever the number has
//! at most 19 significant digits, is at most 2^53 as an integer mantissa and
//! has a decimal exponent within ±22: the exact "fast path" (the quotient or
//! product of two exactly representable floats is correctly rounded). Every
//! value Discord sends is of that kind. Anything longer is within a few ULPs,
//! far below the nanosecond a `Duration` can hold.

/// Powers of ten that an `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Significant digits kept in the `u64` mantissa.
const MAX_DIGITS: u32 = 19;

/// `s` as `str::parse::<f64>` reads it; `None` where it fails.
pub fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (negative, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let value = if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        f64::INFINITY
    } else if rest.eq_ignore_ascii_case(b"nan") {
        f64::NAN
    } else {
        finite(rest)?
    };
    Some(if negative { -value } else { value })
}

/// `digits [. digits] [e [+-] digits]`, at least one mantissa digit.
fn finite(b: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut exponent: i64 = 0;
    let mut inexact = false;
    let mut seen_digit = false;
    let mut i = 0;
    let mut fraction = false;
    while i < b.len() {
        let c = b[i];
        if c == b'.' && !fraction {
            fraction = true;
        } else if c.is_ascii_digit() {
            seen_digit = true;
            let d = u64::from(c - b'0');
            if mantissa == 0 && d == 0 {
                // A leading zero: only shifts the point when after it.
                if fraction {
                    exponent -= 1;
                }
            } else if digits < MAX_DIGITS {
                mantissa = mantissa * 10 + d;
                digits += 1;
                if fraction {
                    exponent -= 1;
                }
            } else {
                // Past the kept digits: the integer part still scales.
                inexact |= d != 0;
                if !fraction {
                    exponent += 1;
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    if i < b.len() {
        if b[i] | 0x20 != b'e' {
            return None;
        }
        i += 1;
        let negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i64 = 0;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            e = (e * 10 + i64::from(c - b'0')).min(1 << 40);
            i += 1;
        }
        if i == start || i != b.len() {
            return None;
        }
        exponent += if negative { -e } else { e };
    }
    if mantissa == 0 {
        return Some(0.0);
    }
    let m = mantissa as f64;
    if !inexact && mantissa <= 1 << 53 {
        if let Some(p) = POW10.get(exponent.unsigned_abs() as usize) {
            return Some(if exponent < 0 { m / p } else { m * p });
        }
    }
    Some(m * 10f64.powi(exponent.clamp(-400, 400) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(s: &str) {
        let want = s.parse::<f64>().ok();
        let got = parse_f64(s);
        match (want, got) {
            (Some(w), Some(g)) if w.is_nan() => assert!(g.is_nan(), "{s:?}: {g}"),
            (w, g) => assert_eq!(
                g.map(f64::to_bits),
                w.map(f64::to_bits),
                "{s:?}: {g:?} vs {w:?}"
            ),
        }
    }

    #[test]
    fn what_discord_sends_parses_exactly() {
        for s in [
            "0",
            "1",
            "5",
            "60",
            "0.5",
            "1.234",
            "0.001",
            "64.57",
            "3600.000",
            "0.250",
            "12345.678901",
        ] {
            same(s);
        }
    }

    #[test]
    fn accepts_and_rejects_what_str_parse_does() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "+.",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1e-",
            "1.2.3",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "1,5",
            "--1",
            "+-1",
            "1e5x",
            "١",
            "inf",
            "-inf",
            "+INF",
            "Infinity",
            "-infinity",
            "nan",
            "NaN",
            "-nan",
            "infin",
            "nana",
            "+1.5",
            "-1.5",
            "-0",
            "-0.0",
            ".5",
            "5.",
            "000123.4500",
            "0.000",
            "1E3",
            "1e+3",
            "2.5e-3",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "9007199254740992",
            "9007199254740993",
            "123456789012345678901234",
            "0.1234567890123456789012",
            "1e400",
            "1e-400",
            "1e99999999999999999999",
            "0e99999999999",
        ] {
            let want = s.parse::<f64>();
            let got = parse_f64(s);
            assert_eq!(got.is_some(), want.is_ok(), "{s:?}");
        }
    }

    #[test]
    fn the_fast_path_is_exact_and_the_rest_close() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 100_000;
            let frac = (x >> 20) % 1_000_000;
            let places = ((x >> 45) % 7) as usize;
            let exp = ((x >> 52) % 61) as i64 - 30;
            let frac = format!("{frac:06}");
            let plain = format!("{int}.{}", &frac[..places]);
            same(&plain);
            same(&format!("{int}{}", if places == 0 { "" } else { "." }));
            let with_exp = format!("{plain}e{exp}");
            let want: f64 = with_exp.parse().unwrap_or(f64::NAN);
            let got = parse_f64(&with_exp).unwrap_or(f64::NAN);
            if (-22..=22).contains(&(exp - places as i64)) && (-22..=22).contains(&exp) {
                assert_eq!(got.to_bits(), want.to_bits(), "{with_exp}");
            } else if want != 0.0 && want.is_finite() && want > 1e-300 {
                assert!(
                    ((got - want) / want).abs() < 1e-14,
                    "{with_exp}: {got} vs {want}"
                );
            }
        }
        let long = "0.1234567890123456789012";
        let (got, want) = (
            parse_f64(long).unwrap_or_default(),
            long.parse::<f64>().unwrap_or_default(),
        );
        assert!(((got - want) / want).abs() < 1e-15, "{got} vs {want}");
    }
}
