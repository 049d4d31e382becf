//! HTTP dates (RFC 9110 §5.6.7) without a date crate.
//!
//! Drone puts an IMF-fixdate in the signed `Date` header and the signature
//! check needs to know how old it is, and `send` has to produce one. This file
//! converts between [`SystemTime`] and the three HTTP date forms with plain
//! integer civil-date arithmetic (days ↔ year/month/day, proleptic Gregorian).
//!
//! * [`format`] always writes IMF-fixdate: `Fri, 12 Nov 2021 23:33:47 GMT`.
//! * [`parse`] reads IMF-fixdate strictly (exact layout, weekday must match the
//!   date) and, as RFC 9110 says recipients should, the obsolete RFC 850
//!   (`Friday, 12-Nov-21 23:33:47 GMT`) and asctime (`Fri Nov 12 23:33:47 2021`)
//!   forms. Anything else is `None`; no input can panic.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Longest input worth looking at (the longest valid form is RFC 850 with
/// "Wednesday", 37 bytes); anything longer is refused before parsing.
const MAX_LEN: usize = 64;

/// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31). Also
/// used by `render` for ISO-8601 timestamps.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
fn weekday_from_days(days: i64) -> usize {
    (days + 3).rem_euclid(7) as usize
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Seconds relative to the Unix epoch (negative before it), saturating.
fn to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            // Round toward the past so a sub-second pre-epoch time stays in its second.
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                secs.saturating_add(1).saturating_neg()
            } else {
                secs.saturating_neg()
            }
        }
    }
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Format as IMF-fixdate, e.g. `Fri, 12 Nov 2021 23:33:47 GMT`. Sub-second
/// parts are dropped. Years outside 0..=9999 cannot be expressed in four digits
/// and are clamped to the first/last second of that range.
pub fn format(t: SystemTime) -> String {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = to_unix(t).clamp(MIN, MAX);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let day_name = DAY_NAMES
        .get(weekday_from_days(days))
        .copied()
        .unwrap_or("Mon");
    let month_name = MONTH_NAMES
        .get(month as usize - 1)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{day_name}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parse an HTTP date in any of the three RFC 9110 forms (see the module docs).
pub fn parse(s: &str) -> Option<SystemTime> {
    let now_year = civil_from_days(to_unix(SystemTime::now()).div_euclid(86_400)).0;
    parse_with_year(s, now_year)
}

/// [`parse`] with the current year injected (it only matters for RFC 850's
/// two-digit years).
fn parse_with_year(s: &str, now_year: i64) -> Option<SystemTime> {
    if s.len() > MAX_LEN || !s.is_ascii() {
        return None;
    }
    let parsed = parse_imf_fixdate(s)
        .or_else(|| parse_rfc850(s, now_year))
        .or_else(|| parse_asctime(s))?;
    parsed.into_time()
}

/// A date broken into fields, validated by [`Fields::into_time`].
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday; checked against the date.
    weekday: usize,
}

impl Fields {
    fn into_time(self) -> Option<SystemTime> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        // 60: a leap second, which Unix time folds into the next minute.
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        if weekday_from_days(days) != self.weekday {
            return None;
        }
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        from_unix(secs)
    }
}

/// Exactly `n` ASCII digits as a number.
fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_index(s: &str) -> Option<u32> {
    MONTH_NAMES
        .iter()
        .position(|m| *m == s)
        .map(|i| i as u32 + 1)
}

/// `HH:MM:SS`, each exactly two digits.
fn time_of_day(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let h = digits(it.next()?, 2)?;
    let m = digits(it.next()?, 2)?;
    let sec = digits(it.next()?, 2)?;
    if it.next().is_some() {
        return None;
    }
    Some((h, m, sec))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` — fixed layout, 29 bytes.
fn parse_imf_fixdate(s: &str) -> Option<Fields> {
    let (day_name, rest) = s.split_once(", ")?;
    let weekday = DAY_NAMES.iter().position(|d| *d == day_name)?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let (hour, minute, second) = time_of_day(time)?;
    Some(Fields {
        year: i64::from(digits(year, 4)?),
        month: month_index(month)?,
        day: digits(day, 2)?,
        hour,
        minute,
        second,
        weekday,
    })
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`. A two-digit year that would land more
/// than 50 years in the future means the most recent past year with those
/// digits (RFC 9110 §5.6.7).
fn parse_rfc850(s: &str, now_year: i64) -> Option<Fields> {
    let (day_name, rest) = s.split_once(", ")?;
    let weekday = LONG_DAY_NAMES.iter().position(|d| *d == day_name)?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [date, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let dparts: Vec<&str> = date.split('-').collect();
    let [day, month, yy] = dparts.as_slice() else {
        return None;
    };
    let yy = i64::from(digits(yy, 2)?);
    let century = now_year.div_euclid(100) * 100;
    let mut year = century + yy;
    if year > now_year + 50 {
        year -= 100;
    }
    let (hour, minute, second) = time_of_day(time)?;
    Some(Fields {
        year,
        month: month_index(month)?,
        day: digits(day, 2)?,
        hour,
        minute,
        second,
        weekday,
    })
}

/// `Sun Nov  6 08:49:37 1994` — the day is space-padded to two characters.
fn parse_asctime(s: &str) -> Option<Fields> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let weekday = DAY_NAMES.iter().position(|d| Some(*d) == s.get(0..3))?;
    if s.get(3..4)? != " " || s.get(7..8)? != " " || s.get(10..11)? != " " || s.get(19..20)? != " "
    {
        return None;
    }
    let month = month_index(s.get(4..7)?)?;
    let day_field = s.get(8..10)?;
    let day = match day_field.strip_prefix(' ') {
        Some(one) => digits(one, 1)?,
        None => digits(day_field, 2)?,
    };
    let (hour, minute, second) = time_of_day(s.get(11..19)?)?;
    Some(Fields {
        year: i64::from(digits(s.get(20..24)?, 4)?),
        month,
        day,
        hour,
        minute,
        second,
        weekday,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        from_unix(secs).unwrap()
    }

    #[test]
    fn formats_known_dates() {
        assert_eq!(format(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format(at(1_636_760_027)), "Fri, 12 Nov 2021 23:33:47 GMT");
        assert_eq!(format(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Leap day and the day after, in a leap year divisible by 400.
        assert_eq!(format(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format(at(951_868_800)), "Wed, 01 Mar 2000 00:00:00 GMT");
        // Before the epoch.
        assert_eq!(format(at(-1)), "Wed, 31 Dec 1969 23:59:59 GMT");
        // Sub-second parts are dropped, not rounded.
        assert_eq!(
            format(at(1_636_760_027) + Duration::from_millis(999)),
            "Fri, 12 Nov 2021 23:33:47 GMT"
        );
    }

    #[test]
    fn parses_all_three_forms_to_the_same_instant() {
        let want = at(784_111_777);
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(
            parse_with_year("Sunday, 06-Nov-94 08:49:37 GMT", 2026),
            Some(want)
        );
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(
            parse("Fri, 12 Nov 2021 23:33:47 GMT"),
            Some(at(1_636_760_027))
        );
    }

    #[test]
    fn rfc850_two_digit_years_pivot_fifty_years_ahead() {
        // In 2026: "76" is 2076 (50 years ahead), "77" is 1977.
        let y2076 = parse_with_year("Sunday, 01-Mar-76 00:00:00 GMT", 2026).unwrap();
        assert_eq!(format(y2076), "Sun, 01 Mar 2076 00:00:00 GMT");
        let y1977 = parse_with_year("Tuesday, 01-Mar-77 00:00:00 GMT", 2026).unwrap();
        assert_eq!(format(y1977), "Tue, 01 Mar 1977 00:00:00 GMT");
    }

    #[test]
    fn round_trips_many_timestamps() {
        // Every ~11.6 days (odd step, so all times of day occur) over 0000..9999 plus a dense stretch around the epoch.
        let mut t: i64 = -62_167_219_200;
        let mut n = 0;
        while t <= 253_402_300_799 {
            let s = format(at(t));
            assert_eq!(parse(&s), Some(at(t)), "{t} -> {s}");
            t += 1_000_003;
            n += 1;
        }
        for t in (-200_000..200_000).step_by(997) {
            let s = format(at(t));
            assert_eq!(parse(&s), Some(at(t)), "{t} -> {s}");
        }
        assert!(n > 300_000);
    }

    #[test]
    fn civil_days_agree_for_every_day_in_four_centuries() {
        let mut days = days_from_civil(1600, 1, 1);
        for year in 1600..2400 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    assert_eq!(civil_from_days(days), (year, month, day));
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn leap_years() {
        assert!(parse("Thu, 29 Feb 2024 12:00:00 GMT").is_some());
        assert!(parse("Tue, 29 Feb 2000 12:00:00 GMT").is_some());
        assert_eq!(parse("Mon, 29 Feb 1900 12:00:00 GMT"), None); // 1900 was not leap
        assert_eq!(parse("Sat, 29 Feb 2025 12:00:00 GMT"), None);
        assert!(parse("Wed, 31 Dec 2024 23:59:59 GMT").is_none()); // wrong weekday
        assert!(parse("Tue, 31 Dec 2024 23:59:59 GMT").is_some());
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "GMT",
            "Fri, 12 Nov 2021 23:33:47",
            "Fri, 12 Nov 2021 23:33:47 UTC",
            "Fri, 12 Nov 2021 23:33:47 +0000",
            "fri, 12 Nov 2021 23:33:47 GMT",
            "Fri,  12 Nov 2021 23:33:47 GMT",
            "Fri, 12 Nov 2021 23:33:47 GMT ",
            "Fri, 2 Nov 2021 23:33:47 GMT",
            "Fri, 12 Nov 21 23:33:47 GMT",
            "Fri, 12 nov 2021 23:33:47 GMT",
            "Fri, 12 Nov 2021 24:00:00 GMT",
            "Fri, 12 Nov 2021 23:60:00 GMT",
            "Fri, 12 Nov 2021 23:33:61 GMT",
            "Fri, 12 Nov 2021 23:33 GMT",
            "Fri, 12 Nov 2021 23:33:47:00 GMT",
            "Fri, 12 Nov 2021 +3:33:47 GMT",
            "Sat, 12 Nov 2021 23:33:47 GMT", // weekday does not match
            "Fri, 31 Nov 2021 23:33:47 GMT",
            "Fri, 00 Nov 2021 23:33:47 GMT",
            "Fri, 12 Nov 2021 23:33:47 GMT\r\n",
            "Friday, 12-Nov-2021 23:33:47 GMT",
            "Fri, 12-Nov-21 23:33:47 GMT",
            "Fri Nov 12 23:33:47 21",
            "Fri Nov 12 23:33:47 2021 ",
            "Fri Nov 1x 23:33:47 2021",
            "Frі, 12 Nov 2021 23:33:47 GMT", // Cyrillic i
            "1636759227",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"9".repeat(10_000)), None);
    }

    /// Mutations of valid dates parse to something or nothing, never panic,
    /// and whatever parses formats back to a valid date.
    #[test]
    fn mangled_dates_never_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = "0123456789 ,:-GMTSunFriNovDecday\u{e9}\u{0}";
        let chars: Vec<char> = alphabet.chars().collect();
        for seed in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            for _ in 0..20_000 {
                let mut s: Vec<char> = seed.chars().collect();
                let pos = (next() as usize) % s.len();
                s[pos] = chars[(next() as usize) % chars.len()];
                let s: String = s.into_iter().collect();
                if let Some(t) = parse(&s) {
                    assert!(parse(&format(t)).is_some(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn leap_second_folds_into_next_minute() {
        let t = parse("Sat, 31 Dec 2016 23:59:60 GMT").unwrap();
        assert_eq!(format(t), "Sun, 01 Jan 2017 00:00:00 GMT");
    }

    #[test]
    fn far_out_of_range_times_are_clamped_not_panicking() {
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(format(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
