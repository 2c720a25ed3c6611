//! Mailings (and events kept for a later or paged send): one item per mailing (key
//! `mailing_id`). What a mailing is, fixed at creation, is one JSON attribute (`definition`);
//! where it stands is top-level attributes that conditional writes and atomic `ADD`s change:
//! `status`, `last_run`, `expanded`, `created_jobs`, `done_jobs`, and one `c.<channel>.<status>`
//! number per count. Mailings carry `kind` = `mailing` and are listed through `by_kind` (one
//! partition ordered by `created_key`: the admins' campaigns are few); kept events carry no
//! `kind`, so no index holds them, and a TTL.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};

use super::DynamoStore;
use super::error::{CONDITION_FAILED, Cancelled, OrStore, applied, map_err};
use super::item::ToItem;
use super::item::{Item, get_n, get_opt_s, get_s, key, n, name, s};
use super::query::backoff;
use super::query::{decode_key_cursor, encode_cursor, limit_i32};
use crate::domain::{Mailing, MailingKind, MailingStatus, Notification, NotificationStatus, epoch_secs, now, rfc3339};
use crate::store::tables::{BY_KIND, TableId, attr};
use crate::store::{MailingStore, Page, StoreError, StoreResult};

/// The `kind` of a listed mailing (the `by_kind` index's one partition).
const MAILING_KIND: &str = "mailing";
const DEFINITION: &str = "definition";
const LAST_RUN: &str = "last_run";
const EXPANDED: &str = "expanded";
const CREATED_JOBS: &str = "created_jobs";
const DONE_JOBS: &str = "done_jobs";
/// The prefix of a count's attribute (`c.email.sent`).
const COUNT_PREFIX: &str = "c.";

fn to_item(m: &Mailing) -> StoreResult<Item> {
    let definition = serde_json::to_string(m).map_err(|e| StoreError::Backend(Box::new(e)))?;
    let mut item = key([
        (attr::MAILING_ID, s(m.id.as_str())),
        (attr::CREATED_KEY, s(m.created_key())),
        (DEFINITION, s(definition)),
        (name::STATUS, s(m.status.as_str())),
        (EXPANDED, AttributeValue::Bool(m.expanded)),
        (CREATED_JOBS, n(m.created_jobs)),
        (DONE_JOBS, n(m.done_jobs)),
        (name::UPDATED_AT, s(m.updated_at.as_str())),
    ]);
    if m.kind == MailingKind::Mailing {
        item.insert(attr::KIND.into(), s(MAILING_KIND));
    }
    if let Some(run) = &m.last_run {
        item.insert(LAST_RUN.into(), s(run.as_str()));
    }
    if m.expires_at > 0 {
        item.insert(attr::EXPIRES_AT.into(), n(m.expires_at));
    }
    for (k, v) in &m.counts {
        item.insert(format!("{COUNT_PREFIX}{k}"), n(*v));
    }
    Ok(item)
}

fn from_item(item: &Item) -> StoreResult<Mailing> {
    let mut m: Mailing = serde_json::from_str(&get_s(item, DEFINITION)?)
        .map_err(|e| StoreError::Corrupt(format!("a mailing's definition does not parse: {e}")))?;
    let status = get_s(item, name::STATUS)?;
    m.status = MailingStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("unknown mailing status {status:?}")))?;
    m.last_run = get_opt_s(item, LAST_RUN)?;
    m.expanded = matches!(item.get(EXPANDED), Some(AttributeValue::Bool(true)));
    m.created_jobs = get_n(item, CREATED_JOBS)?;
    m.done_jobs = get_n(item, DONE_JOBS)?;
    m.updated_at = get_s(item, name::UPDATED_AT)?;
    m.counts = item
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(COUNT_PREFIX)?.to_string(), v)))
        .map(|(k, v)| match v {
            AttributeValue::N(text) => match text.parse() {
                Ok(v) => Ok((k, v)),
                Err(_) => Err(StoreError::Corrupt(format!("count {k} is {text:?}"))),
            },
            _ => Err(StoreError::Corrupt(format!("count {k} is not a number"))),
        })
        .collect::<StoreResult<_>>()?;
    Ok(m)
}

fn live(m: &Mailing) -> bool {
    m.expires_at <= 0 || m.expires_at > crate::domain::epoch_secs(now())
}

impl DynamoStore {
    fn mailing_key(id: &str) -> Item {
        key([(attr::MAILING_ID, s(id))])
    }

    /// Runs a job transaction (a history record and its mailing's counters), retrying conflicts;
    /// `Err(cancelled)` when DynamoDB cancelled it for a condition.
    async fn job_transaction(&self, items: Vec<TransactWriteItem>) -> StoreResult<Result<(), Cancelled>> {
        let table = self.table(TableId::Mailings);
        let mut round = 0;
        loop {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let Some(cancelled) = Cancelled::of(&err) else { return Err(map_err(table, err)) };
            if cancelled.conflict() && round < 5 {
                round += 1;
                backoff(round).await;
                continue;
            }
            if cancelled.conflict() {
                return Err(map_err(table, err));
            }
            return Ok(Err(cancelled));
        }
    }

    /// The counters' update of a job: `ADD` of the counts (and of `done_jobs`/`created_jobs`
    /// when `run_counter` names one, then only while `run` is the last run).
    fn counts_update(
        &self,
        mailing_id: &str,
        run: &str,
        run_counter: Option<&str>,
        counts: &[(String, i64)],
    ) -> StoreResult<Option<Update>> {
        let mut parts = Vec::new();
        let mut update = Update::builder().table_name(self.table(TableId::Mailings)).set_key(Some(Self::mailing_key(mailing_id)));
        if let Some(counter) = run_counter {
            parts.push("#rc :one".to_string());
            update = update
                .expression_attribute_names("#rc", counter)
                .expression_attribute_values(":one", n(1))
                .condition_expression("#run = :run")
                .expression_attribute_names("#run", LAST_RUN)
                .expression_attribute_values(":run", s(run));
        } else {
            update = update.condition_expression("attribute_exists(#k)").expression_attribute_names("#k", attr::MAILING_ID);
        }
        for (i, (k, v)) in counts.iter().enumerate() {
            parts.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), format!("{COUNT_PREFIX}{k}"))
                .expression_attribute_values(format!(":c{i}"), n(*v));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(update.update_expression(format!("ADD {}", parts.join(", "))).build()?))
    }
}

#[async_trait]
impl MailingStore for DynamoStore {
    async fn create_mailing(&self, mailing: &Mailing) -> StoreResult<bool> {
        let table = self.table(TableId::Mailings);
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(to_item(mailing)?))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::MAILING_ID);
        if applied(put.send().await.or_store(table))? {
            return Ok(true);
        }
        // The SDK retried a write whose answer was lost: it is ours.
        Ok(self.get_mailing(&mailing.id).await?.as_ref() == Some(mailing))
    }

    async fn get_mailing(&self, id: &str) -> StoreResult<Option<Mailing>> {
        let table = self.table(TableId::Mailings);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        Ok(resp.item.as_ref().map(from_item).transpose()?.filter(live))
    }

    async fn list_mailings(&self, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Mailing>> {
        if limit == 0 {
            return Err(StoreError::Invalid("a page limit of 0".into()));
        }
        let table = self.table(TableId::Mailings);
        let start: Option<Item> = cursor
            .map(|c| decode_key_cursor(c, &[attr::MAILING_ID, attr::KIND, attr::CREATED_KEY]))
            .transpose()?
            .map(|plain| plain.into_iter().map(|(k, v)| (k, s(v))).collect());
        if start.as_ref().is_some_and(|k| k.get(attr::KIND) != Some(&s(MAILING_KIND))) {
            return Err(StoreError::Invalid("page cursor of another query".into()));
        }
        let resp = self
            .query_eq(TableId::Mailings, Some(BY_KIND), attr::KIND, MAILING_KIND)
            .scan_index_forward(false)
            .limit(limit_i32(limit))
            .set_exclusive_start_key(start)
            .send()
            .await
            .or_store(table)?;
        let items = resp.items().iter().map(from_item).collect::<StoreResult<Vec<_>>>()?;
        let next = match resp.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(encode_cursor(&k)?),
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn set_mailing_status(&self, id: &str, from: &[MailingStatus], to: MailingStatus) -> StoreResult<bool> {
        let table = self.table(TableId::Mailings);
        let names: Vec<String> = (0..from.len()).map(|i| format!(":f{i}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .update_expression("SET #st = :to, #up = :up")
            .condition_expression(format!("attribute_exists(#k) AND #st IN ({})", names.join(", ")))
            .expression_attribute_names("#k", attr::MAILING_ID)
            .expression_attribute_names("#st", name::STATUS)
            .expression_attribute_names("#up", name::UPDATED_AT)
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":up", s(rfc3339(now())));
        if from.is_empty() {
            return Ok(false);
        }
        for (n, st) in names.iter().zip(from) {
            update = update.expression_attribute_values(n.as_str(), s(st.as_str()));
        }
        applied(update.send().await.or_store(table))
    }

    async fn start_run(&self, id: &str, run: &str) -> StoreResult<bool> {
        let table = self.table(TableId::Mailings);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .update_expression("SET #st = :sending, #run = :run, #ex = :no, #cj = :zero, #dj = :zero, #up = :up")
            .condition_expression("attribute_exists(#k) AND #st IN (:scheduled, :sending) AND (attribute_not_exists(#run) OR #run < :run)")
            .expression_attribute_names("#k", attr::MAILING_ID)
            .expression_attribute_names("#st", name::STATUS)
            .expression_attribute_names("#run", LAST_RUN)
            .expression_attribute_names("#ex", EXPANDED)
            .expression_attribute_names("#cj", CREATED_JOBS)
            .expression_attribute_names("#dj", DONE_JOBS)
            .expression_attribute_names("#up", name::UPDATED_AT)
            .expression_attribute_values(":sending", s(MailingStatus::Sending.as_str()))
            .expression_attribute_values(":scheduled", s(MailingStatus::Scheduled.as_str()))
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":up", s(rfc3339(now())));
        applied(update.send().await.or_store(table))
    }

    async fn add_to_counts(&self, id: &str, run: &str, created: i64, done: i64, counts: &[(String, i64)]) -> StoreResult<()> {
        let table = self.table(TableId::Mailings);
        if created != 0 || done != 0 {
            // The run's counters, only while it is the last run.
            let update = self
                .client
                .update_item()
                .table_name(table)
                .set_key(Some(Self::mailing_key(id)))
                .update_expression("ADD #cj :c, #dj :d")
                .condition_expression("#run = :run")
                .expression_attribute_names("#cj", CREATED_JOBS)
                .expression_attribute_names("#dj", DONE_JOBS)
                .expression_attribute_names("#run", LAST_RUN)
                .expression_attribute_values(":c", n(created))
                .expression_attribute_values(":d", n(done))
                .expression_attribute_values(":run", s(run));
            applied(update.send().await.or_store(table))?;
        }
        if counts.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", attr::MAILING_ID)
            .return_values(ReturnValue::None);
        for (i, (k, v)) in counts.iter().enumerate() {
            parts.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), format!("{COUNT_PREFIX}{k}"))
                .expression_attribute_values(format!(":c{i}"), n(*v));
        }
        applied(update.update_expression(format!("ADD {}", parts.join(", "))).send().await.or_store(table))?;
        Ok(())
    }

    async fn mark_expanded(&self, id: &str, run: &str) -> StoreResult<()> {
        let table = self.table(TableId::Mailings);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .update_expression("SET #ex = :yes")
            .condition_expression("#run = :run")
            .expression_attribute_names("#ex", EXPANDED)
            .expression_attribute_names("#run", LAST_RUN)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":run", s(run));
        applied(update.send().await.or_store(table))?;
        Ok(())
    }

    async fn create_job(&self, record: &Notification, mailing_id: &str, run: &str) -> StoreResult<bool> {
        let put = Put::builder()
            .table_name(self.table(TableId::Notifications))
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(#k) OR #e < :now")
            .expression_attribute_names("#k", attr::NOTIFICATION_ID)
            .expression_attribute_names("#e", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_secs(now())))
            .build()?;
        let Some(count) = self.counts_update(mailing_id, run, Some(CREATED_JOBS), &[])? else { return Ok(false) };
        let items = vec![TransactWriteItem::builder().put(put).build(), TransactWriteItem::builder().update(count).build()];
        match self.job_transaction(items).await? {
            Ok(()) => Ok(true),
            // The SDK retried a transaction whose answer was lost: it is ours.
            Err(_) if crate::store::NotificationStore::get_notification(self, &record.id).await?.as_ref() == Some(record) => Ok(true),
            Err(c) if c.failed(0, CONDITION_FAILED) || c.failed(1, CONDITION_FAILED) => Ok(false),
            Err(_) => Err(StoreError::ConditionFailed(format!("job {} not created", record.id))),
        }
    }

    async fn record_job(
        &self,
        record: &Notification,
        from: NotificationStatus,
        mailing_id: &str,
        run: &str,
        done: bool,
        counts: &[(String, i64)],
    ) -> StoreResult<bool> {
        let put = || {
            Put::builder()
                .table_name(self.table(TableId::Notifications))
                .set_item(Some(record.to_item()))
                .condition_expression("#st = :from")
                .expression_attribute_names("#st", name::STATUS)
                .expression_attribute_values(":from", s(from.as_str()))
                .build()
        };
        // Counted in the run while it is the last; a stale run's job only in the counts.
        for run_counter in [done.then_some(DONE_JOBS), None] {
            let mut items = vec![TransactWriteItem::builder().put(put()?).build()];
            if let Some(update) = self.counts_update(mailing_id, run, run_counter, counts)? {
                items.push(TransactWriteItem::builder().update(update).build());
            }
            match self.job_transaction(items).await? {
                Ok(()) => return Ok(true),
                Err(_) if crate::store::NotificationStore::get_notification(self, &record.id).await?.as_ref() == Some(record) => {
                    return Ok(true);
                }
                Err(c) if c.failed(0, CONDITION_FAILED) => return Ok(false),
                Err(c) if c.failed(1, CONDITION_FAILED) && run_counter.is_some() => continue,
                // The mailing is gone: the record alone.
                Err(c) if c.failed(1, CONDITION_FAILED) => {
                    let table = self.table(TableId::Notifications);
                    let put = self
                        .client
                        .put_item()
                        .table_name(table)
                        .set_item(Some(record.to_item()))
                        .condition_expression("#st = :from")
                        .expression_attribute_names("#st", name::STATUS)
                        .expression_attribute_values(":from", s(from.as_str()));
                    return applied(put.send().await.or_store(table));
                }
                Err(_) => return Err(StoreError::ConditionFailed(format!("job {} not recorded", record.id))),
            }
        }
        Ok(false)
    }

    async fn finish_run(&self, id: &str, run: &str, to: MailingStatus) -> StoreResult<bool> {
        let table = self.table(TableId::Mailings);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mailing_key(id)))
            .update_expression("SET #st = :to, #up = :up")
            .condition_expression("#st = :sending AND #run = :run AND #ex = :yes AND #dj >= #cj")
            .expression_attribute_names("#st", name::STATUS)
            .expression_attribute_names("#run", LAST_RUN)
            .expression_attribute_names("#ex", EXPANDED)
            .expression_attribute_names("#cj", CREATED_JOBS)
            .expression_attribute_names("#dj", DONE_JOBS)
            .expression_attribute_names("#up", name::UPDATED_AT)
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":sending", s(MailingStatus::Sending.as_str()))
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":up", s(rfc3339(now())));
        applied(update.send().await.or_store(table))
    }
}
