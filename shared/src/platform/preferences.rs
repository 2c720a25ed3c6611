//! A user's preferences, as the planner applies them (CONTRACT §9, "Rules"): a channel the user
//! turned off is skipped; a non-critical notification inside the user's quiet hours is held until
//! they end. Pure functions of a profile and a time.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use time::OffsetDateTime;

use crate::domain::{Channel, TimeOfDay, UserProfile};

/// Whether `channel` may reach the user: unless they turned it off (never said: allowed).
pub fn channel_allowed(profile: &UserProfile, channel: Channel) -> bool {
    profile.channels.get(channel).unwrap_or(true)
}

/// The user's time zone: their IANA zone, UTC when they have none (or a name this build's tz
/// database no longer knows).
pub fn user_timezone(profile: &UserProfile) -> TimeZone {
    profile.timezone.as_deref().and_then(|name| TimeZone::get(name).ok()).unwrap_or(TimeZone::UTC)
}

/// When the user's quiet hours that hold at `now` end, in UTC; `None` outside quiet hours (or
/// without any). Quiet hours are wall-clock times in the user's time zone: `start` included,
/// `end` excluded; an `end` earlier than the `start` spans midnight. They end when the wall clock
/// first shows `end` or later: an end that falls into a DST gap (02:30 on the night the clocks
/// jump from 02:00 to 03:00) is the jump (03:00 new time), one that occurs twice (the night the
/// clocks go back) the first occurrence still ahead of `now`.
pub fn quiet_until(profile: &UserProfile, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let quiet = profile.quiet_hours?;
    let tz = user_timezone(profile);
    let now_ts = to_timestamp(now)?;
    let local = now_ts.to_zoned(tz.clone());
    let minute = u16::from(local.hour() as u8) * 60 + u16::from(local.minute() as u8);
    let (start, end) = (quiet.start.minutes(), quiet.end.minutes());
    let today = local.date();
    let end_day = if start < end {
        if !(start..end).contains(&minute) {
            return None;
        }
        today
    } else if minute >= start {
        today.tomorrow().ok()?
    } else if minute < end {
        today
    } else {
        return None;
    };
    from_timestamp(wall_clock_after(&tz, end_day, quiet.end, now_ts)?)
}

/// The first instant after `now` at which the wall clock in `tz` shows `at` on `day`, or has just
/// passed it: a time in a DST gap ends when the gap does (the clocks jump over it); of a time that
/// occurs twice, the earlier unless it is already past.
fn wall_clock_after(tz: &TimeZone, day: Date, at: TimeOfDay, now: Timestamp) -> Option<Timestamp> {
    let civil: DateTime = day.at(at.hour() as i8, at.minute() as i8, 0, 0);
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } => ambiguous.compatible().ok(),
        // Read with the offset after the gap, the time is an instant before the jump: the
        // transition following it is the jump itself.
        AmbiguousOffset::Gap { after, .. } => {
            let before_jump = after.to_timestamp(civil).ok()?;
            tz.following(before_jump).next().map(|t| t.timestamp())
        }
        AmbiguousOffset::Fold { .. } => {
            let first = ambiguous.earlier().ok()?;
            if first > now { Some(first) } else { ambiguous.later().ok() }
        }
    }
    .filter(|t| *t > now)
}

fn to_timestamp(t: OffsetDateTime) -> Option<Timestamp> {
    Timestamp::new(t.unix_timestamp(), t.nanosecond() as i32).ok()
}

fn from_timestamp(t: Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(t.as_second()) * 1_000_000_000 + i128::from(t.subsec_nanosecond());
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::domain::{ChannelPrefs, QuietHours, rfc3339};

    fn profile(tz: Option<&str>, start: &str, end: &str) -> UserProfile {
        let mut p = UserProfile::new("u1", "2024-01-01T00:00:00Z");
        p.timezone = tz.map(str::to_string);
        p.quiet_hours = QuietHours::new(TimeOfDay::parse(start).unwrap(), TimeOfDay::parse(end).unwrap());
        p
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn until(p: &UserProfile, now: &str) -> Option<String> {
        quiet_until(p, at(now)).map(rfc3339)
    }

    #[test]
    fn channels_are_allowed_unless_turned_off() {
        let mut p = UserProfile::new("u1", "t");
        assert!(Channel::ALL.iter().all(|c| channel_allowed(&p, *c)));
        p.channels = ChannelPrefs { email: Some(false), sms: Some(true), push: None };
        assert!(!channel_allowed(&p, Channel::Email));
        assert!(channel_allowed(&p, Channel::Sms));
        assert!(channel_allowed(&p, Channel::Push));
    }

    #[test]
    fn no_quiet_hours_is_never_quiet() {
        let p = UserProfile::new("u1", "t");
        assert_eq!(quiet_until(&p, at("2024-06-01T03:00:00Z")), None);
    }

    #[test]
    fn without_a_time_zone_quiet_hours_are_utc() {
        let p = profile(None, "09:00", "17:30");
        assert_eq!(until(&p, "2024-06-01T09:00:00Z").as_deref(), Some("2024-06-01T17:30:00Z"));
        assert_eq!(until(&p, "2024-06-01T17:29:59.5Z").as_deref(), Some("2024-06-01T17:30:00Z"));
        // The end is excluded, the start included.
        assert_eq!(until(&p, "2024-06-01T17:30:00Z"), None);
        assert_eq!(until(&p, "2024-06-01T08:59:59Z"), None);
    }

    #[test]
    fn an_end_before_the_start_spans_midnight() {
        let p = profile(Some("Europe/Moscow"), "23:00", "08:00"); // UTC+3 all year
        // 23:30 Moscow on the 1st: until 08:00 Moscow on the 2nd.
        assert_eq!(until(&p, "2024-06-01T20:30:00Z").as_deref(), Some("2024-06-02T05:00:00Z"));
        // 01:00 Moscow on the 2nd (22:00 UTC on the 1st): the same end.
        assert_eq!(until(&p, "2024-06-01T22:00:00Z").as_deref(), Some("2024-06-02T05:00:00Z"));
        // 07:59 Moscow: a minute left; 08:00 and 22:59: not quiet.
        assert_eq!(until(&p, "2024-06-02T04:59:00Z").as_deref(), Some("2024-06-02T05:00:00Z"));
        assert_eq!(until(&p, "2024-06-02T05:00:00Z"), None);
        assert_eq!(until(&p, "2024-06-02T19:59:00Z"), None);
        // The user's day, not UTC's: 23:00 UTC is 02:00 Moscow, quiet; 12:00 UTC is 15:00, not.
        assert_eq!(until(&p, "2024-06-01T23:00:00Z").as_deref(), Some("2024-06-02T05:00:00Z"));
        assert_eq!(until(&p, "2024-06-01T12:00:00Z"), None);
        // Across the year's end.
        assert_eq!(until(&p, "2024-12-31T21:00:00Z").as_deref(), Some("2025-01-01T05:00:00Z"));
    }

    #[test]
    fn berlin_nights_across_the_march_change() {
        // 2024-03-31, the last Sunday of March: 02:00 CET -> 03:00 CEST.
        let p = profile(Some("Europe/Berlin"), "22:00", "07:00");
        // 23:00 CET on the 30th: the night ends at 07:00 CEST, 05:00 UTC (an hour shorter).
        assert_eq!(until(&p, "2024-03-30T22:00:00Z").as_deref(), Some("2024-03-31T05:00:00Z"));
        // 01:59 CET and 03:00 CEST, either side of the jump: the same end.
        assert_eq!(until(&p, "2024-03-31T00:59:00Z").as_deref(), Some("2024-03-31T05:00:00Z"));
        assert_eq!(until(&p, "2024-03-31T01:00:00Z").as_deref(), Some("2024-03-31T05:00:00Z"));
        // 06:59 CEST is 04:59 UTC; 07:00 CEST is not quiet.
        assert_eq!(until(&p, "2024-03-31T04:59:00Z").as_deref(), Some("2024-03-31T05:00:00Z"));
        assert_eq!(until(&p, "2024-03-31T05:00:00Z"), None);
        // The night before, still winter time: ends 07:00 CET, 06:00 UTC.
        assert_eq!(until(&p, "2024-03-29T23:00:00Z").as_deref(), Some("2024-03-30T06:00:00Z"));
        // The evening of the change: 22:00 CEST is 20:00 UTC.
        assert_eq!(until(&p, "2024-03-31T19:59:00Z"), None);
        assert_eq!(until(&p, "2024-03-31T20:00:00Z").as_deref(), Some("2024-04-01T05:00:00Z"));
    }

    #[test]
    fn berlin_nights_across_the_october_change() {
        // 2024-10-27, the last Sunday of October: 03:00 CEST -> 02:00 CET (02:00-02:59 twice).
        let p = profile(Some("Europe/Berlin"), "22:00", "07:00");
        // 23:00 CEST on the 26th: ends 07:00 CET, 06:00 UTC (an hour longer).
        assert_eq!(until(&p, "2024-10-26T21:00:00Z").as_deref(), Some("2024-10-27T06:00:00Z"));
        // 02:30 CEST, and 02:30 CET an hour later: both quiet, the same end.
        assert_eq!(until(&p, "2024-10-27T00:30:00Z").as_deref(), Some("2024-10-27T06:00:00Z"));
        assert_eq!(until(&p, "2024-10-27T01:30:00Z").as_deref(), Some("2024-10-27T06:00:00Z"));
        assert_eq!(until(&p, "2024-10-27T05:59:59Z").as_deref(), Some("2024-10-27T06:00:00Z"));
        assert_eq!(until(&p, "2024-10-27T06:00:00Z"), None);
        // 22:00 CEST the evening before is 20:00 UTC; 22:00 CET on the 27th is 21:00 UTC.
        assert_eq!(until(&p, "2024-10-26T19:59:00Z"), None);
        assert_eq!(until(&p, "2024-10-26T20:00:00Z").as_deref(), Some("2024-10-27T06:00:00Z"));
        assert_eq!(until(&p, "2024-10-27T20:30:00Z"), None);
        assert_eq!(until(&p, "2024-10-27T21:00:00Z").as_deref(), Some("2024-10-28T06:00:00Z"));
    }

    #[test]
    fn an_end_in_a_dst_gap_is_a_real_instant() {
        // 02:30 does not exist in Berlin on 2024-03-31: the night ends at
        let p = profile(Some("Europe/Berlin"), "23:00", "02:30");
        // the jump to 03:00 CEST (01:00 UTC), the first instant the clocks show 02:30 or later.
        assert_eq!(until(&p, "2024-03-30T23:00:00Z").as_deref(), Some("2024-03-31T01:00:00Z")); // 00:00 CET
        assert_eq!(until(&p, "2024-03-31T00:59:59Z").as_deref(), Some("2024-03-31T01:00:00Z")); // 01:59:59 CET
        assert_eq!(until(&p, "2024-03-31T01:00:00Z"), None, "03:00 CEST is past 02:30 on the wall clock");
        // A start in the gap: quiet from the jump on.
        let p = profile(Some("Europe/Berlin"), "02:15", "06:00");
        assert_eq!(until(&p, "2024-03-31T00:59:00Z"), None); // 01:59 CET
        assert_eq!(until(&p, "2024-03-31T01:00:00Z").as_deref(), Some("2024-03-31T04:00:00Z")); // 03:00 CEST
    }

    #[test]
    fn an_end_that_occurs_twice_is_the_next_one() {
        // 2024-10-27 in Berlin: 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC (CET).
        let p = profile(Some("Europe/Berlin"), "01:00", "02:30");
        // 01:15 CEST: the first 02:30.
        assert_eq!(until(&p, "2024-10-26T23:15:00Z").as_deref(), Some("2024-10-27T00:30:00Z"));
        // 02:45 CEST: past the end on the wall clock, not quiet.
        assert_eq!(until(&p, "2024-10-27T00:45:00Z"), None);
        // 02:10 CET (the second pass): quiet again on the wall clock, until the second 02:30.
        assert_eq!(until(&p, "2024-10-27T01:10:00Z").as_deref(), Some("2024-10-27T01:30:00Z"));
    }

    #[test]
    fn a_zone_far_from_utc_and_an_unknown_zone() {
        // Pacific/Kiritimati is UTC+14: 22:00-07:00 there is 08:00-17:00 UTC the day before.
        let p = profile(Some("Pacific/Kiritimati"), "22:00", "07:00");
        assert_eq!(until(&p, "2024-06-01T08:00:00Z").as_deref(), Some("2024-06-01T17:00:00Z"));
        assert_eq!(until(&p, "2024-06-01T17:00:00Z"), None);
        // A stored zone this build does not know is read as UTC.
        let p = profile(Some("Nowhere/Atlantis"), "22:00", "07:00");
        assert_eq!(until(&p, "2024-06-01T23:00:00Z").as_deref(), Some("2024-06-02T07:00:00Z"));
    }
}
