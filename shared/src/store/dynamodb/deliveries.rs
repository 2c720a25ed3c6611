//! Push claims, delivery records and fan-out batch markers, all in the deliveries table: a
//! delivery is keyed by push and connection; a push's claim is the item of the push with
//! connection id [`CLAIM`], carrying its `state` (`sending` / `done`) and, while sending,
//! `lease_until` (epoch milliseconds) and its `owner`; a batch's marker is the item of the batch
//! id with connection id [`BATCH`], its `state` (`done`, or `partial` with the `remaining`
//! connection ids). No real connection id contains `#`, so the three never collide.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::DynamoStore;
use super::error::{OrStore, applied};
use super::item::{FromItem, Item, ToItem, get_n, get_s, key, n, name, s};
use crate::domain::{AckOutcome, BatchState, Claim, Delivery};
use crate::store::tables::{TableId, attr};
use crate::store::{DeliveryStore, StoreError, StoreResult};

/// The connection id of a push's claim item (API Gateway's connection ids never contain `#`).
pub(crate) const CLAIM: &str = "#push";
/// The connection id of a fan-out batch's marker item.
const BATCH: &str = "#batch";
const SENDING: &str = "sending";
const DONE: &str = "done";
const PARTIAL: &str = "partial";
const OWNER: &str = "owner";
const REMAINING: &str = "remaining";
/// Rounds of put / retake / read before a claim that keeps changing under us answers `Busy`.
const CLAIM_ROUNDS: usize = 5;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn delivery_key(push_id: &str, connection_id: &str) -> Item {
    key([(attr::PUSH_ID, s(push_id)), (attr::CONNECTION_ID, s(connection_id))])
}

impl DynamoStore {
    /// An update of a push's claim item that applies only while `owner` still holds it (the
    /// claim is `sending` under its owner token): names `#state` and `#owner` are bound.
    fn update_own_claim(
        &self,
        table: &str,
        push_id: &str,
        owner: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(table)
            .set_key(Some(delivery_key(push_id, CLAIM)))
            .condition_expression("#state = :sending AND #owner = :owner")
            .expression_attribute_names("#state", name::STATE)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":sending", s(SENDING))
            .expression_attribute_values(":owner", s(owner))
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn claim_push(&self, push_id: &str, owner: &str, lease: Duration, expires_at: i64) -> StoreResult<Claim> {
        let table = self.table(TableId::Deliveries);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        for _ in 0..CLAIM_ROUNDS {
            let now = now_ms();
            let until = now.saturating_add(lease_ms);
            // The first claim of a push creates its claim item.
            let mut claim = delivery_key(push_id, CLAIM);
            claim.extend(key([
                (name::STATE, s(SENDING)),
                (name::LEASE_UNTIL, n(until)),
                (OWNER, s(owner)),
                (attr::EXPIRES_AT, n(expires_at)),
            ]));
            let put = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(claim))
                .condition_expression("attribute_not_exists(#p)")
                .expression_attribute_names("#p", attr::PUSH_ID)
                .send()
                .await
                .or_store(table);
            if applied(put)? {
                return Ok(Claim::New);
            }
            // A claim whose lease ran out is taken over by one worker.
            let retake = self
                .client
                .update_item()
                .table_name(table)
                .set_key(Some(delivery_key(push_id, CLAIM)))
                .update_expression("SET #lease = :until, #exp = :exp, #owner = :owner")
                .condition_expression("#state = :sending AND #lease <= :now")
                .expression_attribute_names("#owner", OWNER)
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_names("#lease", name::LEASE_UNTIL)
                .expression_attribute_names("#exp", attr::EXPIRES_AT)
                .expression_attribute_names("#state", name::STATE)
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":sending", s(SENDING))
                .expression_attribute_values(":now", n(now))
                .send()
                .await
                .or_store(table);
            if applied(retake)? {
                return Ok(Claim::Retaken);
            }
            // Neither: done, or a live lease — unless it changed in between, then try again.
            let current = self
                .client
                .get_item()
                .table_name(table)
                .set_key(Some(delivery_key(push_id, CLAIM)))
                .consistent_read(true)
                .send()
                .await
                .or_store(table)?
                .item;
            let Some(current) = current else { continue };
            match get_s(&current, name::STATE)?.as_str() {
                DONE => return Ok(Claim::Done),
                SENDING if get_n::<i64>(&current, name::LEASE_UNTIL)? > now_ms() => return Ok(Claim::Busy),
                SENDING => continue,
                other => return Err(StoreError::Corrupt(format!("attribute \"state\" has unknown value {other:?}"))),
            }
        }
        Ok(Claim::Busy)
    }

    async fn renew_claim(&self, push_id: &str, owner: &str, lease: Duration) -> StoreResult<bool> {
        let table = self.table(TableId::Deliveries);
        let until = now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let update = self
            .update_own_claim(table, push_id, owner)
            .update_expression("SET #lease = :until")
            .expression_attribute_names("#lease", name::LEASE_UNTIL)
            .expression_attribute_values(":until", n(until))
            .send()
            .await
            .or_store(table);
        applied(update)
    }

    async fn complete_push(&self, push_id: &str, owner: &str) -> StoreResult<bool> {
        let table = self.table(TableId::Deliveries);
        let update = self
            .update_own_claim(table, push_id, owner)
            .update_expression("SET #state = :done REMOVE #lease")
            .expression_attribute_names("#lease", name::LEASE_UNTIL)
            .expression_attribute_values(":done", s(DONE))
            .send()
            .await
            .or_store(table);
        applied(update)
    }

    async fn release_push(&self, push_id: &str, owner: &str) -> StoreResult<()> {
        let table = self.table(TableId::Deliveries);
        let delete = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(delivery_key(push_id, CLAIM)))
            .condition_expression("#state = :sending AND #owner = :owner")
            .expression_attribute_names("#state", name::STATE)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":sending", s(SENDING))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await
            .or_store(table);
        // A done claim stays, another owner's stays; an absent one is already released.
        applied(delete).map(|_| ())
    }

    async fn create_delivery(&self, delivery: &Delivery) -> StoreResult<bool> {
        let table = self.table(TableId::Deliveries);
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(delivery.to_item()))
            .condition_expression("attribute_not_exists(#p)")
            .expression_attribute_names("#p", attr::PUSH_ID)
            .send()
            .await
            .or_store(table);
        applied(put)
    }

    async fn get_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<Option<Delivery>> {
        let table = self.table(TableId::Deliveries);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(delivery_key(push_id, connection_id)))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(Delivery::from_item).transpose()
    }

    async fn record_attempt(&self, push_id: &str, connection_id: &str, expected: u32) -> StoreResult<Option<u32>> {
        let table = self.table(TableId::Deliveries);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(delivery_key(push_id, connection_id)))
            .update_expression("ADD #attempts :one")
            .condition_expression("attribute_exists(#p) AND #acked = :false AND #attempts = :expected")
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_names("#attempts", name::ATTEMPTS)
            .expression_attribute_names("#p", attr::PUSH_ID)
            .expression_attribute_names("#acked", name::ACKED)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .or_store(table);
        match update {
            Ok(resp) => get_n(&resp.attributes.unwrap_or_default(), name::ATTEMPTS).map(Some),
            Err(StoreError::ConditionFailed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn ack_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<AckOutcome> {
        let table = self.table(TableId::Deliveries);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(delivery_key(push_id, connection_id)))
            .update_expression("SET #acked = :true")
            .condition_expression("attribute_exists(#p)")
            .expression_attribute_names("#acked", name::ACKED)
            .expression_attribute_names("#p", attr::PUSH_ID)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await
            .or_store(table);
        Ok(if applied(update)? { AckOutcome::Acked } else { AckOutcome::Unknown })
    }

    async fn get_batch(&self, batch_id: &str) -> StoreResult<Option<BatchState>> {
        let table = self.table(TableId::Deliveries);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(delivery_key(batch_id, BATCH)))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        let Some(item) = resp.item else { return Ok(None) };
        match get_s(&item, name::STATE)?.as_str() {
            DONE => Ok(Some(BatchState::Done)),
            PARTIAL => {
                let remaining = match item.get(REMAINING) {
                    Some(AttributeValue::L(ids)) => ids.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
                    _ => Vec::new(),
                };
                Ok(Some(BatchState::Remaining(remaining)))
            }
            other => Err(StoreError::Corrupt(format!("attribute \"state\" of batch {batch_id} has unknown value {other:?}"))),
        }
    }

    async fn save_batch(&self, batch_id: &str, state: &BatchState, expires_at: i64) -> StoreResult<()> {
        let table = self.table(TableId::Deliveries);
        let mut item = delivery_key(batch_id, BATCH);
        match state {
            BatchState::Done => item.insert(name::STATE.into(), s(DONE)),
            BatchState::Remaining(ids) => {
                item.insert(REMAINING.into(), AttributeValue::L(ids.iter().map(s).collect()));
                item.insert(name::STATE.into(), s(PARTIAL))
            }
        };
        item.insert(attr::EXPIRES_AT.into(), n(expires_at));
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            // A done batch stays done: a late pass of a retried copy never reopens it.
            .condition_expression("attribute_not_exists(#state) OR #state <> :done")
            .expression_attribute_names("#state", name::STATE)
            .expression_attribute_values(":done", s(DONE))
            .send()
            .await
            .or_store(table);
        applied(put).map(|_| ())
    }
}
