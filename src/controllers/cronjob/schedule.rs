//! Cron schedules as Kubernetes reads `spec.schedule` (robfig/cron v3's
//! `ParseStandard`): five fields (minute, hour, day of month, month, day of
//! week) with `*`, `?`, ranges, steps (`*/5`, `1-30/2`, `5/15` = `5-max/15`),
//! lists and month and weekday names; the `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>` macros;
//! and a leading `TZ=<zone>` or `CRON_TZ=<zone>`. When both day fields are
//! restricted a day matches either (Vixie cron). Times are computed in the
//! schedule's IANA time zone, walking real time as robfig/cron does: a time in
//! a daylight-saving gap does not occur, one in a fold occurs twice.

use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// Why a schedule or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    #[error("failed to parse int from {0}: invalid syntax")]
    Number(String),
    #[error("beginning of range ({0}) below minimum ({1}): {2}")]
    BelowMinimum(u32, u32, String),
    #[error("end of range ({0}) above maximum ({1}): {2}")]
    AboveMaximum(u32, u32, String),
    #[error("beginning of range ({0}) beyond end of range ({1}): {2}")]
    Reversed(u32, u32, String),
    #[error("step of range should be a positive number: {0}")]
    Step(String),
    #[error("too many slashes: {0}")]
    Slashes(String),
    #[error("too many hyphens: {0}")]
    Hyphens(String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse duration {0}")]
    Duration(String),
    #[error("provided bad location {0}: unknown time zone {0}")]
    TimeZone(String),
    #[error("empty spec string")]
    Empty,
}

/// One field's bounds and names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The set of values a field allows, and whether it was `*` or `?` (unrestricted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(&self, value: u32) -> bool {
        value < 64 && self.bits & (1 << value) != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields {
        minute: Field,
        hour: Field,
        dom: Field,
        month: Field,
        dow: Field,
    },
    /// `@every <duration>`: runs at fixed intervals (whole seconds, at least one).
    Every(Duration),
}

/// A parsed schedule with its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

/// Looks up an IANA time zone name (the system's zoneinfo, else the one
/// built in); the empty name and `UTC` are UTC.
pub fn time_zone(name: &str) -> Result<TimeZone, Error> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(Error::TimeZone(name.to_string()));
    }
    jiff::tz::db().get(name).map_err(|_| Error::TimeZone(name.to_string()))
}

/// Parses a schedule; `zone` (`spec.timeZone`) applies unless the schedule
/// names its own with `TZ=`/`CRON_TZ=`.
pub fn parse(spec: &str, zone: Option<&str>) -> Result<Schedule, Error> {
    let mut spec = spec.trim();
    let mut tz = time_zone(zone.unwrap_or_default())?;
    if let Some(rest) = spec.strip_prefix("TZ=").or_else(|| spec.strip_prefix("CRON_TZ=")) {
        let (name, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        tz = time_zone(name)?;
        spec = rest.trim();
    }
    if spec.is_empty() {
        return Err(Error::Empty);
    }
    if spec.starts_with('@') {
        return descriptor(spec).map(|kind| Schedule { kind, tz });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Error::FieldCount(fields.len(), spec.to_string()));
    }
    Ok(Schedule {
        kind: Kind::Fields {
            minute: field(fields[0], &MINUTE)?,
            hour: field(fields[1], &HOUR)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTH)?,
            dow: field(fields[4], &DOW)?,
        },
        tz,
    })
}

fn descriptor(spec: &str) -> Result<Kind, Error> {
    let fields = |text: &str| match parse(text, None) {
        Ok(Schedule { kind, .. }) => Ok(kind),
        Err(err) => Err(err),
    };
    match spec {
        "@yearly" | "@annually" => fields("0 0 1 1 *"),
        "@monthly" => fields("0 0 1 * *"),
        "@weekly" => fields("0 0 * * 0"),
        "@daily" | "@midnight" => fields("0 0 * * *"),
        "@hourly" => fields("0 * * * *"),
        _ => match spec.strip_prefix("@every ") {
            Some(text) => {
                let every = go_duration(text.trim()).ok_or_else(|| Error::Duration(text.trim().to_string()))?;
                // robfig/cron: rounded down to whole seconds, at least one.
                Ok(Kind::Every(Duration::from_secs(every.as_secs().max(1))))
            }
            None => Err(Error::Descriptor(spec.to_string())),
        },
    }
}

/// A Go `time.ParseDuration` string ("1h30m", "90s", "1.5h").
fn go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn field(text: &str, bounds: &Bounds) -> Result<Field, Error> {
    let mut out = Field { bits: 0, star: false };
    for part in text.split(',') {
        let one = range(part, bounds)?;
        out.bits |= one.bits;
        out.star |= one.star;
    }
    Ok(out)
}

fn number(text: &str, bounds: &Bounds) -> Result<u32, Error> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = bounds.names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(index).unwrap_or(0) + bounds.min);
    }
    text.parse::<u32>().map_err(|_| Error::Number(text.to_string()))
}

fn range(text: &str, bounds: &Bounds) -> Result<Field, Error> {
    let slashes: Vec<&str> = text.split('/').collect();
    if slashes.len() > 2 {
        return Err(Error::Slashes(text.to_string()));
    }
    let hyphens: Vec<&str> = slashes[0].split('-').collect();
    if hyphens.len() > 2 {
        return Err(Error::Hyphens(text.to_string()));
    }
    let (start, mut end, mut star);
    if hyphens[0] == "*" || hyphens[0] == "?" {
        if hyphens.len() > 1 {
            return Err(Error::Number(text.to_string()));
        }
        (start, end, star) = (bounds.min, bounds.max, true);
    } else {
        start = number(hyphens[0], bounds)?;
        end = match hyphens.get(1) {
            Some(end) => number(end, bounds)?,
            None => start,
        };
        star = false;
    }
    let mut step = 1;
    if let Some(text_step) = slashes.get(1) {
        step = text_step
            .parse::<u32>()
            .map_err(|_| Error::Number((*text_step).to_string()))?;
        // "N/step" means "N-max/step".
        if hyphens.len() == 1 && !star {
            end = bounds.max;
        }
        if step > 1 {
            star = false;
        }
    }
    if start < bounds.min {
        return Err(Error::BelowMinimum(start, bounds.min, text.to_string()));
    }
    if end > bounds.max {
        return Err(Error::AboveMaximum(end, bounds.max, text.to_string()));
    }
    if start > end {
        return Err(Error::Reversed(start, end, text.to_string()));
    }
    if step == 0 {
        return Err(Error::Step(text.to_string()));
    }
    let mut bits = 0u64;
    let mut value = start;
    while value <= end {
        bits |= 1 << value;
        value += step;
    }
    Ok(Field { bits, star })
}

/// How far ahead [`Schedule::next`] looks before deciding a schedule never fires
/// (robfig/cron gives up after five years too).
const HORIZON_YEARS: i16 = 5;

impl Schedule {
    /// The time zone the schedule is read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first time strictly after `after` at which the schedule fires.
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match &self.kind {
            Kind::Every(every) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                return whole.checked_add(SignedDuration::try_from(*every).ok()?).ok();
            }
            Kind::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        // From the next whole minute after `after`. Months and days jump to local
        // midnight; hours and minutes step in real time, as robfig/cron does, so
        // an hour skipped by daylight saving never matches and a repeated one
        // matches twice.
        let mut t = Timestamp::from_second(after.as_second() - after.as_second().rem_euclid(60) + 60).ok()?;
        let limit = self.tz.to_datetime(t).year().saturating_add(HORIZON_YEARS);
        let day_matches = |date: Date| {
            let dom_hit = dom.has(u32::try_from(date.day()).unwrap_or(0));
            let dow_hit = dow.has(u32::try_from(date.weekday().to_sunday_zero_offset()).unwrap_or(0));
            if dom.star || dow.star {
                dom_hit && dow_hit
            } else {
                dom_hit || dow_hit
            }
        };
        let midnight = |date: Date| -> Option<Timestamp> {
            let dt = date.to_datetime(jiff::civil::Time::midnight());
            Some(self.tz.to_zoned(dt).ok()?.timestamp())
        };
        loop {
            let dt = self.tz.to_datetime(t);
            if dt.year() > limit {
                return None;
            }
            if !month.has(u32::try_from(dt.month()).unwrap_or(0)) {
                t = midnight(dt.date().first_of_month().checked_add(1.month()).ok()?)?;
            } else if !day_matches(dt.date()) {
                t = midnight(dt.date().tomorrow().ok()?)?;
            } else if !hour.has(u32::try_from(dt.hour()).unwrap_or(0)) {
                let into_hour = i64::from(dt.minute()) * 60 + i64::from(dt.second());
                t = Timestamp::from_second(t.as_second() - into_hour + 3600).ok()?;
            } else if !minute.has(u32::try_from(dt.minute()).unwrap_or(0)) {
                t = Timestamp::from_second(t.as_second() - i64::from(dt.second()) + 60).ok()?;
            } else if t > after {
                return Some(t);
            } else {
                t = Timestamp::from_second(t.as_second() + 60).ok()?;
            }
        }
    }

    /// The latest time in `(earliest, now]` at which the schedule fired, and
    /// roughly how many such times there were (as kube-controller-manager
    /// estimates them, to warn about too many missed starts).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> Option<(Timestamp, i64)> {
        let first = self.next(earliest)?;
        if first > now {
            return None;
        }
        let missed = match self.next(first) {
            Some(second) if second > first => {
                let interval = (second.as_second() - first.as_second()).max(1);
                (now.as_second() - first.as_second()) / interval + 1
            }
            _ => 1,
        };
        // Search back from `now` in growing windows so a long outage does not walk
        // every missed minute.
        for window in [3_600i64, 86_400, 32 * 86_400, 400 * 86_400, 6 * 366 * 86_400] {
            let from = Timestamp::from_second(now.as_second() - window)
                .unwrap_or(earliest)
                .max(earliest);
            let Some(mut last) = self.next(from).filter(|t| *t <= now) else {
                if from == earliest {
                    break;
                }
                continue;
            };
            while let Some(next) = self.next(last).filter(|t| *t <= now) {
                last = next;
            }
            return Some((last, missed));
        }
        Some((first, missed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        parse(spec, None).unwrap().next(at(after)).unwrap().to_string()
    }

    fn next_in(spec: &str, zone: &str, after: &str) -> String {
        parse(spec, Some(zone)).unwrap().next(at(after)).unwrap().to_string()
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(next("* * * * *", "2024-01-01T00:00:00Z"), "2024-01-01T00:01:00Z");
        assert_eq!(next("* * * * *", "2024-01-01T00:00:30.5Z"), "2024-01-01T00:01:00Z");
        assert_eq!(next("*/15 * * * *", "2024-01-01T00:14:59Z"), "2024-01-01T00:15:00Z");
        assert_eq!(next("*/15 * * * *", "2024-01-01T00:45:00Z"), "2024-01-01T01:00:00Z");
        assert_eq!(next("5/20 * * * *", "2024-01-01T00:06:00Z"), "2024-01-01T00:25:00Z");
        assert_eq!(next("10-20/5 * * * *", "2024-01-01T00:16:00Z"), "2024-01-01T00:20:00Z");
        assert_eq!(next("10-20/5 * * * *", "2024-01-01T00:21:00Z"), "2024-01-01T01:10:00Z");
        assert_eq!(next("0,30 9-17 * * *", "2024-01-01T17:30:00Z"), "2024-01-02T09:00:00Z");
    }

    #[test]
    fn names_and_macros() {
        // 2024-01-01 is a Monday.
        assert_eq!(next("0 9 * * MON-FRI", "2024-01-05T10:00:00Z"), "2024-01-08T09:00:00Z");
        assert_eq!(next("0 9 * * sat,Sun", "2024-01-01T00:00:00Z"), "2024-01-06T09:00:00Z");
        assert_eq!(next("0 0 1 FEB *", "2024-01-01T00:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(next("@hourly", "2024-01-01T00:00:00Z"), "2024-01-01T01:00:00Z");
        assert_eq!(next("@daily", "2024-01-01T00:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@midnight", "2024-01-01T12:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@weekly", "2024-01-01T00:00:00Z"), "2024-01-07T00:00:00Z");
        assert_eq!(next("@monthly", "2024-01-15T00:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2024-01-01T00:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("@annually", "2024-06-01T00:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("@every 1h30m", "2024-01-01T00:00:10.7Z"), "2024-01-01T01:30:10Z");
        assert_eq!(next("@every 90s", "2024-01-01T00:00:00Z"), "2024-01-01T00:01:30Z");
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches (the 13th, or any Friday).
        assert_eq!(next("0 0 13 * 5", "2024-01-01T00:00:00Z"), "2024-01-05T00:00:00Z");
        assert_eq!(next("0 0 13 * 5", "2024-01-12T00:00:00Z"), "2024-01-13T00:00:00Z");
        // One is `*`: both must match (i.e. only the restricted one counts).
        assert_eq!(next("0 0 13 * *", "2024-01-01T00:00:00Z"), "2024-01-13T00:00:00Z");
        assert_eq!(next("0 0 * * 5", "2024-01-01T00:00:00Z"), "2024-01-05T00:00:00Z");
        // `*/2` is a restriction: either matches.
        assert_eq!(next("0 0 */2 * 1", "2024-01-01T12:00:00Z"), "2024-01-03T00:00:00Z");
        // Leap day, years ahead.
        assert_eq!(next("0 0 29 2 *", "2024-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
        // A date that never exists: no next time.
        assert_eq!(
            parse("0 0 30 2 *", None).unwrap().next(at("2024-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        assert_eq!(
            next_in("0 9 * * *", "America/New_York", "2024-01-01T00:00:00Z"),
            "2024-01-01T14:00:00Z"
        );
        assert_eq!(
            next("TZ=Asia/Tokyo 0 9 * * *", "2024-01-01T00:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("CRON_TZ=Europe/Berlin 30 2 * * *", "2024-01-01T00:00:00Z"),
            "2024-01-01T01:30:00Z"
        );
        // New York springs forward at 02:00 on 2024-03-10: 02:30 does not happen that day.
        assert_eq!(
            next_in("30 2 * * *", "America/New_York", "2024-03-09T08:00:00Z"),
            "2024-03-11T06:30:00Z"
        );
        // ...and falls back at 02:00 on 2024-11-03: 01:30 happens twice.
        let first = next_in("30 1 * * *", "America/New_York", "2024-11-03T04:00:00Z");
        assert_eq!(first, "2024-11-03T05:30:00Z");
        assert_eq!(
            next_in("30 1 * * *", "America/New_York", "2024-11-03T05:30:00Z"),
            "2024-11-03T06:30:00Z"
        );
        assert!(matches!(
            parse("* * * * *", Some("Mars/Olympus")),
            Err(Error::TimeZone(_))
        ));
        assert!(matches!(parse("* * * * *", Some("Local")), Err(Error::TimeZone(_))));
    }

    #[test]
    fn bad_schedules_are_refused() {
        for (spec, want) in [
            ("* * * *", "expected exactly 5 fields, found 4"),
            ("* * * * * *", "expected exactly 5 fields, found 6"),
            ("60 * * * *", "end of range (60) above maximum (59)"),
            ("* 24 * * *", "above maximum (23)"),
            ("* * 0 * *", "below minimum (1)"),
            ("* * * 13 *", "above maximum (12)"),
            ("* * * * 7", "above maximum (6)"),
            ("5-1 * * * *", "beyond end of range"),
            ("*/0 * * * *", "step of range should be a positive number"),
            ("a * * * *", "failed to parse int from a"),
            ("1/2/3 * * * *", "too many slashes"),
            ("1-2-3 * * * *", "too many hyphens"),
            ("@fortnightly", "unrecognized descriptor"),
            ("@every 1y", "failed to parse duration"),
            ("", "empty spec string"),
        ] {
            let err = parse(spec, None).expect_err(spec).to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn most_recent_of_many_missed_times() {
        let schedule = parse("*/5 * * * *", None).unwrap();
        let (last, missed) = schedule
            .most_recent(at("2024-01-01T00:00:00Z"), at("2024-01-03T00:07:00Z"))
            .unwrap();
        assert_eq!(last.to_string(), "2024-01-03T00:05:00Z");
        assert_eq!(missed, 2 * 288 + 1);
        assert_eq!(
            schedule.most_recent(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:04:59Z")),
            None
        );
        let weekdays = parse("0 9 * * 1-5", None).unwrap();
        // From a Friday to the next Tuesday morning: Monday 09:00 was the last.
        let (last, _) = weekdays
            .most_recent(at("2024-01-05T10:00:00Z"), at("2024-01-09T08:00:00Z"))
            .unwrap();
        assert_eq!(last.to_string(), "2024-01-08T09:00:00Z");
        // Years of outage still find the latest time quickly.
        let (last, missed) = schedule
            .most_recent(at("2020-01-01T00:00:00Z"), at("2024-01-01T00:01:00Z"))
            .unwrap();
        assert_eq!(last.to_string(), "2024-01-01T00:00:00Z");
        assert!(missed > 100);
    }
}
