//! Message templates (CONTRACT §9): one per (name, channel, locale), versioned.

use serde::{Deserialize, Serialize};

/// A delivery channel of the notification platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// A JSON list of channel names, each once in the order given; the error names the value
    /// that is not a channel (`"channels": …`).
    pub fn parse_list(list: &[serde_json::Value]) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for v in list {
            let c = v
                .as_str()
                .and_then(Self::parse)
                .ok_or_else(|| format!("\"channels\": {v} is not a channel: the channels are email, sms and push"))?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// A stored template: its sources, its slot (name, channel, locale) and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub channel: Channel,
    /// A canonical BCP 47 tag ([`canonical_locale`]); `None`: the template for any locale.
    pub locale: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
    /// 1 on create, one more on each update.
    pub version: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl Template {
    /// Whether `other` occupies the same (name, channel, locale) slot.
    pub fn same_slot(&self, other: &Template) -> bool {
        self.name == other.name && self.channel == other.channel && self.locale == other.locale
    }
}

/// Why a locale is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a locale: a language tag such as \"ru\" or \"ru-RU\"")]
pub struct LocaleError(pub String);

/// The longest locale accepted.
const MAX_LOCALE_LEN: usize = 35;

/// A locale in its canonical form: BCP 47 subtags joined by `-` (`_` is read as `-`), the
/// language lower case, a script title case (`Hant`), a region upper case (`RU`, `419`), the
/// rest lower case. `ru_ru` and `RU-ru` are both `ru-RU`.
pub fn canonical_locale(text: &str) -> Result<String, LocaleError> {
    let bad = || LocaleError(text.to_string());
    if text.is_empty() || text.len() > MAX_LOCALE_LEN {
        return Err(bad());
    }
    let mut out: Vec<String> = Vec::new();
    for (i, part) in text.split(['-', '_']).enumerate() {
        if part.is_empty() || part.len() > 8 || !part.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        let lower = part.to_ascii_lowercase();
        let canonical = if i == 0 {
            if !(2..=8).contains(&part.len()) || !part.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad());
            }
            lower
        } else if part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            let mut chars = lower.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        } else if (part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()))
            || (part.len() == 3 && part.chars().all(|c| c.is_ascii_digit()))
        {
            part.to_ascii_uppercase()
        } else {
            lower
        };
        out.push(canonical);
    }
    Ok(out.join("-"))
}

/// The locales a user's locale falls back through, most specific first (CONTRACT §9): the exact
/// tag (`ru-RU`), then ever shorter prefixes down to the language (`ru`). The template without a
/// locale comes after all of them. A locale that is not a language tag falls back to none.
pub fn locale_fallbacks(user_locale: Option<&str>) -> Vec<String> {
    let Some(canonical) = user_locale.and_then(|l| canonical_locale(l.trim()).ok()) else { return Vec::new() };
    let parts: Vec<&str> = canonical.split('-').collect();
    (1..=parts.len()).rev().map(|n| parts[..n].join("-")).collect()
}

/// Of the templates of one name and channel, the one for a user's locale: exact, then language,
/// then the one without a locale (CONTRACT §9).
pub fn pick_for_locale<'a>(templates: &'a [Template], user_locale: Option<&str>) -> Option<&'a Template> {
    locale_fallbacks(user_locale)
        .iter()
        .find_map(|want| templates.iter().find(|t| t.locale.as_deref() == Some(want.as_str())))
        .or_else(|| templates.iter().find(|t| t.locale.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_list_is_deduplicated_in_order_and_names_what_is_not_a_channel() {
        let list = |v: serde_json::Value| v.as_array().unwrap().clone();
        assert_eq!(Channel::parse_list(&list(serde_json::json!(["push", "email", "push"]))), Ok(vec![Channel::Push, Channel::Email]));
        assert_eq!(
            Channel::parse_list(&list(serde_json::json!(["email", "fax"]))),
            Err("\"channels\": \"fax\" is not a channel: the channels are email, sms and push".to_string())
        );
        assert!(Channel::parse_list(&list(serde_json::json!([1]))).unwrap_err().contains(": 1 is not a channel"));
    }

    fn t(locale: Option<&str>) -> Template {
        Template {
            id: locale.unwrap_or("none").into(),
            name: "welcome".into(),
            channel: Channel::Email,
            locale: locale.map(str::to_string),
            subject: None,
            body: "b".into(),
            html: None,
            version: 1,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn locales_are_canonical() {
        assert_eq!(canonical_locale("ru-RU").unwrap(), "ru-RU");
        assert_eq!(canonical_locale("ru_ru").unwrap(), "ru-RU");
        assert_eq!(canonical_locale("RU").unwrap(), "ru");
        assert_eq!(canonical_locale("zh-hant-tw").unwrap(), "zh-Hant-TW");
        assert_eq!(canonical_locale("es-419").unwrap(), "es-419");
        for bad in ["", "r", "ru-", "-RU", "ru--RU", "ru RU", "1a", "ру", "ru-toolongsubtag"] {
            assert!(canonical_locale(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fallbacks_go_from_exact_to_language() {
        assert_eq!(locale_fallbacks(Some("ru-RU")), ["ru-RU", "ru"]);
        assert_eq!(locale_fallbacks(Some("zh_Hant_TW")), ["zh-Hant-TW", "zh-Hant", "zh"]);
        assert_eq!(locale_fallbacks(Some("ru")), ["ru"]);
        assert!(locale_fallbacks(None).is_empty());
        assert!(locale_fallbacks(Some("not a locale")).is_empty());
    }

    #[test]
    fn a_user_gets_exact_then_language_then_no_locale() {
        let all = [t(None), t(Some("ru")), t(Some("ru-RU")), t(Some("en"))];
        let pick = |l: Option<&str>, of: &[Template]| pick_for_locale(of, l).map(|t| t.id.clone());
        assert_eq!(pick(Some("ru-RU"), &all).as_deref(), Some("ru-RU"));
        assert_eq!(pick(Some("ru-ru"), &all).as_deref(), Some("ru-RU"));
        assert_eq!(pick(Some("ru-BY"), &all).as_deref(), Some("ru"));
        assert_eq!(pick(Some("ru"), &all).as_deref(), Some("ru"));
        assert_eq!(pick(Some("de-DE"), &all).as_deref(), Some("none"));
        assert_eq!(pick(None, &all).as_deref(), Some("none"));
        // Without a template for any locale, a user of another language gets none.
        assert_eq!(pick(Some("de"), &all[1..]), None);
        // A more specific template never serves a less specific locale.
        assert_eq!(pick(Some("ru"), &[t(Some("ru-RU"))]), None);
    }
}
