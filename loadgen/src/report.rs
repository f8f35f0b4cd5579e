//! `Report`: the merged `Stats` of a run, as one JSON object (`--json`) or a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Scenario;
use crate::stats::{Kind, KindStats, Stats};

/// What the run was.
pub struct RunInfo {
    pub scenario: Scenario,
    pub base_url: String,
    pub connections: usize,
    pub threads: usize,
    pub users: usize,
    pub warmup: Duration,
    /// From the end of the warm-up to the last user's last answer.
    pub measured: Duration,
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub base_url: String,
    pub connections: usize,
    pub threads: usize,
    pub users: usize,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    #[serde(flatten)]
    pub total: KindReport,
    pub relogins: u64,
    pub error_messages: BTreeMap<String, u64>,
    /// Per request kind, in the scenario's order.
    pub kinds: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
pub struct KindReport {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub success: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub unexpected_answers: u64,
    pub latency_ms: Latency,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

fn kinds_of(scenario: Scenario) -> &'static [Kind] {
    match scenario {
        Scenario::Health => &[Kind::Health],
        Scenario::Login => &[Kind::Login],
        Scenario::Refresh | Scenario::RefreshRotate => &[Kind::Refresh],
        Scenario::Mixed => &[Kind::Login, Kind::Refresh, Kind::Sessions, Kind::Logout],
        Scenario::Introspect => &[Kind::Introspect],
        Scenario::Me => &[Kind::Me],
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn millis(micros: u64) -> f64 {
    round3(micros as f64 / 1000.0)
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Latency {
            p50: millis(histogram.value_at_quantile(0.5)),
            p90: millis(histogram.value_at_quantile(0.9)),
            p99: millis(histogram.value_at_quantile(0.99)),
            p99_9: millis(histogram.value_at_quantile(0.999)),
            max: millis(histogram.max()),
            mean: round3(histogram.mean() / 1000.0),
        }
    }
}

impl KindReport {
    fn of(stats: &KindStats, seconds: f64) -> KindReport {
        KindReport {
            requests: stats.requests,
            requests_per_sec: if seconds > 0.0 {
                round3(stats.requests as f64 / seconds)
            } else {
                0.0
            },
            success: stats.success,
            errors: stats.errors(),
            errors_by_status: stats
                .by_status
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            transport_errors: stats.transport,
            unexpected_answers: stats.unexpected,
            latency_ms: Latency::of(&stats.latency),
        }
    }
}

impl Report {
    pub fn new(info: RunInfo, stats: &Stats) -> Report {
        let seconds = info.measured.as_secs_f64();
        let kinds = kinds_of(info.scenario)
            .iter()
            .map(|kind| {
                let report = KindReport::of(stats.kind(*kind), seconds);
                // A struct of numbers and string-keyed maps always serializes.
                let value = serde_json::to_value(report).unwrap_or_default();
                (kind.name().to_owned(), value)
            })
            .collect();
        Report {
            scenario: info.scenario.name(),
            base_url: info.base_url,
            connections: info.connections,
            threads: info.threads,
            users: info.users,
            warmup_secs: round3(info.warmup.as_secs_f64()),
            duration_secs: round3(seconds),
            total: KindReport::of(&stats.total(), seconds),
            relogins: stats.relogins,
            error_messages: stats.messages.clone(),
            kinds,
        }
    }

    pub fn table(&self) -> String {
        let t = &self.total;
        let l = &t.latency_ms;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "scenario      {}  ({})", self.scenario, self.base_url);
        let _ = writeln!(
            out,
            "connections   {} on {} threads, {} users",
            self.connections, self.threads, self.users
        );
        let _ = writeln!(
            out,
            "duration      {:.2} s measured, after {:.2} s warm-up",
            self.duration_secs, self.warmup_secs
        );
        let _ = writeln!(
            out,
            "requests      {}  ({:.1} req/s)",
            t.requests, t.requests_per_sec
        );
        let _ = writeln!(out, "success       {}", t.success);
        let _ = writeln!(
            out,
            "errors        {}  (transport {}, unexpected answers {}{})",
            t.errors,
            t.transport_errors,
            t.unexpected_answers,
            statuses(&t.errors_by_status)
        );
        let _ = writeln!(
            out,
            "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        if self.relogins > 0 {
            let _ = writeln!(
                out,
                "relogins      {} (unmeasured, after a 401)",
                self.relogins
            );
        }
        if self.kinds.len() > 1 {
            let _ = writeln!(
                out,
                "\n{:<10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
                "kind", "requests", "req/s", "success", "errors", "p50 ms", "p99 ms", "max ms"
            );
            for (name, kind) in &self.kinds {
                let number = |key: &str| kind[key].as_f64().unwrap_or(0.0);
                let latency = |key: &str| kind["latency_ms"][key].as_f64().unwrap_or(0.0);
                let _ = writeln!(
                    out,
                    "{:<10} {:>10} {:>10.1} {:>10} {:>8} {:>9.3} {:>9.3} {:>9.3}",
                    name,
                    number("requests"),
                    number("requests_per_sec"),
                    number("success"),
                    number("errors"),
                    latency("p50"),
                    latency("p99"),
                    latency("max"),
                );
            }
        }
        if !self.error_messages.is_empty() {
            let _ = writeln!(out, "\nerror messages:");
            for (message, count) in &self.error_messages {
                let _ = writeln!(out, "  {count:>8} × {message}");
            }
        }
        out
    }
}

fn statuses(by_status: &BTreeMap<String, u64>) -> String {
    by_status
        .iter()
        .map(|(status, count)| format!(", {status}: {count}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_the_documented_fields() {
        let mut stats = Stats::default();
        stats.answered(Kind::Login, Duration::from_millis(2));
        stats.success(Kind::Login);
        stats.answered(Kind::Refresh, Duration::from_millis(1));
        stats.failed_status(Kind::Refresh, 401, || "401 Invalid refresh token".into());
        let info = RunInfo {
            scenario: Scenario::Mixed,
            base_url: "http://127.0.0.1:1337".into(),
            connections: 4,
            threads: 2,
            users: 4,
            warmup: Duration::from_secs(0),
            measured: Duration::from_secs(2),
        };
        let report = Report::new(info, &stats);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["requests"], 2);
        assert_eq!(json["success"], 1);
        assert_eq!(json["errors"], 1);
        assert_eq!(json["errors_by_status"]["401"], 1);
        assert_eq!(json["requests_per_sec"], 1.0);
        assert_eq!(json["kinds"]["login"]["latency_ms"]["p50"], 2.0);
        let kinds: Vec<&String> = json["kinds"].as_object().expect("kinds").keys().collect();
        assert_eq!(kinds, ["login", "refresh", "sessions", "logout"]);
        assert!(report.table().contains("401: 1"));
    }
}
