//! Valid time: ISO 8601 text with its precision, read as the span of instants
//! it denotes.
//!
//! `1950` is 1950-01-01T00:00:00Z up to the last microsecond of 1950;
//! `2023-09` the whole of September 2023; `2024-04-13` that day (UTC); an RFC
//! 3339 instant a single microsecond. Instants are microseconds since the Unix
//! epoch in an `i64`, which covers years 0001–9999 with room to spare. This is
//! the only module that parses or formats valid time.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use std::fmt;

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Instant = i64;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How precisely a valid time was stated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Year,
    Month,
    Day,
    Instant,
}

/// A valid time as written, with the span of instants it denotes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidTime {
    text: String,
    earliest: Instant,
    latest: Instant,
    precision: Precision,
}

/// Why a text is not a valid time. The message names what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid time: {1}")]
pub struct TimeError(pub String, pub &'static str);

impl ValidTime {
    /// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or an RFC 3339 instant with an
    /// offset. Years 0001–9999. Sub-microsecond digits are truncated.
    pub fn parse(text: &str) -> Result<ValidTime, TimeError> {
        let fail = |why| TimeError(text.to_string(), why);
        let bytes = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            range.end <= bytes.len() && bytes[range].iter().all(u8::is_ascii_digit)
        };
        let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(0);

        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if bytes.len() < 4 || !digits(0..4) {
            return Err(fail(
                "expected YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 instant",
            ));
        }
        let year = number(0..4) as i32;
        if year == 0 {
            return Err(fail("years run from 0001 to 9999"));
        }
        let (precision, first, next) = match bytes.len() {
            4 => {
                let first = date(year, 1, 1).ok_or_else(|| fail("no such date"))?;
                (Precision::Year, first, date(year + 1, 1, 1))
            }
            7 if bytes[4] == b'-' && digits(5..7) => {
                let month = number(5..7);
                let first = date(year, month, 1).ok_or_else(|| fail("month must be 01–12"))?;
                let next = if month == 12 {
                    date(year + 1, 1, 1)
                } else {
                    date(year, month + 1, 1)
                };
                (Precision::Month, first, next)
            }
            10 if bytes[4] == b'-' && bytes[7] == b'-' && digits(5..7) && digits(8..10) => {
                let day = date(year, number(5..7), number(8..10))
                    .ok_or_else(|| fail("no such calendar date"))?;
                (Precision::Day, day, day.succ_opt())
            }
            _ if bytes.len() > 10 && matches!(bytes[10], b'T' | b't') => {
                let instant = DateTime::parse_from_rfc3339(text)
                    .map_err(|_| fail("expected an RFC 3339 instant with an offset, e.g. 2024-04-13T10:00:00+09:00"))?;
                let utc = instant.naive_utc();
                if !(1..=9999).contains(&utc.year()) {
                    return Err(fail("years run from 0001 to 9999"));
                }
                let micros = instant.timestamp() * 1_000_000 + i64::from(utc.nanosecond() / 1_000);
                return Ok(ValidTime {
                    text: text.to_string(),
                    earliest: micros,
                    latest: micros,
                    precision: Precision::Instant,
                });
            }
            _ => {
                return Err(fail(
                    "expected YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 instant",
                ))
            }
        };
        let next = next.ok_or_else(|| fail("no such date"))?;
        Ok(ValidTime {
            text: text.to_string(),
            earliest: day_start(first),
            latest: day_start(next) - 1,
            precision,
        })
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first instant of the span.
    pub fn earliest(&self) -> Instant {
        self.earliest
    }

    /// The last instant of the span.
    pub fn latest(&self) -> Instant {
        self.latest
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }
}

impl fmt::Display for ValidTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The instant a query asks about: the **end** of the named span, so that
/// `at=2024-04-13` includes everything on that day. An empty `at` means
/// "now": every change, whatever its valid time.
pub fn query_instant(at: &str) -> Result<Instant, TimeError> {
    if at.is_empty() {
        Ok(Instant::MAX)
    } else {
        ValidTime::parse(at).map(|time| time.latest())
    }
}

/// The first instant of a query's lower bound (`from` of a window); empty
/// means the beginning of time.
pub fn window_start(from: &str) -> Result<Instant, TimeError> {
    if from.is_empty() {
        Ok(Instant::MIN)
    } else {
        ValidTime::parse(from).map(|time| time.earliest())
    }
}

/// Formats an instant as RFC 3339 UTC with microseconds.
pub fn format_instant(instant: Instant) -> String {
    match DateTime::from_timestamp_micros(instant) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => instant.to_string(),
    }
}

/// The text `YYYY-MM-DD` of the day that starts at `instant`, if a day
/// starts there (years 0001–9999): the canonical text of a day-precision
/// valid time whose earliest instant is `instant`.
pub fn day_text(instant: Instant) -> Option<String> {
    let mut text = [0; 10];
    write_day(instant, &mut text)?;
    String::from_utf8(text.to_vec()).ok()
}

/// Writes `YYYY-MM-DD` of the day that starts at `instant` into `text`, if
/// a day starts there (years 0001–9999): `day_text` without allocating.
pub fn write_day(instant: Instant, text: &mut [u8; 10]) -> Option<()> {
    if instant.rem_euclid(MICROS_PER_DAY) != 0 {
        return None;
    }
    let day = DateTime::from_timestamp_micros(instant)?.date_naive();
    let year = u32::try_from(day.year())
        .ok()
        .filter(|year| (1..=9999).contains(year))?;
    let mut at = 0;
    for (number, digits) in [(year, 4), (day.month(), 2), (day.day(), 2)] {
        if at > 0 {
            text[at] = b'-';
            at += 1;
        }
        for place in (0..digits).rev() {
            text[at] = b'0' + ((number / 10u32.pow(place)) % 10) as u8;
            at += 1;
        }
    }
    Some(())
}

/// Is `text` the day that starts at `instant`, written `YYYY-MM-DD`? Like
/// `day_text(instant) == Some(text)`, without making the text.
pub fn is_day_text(instant: Instant, text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || instant.rem_euclid(MICROS_PER_DAY) != 0 {
        return false;
    }
    let Some(day) = DateTime::from_timestamp_micros(instant).map(|time| time.date_naive()) else {
        return false;
    };
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| text[range].parse().ok())
            .flatten()
    };
    bytes[4] == b'-'
        && bytes[7] == b'-'
        && number(0..4) == u32::try_from(day.year()).ok()
        && number(5..7) == Some(day.month())
        && number(8..10) == Some(day.day())
}

/// The width of a bucket of valid time (a count per day, month or year).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Month,
    Year,
}

/// The bucket holding an instant: its first instant, the first instant of
/// the next one, and its text as a valid time of its precision (`2018`,
/// `2018-06`, `2018-06-01`). `None` outside years 0001–9999.
pub fn bucket_of(instant: Instant, bucket: Bucket) -> Option<(Instant, Instant, String)> {
    let day = DateTime::from_timestamp_micros(instant)?.date_naive();
    if !(1..=9999).contains(&day.year()) {
        return None;
    }
    let (year, month) = (day.year(), day.month());
    let (first, next, text) = match bucket {
        Bucket::Day => (
            day,
            day.succ_opt()?,
            format!("{year:04}-{month:02}-{:02}", day.day()),
        ),
        Bucket::Month => {
            let next = if month == 12 {
                date(year + 1, 1, 1)?
            } else {
                date(year, month + 1, 1)?
            };
            (date(year, month, 1)?, next, format!("{year:04}-{month:02}"))
        }
        Bucket::Year => (
            date(year, 1, 1)?,
            date(year + 1, 1, 1)?,
            format!("{year:04}"),
        ),
    };
    Some((day_start(first), day_start(next), text))
}

fn date(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, day)
}

fn day_start(day: NaiveDate) -> Instant {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
    (day - epoch).num_days() * MICROS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_instants() {
        let instant = ValidTime::parse("2018-12-31T23:59:59Z").unwrap().earliest();
        let year = bucket_of(instant, Bucket::Year).unwrap();
        assert_eq!(year.2, "2018");
        assert_eq!(year.0, ValidTime::parse("2018").unwrap().earliest());
        assert_eq!(year.1, ValidTime::parse("2019").unwrap().earliest());
        let month = bucket_of(instant, Bucket::Month).unwrap();
        assert_eq!(month.2, "2018-12");
        assert_eq!(month.1, ValidTime::parse("2019-01").unwrap().earliest());
        let day = bucket_of(instant, Bucket::Day).unwrap();
        assert_eq!(day.2, "2018-12-31");
        assert!(day.0 <= instant && instant < day.1);
        assert_eq!(bucket_of(Instant::MIN, Bucket::Day), None);
    }

    fn span(text: &str) -> (String, String) {
        let time = ValidTime::parse(text).unwrap();
        (
            format_instant(time.earliest()),
            format_instant(time.latest()),
        )
    }

    #[test]
    fn a_day_text_is_what_a_day_parses_from() {
        for text in ["0001-01-01", "1950-06-25", "2024-02-29", "9999-12-31"] {
            let day = ValidTime::parse(text).unwrap();
            assert_eq!(day_text(day.earliest()).as_deref(), Some(text));
        }
        let instant = ValidTime::parse("2024-04-13T10:00:00+09:00").unwrap();
        assert_eq!(day_text(instant.earliest()), None, "not the start of a day");
        let day = ValidTime::parse("1950-06-25").unwrap().earliest();
        assert!(is_day_text(day, "1950-06-25"));
        assert!(!is_day_text(day, "1950-06-26"));
        assert!(!is_day_text(day, "1950-06"));
        assert!(!is_day_text(day + 1, "1950-06-25"));
    }

    #[test]
    fn reduced_precision_denotes_its_whole_span() {
        assert_eq!(
            span("1950"),
            (
                "1950-01-01T00:00:00Z".into(),
                "1950-12-31T23:59:59.999999Z".into()
            )
        );
        assert_eq!(
            span("2023-09"),
            (
                "2023-09-01T00:00:00Z".into(),
                "2023-09-30T23:59:59.999999Z".into()
            )
        );
        assert_eq!(
            span("2024-04-13"),
            (
                "2024-04-13T00:00:00Z".into(),
                "2024-04-13T23:59:59.999999Z".into()
            )
        );
    }

    #[test]
    fn month_ends_and_leap_years() {
        assert_eq!(span("2024-02").1, "2024-02-29T23:59:59.999999Z");
        assert_eq!(span("2023-02").1, "2023-02-28T23:59:59.999999Z");
        assert_eq!(span("1900-02").1, "1900-02-28T23:59:59.999999Z");
        assert_eq!(span("2000-02").1, "2000-02-29T23:59:59.999999Z");
        assert_eq!(span("2023-12").1, "2023-12-31T23:59:59.999999Z");
        assert!(ValidTime::parse("2024-02-29").is_ok());
        assert!(ValidTime::parse("2023-02-29").is_err());
        assert!(ValidTime::parse("2023-04-31").is_err());
    }

    #[test]
    fn instants_keep_their_offset() {
        let time = ValidTime::parse("2024-04-13T10:00:00+09:00").unwrap();
        assert_eq!(format_instant(time.earliest()), "2024-04-13T01:00:00Z");
        assert_eq!(time.earliest(), time.latest());
        assert_eq!(time.precision(), Precision::Instant);
        assert_eq!(time.text(), "2024-04-13T10:00:00+09:00");
        let fine = ValidTime::parse("2024-04-13T00:00:00.123456789Z").unwrap();
        assert_eq!(
            format_instant(fine.earliest()),
            "2024-04-13T00:00:00.123456Z"
        );
    }

    #[test]
    fn year_range_edges() {
        assert_eq!(span("0001").0, "0001-01-01T00:00:00Z");
        assert_eq!(span("9999").1, "9999-12-31T23:59:59.999999Z");
        assert!(ValidTime::parse("0000").is_err());
        assert!(ValidTime::parse("10000").is_err());
    }

    #[test]
    fn rejects_what_is_not_a_valid_time() {
        for bad in [
            "",
            "19",
            "195O",
            "1950-1",
            "1950-13",
            "1950-00",
            "1950-06-00",
            "1950-06-31",
            "1950/06/25",
            " 1950",
            "1950 ",
            "1950-06-25T10:00",
            "1950-06-25T25:00:00Z",
            "yesterday",
            "-500",
            "1950-06-25Z",
        ] {
            assert!(ValidTime::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn query_at_means_the_end_of_the_named_span() {
        let day = ValidTime::parse("2023-09-15").unwrap();
        let month = ValidTime::parse("2023-09").unwrap();
        // A change dated 2023-09 applies on 2023-09-15 but is not certain then.
        assert!(month.earliest() <= query_instant("2023-09-15").unwrap());
        assert!(month.latest() > query_instant("2023-09-15").unwrap());
        assert!(month.latest() <= query_instant("2023-09-30").unwrap());
        assert_eq!(query_instant("2023-09-15").unwrap(), day.latest());
        assert_eq!(query_instant("").unwrap(), Instant::MAX);
        assert_eq!(window_start("").unwrap(), Instant::MIN);
        assert_eq!(window_start("2023-09").unwrap(), month.earliest());
    }

    #[test]
    fn spans_order_by_their_earliest_instant() {
        let mut times: Vec<ValidTime> =
            ["2024-04-13", "1950", "2023-09", "1949-10-06", "2023-09-13"]
                .iter()
                .map(|text| ValidTime::parse(text).unwrap())
                .collect();
        times.sort_by_key(|time| (time.earliest(), time.latest()));
        let order: Vec<&str> = times.iter().map(ValidTime::text).collect();
        assert_eq!(
            order,
            ["1949-10-06", "1950", "2023-09", "2023-09-13", "2024-04-13"]
        );
    }
}
