//! Members: one item per (member, channel); channels by member on the table's key, members by
//! channel through the `by_channel` index.

use async_trait::async_trait;

use super::DynamoStore;
use super::error::OrStore;
use super::item::{get_s, key, s};
use super::query::query_all;
use crate::store::tables::{BY_CHANNEL, TableId, attr};
use crate::store::{MemberStore, StoreResult};

#[async_trait]
impl MemberStore for DynamoStore {
    async fn add_member(&self, session_channel: &str, member_id: &str) -> StoreResult<()> {
        let table = self.table(TableId::Members);
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(key([(attr::MEMBER_ID, s(member_id)), (attr::SESSION_CHANNEL, s(session_channel))])))
            .send()
            .await
            .or_store(table)?;
        Ok(())
    }

    async fn member_channels(&self, member_id: &str) -> StoreResult<Vec<String>> {
        let table = self.table(TableId::Members);
        let query = self.query_eq(TableId::Members, None, attr::MEMBER_ID, member_id).consistent_read(true);
        query_all(table, query, None).await?.iter().map(|i| get_s(i, attr::SESSION_CHANNEL)).collect()
    }

    async fn channel_members(&self, session_channel: &str) -> StoreResult<Vec<String>> {
        let table = self.table(TableId::Members);
        let query = self.query_eq(TableId::Members, Some(BY_CHANNEL), attr::SESSION_CHANNEL, session_channel);
        query_all(table, query, None).await?.iter().map(|i| get_s(i, attr::MEMBER_ID)).collect()
    }
}
