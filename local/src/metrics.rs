//! `GET /metrics`: Herald's metrics as Prometheus text — the counters and timings the handlers
//! keep ([`herald::metrics`], the same the Lambdas print as EMF), and what only herald-local
//! knows: live connections by API, subscriptions held, faults injected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header;
use axum::response::IntoResponse;
use herald::metrics::{self, Counter};

use crate::App;
use crate::faults::Fault;
use crate::functions::LocalApi;

/// Open WebSocket connections, by API.
#[derive(Debug, Default)]
pub struct LiveCounts([AtomicU64; 2]);

/// Counts one connection while it lives.
pub struct LiveGuard<'a>(&'a AtomicU64);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LiveCounts {
    fn cell(&self, api: LocalApi) -> &AtomicU64 {
        &self.0[match api {
            LocalApi::Notify => 0,
            LocalApi::Chat => 1,
        }]
    }

    pub fn open(&self, api: LocalApi) -> LiveGuard<'_> {
        let cell = self.cell(api);
        cell.fetch_add(1, Ordering::Relaxed);
        LiveGuard(cell)
    }

    pub fn get(&self, api: LocalApi) -> u64 {
        self.cell(api).load(Ordering::Relaxed)
    }
}

/// The Prometheus text of everything.
pub fn render(app: &App) -> String {
    let mut out = metrics::prometheus();
    let live = [LocalApi::Notify, LocalApi::Chat].map(|api| (Some(("api", api.api_id())), app.live.get(api)));
    metrics::write_gauge(&mut out, "herald_connections", "Open WebSocket connections, by API.", &live);
    let held = metrics::value(Counter::SubscriptionsAdded).saturating_sub(metrics::value(Counter::SubscriptionsRemoved));
    metrics::write_gauge(&mut out, "herald_subscriptions", "Subscriptions held (added minus removed since start).", &[(None, held)]);
    out.push_str("# HELP herald_faults_injected_total Faults injected (--faults), by kind.\n# TYPE herald_faults_injected_total counter\n");
    for fault in Fault::ALL {
        out.push_str(&format!("herald_faults_injected_total{{kind=\"{}\"}} {}\n", fault.name(), app.faults.count(fault)));
    }
    out
}

pub async fn handler(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&app)).into_response()
}
