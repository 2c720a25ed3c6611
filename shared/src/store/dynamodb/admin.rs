//! Creating and deleting the tables, from [`tables::TABLES`](crate::store::tables::TABLES): for
//! DynamoDB Local, moto, LocalStack and the contract suite (the cloud's come from the SAM template).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType as SdkKeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};

use super::DynamoStore;
use super::error::{OrStore, map_err};
use crate::store::tables::{self, KeyAttr, TableDef};
use crate::store::{StoreError, StoreResult};

/// How long a table may take to become active, or to go away.
const TABLE_WAIT: Duration = Duration::from_secs(300);

fn key_schema(hash: KeyAttr, range: Option<KeyAttr>) -> StoreResult<Vec<KeySchemaElement>> {
    std::iter::once((hash, SdkKeyType::Hash))
        .chain(range.map(|r| (r, SdkKeyType::Range)))
        .map(|(k, t)| Ok(KeySchemaElement::builder().attribute_name(k.name).key_type(t).build()?))
        .collect()
}

/// Every key attribute of the table and its indexes, once.
fn attribute_definitions(def: &TableDef) -> StoreResult<Vec<AttributeDefinition>> {
    let mut seen: Vec<KeyAttr> = Vec::new();
    let keys = std::iter::once(def.hash).chain(def.range).chain(def.indexes.iter().flat_map(|i| std::iter::once(i.hash).chain(i.range)));
    for k in keys {
        if !seen.iter().any(|s| s.name == k.name) {
            seen.push(k);
        }
    }
    seen.into_iter()
        .map(|k| {
            let kind = match k.kind {
                tables::KeyType::S => ScalarAttributeType::S,
                tables::KeyType::N => ScalarAttributeType::N,
            };
            Ok(AttributeDefinition::builder().attribute_name(k.name).attribute_type(kind).build()?)
        })
        .collect()
}

fn indexes(def: &TableDef) -> StoreResult<Option<Vec<GlobalSecondaryIndex>>> {
    if def.indexes.is_empty() {
        return Ok(None);
    }
    def.indexes
        .iter()
        .map(|i| {
            let projection = match i.projection {
                tables::Projection::All => ProjectionType::All,
                tables::Projection::KeysOnly => ProjectionType::KeysOnly,
            };
            Ok(GlobalSecondaryIndex::builder()
                .index_name(i.name)
                .set_key_schema(Some(key_schema(i.hash, i.range)?))
                .projection(Projection::builder().projection_type(projection).build())
                .build()?)
        })
        .collect::<StoreResult<Vec<_>>>()
        .map(Some)
}

fn timed_out(what: String) -> StoreError {
    StoreError::Backend(what.into())
}

impl DynamoStore {
    /// Creates every table (on-demand billing, with its indexes and TTL), tolerating tables that
    /// already exist, and waits until they are active.
    pub async fn create_tables(&self) -> StoreResult<()> {
        for (def, name) in self.tables.iter() {
            let created = self
                .client
                .create_table()
                .table_name(name)
                .set_attribute_definitions(Some(attribute_definitions(def)?))
                .set_key_schema(Some(key_schema(def.hash, def.range)?))
                .set_global_secondary_indexes(indexes(def)?)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(map_err(name, e)),
            }
        }
        for (def, name) in self.tables.iter() {
            self.wait_active(name).await?;
            if let Some(ttl) = def.ttl {
                self.enable_ttl(name, ttl).await?;
            }
        }
        Ok(())
    }

    /// Deletes every table, tolerating tables that do not exist, and waits until they are gone.
    pub async fn delete_tables(&self) -> StoreResult<()> {
        for (_, name) in self.tables.iter() {
            match self.client.delete_table().table_name(name).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(map_err(name, e)),
            }
        }
        for (_, name) in self.tables.iter() {
            let deadline = Instant::now() + TABLE_WAIT;
            loop {
                match self.client.describe_table().table_name(name).send().await {
                    Err(e) if e.code() == Some("ResourceNotFoundException") => break,
                    Err(e) => return Err(map_err(name, e)),
                    Ok(_) if Instant::now() > deadline => return Err(timed_out(format!("table {name} was not deleted in time"))),
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(())
    }

    /// Waits until a table and its indexes are active.
    async fn wait_active(&self, name: &str) -> StoreResult<()> {
        let deadline = Instant::now() + TABLE_WAIT;
        let mut pause = Duration::from_millis(50);
        loop {
            let resp = self.client.describe_table().table_name(name).send().await.or_store(name)?;
            let active = resp.table().is_some_and(|t| {
                t.table_status() == Some(&TableStatus::Active)
                    && t.global_secondary_indexes().iter().all(|i| i.index_status() == Some(&IndexStatus::Active))
            });
            if active {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(timed_out(format!("table {name} did not become active in time")));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Turns on TTL on `attribute` unless it already is.
    async fn enable_ttl(&self, name: &str, attribute: &str) -> StoreResult<()> {
        let current = self.client.describe_time_to_live().table_name(name).send().await.or_store(name)?;
        let enabled = current.time_to_live_description().is_some_and(|d| {
            matches!(d.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
                && d.attribute_name() == Some(attribute)
        });
        if enabled {
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder().attribute_name(attribute).enabled(true).build()?;
        match self.client.update_time_to_live().table_name(name).time_to_live_specification(spec).send().await {
            Ok(_) => Ok(()),
            // Another process enabled it in between.
            Err(e) if e.code() == Some("ValidationException") && e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
            Err(e) => Err(map_err(name, e)),
        }
    }
}
