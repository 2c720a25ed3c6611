//! Connections: one item per connection, found by user through the `by_user` index.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::DynamoStore;
use super::error::OrStore;
use super::item::{FromItem, ToItem, from_items, key, s};
use super::query::query_all;
use crate::domain::Connection;
use crate::store::tables::{BY_USER, TableId, attr};
use crate::store::{ConnectionStore, StoreResult};

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> StoreResult<()> {
        let table = self.table(TableId::Connections);
        self.client.put_item().table_name(table).set_item(Some(connection.to_item())).send().await.or_store(table)?;
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<Connection>> {
        let table = self.table(TableId::Connections);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::CONNECTION_ID, s(connection_id))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(Connection::from_item).transpose()
    }

    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<Connection>> {
        let table = self.table(TableId::Connections);
        let resp = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(key([(attr::CONNECTION_ID, s(connection_id))])))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .or_store(table)?;
        resp.attributes.filter(|a| !a.is_empty()).as_ref().map(Connection::from_item).transpose()
    }

    async fn user_connections(&self, user_id: &str) -> StoreResult<Vec<Connection>> {
        let table = self.table(TableId::Connections);
        let items = query_all(table, self.query_eq(TableId::Connections, Some(BY_USER), attr::USER_ID, user_id), None).await?;
        from_items(&items)
    }
}
