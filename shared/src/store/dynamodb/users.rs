//! User profiles: one item per user (key `user_id`), listed a shard at a time through the
//! `by_shard` index (on `user_shard`: [`USER_SHARDS`](crate::store::USER_SHARDS) partition keys).
//! Writes are conditional on the version read.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::error::{OrStore, applied};
use super::item::{FromItem, Item, ToItem, from_items, get_bool, get_m, get_n, get_opt_s, get_s, key, n, name, s};
use super::query::{decode_key_cursor, encode_cursor, limit_i32};
use crate::domain::{Channel, ChannelPrefs, QuietHours, TimeOfDay, UserProfile};
use crate::store::shards::check_user_shard_page;
use crate::store::tables::{BY_SHARD, TableId, attr};
use crate::store::{Page, StoreError, StoreResult, UserStore, user_shard, user_shard_key};

impl ToItem for UserProfile {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::USER_ID, s(self.user_id.as_str())),
            (attr::USER_SHARD, s(user_shard_key(user_shard(&self.user_id)))),
            (name::VERSION, n(self.version)),
            (name::CREATED_AT, s(self.created_at.as_str())),
            (name::UPDATED_AT, s(self.updated_at.as_str())),
        ]);
        let texts = [
            (name::EMAIL, &self.email),
            (name::PHONE, &self.phone),
            (name::USER_NAME, &self.name),
            (name::LOCALE, &self.locale),
            (name::TIMEZONE, &self.timezone),
        ];
        for (attr_name, value) in texts {
            if let Some(v) = value {
                item.insert(attr_name.into(), s(v.as_str()));
            }
        }
        if !self.channels.is_empty() {
            let channels = Channel::ALL
                .iter()
                .filter_map(|c| self.channels.get(*c).map(|on| (c.as_str().to_string(), AttributeValue::Bool(on))))
                .collect();
            item.insert(name::CHANNELS.into(), AttributeValue::M(channels));
        }
        if let Some(q) = &self.quiet_hours {
            item.insert(name::QUIET_START.into(), s(q.start.to_string()));
            item.insert(name::QUIET_END.into(), s(q.end.to_string()));
        }
        item
    }
}

fn time_of_day(item: &Item, attr_name: &str) -> StoreResult<TimeOfDay> {
    TimeOfDay::parse(&get_s(item, attr_name)?).map_err(|e| StoreError::Corrupt(format!("attribute {attr_name:?}: {e}")))
}

impl FromItem for UserProfile {
    fn from_item(item: &Item) -> StoreResult<Self> {
        let mut channels = ChannelPrefs::default();
        if item.contains_key(name::CHANNELS) {
            let map = get_m(item, name::CHANNELS)?;
            for c in Channel::ALL {
                if map.contains_key(c.as_str()) {
                    channels.set(c, Some(get_bool(map, c.as_str())?));
                }
            }
        }
        let quiet_hours = match (item.contains_key(name::QUIET_START), item.contains_key(name::QUIET_END)) {
            (false, false) => None,
            _ => Some(
                QuietHours::new(time_of_day(item, name::QUIET_START)?, time_of_day(item, name::QUIET_END)?)
                    .ok_or_else(|| StoreError::Corrupt("quiet hours that start when they end".into()))?,
            ),
        };
        Ok(Self {
            user_id: get_s(item, attr::USER_ID)?,
            email: get_opt_s(item, name::EMAIL)?,
            phone: get_opt_s(item, name::PHONE)?,
            name: get_opt_s(item, name::USER_NAME)?,
            locale: get_opt_s(item, name::LOCALE)?,
            timezone: get_opt_s(item, name::TIMEZONE)?,
            channels,
            quiet_hours,
            version: get_n(item, name::VERSION)?,
            created_at: get_s(item, name::CREATED_AT)?,
            updated_at: get_s(item, name::UPDATED_AT)?,
        })
    }
}

/// A cursor of [`encode_cursor`] for a page of one shard's profiles.
fn decode_cursor(cursor: &str, shard_key: &str) -> StoreResult<Item> {
    let plain = decode_key_cursor(cursor, &[attr::USER_ID, attr::USER_SHARD])?;
    if plain.get(attr::USER_SHARD).map(String::as_str) != Some(shard_key) {
        return Err(StoreError::Invalid("page cursor of another shard".into()));
    }
    Ok(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn get_user(&self, user_id: &str) -> StoreResult<Option<UserProfile>> {
        let table = self.table(TableId::Users);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::USER_ID, s(user_id))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(UserProfile::from_item).transpose()
    }

    async fn put_user(&self, profile: &UserProfile, expected_version: Option<u32>) -> StoreResult<bool> {
        let table = self.table(TableId::Users);
        let put = self.client.put_item().table_name(table).set_item(Some(profile.to_item()));
        let put = match expected_version {
            None => put.condition_expression("attribute_not_exists(#k)").expression_attribute_names("#k", attr::USER_ID),
            Some(v) => {
                put.condition_expression("#v = :v").expression_attribute_names("#v", name::VERSION).expression_attribute_values(":v", n(v))
            }
        };
        if applied(put.send().await.or_store(table))? {
            return Ok(true);
        }
        // The SDK retried a write whose answer was lost: it is ours.
        Ok(self.get_user(&profile.user_id).await?.as_ref() == Some(profile))
    }

    async fn users_in_shard(&self, shard: u32, cursor: Option<&str>, limit: usize) -> StoreResult<Page<UserProfile>> {
        check_user_shard_page(shard, limit)?;
        let shard_key = user_shard_key(shard);
        let start = cursor.map(|c| decode_cursor(c, &shard_key)).transpose()?;
        let table = self.table(TableId::Users);
        let resp = self
            .query_eq(TableId::Users, Some(BY_SHARD), attr::USER_SHARD, &shard_key)
            .limit(limit_i32(limit))
            .set_exclusive_start_key(start)
            .send()
            .await
            .or_store(table)?;
        let items = from_items(resp.items())?;
        let next = resp.last_evaluated_key.filter(|k| !k.is_empty()).as_ref().map(encode_cursor).transpose()?;
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_and_carries_its_shard() {
        let mut p = UserProfile::new("1589", "2024-05-01T10:00:00Z");
        p.email = Some("a@b.co".into());
        p.timezone = Some("Europe/Berlin".into());
        p.channels = ChannelPrefs { email: Some(false), sms: None, push: Some(true) };
        p.quiet_hours = QuietHours::new(TimeOfDay::new(22, 0).unwrap(), TimeOfDay::new(7, 0).unwrap());
        p.version = 4;
        let item = p.to_item();
        assert_eq!(UserProfile::from_item(&item).unwrap(), p);
        assert_eq!(item.get(attr::USER_SHARD), Some(&s(user_shard_key(user_shard("1589")))));
        assert_eq!(item.get(name::QUIET_START), Some(&s("22:00")));
        let bare = UserProfile::new("u", "t");
        let item = bare.to_item();
        assert!(!item.contains_key(name::CHANNELS) && !item.contains_key(name::EMAIL));
        assert_eq!(UserProfile::from_item(&item).unwrap(), bare);
    }

    #[test]
    fn cursors_name_their_shard() {
        let k = key([(attr::USER_ID, s("u1")), (attr::USER_SHARD, s(user_shard_key(3)))]);
        let c = encode_cursor(&k).unwrap();
        assert_eq!(decode_cursor(&c, &user_shard_key(3)).unwrap(), k);
        assert!(matches!(decode_cursor(&c, &user_shard_key(4)), Err(StoreError::Invalid(_))));
        assert!(matches!(decode_cursor("garbage!", &user_shard_key(3)), Err(StoreError::Invalid(_))));
    }
}
