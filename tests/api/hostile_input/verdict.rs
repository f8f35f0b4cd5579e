//! What the server owes each case, and the tally of a run: answers by status, the failures
//! with the exact bytes that caused them, the slowest answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::generate::{Case, Class};
use super::wire::{Outcome, Response, escape};

/// Failures kept in full for the report; all are counted.
const KEPT: usize = 25;

/// Whether an answer carries Strapi's error body for its status; what is wrong otherwise.
fn strapi_error(response: &Response) -> Result<(), String> {
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|e| format!("the error body is not JSON ({e})"))?;
    let error = &body["error"];
    let shaped = body.get("data") == Some(&Value::Null)
        && error["status"] == response.status
        && error["name"].as_str().is_some_and(|n| n.ends_with("Error"))
        && error["message"].is_string()
        && error["details"].is_object();
    let typed = response
        .headers
        .iter()
        .any(|(name, value)| name == "content-type" && value.starts_with(b"application/json"));
    match (shaped, typed) {
        (true, true) => Ok(()),
        (false, _) => Err("not Strapi's error body for this status".into()),
        (true, false) => Err("Strapi's error body, but not served as application/json".into()),
    }
}

fn content_type(response: &Response) -> &[u8] {
    response
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map_or(&[][..], |(_, value)| value.as_slice())
}

/// Never a 5xx; every 4xx in Strapi's body, except HTTP's own refusals of what is not HTTP
/// (they leave before any route, without a body); a 2xx, where the input happened to be
/// valid, in JSON where it says JSON; and an answer at all, unless the request broke HTTP or the body limit.
pub fn judge(case: &Case, outcome: &Outcome) -> Result<(), String> {
    let response = match outcome {
        Outcome::Hung => return Err("no answer in time".into()),
        Outcome::Closed(why) if case.class == Class::Http => {
            return Err(format!("the connection ended without an answer ({why})"));
        }
        Outcome::Closed(_) => return Ok(()),
        Outcome::Answer(response) => response,
    };
    match response.status {
        500.. => Err(format!("a {} answer", response.status)),
        400..500 if case.head => Ok(()),
        400..500 if case.class == Class::Protocol && response.body.is_empty() => Ok(()),
        400..500 => strapi_error(response),
        200..300 if case.head || response.status == 204 => Ok(()),
        // The API answers JSON; the operators' pages and `/metrics` say what they are.
        200..300 if !content_type(response).starts_with(b"application/json") => {
            match content_type(response) {
                b"" => Err("a 2xx without a content type".into()),
                _ => Ok(()),
            }
        }
        200..300 => serde_json::from_slice::<Value>(&response.body)
            .map(drop)
            .map_err(|_| "a 2xx whose body is not JSON".into()),
        other => Err(format!("an unexpected {other}")),
    }
}

pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answer(r) => format!("{} {}", r.status, escape(&r.body, 400)),
        Outcome::Closed(why) => format!("closed: {why}"),
        Outcome::Hung => "no answer".into(),
    }
}

pub struct Failure {
    /// `#index` of a generated case, or the name of a pinned case or slow client.
    pub case: String,
    pub what: String,
    pub problem: String,
    pub request: Vec<u8>,
    /// The request before it on the same kept-alive connection, if any.
    pub previous: Option<Vec<u8>>,
    pub answer: String,
}

#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    /// 4xx answers of HTTP's own layer, without a body, by status.
    pub bare_refusals: BTreeMap<u16, u64>,
    /// 2xx answers by kind of case: the inputs that happened to be valid.
    pub successes: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    pub failure_count: u64,
    /// The slowest answer to a generated or pinned case: time, case.
    pub slowest: Option<(Duration, String)>,
    /// Requests sent again on a new connection (see `Connection::exchange`).
    pub retries: u64,
}

impl Tally {
    pub fn record(
        &mut self,
        label: String,
        case: &Case,
        outcome: &Outcome,
        took: Duration,
        previous: Option<&[u8]>,
    ) {
        self.requests += 1;
        let status = match outcome {
            Outcome::Answer(response) => {
                if case.class == Class::Protocol
                    && response.status >= 400
                    && response.body.is_empty()
                {
                    *self.bare_refusals.entry(response.status).or_default() += 1;
                }
                if (200..300).contains(&response.status) {
                    *self.successes.entry(case.what.clone()).or_default() += 1;
                }
                response.status.to_string()
            }
            Outcome::Closed(_) => "closed".into(),
            Outcome::Hung => "hung".into(),
        };
        *self.by_status.entry(status).or_default() += 1;
        if !case.what.starts_with("slow") && self.slowest.as_ref().is_none_or(|(t, _)| took > *t) {
            self.slowest = Some((took, format!("{label} ({})", case.what)));
        }
        if let Err(problem) = judge(case, outcome) {
            self.fail(Failure {
                case: label,
                what: case.what.clone(),
                problem,
                request: case.bytes.clone(),
                previous: previous.map(<[u8]>::to_vec),
                answer: describe(outcome),
            });
        }
    }

    pub fn fail(&mut self, failure: Failure) {
        self.failure_count += 1;
        if self.failures.len() < KEPT {
            self.failures.push(failure);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.bare_refusals {
            *self.bare_refusals.entry(k).or_default() += v;
        }
        for (k, v) in other.successes {
            *self.successes.entry(k).or_default() += v;
        }
        self.failure_count += other.failure_count;
        self.retries += other.retries;
        if let Some((took, case)) = other.slowest
            && self.slowest.as_ref().is_none_or(|(t, _)| took > *t)
        {
            self.slowest = Some((took, case));
        }
        let room = KEPT.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }

    pub fn server_errors(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(k, _)| k.starts_with('5'))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn print(&self) {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!(
            "  by status: {}\n  5xx: {}; failures: {}; sent again on a new connection: {}\n  \
             HTTP-level refusals without a body: {:?}\n  2xx by kind: {:?}\n  slowest answer: {:?}",
            statuses.join(", "),
            self.server_errors(),
            self.failure_count,
            self.retries,
            self.bare_refusals,
            self.successes,
            self.slowest,
        );
        for failure in &self.failures {
            println!(
                "  FAILED {} ({}): {}\n    request: b\"{}\"\n    answer: {}",
                failure.case,
                failure.what,
                failure.problem,
                escape(&failure.request, 1500),
                failure.answer
            );
            if let Some(previous) = &failure.previous {
                println!(
                    "    after, on the same connection: b\"{}\"",
                    escape(previous, 1500)
                );
            }
        }
    }
}
