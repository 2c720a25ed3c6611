//! `$disconnect` (both WebSocket APIs): deletes the connection and every subscription it holds.
//! Safe to run twice, and for a connection that was never stored.

use herald::apigw::{self, WsEvent, WsResponse};
use herald::metrics::{self, Counter};
use herald::store::{ConnectionStore, StoreError, SubscriptionStore};

#[derive(Debug, thiserror::Error)]
pub enum DisconnectError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("could not delete the connection: {0}")]
    Store(#[from] StoreError),
}

/// Deletes a connection and its subscriptions; also used when the management API answers 410.
pub async fn forget<S: ConnectionStore + SubscriptionStore + ?Sized>(store: &S, connection_id: &str) -> Result<usize, StoreError> {
    let removed = store.delete_connection_subscriptions(connection_id).await?;
    store.delete_connection(connection_id).await?;
    metrics::inc(Counter::ConnectionsClosed);
    metrics::add(Counter::SubscriptionsRemoved, removed as u64);
    Ok(removed)
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: ConnectionStore + SubscriptionStore + ?Sized>(store: &S, event: WsEvent) -> Result<WsResponse, DisconnectError> {
    let connection_id = apigw::connection_id(&event)?;
    tracing::Span::current().record("connection_id", connection_id);
    let subscriptions = forget(store, connection_id).await?;
    tracing::info!(subscriptions, status = event.request_context.disconnect_status_code, "disconnected");
    Ok(apigw::ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::{Api, Connection, Subscription};
    use herald::store::memory::MemoryStore;

    #[tokio::test]
    async fn deletes_the_connection_and_its_subscriptions_twice_safely() {
        let store = MemoryStore::new();
        let c = Connection::opened("c1", "u", Api::Notify, std::time::Duration::from_secs(3600));
        store.put_connection(&c).await.unwrap();
        store.subscribe(&Subscription::of(&c, "a")).await.unwrap();
        store.subscribe(&Subscription::of(&c, "b")).await.unwrap();
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        for _ in 0..2 {
            assert_eq!(handle(&store, e.clone()).await.unwrap().status_code, 200);
        }
        assert!(store.get_connection("c1").await.unwrap().is_none());
        assert!(store.event_subscribers("a", None, 10).await.unwrap().items.is_empty());
        assert!(store.user_event_subscribers("u", "b").await.unwrap().is_empty());
    }
}

herald::lambda_diagnostic!(DisconnectError);
