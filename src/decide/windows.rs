//! Maintenance windows (pure): whether a rotation may start now, and when it may next.
//!
//! `spec.rotation.windows` lists windows, each a cron `schedule` of five fields (a CronJob's;
//! parsed by the `croner` crate) naming when it opens, read in an IANA `timeZone` (default
//! UTC), and a `duration` it stays open, in real time. Time zones come from jiff's tz database:
//! the system's (`/usr/share/zoneinfo`), else the copy compiled into the binary, so an image
//! without tzdata resolves them too. Daylight saving follows the Open Cron Pattern
//! Specification (as vixie-cron): an opening that falls into a gap (02:30 on the night clocks
//! jump from 02:00 to 03:00) opens at the first valid time after it, the same day; one that
//! falls into the repeated hour opens once, at its first occurrence. A window that spans a
//! change lasts `duration` of real time all the same.
//!
//! Windows only gate the *start* of a rotation ([`super::rotation`] asks [`Evaluation::open`]);
//! a rotation in progress never looks at them. No clock is read: `now` comes in.

use crate::api::{MaintenanceWindow, MaintenanceWindowStatus, parse_duration};
use crate::model::reason;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};
use jiff::{SignedDuration, Timestamp, Zoned};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Most overlapping openings merged into one open stretch (a window that opens again before it
/// closes stays open; past this many, the stretch is reported as closing at the last one's
/// end, and looked at again then).
const MAX_MERGED: usize = 64;

/// Where the windows stand at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// No window is configured: a rotation starts whenever it is asked for.
    pub unrestricted: bool,
    /// When a window is open: when the open stretch (overlapping openings merged) closes.
    pub closes_at: Option<Timestamp>,
    /// When a window opens next (after the open stretch, for a window open now). `None` when
    /// no window ever opens again.
    pub next_opens_at: Option<Timestamp>,
    /// The first window that never opens, and why: `(reason, message)`.
    pub problem: Option<(&'static str, String)>,
}

impl Evaluation {
    /// True when a rotation asked for now may start now.
    pub fn open(&self) -> bool {
        self.unrestricted || self.closes_at.is_some()
    }

    /// The next moment the answer of [`Self::open`] or the status may change.
    pub fn next_change(&self) -> Option<Timestamp> {
        match (self.closes_at, self.next_opens_at) {
            (Some(closes), Some(opens)) => Some(closes.min(opens)),
            (closes, opens) => closes.or(opens),
        }
    }

    /// `status.maintenanceWindow` (without `waiting`), or `None` without windows.
    pub fn status(&self) -> Option<MaintenanceWindowStatus> {
        if self.unrestricted {
            return None;
        }
        Some(MaintenanceWindowStatus {
            state: if self.open() {
                reason::window::OPEN
            } else {
                reason::window::CLOSED
            }
            .into(),
            closes_at: self.closes_at.map(Time),
            next_opens_at: self.next_opens_at.map(Time),
            waiting: None,
            problem: self.problem.as_ref().map(|(_, message)| message.clone()),
        })
    }
}

/// One window, read.
struct Parsed {
    cron: Cron,
    zone: jiff::tz::TimeZone,
    duration: SignedDuration,
}

/// One window at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowState {
    /// When open: when it (with the openings that overlap it) closes.
    closes_at: Option<Timestamp>,
    /// The next opening after now (after the open stretch when open).
    next_opens_at: Timestamp,
}

/// Where `windows` stand at `now`.
pub fn evaluate(windows: &[MaintenanceWindow], now: &Time) -> Evaluation {
    let mut evaluation = Evaluation {
        unrestricted: windows.is_empty(),
        closes_at: None,
        next_opens_at: None,
        problem: None,
    };
    for (index, window) in windows.iter().enumerate() {
        let state = parse(window).and_then(|parsed| state_at(window, &parsed, now.0));
        match state {
            Ok(state) => {
                if let Some(closes) = state.closes_at {
                    evaluation.closes_at = Some(
                        evaluation
                            .closes_at
                            .map_or(closes, |known| known.max(closes)),
                    );
                }
                evaluation.next_opens_at = Some(
                    evaluation
                        .next_opens_at
                        .map_or(state.next_opens_at, |known| known.min(state.next_opens_at)),
                );
            }
            Err((reason, problem)) => {
                evaluation.problem.get_or_insert_with(|| {
                    (reason, format!("spec.rotation.windows[{index}] {problem}"))
                });
            }
        }
    }
    evaluation
}

/// Reads one window: its schedule, time zone and duration.
fn parse(window: &MaintenanceWindow) -> Result<Parsed, (&'static str, String)> {
    let invalid = |what: String| (reason::INVALID_WINDOW, what);
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(&window.schedule)
        .map_err(|error| {
            invalid(format!(
                "(schedule {:?}) is not a cron expression of five fields: {error}; it never opens",
                window.schedule
            ))
        })?;
    let zone = jiff::tz::TimeZone::get(&window.time_zone).map_err(|_| {
        invalid(format!(
            "(timeZone {:?}) names no IANA time zone known here; it never opens",
            window.time_zone
        ))
    })?;
    let duration = parse_duration(&window.duration)
        .and_then(|duration| SignedDuration::try_from(duration).ok())
        .filter(|duration| duration.is_positive())
        .ok_or_else(|| {
            invalid(format!(
                "(duration {:?}) is not a positive duration; it never opens",
                window.duration
            ))
        })?;
    Ok(Parsed {
        cron,
        zone,
        duration,
    })
}

/// Schedules found to never occur. A five-field schedule repeats with the calendar, so whether
/// it ever occurs does not depend on the moment asked; proving that it never does costs a
/// search to the year 5000 (tens of milliseconds), done once per schedule.
static NEVER_OCCURS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Most schedules remembered as never occurring.
const MAX_REMEMBERED: usize = 256;

fn never_occurs(schedule: &str) -> bool {
    NEVER_OCCURS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(schedule)
}

fn remember_never_occurs(schedule: &str) {
    let mut known = NEVER_OCCURS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if known.len() >= MAX_REMEMBERED {
        known.clear();
    }
    known.insert(schedule.to_string());
}

/// Where one window stands at `now`.
fn state_at(
    window: &MaintenanceWindow,
    parsed: &Parsed,
    now: Timestamp,
) -> Result<WindowState, (&'static str, String)> {
    let unreachable = || {
        (
            reason::WINDOW_UNREACHABLE,
            format!(
                "(schedule {:?}) names a time that never occurs; it never opens",
                window.schedule
            ),
        )
    };
    if never_occurs(&window.schedule) {
        return Err(unreachable());
    }
    let here = now.to_zoned(parsed.zone.clone());
    let next = match parsed.cron.find_next_occurrence(&here, false) {
        Ok(next) => next,
        Err(CronError::TimeSearchLimitExceeded) => {
            remember_never_occurs(&window.schedule);
            return Err(unreachable());
        }
        Err(error) => {
            return Err((
                reason::INVALID_WINDOW,
                format!(
                    "(schedule {:?}) cannot be evaluated: {error}; it never opens",
                    window.schedule
                ),
            ));
        }
    };
    let latest = parsed.cron.find_previous_occurrence(&here, true).ok();
    let end_of = |opening: &Zoned| opening.timestamp().checked_add(parsed.duration).ok();
    let Some(mut closes) = latest.as_ref().and_then(end_of).filter(|end| *end > now) else {
        return Ok(WindowState {
            closes_at: None,
            next_opens_at: next.timestamp(),
        });
    };
    // Open: openings that come before it closes extend it.
    let mut following = next;
    for _ in 0..MAX_MERGED {
        if following.timestamp() > closes {
            break;
        }
        if let Some(end) = end_of(&following) {
            closes = closes.max(end);
        }
        match parsed.cron.find_next_occurrence(&following, false) {
            Ok(after) => following = after,
            Err(_) => break,
        }
    }
    Ok(WindowState {
        closes_at: Some(closes),
        next_opens_at: following.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(schedule: &str, duration: &str, zone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: zone.into(),
        }
    }

    /// The instant of a wall-clock time in `zone` (the earlier one when it happens twice).
    fn local(zone: &str, text: &str) -> Timestamp {
        let civil: jiff::civil::DateTime = text.parse().expect("a civil date-time");
        jiff::tz::TimeZone::get(zone)
            .expect("a known zone")
            .to_ambiguous_zoned(civil)
            .earlier()
            .expect("a valid time")
            .timestamp()
    }

    fn utc(text: &str) -> Timestamp {
        local("UTC", text)
    }

    fn at(timestamp: Timestamp) -> Time {
        Time(timestamp)
    }

    #[test]
    fn no_window_means_no_restriction() {
        let evaluation = evaluate(&[], &at(utc("2026-06-01T12:00:00")));
        assert!(evaluation.unrestricted && evaluation.open());
        assert_eq!(evaluation.status(), None);
        assert_eq!(evaluation.next_change(), None);
    }

    #[test]
    fn open_and_closed_in_utc() {
        // Saturdays 02:00-06:00 UTC. 2026-06-06 is a Saturday.
        let windows = [window("0 2 * * SAT", "4h", "UTC")];
        let cases = [
            // (now, open, closes at, next opens at)
            ("2026-06-05T12:00:00", false, None, "2026-06-06T02:00:00"),
            ("2026-06-06T01:59:59", false, None, "2026-06-06T02:00:00"),
            (
                "2026-06-06T02:00:00",
                true,
                Some("2026-06-06T06:00:00"),
                "2026-06-13T02:00:00",
            ),
            (
                "2026-06-06T05:59:59",
                true,
                Some("2026-06-06T06:00:00"),
                "2026-06-13T02:00:00",
            ),
            ("2026-06-06T06:00:00", false, None, "2026-06-13T02:00:00"),
        ];
        for (now, open, closes, next) in cases {
            let evaluation = evaluate(&windows, &at(utc(now)));
            assert_eq!(evaluation.open(), open, "{now}");
            assert_eq!(evaluation.closes_at, closes.map(utc), "{now}");
            assert_eq!(evaluation.next_opens_at, Some(utc(next)), "{now}");
            assert_eq!(evaluation.problem, None);
        }
    }

    #[test]
    fn a_schedule_is_read_in_its_time_zone() {
        // 22:00 in New York (EDT, UTC-4 in June) is 02:00 UTC the next day.
        let windows = [window("0 22 * * *", "1h", "America/New_York")];
        let evaluation = evaluate(&windows, &at(utc("2026-06-02T02:30:00")));
        assert!(evaluation.open());
        assert_eq!(evaluation.closes_at, Some(utc("2026-06-02T03:00:00")));
        // Kolkata is UTC+05:30: 01:00 there is 19:30 UTC the day before.
        let windows = [window("0 1 * * *", "30m", "Asia/Kolkata")];
        let evaluation = evaluate(&windows, &at(utc("2026-06-01T19:00:00")));
        assert!(!evaluation.open());
        assert_eq!(evaluation.next_opens_at, Some(utc("2026-06-01T19:30:00")));
    }

    #[test]
    fn an_opening_in_a_daylight_saving_gap_opens_right_after_it() {
        // Berlin springs forward on 2026-03-29: 02:00 becomes 03:00, so 02:30 does not exist
        // that day. The window opens at 03:00 CEST (01:00 UTC) and lasts one real hour.
        let windows = [window("30 2 * * *", "1h", "Europe/Berlin")];
        let evaluation = evaluate(&windows, &at(utc("2026-03-28T12:00:00")));
        assert_eq!(
            evaluation.next_opens_at,
            Some(local("Europe/Berlin", "2026-03-29T03:00:00"))
        );
        assert_eq!(
            evaluation.next_opens_at,
            Some(utc("2026-03-29T01:00:00")),
            "03:00 CEST is 01:00 UTC"
        );
        let inside = evaluate(&windows, &at(utc("2026-03-29T01:59:59")));
        assert_eq!(inside.closes_at, Some(utc("2026-03-29T02:00:00")));
        // The next day it opens at 02:30 CEST again (00:30 UTC).
        assert_eq!(inside.next_opens_at, Some(utc("2026-03-30T00:30:00")));
    }

    #[test]
    fn an_opening_in_the_repeated_hour_opens_once_and_lasts_real_time() {
        // Berlin falls back on 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice
        // (00:30 and 01:30 UTC). The window opens once, at the first, and lasts 90 real minutes.
        let windows = [window("30 2 * * *", "90m", "Europe/Berlin")];
        let before = evaluate(&windows, &at(utc("2026-10-24T12:00:00")));
        assert_eq!(before.next_opens_at, Some(utc("2026-10-25T00:30:00")));
        let second_pass = evaluate(&windows, &at(utc("2026-10-25T01:45:00")));
        assert!(second_pass.open(), "still open 75 real minutes in");
        assert_eq!(second_pass.closes_at, Some(utc("2026-10-25T02:00:00")));
        assert_eq!(
            second_pass.next_opens_at,
            Some(local("Europe/Berlin", "2026-10-26T02:30:00")),
            "no second opening at the repeated 02:30"
        );
        let after = evaluate(&windows, &at(utc("2026-10-25T02:00:00")));
        assert!(!after.open());
    }

    #[test]
    fn a_window_across_a_daylight_saving_change_lasts_its_duration_in_real_time() {
        // New York springs forward on 2026-03-08 at 02:00. A window from 01:00 EST for 3 hours
        // closes at 05:00 EDT (3 real hours, 4 on the wall clock).
        let windows = [window("0 1 8 3 *", "3h", "America/New_York")];
        let evaluation = evaluate(
            &windows,
            &at(local("America/New_York", "2026-03-08T01:30:00")),
        );
        assert_eq!(
            evaluation.closes_at,
            Some(local("America/New_York", "2026-03-08T05:00:00"))
        );
    }

    #[test]
    fn overlapping_openings_make_one_open_stretch() {
        // Every hour, for 90 minutes: always open; the stretch is reported up to the merge limit.
        let windows = [window("0 * * * *", "90m", "UTC")];
        let evaluation = evaluate(&windows, &at(utc("2026-06-01T12:10:00")));
        assert!(evaluation.open());
        let closes = evaluation.closes_at.expect("open");
        assert!(closes > utc("2026-06-04T00:00:00"), "{closes}");
        // Two windows: the one open now closes at 03:00; the other opens at 05:00.
        let windows = [
            window("0 1 * * *", "2h", "UTC"),
            window("0 5 * * *", "1h", "UTC"),
        ];
        let evaluation = evaluate(&windows, &at(utc("2026-06-01T02:00:00")));
        assert_eq!(evaluation.closes_at, Some(utc("2026-06-01T03:00:00")));
        assert_eq!(evaluation.next_opens_at, Some(utc("2026-06-01T05:00:00")));
        assert_eq!(evaluation.next_change(), Some(utc("2026-06-01T03:00:00")));
    }

    #[test]
    fn a_window_that_never_occurs_is_reported_and_never_opens() {
        for schedule in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 6 *"] {
            for _ in 0..2 {
                // The second time, from what was remembered.
                let evaluation = evaluate(
                    &[window(schedule, "1h", "UTC")],
                    &at(utc("2026-06-01T12:00:00")),
                );
                assert!(!evaluation.open(), "{schedule}");
                assert_eq!(evaluation.next_opens_at, None, "{schedule}");
                let (reason, message) = evaluation.problem.expect("a problem");
                assert_eq!(reason, reason::WINDOW_UNREACHABLE);
                assert!(message.contains("windows[0]") && message.contains("never occurs"));
            }
        }
        // Rare is not unreachable: February 29 comes every four years.
        let leap = evaluate(
            &[window("0 0 29 2 *", "1h", "UTC")],
            &at(utc("2026-06-01T12:00:00")),
        );
        assert_eq!(leap.problem, None);
        assert_eq!(leap.next_opens_at, Some(utc("2028-02-29T00:00:00")));
    }

    #[test]
    fn a_bad_window_is_reported_and_the_good_ones_still_open() {
        let now = at(utc("2026-06-06T03:00:00"));
        for (bad, reason) in [
            (window("61 * * * *", "1h", "UTC"), reason::INVALID_WINDOW),
            (window("0 0 * * * *", "1h", "UTC"), reason::INVALID_WINDOW),
            (
                window("0 2 * * SAT", "1h", "Mars/Olympus_Mons"),
                reason::INVALID_WINDOW,
            ),
            (window("0 2 * * SAT", "0s", "UTC"), reason::INVALID_WINDOW),
            (
                window("0 0 30 2 *", "1h", "UTC"),
                reason::WINDOW_UNREACHABLE,
            ),
        ] {
            let evaluation = evaluate(&[bad.clone(), window("0 2 * * SAT", "4h", "UTC")], &now);
            assert!(evaluation.open(), "{bad:?}");
            let (got, message) = evaluation.problem.clone().expect("reported");
            assert_eq!(got, reason, "{bad:?}");
            assert!(
                message.starts_with("spec.rotation.windows[0] "),
                "{message}"
            );
            let status = evaluation.status().expect("status");
            assert_eq!(status.state, reason::window::OPEN);
            assert_eq!(status.problem.as_deref(), Some(message.as_str()));
            // Alone, it never opens.
            let alone = evaluate(std::slice::from_ref(&bad), &now);
            assert!(!alone.open() && alone.next_opens_at.is_none(), "{bad:?}");
            assert_eq!(alone.next_change(), None);
        }
    }

    #[test]
    fn every_time_zone_resolves_without_the_system_database() {
        // The copy compiled in (an image without /usr/share/zoneinfo).
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        for zone in [
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "UTC",
        ] {
            assert!(bundled.get(zone).is_ok(), "{zone}");
        }
    }

    #[test]
    fn nicknames_and_calendar_words_are_understood() {
        let now = at(utc("2026-06-03T12:00:00")); // a Wednesday
        let cases = [
            ("@daily", "2026-06-04T00:00:00"),
            ("@weekly", "2026-06-07T00:00:00"),
            ("@monthly", "2026-07-01T00:00:00"),
            ("0 3 L * *", "2026-06-30T03:00:00"),
            ("0 3 * * SUN#1", "2026-06-07T03:00:00"),
            ("0 3 * JUL MON-FRI", "2026-07-01T03:00:00"),
        ];
        for (schedule, next) in cases {
            let evaluation = evaluate(&[window(schedule, "1h", "UTC")], &now);
            assert_eq!(evaluation.problem, None, "{schedule}");
            assert_eq!(evaluation.next_opens_at, Some(utc(next)), "{schedule}");
        }
    }

    #[test]
    fn status_says_open_or_closed_and_when() {
        let windows = [window("0 2 * * SAT", "4h", "UTC")];
        let closed = evaluate(&windows, &at(utc("2026-06-05T12:00:00")))
            .status()
            .expect("status");
        assert_eq!(closed.state, reason::window::CLOSED);
        assert_eq!(closed.closes_at, None);
        assert_eq!(closed.next_opens_at, Some(Time(utc("2026-06-06T02:00:00"))));
        let open = evaluate(&windows, &at(utc("2026-06-06T03:00:00")))
            .status()
            .expect("status");
        assert_eq!(open.state, reason::window::OPEN);
        assert_eq!(open.closes_at, Some(Time(utc("2026-06-06T06:00:00"))));
    }
}
