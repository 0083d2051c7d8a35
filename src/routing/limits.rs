//! Carrier limits: SMS parts an upstream (a SIM) may take per day and per
//! calendar month, turning over at midnight and at the month's start in the
//! upstream's time zone. `Usage` counts what the upstream took (stored, so it
//! survives restarts) and what is on its way to it now (reserved when a
//! message is handed to it, so that messages in flight cannot overshoot).

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The two periods a limit can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Month,
}

impl PeriodKind {
    /// As stored and shown: `day`, `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Month => "month",
        }
    }
}

/// A day or a month: Unix ms, `starts_at` inclusive, `ends_at` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub starts_at: i64,
    pub ends_at: i64,
}

impl Period {
    /// The day or month in `zone` that holds the instant `at_ms`.
    pub fn at(kind: PeriodKind, at_ms: i64, zone: &TimeZone) -> Period {
        let instant = Timestamp::from_millisecond(at_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let date = instant.to_zoned_datetime(zone.clone()).date();
        let (first, next) = match kind {
            PeriodKind::Day => (date, date.tomorrow().ok()),
            PeriodKind::Month => {
                let first = date.first_of_month();
                (first, first.checked_add(1.month()).ok())
            }
        };
        // The start of a civil day (the first instant of it where a DST gap
        // skips midnight); the calendar's ends are far beyond any clock.
        let start = |d: jiff::civil::Date| {
            d.to_zoned_datetime(zone.clone())
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(i64::MAX)
        };
        Period {
            kind,
            starts_at: start(first).min(at_ms),
            ends_at: next.map_or(i64::MAX, start).max(at_ms.saturating_add(1)),
        }
    }

    pub fn holds(&self, at_ms: i64) -> bool {
        self.starts_at <= at_ms && at_ms < self.ends_at
    }
}

/// An upstream's limits, from its configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub daily: Option<u32>,
    pub monthly: Option<u32>,
    pub zone: TimeZone,
}

impl Limits {
    pub fn none() -> Limits {
        Limits {
            daily: None,
            monthly: None,
            zone: TimeZone::UTC,
        }
    }

    fn of(&self, kind: PeriodKind) -> Option<u32> {
        match kind {
            PeriodKind::Day => self.daily,
            PeriodKind::Month => self.monthly,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    period: Period,
    /// Parts the upstream took in the period.
    used: u64,
}

/// One upstream's parts against its limits.
#[derive(Debug, Clone)]
pub struct Usage {
    limits: Limits,
    counts: [Count; 2],
    /// Parts handed to the upstream whose answer has not come.
    reserved: u64,
}

const KINDS: [PeriodKind; 2] = [PeriodKind::Day, PeriodKind::Month];

impl Usage {
    /// Usage at `now`, with `stored(period)` the parts already counted in the
    /// current day and month.
    pub fn new(limits: Limits, now: i64, stored: impl Fn(Period) -> u64) -> Usage {
        let counts = KINDS.map(|kind| {
            let period = Period::at(kind, now, &limits.zone);
            Count {
                period,
                used: stored(period),
            }
        });
        Usage {
            limits,
            counts,
            reserved: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new day or month starts from nothing.
    fn turn(&mut self, now: i64) {
        for count in &mut self.counts {
            if !count.period.holds(now) {
                *count = Count {
                    period: Period::at(count.period.kind, now, &self.limits.zone),
                    used: 0,
                };
            }
        }
    }

    /// Parts still allowed in the current `kind` period (None: no limit),
    /// counting those on their way.
    pub fn remaining(&mut self, kind: PeriodKind, now: i64) -> Option<u64> {
        self.turn(now);
        let limit = u64::from(self.limits.of(kind)?);
        let count = self.counts.iter().find(|c| c.period.kind == kind)?;
        Some(limit.saturating_sub(count.used + self.reserved))
    }

    /// Whether `parts` more fit under every limit now.
    pub fn can_take(&mut self, parts: u32, now: i64) -> bool {
        KINDS.iter().all(|&kind| {
            self.remaining(kind, now)
                .is_none_or(|left| left >= u64::from(parts))
        })
    }

    /// Why nothing more fits now, with when it will again; None while a
    /// single part fits.
    pub fn exhausted(&mut self, now: i64) -> Option<String> {
        KINDS.iter().find_map(|&kind| {
            (self.remaining(kind, now)? == 0).then(|| {
                let count = self.counts.iter().find(|c| c.period.kind == kind)?;
                let turns = Timestamp::from_millisecond(count.period.ends_at)
                    .map(|t| t.to_zoned_datetime(self.limits.zone.clone()).to_string())
                    .unwrap_or_default();
                let limit = self.limits.of(kind)?;
                let name = match kind {
                    PeriodKind::Day => "daily_limit",
                    PeriodKind::Month => "monthly_limit",
                };
                Some(format!("{name} {limit} reached; counts again from {turns}"))
            })?
        })
    }

    /// `parts` are on their way to the upstream.
    pub fn reserve(&mut self, parts: u32) {
        self.reserved += u64::from(parts);
    }

    /// The upstream did not take them.
    pub fn release(&mut self, parts: u32) {
        self.reserved = self.reserved.saturating_sub(u64::from(parts));
    }

    /// The upstream took them at `now` (stored with the periods `periods_at` gives).
    pub fn commit(&mut self, parts: u32, now: i64) {
        self.release(parts);
        self.turn(now);
        for count in &mut self.counts {
            count.used += u64::from(parts);
        }
    }

    /// The day and month that parts taken at `now` count in.
    pub fn periods_at(&self, now: i64) -> [Period; 2] {
        KINDS.map(|kind| Period::at(kind, now, &self.limits.zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T12:00:00Z.
    const NOON: i64 = 1_796_644_800_000;
    const HOUR: i64 = 3_600_000;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("bundled zone")
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("timestamp")
            .as_millisecond()
    }

    #[test]
    fn days_and_months_turn_in_the_configured_zone() {
        assert_eq!(NOON, ms("2026-12-07T12:00:00Z"));
        let day = Period::at(PeriodKind::Day, NOON, &berlin());
        assert_eq!(day.starts_at, ms("2026-12-06T23:00:00Z"));
        assert_eq!(day.ends_at, ms("2026-12-07T23:00:00Z"));
        let utc_day = Period::at(PeriodKind::Day, NOON, &TimeZone::UTC);
        assert_eq!(
            (utc_day.starts_at, utc_day.ends_at),
            (ms("2026-12-07T00:00:00Z"), ms("2026-12-08T00:00:00Z"))
        );
        // 23:30 UTC is already tomorrow in Berlin.
        let late = Period::at(PeriodKind::Day, ms("2026-12-07T23:30:00Z"), &berlin());
        assert_eq!(late.starts_at, ms("2026-12-07T23:00:00Z"));
        let month = Period::at(PeriodKind::Month, NOON, &berlin());
        assert_eq!(
            (month.starts_at, month.ends_at),
            (ms("2026-11-30T23:00:00Z"), ms("2026-12-31T23:00:00Z"))
        );
        // The day DST starts has 23 hours.
        let spring = Period::at(PeriodKind::Day, ms("2026-03-29T12:00:00Z"), &berlin());
        assert_eq!(spring.ends_at - spring.starts_at, 23 * HOUR);
    }

    fn limited(daily: u32, monthly: Option<u32>) -> Usage {
        let limits = Limits {
            daily: Some(daily),
            monthly,
            zone: TimeZone::UTC,
        };
        Usage::new(limits, NOON, |period| match period.kind {
            PeriodKind::Day => 8,
            PeriodKind::Month => 100,
        })
    }

    #[test]
    fn parts_in_flight_count_until_answered_and_the_day_turns() {
        let mut usage = limited(10, None);
        assert_eq!(usage.remaining(PeriodKind::Day, NOON), Some(2));
        assert_eq!(usage.remaining(PeriodKind::Month, NOON), None);
        assert!(usage.can_take(2, NOON) && !usage.can_take(3, NOON));
        usage.reserve(2);
        assert!(!usage.can_take(1, NOON));
        assert!(usage
            .exhausted(NOON)
            .expect("exhausted")
            .starts_with("daily_limit 10 reached; counts again from 2026-12-08T00:00:00+00:00"));
        usage.release(1);
        assert!(usage.can_take(1, NOON));
        usage.commit(1, NOON);
        assert_eq!(usage.remaining(PeriodKind::Day, NOON), Some(1));
        // Tomorrow starts from nothing.
        let tomorrow = NOON + 12 * HOUR;
        assert_eq!(usage.remaining(PeriodKind::Day, tomorrow), Some(10));
        assert_eq!(usage.exhausted(tomorrow), None);
    }

    #[test]
    fn the_month_limit_holds_across_days() {
        let mut usage = limited(1000, Some(103));
        assert_eq!(usage.remaining(PeriodKind::Month, NOON), Some(3));
        usage.commit(3, NOON);
        assert!(!usage.can_take(1, NOON + 24 * HOUR));
        assert_eq!(
            usage.remaining(PeriodKind::Day, NOON + 24 * HOUR),
            Some(1000)
        );
        let january = ms("2027-01-01T00:00:00Z");
        assert!(usage.can_take(103, january));
        assert_eq!(usage.periods_at(january)[1].starts_at, january);
    }
}
