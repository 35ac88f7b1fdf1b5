//! Timestamps: UTC nanoseconds since the Unix epoch, and their two text forms.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Nanoseconds since 1970-01-01T00:00:00Z. Signed so that arithmetic near the epoch is safe.
pub type Nanos = i64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The wall clock, in nanoseconds.
pub fn now_nanos() -> Nanos {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `2026-12-03T15:04:05.123456789Z`: the form stored in segment files (R7).
pub fn format_rfc3339(t: Nanos) -> String {
    let mut out = String::with_capacity(30);
    write_rfc3339(t, &mut out);
    out
}

/// Appends [`format_rfc3339`]'s form to `out` without a format string: every stored record
/// carries one, so this is on the write path of every event.
pub fn write_rfc3339(t: Nanos, out: &mut String) {
    let (secs, nanos) = (t.div_euclid(NANOS_PER_SEC), t.rem_euclid(NANOS_PER_SEC));
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    for (value, width, then) in [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (second_of_day / 3600, 2, ':'),
        (second_of_day / 60 % 60, 2, ':'),
        (second_of_day % 60, 2, '.'),
        (nanos, 9, 'Z'),
    ] {
        push_digits(out, value, width);
        out.push(then);
    }
}

/// Appends the `width` low decimal digits of a non-negative `value`, zero-padded.
fn push_digits(out: &mut String, mut value: i64, width: usize) {
    let mut buf = [b'0'; 9];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).expect("ASCII digits"));
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `1764774245.123456789`: the JSON number form returned by the API (R3).
pub fn format_epoch(t: Nanos) -> String {
    format!("{}.{:09}", t.div_euclid(NANOS_PER_SEC), t.rem_euclid(NANOS_PER_SEC))
}

/// Parses RFC 3339 with any offset (and lower-case `t`/`z`) into nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    parse_stored(s).or_else(|| {
        let t = DateTime::parse_from_rfc3339(s).ok()?;
        // Beyond the nanosecond range (1677..2262) a bound means "no bound": clamp.
        Some(t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX }))
    })
}

/// Fast path for the exact form this service writes (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`), which
/// segment parsing meets millions of times.
fn parse_stored(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    if b.len() != 30 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[29] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, nanos) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 29)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days from civil (H. Hinnant), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)
}

/// Parses non-negative fractional epoch seconds (`1764774245.123456789`) exactly.
pub fn parse_epoch(s: &str) -> Option<Nanos> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let Ok(secs) = whole.parse::<i64>() else { return Some(i64::MAX) };
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().enumerate() {
        if i < 9 {
            nanos = nanos * 10 + i64::from(d - b'0');
        } else if d != b'0' {
            // Finer than a nanosecond: round up so that `from` stays inclusive of nothing earlier.
            nanos += 1;
            break;
        }
    }
    for _ in frac.len()..9 {
        nanos *= 10;
    }
    Some(secs.checked_mul(NANOS_PER_SEC).and_then(|n| n.checked_add(nanos)).unwrap_or(i64::MAX))
}

/// Either form accepted by `from` / `to` (R4).
pub fn parse_instant(s: &str) -> Option<Nanos> {
    parse_epoch(s).or_else(|| parse_rfc3339(s))
}

/// Compact, sortable UTC form used in file names: `20261203T150405.000Z`.
pub fn format_compact(t: Nanos) -> String {
    DateTime::<Utc>::from_timestamp_nanos(t).format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// Inverse of [`format_compact`].
pub fn parse_compact(s: &str) -> Option<Nanos> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S%.3fZ").ok()?.and_utc().timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_chrono_across_the_nanosecond_range() {
        let chrono_form = |t: Nanos| DateTime::<Utc>::from_timestamp_nanos(t).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
        let mut t: i64 = i64::MIN;
        let step = (i64::MAX / 20_011) * 2 + 7;
        let mut checked = 0;
        while let Some(next) = t.checked_add(step) {
            assert_eq!(format_rfc3339(t), chrono_form(t), "t = {t}");
            t = next;
            checked += 1;
        }
        for t in [0, -1, 1, 951_782_400_000_000_000, 1_764_774_245_123_456_789, 4_102_444_799_999_999_999, i64::MAX] {
            assert_eq!(format_rfc3339(t), chrono_form(t), "t = {t}");
        }
        assert!(checked > 20_000);
    }

    #[test]
    fn forms_round_trip() {
        let t = 1_764_774_245_123_456_789;
        assert_eq!(format_epoch(t), "1764774245.123456789");
        assert_eq!(parse_epoch("1764774245.123456789"), Some(t));
        assert_eq!(format_rfc3339(t), "2025-12-03T15:04:05.123456789Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        for t in [0, 951_782_400_123_456_789, 4_107_542_399_999_999_999, 1_709_164_800_000_000_001] {
            assert_eq!(parse_stored(&format_rfc3339(t)), Some(t), "{}", format_rfc3339(t));
        }
        assert_eq!(parse_rfc3339("2025-12-03t16:04:05.123456789+01:00"), Some(t));
        assert_eq!(parse_instant("2025-12-03T15:04:05.123456789z"), Some(t));
        assert_eq!(parse_epoch("1764774245.5"), Some(1_764_774_245_500_000_000));
        assert_eq!(parse_epoch("1764774245"), Some(1_764_774_245_000_000_000));
        assert_eq!(parse_epoch("-1"), None);
        assert_eq!(parse_epoch("99999999999.5"), Some(i64::MAX));
        assert_eq!(parse_epoch("123456789012345678901234567890"), Some(i64::MAX));
        assert_eq!(parse_instant("9999-12-31T23:59:59Z"), Some(i64::MAX));
        assert_eq!(parse_instant("0001-01-01T00:00:00+01:00"), Some(i64::MIN));
        assert_eq!(parse_epoch("1."), None);
        let w = 1_764_774_245_000_000_000;
        assert_eq!(parse_compact(&format_compact(w)), Some(w));
    }
}
