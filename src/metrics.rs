//! `/metrics` in Prometheus' text format (0.0.4). Requests are counted as they are answered;
//! everything else (events, group commits, sessions, actors, lag, the argon2 queue) is read
//! from where it already lives at scrape time, so that no second set of counters can drift.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::catch_up;
use crate::http::{AppState, route_of};
use crate::store::StoreError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// HTTP's methods by name, any other as `other`: a client may invent methods without end,
/// and each would be a new series.
pub fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", Method::as_str)
}

fn latency_histogram() -> Histogram {
    // From a cached refresh (sub-millisecond) to an argon2 login on a loaded machine.
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The HTTP metrics, filled in by `track` as requests are answered.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub in_flight: InFlight,
}

/// The requests being handled, and whether the server is draining them before it stops.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    draining: AtomicBool,
}

impl InFlight {
    fn enter(&self) -> Handling<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        Handling(self)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// From now on every answer closes its connection; returns once nothing is in flight, or
    /// after `at_most`.
    pub async fn drain(&self, at_most: Duration) {
        self.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + at_most;
        while self.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One request in flight; it leaves the count when dropped, answered or abandoned.
struct Handling<'a>(&'a InFlight);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: InFlight::default(),
        }
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }
}

/// Counts every answer by its route (`http::route_of`) and status.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let method = method_label(req.method());
    let handling = metrics.as_ref().map(|m| m.in_flight.enter());
    let mut answered = next.call(req).await;
    drop(handling);
    if let Some(metrics) = metrics {
        // Draining before a stop: the client's next request goes to a new connection, which
        // another instance takes.
        if let Ok(response) = &mut answered
            && metrics.in_flight.draining.load(Ordering::Acquire)
        {
            response
                .response_mut()
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
        }
        let (route, status) = match &answered {
            Ok(response) => (route_of(response.request()), response.status().as_u16()),
            Err(error) => (
                "unmatched".to_owned(),
                error.as_response_error().status_code().as_u16(),
            ),
        };
        metrics.observe(method, route, status, started.elapsed().as_secs_f64());
    }
    answered
}

/// What a scrape reads from the running service.
#[derive(Debug)]
struct Snapshot {
    events_by_type: Vec<(&'static str, u64)>,
    batch_buckets: Vec<(usize, u64)>,
    batch_appends: u64,
    active_sessions: usize,
    live_actors: usize,
    /// `None` when the store could not say in time: the rest is still worth a scrape.
    lag: Option<i64>,
    argon2_queue: usize,
    ready: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut appended = encoder.encode_descriptor(
            "tokenledger_events_appended",
            "Events this instance appended to the log, by type",
            None,
            MetricType::Counter,
        )?;
        for (event_type, n) in &self.events_by_type {
            ConstCounter::new(*n)
                .encode(appended.encode_family(&TypeLabel { r#type: event_type })?)?;
        }

        // Per bucket (the encoder sums them up); the last bucket holds every larger batch.
        let mut buckets: Vec<(f64, u64)> = self
            .batch_buckets
            .iter()
            .map(|&(size, n)| (size as f64, n))
            .collect();
        if let Some(last) = buckets.last_mut() {
            last.0 = f64::INFINITY;
        }
        let batches = buckets.iter().map(|(_, n)| n).sum();
        encoder
            .encode_descriptor(
                "tokenledger_group_commit_batch_size",
                "Appends written together in one group commit",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(self.batch_appends as f64, batches, &buckets, None)?;

        let gauges: [(&str, &str, Option<i64>); 5] = [
            (
                "tokenledger_active_sessions",
                "Live sessions in the projection (expired ones are counted until recorded)",
                Some(self.active_sessions as i64),
            ),
            (
                "tokenledger_live_actors",
                "Session actors in memory, one per recently active user",
                Some(self.live_actors as i64),
            ),
            (
                "tokenledger_projection_lag",
                "Log positions the projections have not folded yet (absent when the store did not answer)",
                self.lag,
            ),
            (
                "tokenledger_argon2_queue_depth",
                "Password hashes and checks waiting for an argon2 thread",
                Some(self.argon2_queue as i64),
            ),
            (
                "tokenledger_ready",
                "1 while /_ready says 200: the projections caught up at start-up, and the database file is still the one opened",
                Some(i64::from(self.ready)),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                ConstGauge::new(value).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }
        Ok(())
    }
}

/// How long a scrape waits for the store to say the lag: well inside Prometheus' default
/// 10 s scrape timeout.
const LAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
    let store = state.store.as_ref();
    let progress = &state.catch_up;
    // Before the start-up rebuild ends, everything after its position is still to fold; after,
    // only what other writers appended since the catch-up reader's last pass.
    let lag = async {
        Ok::<i64, StoreError>(if progress.is_ready() {
            catch_up::unfolded(store, &state.projection, progress.position()).await? as i64
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
    let snapshot = Snapshot {
        events_by_type: stats.appended_by_type(),
        batch_buckets: stats.batches.buckets(),
        batch_appends: stats.batches.appends(),
        active_sessions: state
            .projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len(),
        live_actors: state.registry.live_actors(),
        lag,
        argon2_queue: state.passwords.queue_depth(),
        // As `/_ready` answers: a detached database file takes the instance out for good.
        ready: progress.is_ready() && store.detached().is_none(),
    };

    let mut registry = Registry::default();
    registry.register(
        "tokenledger_http_requests",
        "HTTP requests answered, by method, route pattern and status",
        state.metrics.requests.clone(),
    );
    registry.register_with_unit(
        "tokenledger_http_request_duration",
        "Time from the request's arrival to its answer, by method and route pattern",
        Unit::Seconds,
        state.metrics.latency.clone(),
    );
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(text)
}
