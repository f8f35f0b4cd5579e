//! What operators and orchestrators ask: is it serving (`/_health`), has it caught up with
//! the log (`/_ready`), and its metrics (`/metrics`, Prometheus' text format).

use actix_web::{HttpResponse, web};

use super::AppState;
use super::errors::{self, ApiError};
use crate::catch_up;
use crate::metrics::Snapshot;
use crate::store::StoreError;

/// How long a scrape waits for the store to say the lag: well inside Prometheus' default
/// 10 s scrape timeout.
const LAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// 204 when serving (HEAD too, like every GET route, for load balancers that probe with it).
#[utoipa::path(
    get,
    path = "/_health",
    tag = "health",
    responses((status = 204, description = "The service is serving"))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
}

/// 200 once the start-up rebuild of the projections has caught up with the log; 503 before,
/// when every route that reads the projections answers 503 too (`until_ready`), and for good
/// once the database file was deleted or replaced under the server: every write is refused
/// then, and only a restart helps, which an orchestrator can tell from this.
#[utoipa::path(
    get,
    path = "/_ready",
    tag = "health",
    responses(
        (status = 200, description = "The projections have caught up with the log", body = Ready),
        (status = 503, description = "Still folding the log at start-up (`Retry-After: 1`), or the database file was deleted or replaced (until a restart)", body = errors::ErrorBody),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.app.store.detached().is_some() {
        // The path is the operator's business (it is in the log), not a client's.
        Err(ApiError {
            message: "The database file was deleted or replaced: restart the service".into(),
            ..ApiError::unavailable()
        })
    } else if state.catch_up.is_ready() {
        Ok(HttpResponse::Ok().json(Ready { status: "ready" }))
    } else {
        Err(ApiError::starting())
    }
}

/// What a scrape reads from where it lives: the store's counters, the projection, the
/// actors, the password queue, and the lag (given up on after `LAG_TIMEOUT`).
async fn snapshot(state: &AppState) -> Snapshot {
    let store = state.app.store.as_ref();
    let progress = &state.catch_up;
    // Before the start-up rebuild ends, everything after its position is still to fold; after,
    // only what other writers appended since the catch-up reader's last pass.
    let lag = async {
        Ok::<i64, StoreError>(if progress.is_ready() {
            catch_up::unfolded(store, &state.app.projection, progress.position()).await? as i64
        } else {
            (store.head().await? - progress.position()).max(0)
        })
    };
    // The counters in memory are served whatever the store does: a scrape that fails or
    // outlasts Prometheus' timeout while the database is down would lose them when they
    // matter most.
    let lag = match tokio::time::timeout(LAG_TIMEOUT, lag).await {
        Ok(Ok(lag)) => Some(lag),
        Ok(Err(error)) => {
            tracing::warn!(%error, "/metrics: the projection lag could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("/metrics: the projection lag took over {LAG_TIMEOUT:?} to read");
            None
        }
    };
    let stats = store.stats();
    Snapshot {
        events_by_type: stats.appended_by_type(),
        batch_buckets: stats.batches.buckets(),
        batch_appends: stats.batches.appends(),
        active_sessions: state.app.projection().len(),
        live_actors: state.app.registry.live_actors(),
        lag,
        argon2_queue: state.app.passwords.queue_depth(),
        // As `/_ready` answers: a detached database file takes the instance out for good.
        ready: progress.is_ready() && store.detached().is_none(),
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus' text format 0.0.4 (see the README's Operations)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    )
)]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = snapshot(&state).await;
    let text = state.metrics.render(snapshot);
    HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(text)
}
