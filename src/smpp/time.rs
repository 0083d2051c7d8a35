//! SMPP time strings (spec 7.1.1): absolute `YYMMDDhhmmsstnnp` with the offset from
//! UTC in quarter hours, and relative `YYMMDDhhmmss000R`. Times are Unix milliseconds;
//! the calendar maths is in `src/time.rs`.

use crate::time::{days_from_civil, days_in_month, UtcTime};

/// Why a time string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTime;

/// Parses a schedule_delivery_time or validity_period. `None` for an empty field.
/// Relative periods count from `now_ms`; a relative year is 365 days, a month 30.
pub fn parse(value: &str, now_ms: i64) -> Result<Option<i64>, BadTime> {
    if value.is_empty() {
        return Ok(None);
    }
    let b = value.as_bytes();
    if b.len() != 16 || !b[..15].iter().all(u8::is_ascii_digit) {
        return Err(BadTime);
    }
    let two = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (yy, mo, dd, hh, mi, ss) = (two(0), two(2), two(4), two(6), two(8), two(10));
    let tenths = i64::from(b[12] - b'0');
    match b[15] {
        b'R' => {
            if hh > 23 || mi > 59 || ss > 59 {
                return Err(BadTime);
            }
            let days = yy * 365 + mo * 30 + dd;
            let seconds = ((days * 24 + hh) * 60 + mi) * 60 + ss;
            Ok(Some(now_ms + seconds * 1000))
        }
        sign @ (b'+' | b'-') => {
            let quarters = two(13);
            let year = 2000 + yy;
            if !(1..=12).contains(&mo)
                || dd < 1
                || dd > days_in_month(year, mo)
                || hh > 23
                || mi > 59
                || ss > 59
                || quarters > 48
            {
                return Err(BadTime);
            }
            let local_seconds = ((days_from_civil(year, mo, dd) * 24 + hh) * 60 + mi) * 60 + ss;
            // "+" means local time is ahead of UTC, so UTC is local minus the offset.
            let offset = quarters * 15 * 60;
            let utc = if sign == b'+' {
                local_seconds - offset
            } else {
                local_seconds + offset
            };
            Ok(Some(utc * 1000 + tenths * 100))
        }
        _ => Err(BadTime),
    }
}

/// Formats Unix milliseconds as an absolute SMPP time in UTC (`…000+`), as used
/// in query_sm_resp final_date.
pub fn format_absolute(ms: i64) -> String {
    let t = UtcTime::from_unix_ms(ms);
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}{}00+",
        t.year.rem_euclid(100),
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.millis / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22 15:00:00 UTC
    const NOV22_15H: i64 = 1_795_359_600_000;

    #[test]
    fn absolute_times_with_offsets() {
        assert_eq!(parse("261122150000000+", 0), Ok(Some(NOV22_15H)));
        // 17:00 local, two hours (8 quarters) ahead of UTC, is 15:00 UTC.
        assert_eq!(parse("261122170000008+", 0), Ok(Some(NOV22_15H)));
        // 10:00 local, five hours behind UTC, is 15:00 UTC.
        assert_eq!(parse("261122100000020-", 0), Ok(Some(NOV22_15H)));
        assert_eq!(parse("261122150000500+", 0), Ok(Some(NOV22_15H + 500)));
    }

    #[test]
    fn relative_periods_count_from_now() {
        assert_eq!(
            parse("000001000000000R", 1_000),
            Ok(Some(1_000 + 86_400_000))
        );
        assert_eq!(parse("000000001030000R", 0), Ok(Some(630_000)));
        assert_eq!(
            parse("010200000000000R", 0),
            Ok(Some((365 + 60) * 86_400_000))
        );
    }

    #[test]
    fn empty_is_none_and_malformed_is_refused() {
        assert_eq!(parse("", 0), Ok(None));
        for bad in [
            "26112215000000+",  // 15 characters
            "261122150000000X", // bad sign
            "261322150000000+", // month 13
            "260230150000000+", // 30 February
            "261122250000000+", // hour 25
            "261122150000049+", // offset above 48 quarters
            "2611221500000a0+", // not a digit
            "000000250000000R", // 25 hours relative
        ] {
            assert_eq!(parse(bad, 0), Err(BadTime), "{bad}");
        }
        assert_eq!(
            parse("240229000000000+", 0).map(|t| t.is_some()),
            Ok(true),
            "leap day"
        );
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_absolute(NOV22_15H), "261122150000000+");
        assert_eq!(
            parse(&format_absolute(NOV22_15H + 700), 0),
            Ok(Some(NOV22_15H + 700))
        );
    }
}
