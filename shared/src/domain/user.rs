//! Recipients' profiles (CONTRACT §9, "Users"): how to reach a user, in which language and time
//! zone, on which channels, and when not to disturb them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Channel;

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: String,
    /// Checked by [`check_email`].
    pub email: Option<String>,
    /// E.164 ([`check_phone`]).
    pub phone: Option<String>,
    pub name: Option<String>,
    /// A canonical BCP 47 tag ([`canonical_locale`](super::canonical_locale)).
    pub locale: Option<String>,
    /// An IANA zone's canonical name ([`canonical_timezone`]); `None`: UTC.
    pub timezone: Option<String>,
    pub channels: ChannelPrefs,
    pub quiet_hours: Option<QuietHours>,
    /// 1 on the first write, one more on each; writes are conditional on it.
    pub version: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl UserProfile {
    /// An empty profile of `user_id` (every channel allowed, no quiet hours), not yet stored.
    pub fn new(user_id: &str, now: &str) -> Self {
        Self {
            user_id: user_id.to_string(),
            email: None,
            phone: None,
            name: None,
            locale: None,
            timezone: None,
            channels: ChannelPrefs::default(),
            quiet_hours: None,
            version: 0,
            created_at: now.to_string(),
            updated_at: now.to_string(),
        }
    }
}

/// Which channels a user turned on or off; `None`: never said (allowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPrefs {
    pub email: Option<bool>,
    pub sms: Option<bool>,
    pub push: Option<bool>,
}

impl ChannelPrefs {
    pub fn get(&self, channel: Channel) -> Option<bool> {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
            Channel::Push => self.push,
        }
    }

    pub fn set(&mut self, channel: Channel, on: Option<bool>) {
        match channel {
            Channel::Email => self.email = on,
            Channel::Sms => self.sms = on,
            Channel::Push => self.push = on,
        }
    }

    /// Whether no channel was ever turned on or off.
    pub fn is_empty(&self) -> bool {
        Channel::ALL.iter().all(|c| self.get(*c).is_none())
    }
}

/// A time of day, to the minute: `00:00` to `23:59`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    minutes: u16,
}

/// Why a time of day is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time of day: HH:MM from 00:00 to 23:59")]
pub struct TimeOfDayError(pub String);

impl TimeOfDay {
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self { minutes: u16::from(hour) * 60 + u16::from(minute) })
    }

    /// `HH:MM`, two digits each.
    pub fn parse(text: &str) -> Result<Self, TimeOfDayError> {
        let bad = || TimeOfDayError(text.to_string());
        let b = text.as_bytes();
        if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
            return Err(bad());
        }
        let digits = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        Self::new(digits(0), digits(3)).ok_or_else(bad)
    }

    pub fn hour(self) -> u8 {
        (self.minutes / 60) as u8
    }

    pub fn minute(self) -> u8 {
        (self.minutes % 60) as u8
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When a user is not to be disturbed, in their time zone. An `end` earlier than the `start`
/// spans midnight (`22:00`–`07:00`). `start` and `end` always differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl QuietHours {
    /// `None` when `start == end` (an empty, or a whole-day, window: refused as ambiguous).
    pub fn new(start: TimeOfDay, end: TimeOfDay) -> Option<Self> {
        (start != end).then_some(Self { start, end })
    }

    /// Whether the window spans midnight.
    pub fn spans_midnight(&self) -> bool {
        self.end < self.start
    }
}

/// The longest email address accepted (RFC 5321's path limit).
const MAX_EMAIL_LEN: usize = 254;

/// Why an email address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an email address (local@domain.tld)")]
pub struct EmailError(pub String);

/// Checks an email address's shape: one `@`, a local part, a domain of dot-separated labels
/// (letters, digits, `-`, not at a label's ends) with at least one dot; no spaces or controls.
pub fn check_email(text: &str) -> Result<(), EmailError> {
    let bad = || EmailError(text.to_string());
    if text.len() > MAX_EMAIL_LEN {
        return Err(bad());
    }
    let (local, domain) = text.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, '@' | '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\')
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok { Ok(()) } else { Err(bad()) }
}

/// Why a phone number is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an E.164 phone number: + and 8 to 15 digits, e.g. +79991234567")]
pub struct PhoneError(pub String);

/// Checks an E.164 phone number: `+`, then 8 to 15 digits, the first not 0; nothing else.
pub fn check_phone(text: &str) -> Result<(), PhoneError> {
    let digits = text.strip_prefix('+').unwrap_or_default();
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if ok { Ok(()) } else { Err(PhoneError(text.to_string())) }
}

/// Why a time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IANA time zone, such as \"Europe/Moscow\" or \"UTC\"")]
pub struct TimeZoneError(pub String);

/// An IANA time zone's canonical name (`europe/berlin` is `Europe/Berlin`), from the tz
/// database compiled into the binary (the same in herald-local and in Lambda).
pub fn canonical_timezone(text: &str) -> Result<String, TimeZoneError> {
    let bad = || TimeZoneError(text.to_string());
    // Offsets and POSIX TZ strings are not zones; the database's names are letters, digits, `/_-+`.
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b)) {
        return Err(bad());
    }
    let tz = jiff::tz::TimeZone::get(text).map_err(|_| bad())?;
    Ok(tz.iana_name().unwrap_or(text).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_are_hh_mm() {
        assert_eq!(TimeOfDay::parse("00:00").unwrap().minutes(), 0);
        assert_eq!(TimeOfDay::parse("23:59").unwrap().to_string(), "23:59");
        assert_eq!(TimeOfDay::parse("07:05").unwrap(), TimeOfDay::new(7, 5).unwrap());
        for bad in ["24:00", "12:60", "7:00", "07:0", "0700", "07-00", "", "ab:cd", "07:00:00", "+7:00", "٠٧:٠٠"] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&QuietHours::new(TimeOfDay::new(22, 0).unwrap(), TimeOfDay::new(7, 0).unwrap())).unwrap();
        assert_eq!(json, r#"{"start":"22:00","end":"07:00"}"#);
        assert!(QuietHours::new(TimeOfDay::new(7, 0).unwrap(), TimeOfDay::new(7, 0).unwrap()).is_none());
    }

    #[test]
    fn emails_have_a_shape() {
        for good in ["a@b.co", "ivan.petrov+news@mail.example.ru", "юзер@почта.рф", "x_y@sub-domain.example.com"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in
            ["", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@-b.co", "a@b.co.", ".a@b.co", "a..b@c.de", "a@b_c.de"]
        {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_email(&format!("{}@b.co", "a".repeat(65))).is_err());
    }

    #[test]
    fn phones_are_e164() {
        for good in ["+79991234567", "+12025550123", "+4930123456", "+123456789012345"] {
            assert!(check_phone(good).is_ok(), "{good}");
        }
        for bad in ["79991234567", "+7999", "+1234567", "+1234567890123456", "+7 999 123 45 67", "+7(999)1234567", "+07991234567", "", "+"]
        {
            assert!(check_phone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(canonical_timezone("Europe/Berlin").unwrap(), "Europe/Berlin");
        assert_eq!(canonical_timezone("europe/moscow").unwrap(), "Europe/Moscow");
        assert_eq!(canonical_timezone("UTC").unwrap(), "UTC");
        assert_eq!(canonical_timezone("America/Argentina/Buenos_Aires").unwrap(), "America/Argentina/Buenos_Aires");
        for bad in ["", "Mars/Olympus_Mons", "+03:00", "UTC+3", "CET-1CEST,M3.5.0,M10.5.0/3", "../etc/passwd", "Europe/"] {
            assert!(canonical_timezone(bad).is_err(), "{bad:?}");
        }
    }
}
