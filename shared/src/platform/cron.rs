//! Recurring mailings' schedules (CONTRACT §9, "Mailings"): a 5-field cron (minute, hour, day of
//! month, month, day of week) evaluated in an IANA time zone with jiff's bundled tz database, and
//! its EventBridge Scheduler form.
//!
//! Syntax per field: `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the
//! field's end), and comma-separated lists of these. Months take `JAN`…`DEC`, days of the week
//! `SUN`…`SAT` (case-insensitive), and `0` or `7` for Sunday. `?` means the same as `*` in the two
//! day fields. As in Vixie cron, when both the day of month and the day of week are restricted
//! (neither is `*`/`?`), a day matches when either does (`0 9 1 * MON`: the 1st and every Monday).
//!
//! **Daylight saving time** — the rule EventBridge Scheduler documents for `cron()` with a
//! `ScheduleExpressionTimezone`, which Herald's own next runs (and herald-local's scheduler)
//! follow so that what `next_runs` shows is what fires:
//! - a local time the clocks skip (spring forward: 02:30 on the night Europe/Berlin jumps from
//!   02:00 to 03:00) does not exist that day, so that run is **skipped** (not moved to 03:00);
//! - a local time that occurs twice (autumn: 02:30 when Berlin goes back from 03:00 to 02:00) runs
//!   **once**, at its first occurrence (the earlier instant, still summer time); it does not repeat.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Why a cron expression was refused: the message names the field and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// How far ahead a next run is looked for: a cron that matches no day in 8 years (`0 0 30 2 *`)
/// never fires.
const SEARCH_DAYS: u32 = 366 * 8;

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names of the values from `min` on.
    names: &'static [&'static str],
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Field = Field { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: Field =
    Field { name: "month", min: 1, max: 12, names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"] };
/// 0 and 7 are Sunday; parsed values are folded into 0..=6.
const DAY_OF_WEEK: Field = Field { name: "day of week", min: 0, max: 7, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] };

/// A parsed 5-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u64,
    dom_any: bool,
    dow_any: bool,
}

fn bits(from: u32, to: u32) -> u64 {
    (from..=to).fold(0, |acc, v| acc | (1 << v))
}

fn value_of(field: &Field, text: &str) -> Result<u32, CronError> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = field.names.iter().position(|n| *n == upper) {
        return Ok(field.min + i as u32);
    }
    let v: u32 = text.parse().map_err(|_| {
        let names = if field.names.is_empty() { String::new() } else { format!(" or a name ({}…)", field.names[..3].join(", ")) };
        CronError(format!("{}: {text:?} is not a number from {} to {}{names}", field.name, field.min, field.max))
    })?;
    if v < field.min || v > field.max {
        return Err(CronError(format!("{}: {v} is out of range ({} to {})", field.name, field.min, field.max)));
    }
    Ok(v)
}

/// The values a field's text selects, and whether it is unrestricted (`*` or `?`).
fn parse_field(field: &Field, text: &str, question_ok: bool) -> Result<(u64, bool), CronError> {
    if text == "*" || (question_ok && text == "?") {
        return Ok((bits(field.min, field.max), true));
    }
    let mut set = 0u64;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(CronError(format!("{}: {text:?} has an empty list item", field.name)));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| CronError(format!("{}: the step in {part:?} must be a whole number of at least 1", field.name)))?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (from, to) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value_of(field, a)?, value_of(field, b)?);
            if a > b {
                return Err(CronError(format!("{}: the range {range:?} runs backwards", field.name)));
            }
            (a, b)
        } else {
            let a = value_of(field, range)?;
            (a, if step.is_some() { field.max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok((set, false))
}

impl Cron {
    /// Parses a 5-field expression (`"30 9 * * MON-FRI"`).
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "{text:?} has {} field(s): a cron has 5 (minute hour day-of-month month day-of-week, e.g. \"30 9 * * MON-FRI\")",
                fields.len()
            )));
        }
        let (minutes, _) = parse_field(&MINUTE, fields[0], false)?;
        let (hours, _) = parse_field(&HOUR, fields[1], false)?;
        let (days, dom_any) = parse_field(&DAY_OF_MONTH, fields[2], true)?;
        let (months, _) = parse_field(&MONTH, fields[3], false)?;
        let (mut weekdays, dow_any) = parse_field(&DAY_OF_WEEK, fields[4], true)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Self { minutes, hours, days, months, weekdays, dom_any, dow_any })
    }

    fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first run strictly after `after`, with the DST rule of the module's documentation;
    /// `None` when none comes within 8 years.
    pub fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let mut date = after.to_zoned(tz.clone()).date();
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let ambiguous = tz.to_ambiguous_timestamp(date.at(hour as i8, minute as i8, 0, 0));
                        let at = match ambiguous.offset() {
                            AmbiguousOffset::Unambiguous { .. } => ambiguous.compatible().ok(),
                            // Skipped by spring forward: no run that day.
                            AmbiguousOffset::Gap { .. } => None,
                            // Twice in autumn: once, the first time.
                            AmbiguousOffset::Fold { .. } => ambiguous.earlier().ok(),
                        };
                        if let Some(at) = at.filter(|t| *t > after) {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Up to `n` runs after `after`, in order.
    pub fn next_runs(&self, tz: &TimeZone, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut from = after;
        while out.len() < n {
            match self.next_after(tz, from) {
                Some(t) => {
                    out.push(t);
                    from = t;
                }
                None => break,
            }
        }
        out
    }

    /// The EventBridge Scheduler expression of this cron: `cron(minutes hours day-of-month month
    /// day-of-week year)`, days of the week 1-7 from Sunday, `?` in the day field left free. Its
    /// time zone goes in `ScheduleExpressionTimezone`. EventBridge cannot restrict both day fields
    /// at once (Herald's cron then means either): that is an error, refused when a mailing is saved.
    pub fn to_eventbridge(&self) -> Result<String, CronError> {
        let (dom, dow) = match (self.dom_any, self.dow_any) {
            (true, true) => ("*".to_string(), "?".to_string()),
            (false, true) => (render(self.days, &DAY_OF_MONTH, true), "?".to_string()),
            (true, false) => {
                // Ours: Sunday = 0 … Saturday = 6; EventBridge's: Sunday = 1 … Saturday = 7.
                let shifted = (0..7).filter(|d| self.weekdays & (1 << d) != 0).fold(0u64, |acc, d| acc | (1 << (d + 1)));
                let field = Field { name: "day of week", min: 1, max: 7, names: &[] };
                ("?".to_string(), render(shifted, &field, false))
            }
            (false, false) => {
                return Err(CronError(
                    "EventBridge Scheduler cannot run a cron that restricts both the day of month and the day of week: give one and * for the other"
                        .into(),
                ));
            }
        };
        let expression = format!(
            "cron({} {} {dom} {} {dow} *)",
            render(self.minutes, &MINUTE, true),
            render(self.hours, &HOUR, true),
            render(self.months, &MONTH, true)
        );
        // EventBridge's limit on a schedule expression.
        if expression.len() > 256 {
            return Err(CronError(format!("the cron is too long for EventBridge Scheduler once expanded ({expression})")));
        }
        Ok(expression)
    }

    /// The cron of an EventBridge Scheduler `cron(minutes hours day-of-month month day-of-week
    /// year)` expression, as [`Cron::to_eventbridge`] writes them: days of the week 1-7 from
    /// Sunday (or `SUN`…`SAT`), `?` for a free day field, the year `*`. What Herald never writes
    /// (`L`, `W`, `#`, a year) is refused.
    pub fn from_eventbridge(expression: &str) -> Result<Self, CronError> {
        let inner = expression
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| CronError(format!("{expression:?} is not a cron(...) expression")))?;
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(CronError(format!("{expression:?} has {} field(s): an EventBridge cron has 6", fields.len())));
        }
        if fields[5] != "*" {
            return Err(CronError(format!("{expression:?}: a year other than * is not one of Herald's schedules")));
        }
        let (minutes, _) = parse_field(&MINUTE, fields[0], false)?;
        let (hours, _) = parse_field(&HOUR, fields[1], false)?;
        let (days, dom_any) = parse_field(&DAY_OF_MONTH, fields[2], true)?;
        let (months, _) = parse_field(&MONTH, fields[3], false)?;
        // EventBridge's days of the week: Sunday = 1 … Saturday = 7; ours: Sunday = 0 … 6.
        let field = Field { name: "day of week", min: 1, max: 7, names: DAY_OF_WEEK.names };
        let (shifted, dow_any) = parse_field(&field, fields[4], true)?;
        Ok(Self { minutes, hours, days, months, weekdays: shifted >> 1, dom_any, dow_any })
    }
}

/// A field's values as EventBridge takes them: `*`, `a/step` (when `steps` and the values are a
/// progression to the field's end), else a list of values and ranges.
fn render(set: u64, field: &Field, steps: bool) -> String {
    let values: Vec<u32> = (field.min..=field.max).filter(|v| set & (1 << v) != 0).collect();
    if values.len() as u32 == field.max - field.min + 1 {
        return "*".into();
    }
    if steps && values.len() >= 3 {
        let (first, step) = (values[0], values[1] - values[0]);
        let progression: Vec<u32> = (0..).map(|k| first + k * step).take_while(|v| *v <= field.max).collect();
        if progression == values {
            return format!("{first}/{step}");
        }
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => values[i].to_string(),
            1 => format!("{},{}", values[i], values[j]),
            _ => format!("{}-{}", values[i], values[j]),
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn runs(cron: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        let tz = TimeZone::get(zone).unwrap();
        Cron::parse(cron).unwrap().next_runs(&tz, ts(after), n).iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        assert_eq!(
            runs("*/20 9-10 * * *", "UTC", "2026-01-05T09:30:00Z", 4),
            ["2026-01-05T09:40:00Z", "2026-01-05T10:00:00Z", "2026-01-05T10:20:00Z", "2026-01-05T10:40:00Z"]
        );
        // 2026-01-05 is a Monday: weekdays at 08:15 skip the weekend.
        assert_eq!(
            runs("15 8 * * mon-fri", "UTC", "2026-01-08T12:00:00Z", 3),
            ["2026-01-09T08:15:00Z", "2026-01-12T08:15:00Z", "2026-01-13T08:15:00Z"]
        );
        assert_eq!(
            runs("0 0 1,15 FEB,mar *", "UTC", "2026-01-01T00:00:00Z", 3),
            ["2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z", "2026-03-01T00:00:00Z"]
        );
        // 7 is Sunday too; `5/20` runs from 5 to the end of the field.
        assert_eq!(
            runs("5/20 12 * * 7", "UTC", "2026-01-01T00:00:00Z", 4),
            ["2026-01-04T12:05:00Z", "2026-01-04T12:25:00Z", "2026-01-04T12:45:00Z", "2026-01-11T12:05:00Z"]
        );
        // Strictly after: a run at the very instant is not next.
        assert_eq!(runs("0 12 * * *", "UTC", "2026-01-01T12:00:00Z", 1), ["2026-01-02T12:00:00Z"]);
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 13th, and every Friday (2026-02-06 is a Friday; the 13th is a Friday too).
        assert_eq!(
            runs("0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", 4),
            ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z", "2026-02-27T00:00:00Z"]
        );
        assert_eq!(runs("0 0 14 * FRI", "UTC", "2026-02-07T00:00:00Z", 2), ["2026-02-13T00:00:00Z", "2026-02-14T00:00:00Z"]);
        // One restricted, the other `*` (or `?`): only the restricted one counts.
        assert_eq!(runs("0 0 14 * ?", "UTC", "2026-02-07T00:00:00Z", 1), ["2026-02-14T00:00:00Z"]);
    }

    #[test]
    fn spring_forward_skips_and_autumn_runs_once_in_berlin() {
        // 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"]
        );
        // 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET; 02:30 occurs twice, runs at
        // the first (00:30 UTC), not again at 01:30 UTC.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
        );
        // Every 30 minutes through the repeated hour: 02:00 and 02:30 once each, then 03:00 CET.
        assert_eq!(
            runs("0,30 * * * *", "Europe/Berlin", "2026-10-24T23:45:00Z", 5),
            ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z", "2026-10-25T03:00:00Z"]
        );
        // A run outside the changed hours keeps its wall-clock time: 09:00 is 08:00 UTC before
        // the spring change and 07:00 UTC after it.
        assert_eq!(runs("0 9 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2), ["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]);
    }

    #[test]
    fn new_york_changes_on_its_own_sundays() {
        // 2026-03-08: New York skips 02:00-03:00; 2026-11-01 repeats 01:00-02:00.
        assert_eq!(runs("15 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2), ["2026-03-09T06:15:00Z", "2026-03-10T06:15:00Z"]);
        assert_eq!(runs("15 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2), ["2026-11-01T05:15:00Z", "2026-11-02T06:15:00Z"]);
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for (text, needle) in [
            ("* * * *", "5"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("* * * FOO *", "month"),
            ("*/0 * * * *", "step"),
            ("5-3 * * * *", "backwards"),
            ("1,,2 * * * *", "empty"),
            ("? * * * *", "minute"),
        ] {
            let e = Cron::parse(text).unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
        // Parses, never fires.
        let tz = TimeZone::UTC;
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(&tz, ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn eventbridge_expressions() {
        let eb = |c: &str| Cron::parse(c).unwrap().to_eventbridge();
        assert_eq!(eb("*/15 * * * *").unwrap(), "cron(0/15 * * * ? *)");
        assert_eq!(eb("30 9 * * MON-FRI").unwrap(), "cron(30 9 ? * 2-6 *)");
        assert_eq!(eb("0 0 * * 0").unwrap(), "cron(0 0 ? * 1 *)");
        assert_eq!(eb("0 0 * * 7,6").unwrap(), "cron(0 0 ? * 1,7 *)");
        assert_eq!(eb("0 8 1 JAN,JUL *").unwrap(), "cron(0 8 1 1,7 ? *)");
        assert_eq!(eb("5,6,7,20 1-3 1-5 * ?").unwrap(), "cron(5-7,20 1-3 1-5 * ? *)");
        assert_eq!(eb("0 9 1 * *").unwrap(), "cron(0 9 1 * ? *)");
        assert!(eb("0 9 1 * MON").unwrap_err().0.contains("both"));
    }

    #[test]
    fn eventbridge_expressions_read_back() {
        for text in [
            "*/15 * * * *",
            "30 9 * * MON-FRI",
            "0 0 * * 0",
            "0 0 * * 7,6",
            "0 8 1 JAN,JUL *",
            "5,6,7,20 1-3 1-5 * ?",
            "0 9 1 * *",
            "* * * * *",
            "0 12 * * SAT",
        ] {
            let cron = Cron::parse(text).unwrap();
            let expression = cron.to_eventbridge().unwrap();
            assert_eq!(Cron::from_eventbridge(&expression).unwrap(), cron, "{text} as {expression}");
        }
        // EventBridge's names of days, and Sunday as 1.
        assert_eq!(Cron::from_eventbridge("cron(0 9 ? * SUN,SAT *)").unwrap(), Cron::parse("0 9 * * 0,6").unwrap());
        for bad in
            ["cron(0 9 * * ?)", "cron(0 9 ? * 2 2027)", "cron(0 9 L * ? *)", "cron(0 9 ? * 2#1 *)", "at(2026-01-01T00:00:00)", "0 9 * * *"]
        {
            assert!(Cron::from_eventbridge(bad).is_err(), "{bad}");
        }
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// Whatever text comes, parsing answers (no panic); what parses evaluates without panicking.
    #[test]
    fn any_text_is_parsed_or_refused() {
        let tokens = ["*", "?", "/", "-", ",", " ", "0", "1", "7", "12", "23", "31", "59", "60", "MON", "jan", "x", "5", "  ", "\t"];
        let mut rng = Rng(0x4845_5241_4c44);
        for _ in 0..20_000 {
            let n = rng.next() % 16;
            let text: String = (0..n).map(|_| rng.pick(&tokens)).collect();
            if let Ok(cron) = Cron::parse(&text) {
                if let Ok(expression) = cron.to_eventbridge() {
                    // Read back, it runs when it did (`1-31` may come back as `*`).
                    let back = Cron::from_eventbridge(&expression).unwrap_or_else(|e| panic!("{text} as {expression}: {e}"));
                    let from = ts("2026-01-01T00:00:00Z");
                    assert_eq!(back.next_runs(&TimeZone::UTC, from, 3), cron.next_runs(&TimeZone::UTC, from, 3), "{text} as {expression}");
                }
                let _ = cron.next_runs(&TimeZone::UTC, ts("2026-01-01T00:00:00Z"), 2);
            }
        }
    }

    /// The reference: the first whole minute after `after` whose wall-clock time in `tz` matches
    /// the cron, counting a repeated local time at its first occurrence only; `None` when none
    /// comes within `minutes`.
    fn brute_force(cron: &Cron, tz: &TimeZone, after: Timestamp, minutes: i64) -> Option<Timestamp> {
        let start = after.as_second().div_euclid(60) + 1;
        (start..start + minutes).map(|m| Timestamp::from_second(m * 60).unwrap()).find(|t| {
            let local = t.to_zoned(tz.clone());
            let civil = local.datetime();
            let fields =
                cron.minutes & (1 << civil.minute()) != 0 && cron.hours & (1 << civil.hour()) != 0 && cron.day_matches(civil.date());
            let ambiguous = tz.to_ambiguous_timestamp(civil);
            let first = match ambiguous.offset() {
                AmbiguousOffset::Fold { .. } => ambiguous.earlier().ok() == Some(*t),
                _ => true,
            };
            fields && first
        })
    }

    /// Random crons from random instants around Berlin's and New York's changes agree with the
    /// minute-by-minute reference.
    #[test]
    fn next_runs_agree_with_a_minute_by_minute_search() {
        let minutes = ["*", "0", "30", "*/15", "0,30", "5-10", "59"];
        let hours = ["*", "1", "2", "3", "1-3", "*/2", "2,14", "0"];
        let doms = ["*", "*", "1", "25-31", "15,29"];
        let months = ["*", "*", "3", "10", "3,10,11"];
        let dows = ["*", "*", "SUN", "0", "MON-FRI", "6,7"];
        let starts = [
            "2026-03-28T22:00:00Z",
            "2026-03-29T00:45:00Z",
            "2026-10-24T23:10:00Z",
            "2026-10-25T00:59:00Z",
            "2026-03-08T05:30:00Z",
            "2026-10-31T23:00:00Z",
            "2026-11-01T05:20:00Z",
        ];
        let zones = ["Europe/Berlin", "America/New_York", "UTC"];
        let mut rng = Rng(0x0d57);
        let mut compared = 0;
        for _ in 0..400 {
            let text = format!("{} {} {} {} {}", rng.pick(&minutes), rng.pick(&hours), rng.pick(&doms), rng.pick(&months), rng.pick(&dows));
            let cron = Cron::parse(&text).unwrap();
            let tz = TimeZone::get(rng.pick(&zones)).unwrap();
            let after = ts(rng.pick(&starts));
            let Some(expected) = brute_force(&cron, &tz, after, 3 * 24 * 60) else { continue };
            assert_eq!(cron.next_after(&tz, after), Some(expected), "{text} in {tz:?} after {after}");
            compared += 1;
        }
        assert!(compared > 100, "only {compared} cases fired within 3 days");
    }
}
