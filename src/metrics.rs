//! `/metrics` in Prometheus' text format (0.0.4). Requests are counted as they are answered;
//! everything else (events, group commits, sessions, actors, lag, the argon2 queue) is read
//! from where it already lives at scrape time, so that no second set of counters can drift.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

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

/// The HTTP metrics, filled in by `http`'s `track` as requests are answered.
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
    pub fn enter(&self) -> Handling<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        Handling(self)
    }

    /// Whether every answer now closes its connection (`drain`).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
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
pub struct Handling<'a>(&'a InFlight);

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
    /// The whole scrape, in Prometheus' text format: the counters kept here and `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut registry = Registry::default();
        registry.register(
            "tokenledger_http_requests",
            "HTTP requests answered, by method, route pattern and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "tokenledger_http_request_duration",
            "Time from the request's arrival to its answer, by method and route pattern",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
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

/// What a scrape reads from the running service.
#[derive(Debug)]
pub struct Snapshot {
    pub events_by_type: Vec<(&'static str, u64)>,
    pub batch_buckets: Vec<(usize, u64)>,
    pub batch_appends: u64,
    pub active_sessions: usize,
    pub live_actors: usize,
    /// `None` when the store could not say in time: the rest is still worth a scrape.
    pub lag: Option<i64>,
    pub argon2_queue: usize,
    pub ready: bool,
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
