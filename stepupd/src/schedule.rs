//! Weekly schedules for `schedule` conditions, judged on a local wall clock.
//!
//! A schedule is a set of weekdays and one or more daily time windows in an IANA time
//! zone (the schedule's own `timezone`, else `[defaults] timezone`):
//!
//! ```toml
//! [schedules.business]
//! days = "Mon-Fri"
//! hours = ["08:00-12:00", "13:00-17:30"]
//! timezone = "America/New_York"
//! ```
//!
//! Days: `"*"` (every day, on its own), or a comma-separated list of three-letter day
//! names (`Mon` ... `Sun`, any case) and ranges (`"Mon-Fri"`); a range whose end comes
//! before its start wraps past Sunday (`"Fri-Mon"` is Fri, Sat, Sun, Mon). Spaces
//! around names, commas and dashes are allowed. Repeated or overlapping entries
//! (`"Mon-Fri,Wed"`) are harmless; empty entries, unknown names and full names
//! (`"Monday"`) are errors.
//!
//! Hours: `"HH:MM-HH:MM"` with two digits each, start inclusive, end exclusive, minute
//! precision (so `"08:00-18:00"` includes 17:59:59 and excludes 18:00:00). `24:00` may
//! only end a window; `"00:00-24:00"` is the whole day. A window whose end comes before
//! its start wraps past midnight and belongs to the day it starts on: with
//! `days = "Fri"`, `"22:00-06:00"` covers Friday 22:00 to Saturday 06:00. A window with
//! equal start and end is an error. Overlapping windows are harmless.
//!
//! Time is judged on the local wall clock of the schedule's zone, so DST moves the
//! schedule with the clock: `08:00` is 07:00 UTC in Berlin's winter and 06:00 UTC in its
//! summer. A window inside the hour skipped at spring-forward never matches that day,
//! and one inside the hour repeated at fall-back matches both times round.

use jiff::Timestamp;
use jiff::tz::TimeZone;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// A weekly schedule: which days, which windows on those days, in which time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Indexed Monday = 0 ... Sunday = 6.
    days: [bool; 7],
    windows: Vec<Window>,
    tz: TimeZone,
}

/// Minutes since local midnight. `start < end` is a same-day window; `end < start`
/// wraps past midnight into the next day. Never equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: u16,
    /// At most 1440 (24:00).
    end: u16,
}

impl Schedule {
    /// `days`: one string in the syntax above. `hours`: one or more windows.
    /// `timezone`: the schedule's own IANA name, or None to use `default_tz`.
    pub fn parse(
        days: &str,
        hours: &[String],
        timezone: Option<&str>,
        default_tz: &TimeZone,
    ) -> Result<Schedule, String> {
        let days = parse_days(days)?;
        if hours.is_empty() {
            return Err(
                "no hours given; write at least one window, e.g. hours = \"08:00-18:00\" \
                 (or \"00:00-24:00\" for whole days)"
                    .into(),
            );
        }
        let windows = hours
            .iter()
            .map(|h| parse_window(h))
            .collect::<Result<Vec<_>, _>>()?;
        let tz = match timezone {
            Some(name) => time_zone(name)?,
            None => default_tz.clone(),
        };
        Ok(Schedule { days, windows, tz })
    }

    /// Whether the instant falls inside the schedule, judged in the schedule's
    /// time zone on the local wall clock.
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = self.tz.to_datetime(at);
        let today = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
        let yesterday = (today + 6) % 7;
        let minute = minute_of_day(local);
        self.windows.iter().any(|w| {
            if w.start < w.end {
                self.days[today] && w.start <= minute && minute < w.end
            } else {
                // Wrapping: the evening part belongs to today's window, the early
                // morning part to the window that started yesterday.
                (self.days[today] && minute >= w.start) || (self.days[yesterday] && minute < w.end)
            }
        })
    }

    /// The IANA name of the schedule's time zone (for explain output), e.g. "Europe/Berlin".
    ///
    /// A zone without a name (a system zone read from a copied /etc/localtime or a
    /// POSIX `TZ` string) is described as such; a fixed offset as e.g. "UTC+01".
    pub fn timezone_name(&self) -> String {
        zone_name(&self.tz)
    }
}

/// Resolves an IANA name (e.g. "Europe/Berlin", "UTC"); unknown names are an error
/// that says how to list valid names (`timedatectl list-timezones` or /usr/share/zoneinfo).
///
/// Names are matched without regard to case, as the time zone database does;
/// `timezone_name` reports the canonical spelling.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    const HOW_TO_LIST: &str = "list valid names with `timedatectl list-timezones` or look \
                               under /usr/share/zoneinfo";
    if name.trim().is_empty() {
        return Err(format!(
            "empty time zone; write an IANA name such as \"Europe/Berlin\" or \"UTC\" \
             ({HOW_TO_LIST})"
        ));
    }
    if name.trim() != name {
        return Err(format!(
            "time zone {name:?} has surrounding spaces; write {:?}",
            name.trim()
        ));
    }
    match TimeZone::get(name) {
        // `Etc/Unknown` resolves to jiff's "unknown" sentinel, which has no IANA name:
        // it is not a real zone.
        Ok(tz) if tz.iana_name().is_some() => Ok(tz),
        _ => Err(format!(
            "unknown time zone {name:?}; write an IANA name such as \"Europe/Berlin\", \
             \"America/New_York\" or \"UTC\" ({HOW_TO_LIST})"
        )),
    }
}

/// The system's own time zone (what /etc/localtime says), UTC if it cannot be determined.
///
/// As for every Unix program, a `TZ` environment variable, if set, takes precedence.
pub fn system_time_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// Minutes since local midnight of a wall-clock time (seconds are ignored).
fn minute_of_day(local: jiff::civil::DateTime) -> u16 {
    u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs())
}

fn zone_name(tz: &TimeZone) -> String {
    if let Some(name) = tz.iana_name() {
        return name.to_string();
    }
    match tz.to_fixed_offset() {
        Ok(offset) => format!("UTC{offset}"),
        Err(_) => "the system time zone (unnamed)".to_string(),
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    const EXAMPLE: &str = "write e.g. \"Mon-Fri\", \"Mon,Wed,Fri\" or \"*\" for every day";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty days; {EXAMPLE}"));
    }
    if trimmed == "*" {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for item in trimmed.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "days {text:?} has an empty entry (a stray comma?); {EXAMPLE}"
            ));
        }
        if item == "*" {
            return Err(format!(
                "days {text:?}: \"*\" already means every day; write \"*\" on its own"
            ));
        }
        let parts: Vec<&str> = item.split('-').map(str::trim).collect();
        match parts.as_slice() {
            [one] => days[parse_day(one, text)?] = true,
            [from, to] => {
                let from = parse_day(from, text)?;
                let to = parse_day(to, text)?;
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            _ => {
                return Err(format!(
                    "days {text:?}: {item:?} is not a day or a range of two days; {EXAMPLE}"
                ));
            }
        }
    }
    Ok(days)
}

/// Index (Monday = 0) of a three-letter day name, any case.
fn parse_day(name: &str, whole: &str) -> Result<usize, String> {
    if let Some(i) = DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(name)) {
        return Ok(i);
    }
    if name.is_empty() {
        return Err(format!(
            "days {whole:?}: a range is missing a day; write e.g. \"Mon-Fri\""
        ));
    }
    let prefix: String = name.chars().take(3).collect();
    if let Some(i) = DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(&prefix))
    {
        return Err(format!(
            "days {whole:?}: unknown day {name:?}; write the three-letter name {:?}",
            DAY_NAMES[i]
        ));
    }
    Err(format!(
        "days {whole:?}: unknown day {name:?}; use Mon, Tue, Wed, Thu, Fri, Sat or Sun"
    ))
}

fn parse_window(text: &str) -> Result<Window, String> {
    let Some((start, end)) = text.split_once('-') else {
        return Err(format!(
            "{text:?} is not a time window; write start-end, e.g. \"08:00-18:00\""
        ));
    };
    let start = parse_time(start.trim(), text)?;
    let end = parse_time(end.trim(), text)?;
    if start == MINUTES_PER_DAY {
        return Err(format!(
            "{text:?}: 24:00 can only end a window; write 00:00 to start at midnight"
        ));
    }
    if start == end {
        return Err(format!(
            "{text:?} starts and ends at the same time; write \"00:00-24:00\" for the \
             whole day"
        ));
    }
    Ok(Window { start, end })
}

/// Minutes since midnight of "HH:MM" (00:00 to 24:00).
fn parse_time(time: &str, window: &str) -> Result<u16, String> {
    let b = time.as_bytes();
    let well_formed =
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    if !well_formed {
        return Err(format!(
            "{window:?}: {time:?} is not a time; write two-digit hours and minutes, \
             e.g. \"08:00\""
        ));
    }
    let hour = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let minute = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    if minute > 59 {
        return Err(format!(
            "{window:?}: {time:?} is out of range; minutes go from 00 to 59"
        ));
    }
    if hour > 24 || (hour == 24 && minute != 0) {
        return Err(format!(
            "{window:?}: {time:?} is out of range; hours go from 00 to 23 \
             (24:00 may end a window)"
        ));
    }
    Ok(hour * 60 + minute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hours(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn sched(days: &str, windows: &[&str], tz: &str) -> Schedule {
        Schedule::parse(days, &hours(windows), Some(tz), &TimeZone::UTC).unwrap()
    }

    fn utc(days: &str, windows: &[&str]) -> Schedule {
        sched(days, windows, "UTC")
    }

    fn days_err(days: &str) -> String {
        Schedule::parse(days, &hours(&["08:00-18:00"]), None, &TimeZone::UTC).unwrap_err()
    }

    fn hours_err(window: &str) -> String {
        Schedule::parse("*", &hours(&[window]), None, &TimeZone::UTC).unwrap_err()
    }

    /// Which days of the week 2026-03-02 (Mon) .. 2026-03-08 (Sun) at 12:00 UTC match.
    fn matching_days(days: &str) -> Vec<&'static str> {
        let s = utc(days, &["00:00-24:00"]);
        (0..7)
            .filter(|&i| s.contains(at(&format!("2026-03-{:02}T12:00:00Z", 2 + i))))
            .map(|i| DAY_NAMES[i])
            .collect()
    }

    // --- days ---

    #[test]
    fn day_ranges_lists_and_star_select_the_expected_days() {
        assert_eq!(
            matching_days("Mon-Fri"),
            ["Mon", "Tue", "Wed", "Thu", "Fri"]
        );
        assert_eq!(matching_days("Mon,Wed,Fri"), ["Mon", "Wed", "Fri"]);
        assert_eq!(matching_days("Sat-Sun"), ["Sat", "Sun"]);
        assert_eq!(matching_days("Sun"), ["Sun"]);
        assert_eq!(matching_days("*"), DAY_NAMES);
        assert_eq!(matching_days("Mon-Sun"), DAY_NAMES);
        assert_eq!(
            matching_days("Mon-Tue,Thu-Fri"),
            ["Mon", "Tue", "Thu", "Fri"]
        );
    }

    #[test]
    fn day_ranges_wrap_past_sunday() {
        assert_eq!(matching_days("Fri-Mon"), ["Mon", "Fri", "Sat", "Sun"]);
        assert_eq!(matching_days("Sun-Mon"), ["Mon", "Sun"]);
        assert_eq!(matching_days("Sun-Sat"), DAY_NAMES);
        assert_eq!(matching_days("Tue-Mon"), DAY_NAMES);
    }

    #[test]
    fn day_names_are_case_insensitive_and_spaces_around_separators_are_allowed() {
        assert_eq!(matching_days("mon-FRI"), matching_days("Mon-Fri"));
        assert_eq!(matching_days(" Mon , Wed ,Fri "), ["Mon", "Wed", "Fri"]);
        assert_eq!(matching_days("Mon - Wed"), ["Mon", "Tue", "Wed"]);
        assert_eq!(matching_days(" * "), DAY_NAMES);
    }

    #[test]
    fn repeated_and_overlapping_days_are_harmless() {
        assert_eq!(matching_days("Mon-Fri,Wed"), matching_days("Mon-Fri"));
        assert_eq!(matching_days("Mon,Mon"), ["Mon"]);
        assert_eq!(matching_days("Mon-Mon"), ["Mon"]);
        assert_eq!(matching_days("Mon-Thu,Wed-Sun"), DAY_NAMES);
    }

    #[test]
    fn empty_days_are_rejected() {
        assert!(days_err("").starts_with("empty days"));
        assert!(days_err("   ").starts_with("empty days"));
        assert!(days_err("Mon,,Fri").contains("empty entry"));
        assert!(days_err("Mon,").contains("empty entry"));
        assert!(days_err("Mon-").contains("missing a day"));
        assert!(days_err("-Fri").contains("missing a day"));
    }

    #[test]
    fn unknown_day_names_are_rejected_with_the_right_spelling() {
        let e = days_err("Monday-Friday");
        assert!(e.contains("unknown day \"Monday\""), "{e}");
        assert!(e.contains("three-letter name \"Mon\""), "{e}");
        assert!(days_err("Thurs").contains("\"Thu\""));
        let e = days_err("Mo-Fr");
        assert!(e.contains("use Mon, Tue, Wed, Thu, Fri, Sat or Sun"), "{e}");
        assert!(days_err("weekdays").contains("unknown day"));
        assert!(days_err("1-5").contains("unknown day"));
    }

    #[test]
    fn malformed_day_lists_are_rejected() {
        assert!(days_err("Mon-Wed-Fri").contains("not a day or a range"));
        assert!(days_err("*,Mon").contains("on its own"));
        assert!(days_err("Mon;Fri").contains("unknown day"));
        assert!(days_err("Mon Fri").contains("unknown day"));
    }

    // --- hours ---

    #[test]
    fn window_start_is_inclusive_and_end_exclusive_to_the_second() {
        let s = utc("*", &["08:00-18:00"]);
        assert!(!s.contains(at("2026-06-01T07:59:59Z")));
        assert!(s.contains(at("2026-06-01T08:00:00Z")));
        assert!(s.contains(at("2026-06-01T12:00:00Z")));
        assert!(s.contains(at("2026-06-01T17:59:59Z")));
        assert!(s.contains(at("2026-06-01T17:59:59.999999999Z")));
        assert!(!s.contains(at("2026-06-01T18:00:00Z")));
    }

    #[test]
    fn several_windows_each_count_and_gaps_between_them_do_not() {
        let s = utc("*", &["08:00-12:00", "13:00-17:30"]);
        assert!(s.contains(at("2026-06-01T11:59:00Z")));
        assert!(!s.contains(at("2026-06-01T12:00:00Z")));
        assert!(!s.contains(at("2026-06-01T12:59:59Z")));
        assert!(s.contains(at("2026-06-01T13:00:00Z")));
        assert!(s.contains(at("2026-06-01T17:29:59Z")));
        assert!(!s.contains(at("2026-06-01T17:30:00Z")));
    }

    #[test]
    fn overlapping_windows_are_harmless() {
        let s = utc("*", &["08:00-12:00", "10:00-14:00", "08:00-12:00"]);
        assert!(!s.contains(at("2026-06-01T07:59:59Z")));
        assert!(s.contains(at("2026-06-01T08:00:00Z")));
        assert!(s.contains(at("2026-06-01T13:59:59Z")));
        assert!(!s.contains(at("2026-06-01T14:00:00Z")));
    }

    #[test]
    fn whole_day_window_covers_midnight_to_midnight() {
        let s = utc("Mon", &["00:00-24:00"]);
        assert!(!s.contains(at("2026-03-01T23:59:59Z"))); // Sun
        assert!(s.contains(at("2026-03-02T00:00:00Z"))); // Mon
        assert!(s.contains(at("2026-03-02T23:59:59Z")));
        assert!(!s.contains(at("2026-03-03T00:00:00Z"))); // Tue
    }

    #[test]
    fn window_ending_at_24_00_runs_to_midnight_without_wrapping() {
        let s = utc("Mon", &["22:00-24:00"]);
        assert!(!s.contains(at("2026-03-02T21:59:59Z")));
        assert!(s.contains(at("2026-03-02T23:59:59Z")));
        assert!(!s.contains(at("2026-03-03T00:00:00Z")));
    }

    #[test]
    fn wrapping_window_belongs_to_the_day_it_starts_on() {
        // 2026-03-06 is a Friday.
        let s = utc("Fri", &["22:00-06:00"]);
        assert!(s.contains(at("2026-03-06T23:00:00Z"))); // Fri 23:00
        assert!(s.contains(at("2026-03-06T22:00:00Z"))); // Fri 22:00
        assert!(s.contains(at("2026-03-07T00:00:00Z"))); // Sat 00:00
        assert!(s.contains(at("2026-03-07T05:59:59Z"))); // Sat 05:59:59
        assert!(!s.contains(at("2026-03-07T06:00:00Z"))); // Sat 06:00
        assert!(!s.contains(at("2026-03-07T22:30:00Z"))); // Sat 22:30
        assert!(!s.contains(at("2026-03-06T05:00:00Z"))); // Fri 05:00 (Thu's night)
        assert!(!s.contains(at("2026-03-06T21:59:59Z"))); // Fri 21:59:59
    }

    #[test]
    fn wrapping_window_on_sunday_runs_into_monday() {
        // 2026-03-08 is a Sunday, 2026-03-09 a Monday, 2026-03-02 the Monday before.
        let s = utc("Sun", &["22:00-06:00"]);
        assert!(s.contains(at("2026-03-08T23:00:00Z")));
        assert!(s.contains(at("2026-03-09T05:00:00Z")));
        assert!(!s.contains(at("2026-03-08T05:00:00Z")));
        assert!(!s.contains(at("2026-03-09T23:00:00Z")));
    }

    #[test]
    fn wrapping_windows_on_consecutive_days_chain_through_the_night() {
        let s = utc("Mon-Fri", &["22:00-06:00"]);
        assert!(!s.contains(at("2026-03-02T05:00:00Z"))); // Mon morning: Sun not listed
        assert!(s.contains(at("2026-03-03T05:00:00Z"))); // Tue morning, from Mon night
        assert!(s.contains(at("2026-03-07T05:00:00Z"))); // Sat morning, from Fri night
        assert!(!s.contains(at("2026-03-07T23:00:00Z"))); // Sat night
    }

    #[test]
    fn window_ending_at_midnight_written_as_00_00_covers_the_evening_only() {
        let s = utc("Mon", &["22:00-00:00"]);
        assert!(s.contains(at("2026-03-02T23:59:59Z")));
        assert!(!s.contains(at("2026-03-03T00:00:00Z")));
        assert!(!s.contains(at("2026-03-02T21:59:59Z")));
    }

    #[test]
    fn empty_hours_list_is_rejected() {
        let e = Schedule::parse("*", &[], None, &TimeZone::UTC).unwrap_err();
        assert!(e.contains("no hours given"), "{e}");
    }

    #[test]
    fn window_with_equal_start_and_end_is_rejected_pointing_at_the_whole_day() {
        let e = hours_err("08:00-08:00");
        assert!(e.contains("write \"00:00-24:00\" for the whole day"), "{e}");
        assert!(hours_err("00:00-00:00").contains("same time"));
        assert!(hours_err("24:00-24:00").contains("can only end a window"));
    }

    #[test]
    fn twenty_four_hundred_may_only_end_a_window() {
        let e = hours_err("24:00-06:00");
        assert!(e.contains("24:00 can only end a window"), "{e}");
        assert!(utc("*", &["18:00-24:00"]).contains(at("2026-01-01T23:59:00Z")));
    }

    #[test]
    fn out_of_range_times_are_rejected() {
        assert!(hours_err("25:00-26:00").contains("hours go from 00 to 23"));
        assert!(hours_err("08:00-24:01").contains("hours go from 00 to 23"));
        assert!(hours_err("08:60-09:00").contains("minutes go from 00 to 59"));
        assert!(hours_err("08:00-99:99").contains("out of range"));
    }

    #[test]
    fn times_need_two_digit_hours_and_minutes() {
        for bad in [
            "8:00-18:00",
            "08:0-18:00",
            "0800-1800",
            "08.00-18.00",
            "08:00:00-18:00:00",
            "+8:00-18:00",
            "08h00-18h00",
            "08:00-",
            "-18:00",
        ] {
            let e = hours_err(bad);
            assert!(
                e.contains("write two-digit hours and minutes"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn text_without_a_dash_is_not_a_window() {
        for bad in ["08:00", "08:00 18:00", "", "always"] {
            let e = hours_err(bad);
            assert!(e.contains("is not a time window"), "{bad}: {e}");
        }
    }

    #[test]
    fn spaces_around_the_dash_are_allowed() {
        let s = utc("*", &[" 08:00 - 18:00 "]);
        assert!(s.contains(at("2026-06-01T08:00:00Z")));
        assert!(!s.contains(at("2026-06-01T18:00:00Z")));
    }

    #[test]
    fn an_error_in_any_window_of_the_list_is_reported() {
        let e = Schedule::parse(
            "*",
            &hours(&["08:00-12:00", "13:00-7:00"]),
            None,
            &TimeZone::UTC,
        )
        .unwrap_err();
        assert!(e.contains("\"7:00\""), "{e}");
    }

    // --- time zones ---

    #[test]
    fn schedule_without_its_own_zone_uses_the_default() {
        let berlin = time_zone("Europe/Berlin").unwrap();
        let s = Schedule::parse("*", &hours(&["08:00-18:00"]), None, &berlin).unwrap();
        assert_eq!(s.timezone_name(), "Europe/Berlin");
        assert!(s.contains(at("2026-01-15T07:00:00Z"))); // 08:00 CET
        assert!(!s.contains(at("2026-01-15T06:59:59Z")));
    }

    #[test]
    fn schedule_with_its_own_zone_ignores_the_default() {
        let berlin = time_zone("Europe/Berlin").unwrap();
        let s = Schedule::parse(
            "*",
            &hours(&["08:00-18:00"]),
            Some("America/New_York"),
            &berlin,
        )
        .unwrap();
        assert_eq!(s.timezone_name(), "America/New_York");
        assert!(s.contains(at("2026-01-15T13:00:00Z"))); // 08:00 EST
        assert!(!s.contains(at("2026-01-15T12:59:59Z")));
    }

    #[test]
    fn unknown_schedule_zone_is_a_parse_error() {
        let e = Schedule::parse(
            "*",
            &hours(&["08:00-18:00"]),
            Some("Europe/Berln"),
            &TimeZone::UTC,
        )
        .unwrap_err();
        assert!(e.contains("unknown time zone \"Europe/Berln\""), "{e}");
    }

    #[test]
    fn days_are_judged_on_the_local_date_not_the_utc_date() {
        // Mon 2026-03-02 00:30 in Berlin is Sun 2026-03-01 23:30 UTC.
        let s = sched("Mon", &["00:00-01:00"], "Europe/Berlin");
        assert!(s.contains(at("2026-03-01T23:30:00Z")));
        assert!(!s.contains(at("2026-03-02T00:30:00Z")));
        // Fri 2026-03-06 20:00 in New York is Sat 2026-03-07 01:00 UTC.
        let s = sched("Fri", &["20:00-21:00"], "America/New_York");
        assert!(s.contains(at("2026-03-07T01:00:00Z")));
    }

    #[test]
    fn resolves_iana_names_and_reports_the_canonical_spelling() {
        assert_eq!(
            time_zone("Europe/Berlin").unwrap().iana_name(),
            Some("Europe/Berlin")
        );
        assert_eq!(time_zone("UTC").unwrap().iana_name(), Some("UTC"));
        assert_eq!(
            time_zone("america/new_york").unwrap().iana_name(),
            Some("America/New_York")
        );
        let s = sched("*", &["08:00-18:00"], "europe/berlin");
        assert_eq!(s.timezone_name(), "Europe/Berlin");
    }

    #[test]
    fn unknown_zone_names_say_how_to_list_valid_ones() {
        for bad in [
            "Europe/Berln",
            "Mars/Olympus",
            "CEST+2",
            "../../etc/passwd",
            "Etc/Unknown",
        ] {
            let e = time_zone(bad).unwrap_err();
            assert!(
                e.contains(&format!("unknown time zone {bad:?}")),
                "{bad}: {e}"
            );
            assert!(e.contains("timedatectl list-timezones"), "{e}");
            assert!(e.contains("/usr/share/zoneinfo"), "{e}");
        }
    }

    #[test]
    fn empty_or_padded_zone_names_are_rejected() {
        assert!(time_zone("").unwrap_err().starts_with("empty time zone"));
        assert!(time_zone("  ").unwrap_err().starts_with("empty time zone"));
        assert_eq!(
            time_zone(" Europe/Berlin").unwrap_err(),
            "time zone \" Europe/Berlin\" has surrounding spaces; write \"Europe/Berlin\""
        );
    }

    #[test]
    fn system_time_zone_is_always_usable() {
        let tz = system_time_zone();
        // Whatever the host says, it converts instants without panicking.
        let _ = tz.to_datetime(at("2026-01-01T00:00:00Z"));
        let s = Schedule::parse("*", &hours(&["00:00-24:00"]), None, &tz).unwrap();
        assert!(s.contains(at("2026-01-01T00:00:00Z")));
        assert!(!s.timezone_name().is_empty());
    }

    #[test]
    fn unnamed_zones_are_still_described() {
        let fixed = TimeZone::fixed(jiff::tz::offset(1));
        let s = Schedule::parse("*", &hours(&["08:00-18:00"]), None, &fixed).unwrap();
        assert_eq!(s.timezone_name(), "UTC+01");
        let posix = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let s = Schedule::parse("*", &hours(&["08:00-18:00"]), None, &posix).unwrap();
        assert_eq!(s.timezone_name(), "the system time zone (unnamed)");
    }

    // --- DST: Europe/Berlin ---

    #[test]
    fn berlin_business_hours_follow_the_wall_clock_across_spring_forward() {
        let s = sched("Mon-Fri", &["08:00-18:00"], "Europe/Berlin");
        // Fri 2026-03-27, CET (UTC+1): 08:00 local = 07:00Z, 18:00 local = 17:00Z.
        assert!(!s.contains(at("2026-03-27T06:59:59Z")));
        assert!(s.contains(at("2026-03-27T07:00:00Z")));
        assert!(s.contains(at("2026-03-27T16:59:59Z")));
        assert!(!s.contains(at("2026-03-27T17:00:00Z")));
        // Mon 2026-03-30, CEST (UTC+2): 08:00 local = 06:00Z, 18:00 local = 16:00Z.
        assert!(!s.contains(at("2026-03-30T05:59:59Z")));
        assert!(s.contains(at("2026-03-30T06:00:00Z")));
        assert!(s.contains(at("2026-03-30T15:59:59Z")));
        assert!(!s.contains(at("2026-03-30T16:00:00Z")));
    }

    #[test]
    fn berlin_business_hours_follow_the_wall_clock_across_fall_back() {
        let s = sched("Mon-Fri", &["08:00-18:00"], "Europe/Berlin");
        // Fri 2026-10-23, CEST: 08:00 local = 06:00Z.
        assert!(!s.contains(at("2026-10-23T05:59:59Z")));
        assert!(s.contains(at("2026-10-23T06:00:00Z")));
        assert!(s.contains(at("2026-10-23T15:59:59Z")));
        assert!(!s.contains(at("2026-10-23T16:00:00Z")));
        // Mon 2026-10-26, CET: 08:00 local = 07:00Z.
        assert!(!s.contains(at("2026-10-26T06:59:59Z")));
        assert!(s.contains(at("2026-10-26T07:00:00Z")));
        assert!(s.contains(at("2026-10-26T16:59:59Z")));
        assert!(!s.contains(at("2026-10-26T17:00:00Z")));
    }

    #[test]
    fn berlin_window_in_the_skipped_hour_never_matches_on_spring_forward_day() {
        // Sun 2026-03-29: at 01:00Z the clock jumps from 02:00 CET to 03:00 CEST.
        let s = sched("Sun", &["02:00-03:00"], "Europe/Berlin");
        assert!(!s.contains(at("2026-03-29T00:59:59Z"))); // 01:59:59 CET
        assert!(!s.contains(at("2026-03-29T01:00:00Z"))); // 03:00:00 CEST
        assert!(!s.contains(at("2026-03-29T01:30:00Z"))); // 03:30 CEST
        // The Sunday before, the same window is an ordinary hour (01:00Z-02:00Z).
        assert!(!s.contains(at("2026-03-22T00:59:59Z")));
        assert!(s.contains(at("2026-03-22T01:00:00Z")));
        assert!(s.contains(at("2026-03-22T01:59:59Z")));
        assert!(!s.contains(at("2026-03-22T02:00:00Z")));
    }

    #[test]
    fn berlin_window_in_the_repeated_hour_matches_both_times_on_fall_back_day() {
        // Sun 2026-10-25: 02:00-03:00 happens in CEST (00:00Z-01:00Z), then the clock
        // goes back from 03:00 CEST to 02:00 CET and it happens again (01:00Z-02:00Z).
        let s = sched("Sun", &["02:00-03:00"], "Europe/Berlin");
        assert!(!s.contains(at("2026-10-24T23:59:59Z"))); // 01:59:59 CEST
        assert!(s.contains(at("2026-10-25T00:00:00Z"))); // 02:00 CEST
        assert!(s.contains(at("2026-10-25T00:59:59Z"))); // 02:59:59 CEST
        assert!(s.contains(at("2026-10-25T01:00:00Z"))); // 02:00 CET
        assert!(s.contains(at("2026-10-25T01:59:59Z"))); // 02:59:59 CET
        assert!(!s.contains(at("2026-10-25T02:00:00Z"))); // 03:00 CET
    }

    #[test]
    fn berlin_overnight_window_spanning_the_changes_keeps_wall_clock_edges() {
        let s = sched("Sat", &["22:00-06:00"], "Europe/Berlin");
        // Sat 2026-03-28 22:00 CET = 21:00Z; Sun 06:00 CEST = 04:00Z (a 7-hour night).
        assert!(!s.contains(at("2026-03-28T20:59:59Z")));
        assert!(s.contains(at("2026-03-28T21:00:00Z")));
        assert!(s.contains(at("2026-03-29T03:59:59Z")));
        assert!(!s.contains(at("2026-03-29T04:00:00Z")));
        // Sat 2026-10-24 22:00 CEST = 20:00Z; Sun 06:00 CET = 05:00Z (a 9-hour night).
        assert!(!s.contains(at("2026-10-24T19:59:59Z")));
        assert!(s.contains(at("2026-10-24T20:00:00Z")));
        assert!(s.contains(at("2026-10-25T04:59:59Z")));
        assert!(!s.contains(at("2026-10-25T05:00:00Z")));
    }

    // --- DST: America/New_York ---

    #[test]
    fn new_york_business_hours_follow_the_wall_clock_across_spring_forward() {
        let s = sched("Mon-Fri", &["08:00-18:00"], "America/New_York");
        // Fri 2026-03-06, EST (UTC-5): 08:00 local = 13:00Z.
        assert!(!s.contains(at("2026-03-06T12:59:59Z")));
        assert!(s.contains(at("2026-03-06T13:00:00Z")));
        assert!(s.contains(at("2026-03-06T22:59:59Z")));
        assert!(!s.contains(at("2026-03-06T23:00:00Z")));
        // Mon 2026-03-09, EDT (UTC-4): 08:00 local = 12:00Z.
        assert!(!s.contains(at("2026-03-09T11:59:59Z")));
        assert!(s.contains(at("2026-03-09T12:00:00Z")));
        assert!(s.contains(at("2026-03-09T21:59:59Z")));
        assert!(!s.contains(at("2026-03-09T22:00:00Z")));
    }

    #[test]
    fn new_york_business_hours_follow_the_wall_clock_across_fall_back() {
        let s = sched("Mon-Fri", &["08:00-18:00"], "America/New_York");
        // Fri 2026-10-30, EDT: 08:00 local = 12:00Z.
        assert!(!s.contains(at("2026-10-30T11:59:59Z")));
        assert!(s.contains(at("2026-10-30T12:00:00Z")));
        // Mon 2026-11-02, EST: 08:00 local = 13:00Z.
        assert!(!s.contains(at("2026-11-02T12:59:59Z")));
        assert!(s.contains(at("2026-11-02T13:00:00Z")));
        assert!(s.contains(at("2026-11-02T22:59:59Z")));
        assert!(!s.contains(at("2026-11-02T23:00:00Z")));
    }

    #[test]
    fn new_york_window_in_the_skipped_hour_never_matches_on_spring_forward_day() {
        // Sun 2026-03-08: at 07:00Z the clock jumps from 02:00 EST to 03:00 EDT.
        let s = sched("Sun", &["02:00-03:00"], "America/New_York");
        assert!(!s.contains(at("2026-03-08T06:59:59Z"))); // 01:59:59 EST
        assert!(!s.contains(at("2026-03-08T07:00:00Z"))); // 03:00 EDT
        assert!(!s.contains(at("2026-03-08T07:30:00Z")));
    }

    #[test]
    fn new_york_window_in_the_repeated_hour_matches_both_times_on_fall_back_day() {
        // Sun 2026-11-01: 01:00-02:00 happens in EDT (05:00Z-06:00Z) and again in EST
        // (06:00Z-07:00Z).
        let s = sched("Sun", &["01:00-02:00"], "America/New_York");
        assert!(!s.contains(at("2026-11-01T04:59:59Z")));
        assert!(s.contains(at("2026-11-01T05:00:00Z")));
        assert!(s.contains(at("2026-11-01T05:59:59Z")));
        assert!(s.contains(at("2026-11-01T06:00:00Z")));
        assert!(s.contains(at("2026-11-01T06:59:59Z")));
        assert!(!s.contains(at("2026-11-01T07:00:00Z"))); // 02:00 EST
        // And 02:00-03:00 is an ordinary single hour that day (07:00Z-08:00Z).
        let s = sched("Sun", &["02:00-03:00"], "America/New_York");
        assert!(!s.contains(at("2026-11-01T06:59:59Z")));
        assert!(s.contains(at("2026-11-01T07:00:00Z")));
        assert!(s.contains(at("2026-11-01T07:59:59Z")));
        assert!(!s.contains(at("2026-11-01T08:00:00Z")));
    }

    // --- properties ---

    const ZONES: [&str; 6] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
    ];

    fn hhmm(minutes: u16) -> String {
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }

    proptest! {
        #[test]
        fn non_wrapping_window_on_every_day_agrees_with_local_time_of_day(
            secs in 946_684_800i64..4_102_444_800, // 2000-01-01 .. 2100-01-01
            start in 0u16..1440,
            len in 1u16..=1440,
            zone in 0usize..ZONES.len(),
        ) {
            let end = (start + len).min(MINUTES_PER_DAY);
            prop_assume!(start < end);
            let window = format!("{}-{}", hhmm(start), hhmm(end));
            let s = sched("*", &[window.as_str()], ZONES[zone]);
            let ts = Timestamp::from_second(secs).unwrap();
            let local = time_zone(ZONES[zone]).unwrap().to_datetime(ts);
            let m = local.hour() as u16 * 60 + local.minute() as u16;
            prop_assert_eq!(s.contains(ts), start <= m && m < end, "{} at {}", window, local);
        }

        #[test]
        fn wrapping_window_on_every_day_is_the_complement_of_the_gap(
            secs in 946_684_800i64..4_102_444_800,
            end in 0u16..1440,
            gap in 1u16..1440,
            zone in 0usize..ZONES.len(),
        ) {
            let start = end + gap;
            prop_assume!(start < MINUTES_PER_DAY);
            let ts = Timestamp::from_second(secs).unwrap();
            let wrapping = format!("{}-{}", hhmm(start), hhmm(end));
            let gap_window = format!("{}-{}", hhmm(end), hhmm(start));
            let a = sched("*", &[wrapping.as_str()], ZONES[zone]);
            let b = sched("*", &[gap_window.as_str()], ZONES[zone]);
            prop_assert_ne!(a.contains(ts), b.contains(ts));
        }
    }
}
