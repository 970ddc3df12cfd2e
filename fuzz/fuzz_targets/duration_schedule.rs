//! Durations and schedules from the policy file: `reauth = "1h30m"`,
//! `[schedules.NAME] days/hours/timezone`.
//!
//! Input, one field per line: duration, days, time zone (empty: the default), a
//! moment in Unix seconds, then the hour windows.
//!
//! Checks: `parse_duration` never panics, accepts only 1 s to 366 days, and what
//! `format_duration` prints for an accepted value parses back to the same value. A
//! zone refused on its own is refused in a schedule too. A schedule that parses can
//! be asked about any moment without panicking, and one covering every day and the
//! whole day contains every moment.
#![no_main]

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;
use stepupd::duration::{format_duration, parse_duration};
use stepupd::schedule::{Schedule, time_zone};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let duration = lines.next().unwrap_or_default();
    let days = lines.next().unwrap_or_default();
    let timezone = lines.next().filter(|z| !z.is_empty());
    let at: i64 = lines
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let hours: Vec<String> = lines.map(str::to_string).collect();

    if let Ok(d) = parse_duration(duration) {
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(366 * 86_400));
        let printed = format_duration(d);
        assert_eq!(
            parse_duration(&printed),
            Ok(d),
            "{printed:?} does not read back"
        );
    }

    let schedule = Schedule::parse(days, &hours, timezone, &TimeZone::UTC);
    if let Some(name) = timezone
        && time_zone(name).is_err()
    {
        assert!(
            schedule.is_err(),
            "zone {name:?} refused alone but accepted in a schedule"
        );
    }
    if let Ok(schedule) = schedule {
        let _ = schedule.timezone_name();
        let at = Timestamp::from_second(
            at.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second()),
        )
        .expect("clamped into range");
        let _ = schedule.contains(at);
        let whole_week =
            Schedule::parse("*", &["00:00-24:00".to_string()], timezone, &TimeZone::UTC)
                .expect("the zone was accepted just above");
        assert!(whole_week.contains(at), "a whole-week schedule misses {at}");
    }
});
