//! `loadgen`: drives the HTTP API of tokenledger, or of any server with the same API (Strapi 5
//! with `@redon2inc/strapi-plugin-refresh-token`), and reports throughput and latency.
//!
//! Each virtual user owns one keep-alive HTTP/1.1 connection and loops over its scenario
//! (see `scenario.rs`) until the window closes; users record into their own histograms, which
//! are merged at the end. Setup (registering users, first logins) is never measured; requests
//! started during the warm-up are not recorded.
//!
//! # Output
//!
//! A table by default. With `--json`, exactly one JSON object on stdout (progress and
//! diagnostics go to stderr):
//!
//! | field | meaning |
//! |---|---|
//! | `scenario` | `health`, `login`, `refresh`, `refresh-rotate`, `mixed`, `introspect` or `me` |
//! | `base_url`, `connections`, `threads`, `users` | the run's settings (`users` is 0 for `health`) |
//! | `warmup_secs` | the warm-up, not recorded |
//! | `duration_secs` | measured: from the end of the warm-up to the last answer |
//! | `requests` | requests started after the warm-up, answered or not |
//! | `requests_per_sec` | `requests / duration_secs` |
//! | `success` | 2xx answers that carried what the scenario needs |
//! | `errors` | `requests - success` = the sum of the next three |
//! | `errors_by_status` | `{"401": n, …}`: non-2xx answers by HTTP status |
//! | `transport_errors` | requests without an answer (refused or closed connection, …) |
//! | `unexpected_answers` | 2xx answers lacking a needed field (e.g. `refreshToken`) |
//! | `latency_ms` | `{p50, p90, p99, p99_9, max, mean}` in milliseconds, of answered requests (µs precision) |
//! | `relogins` | unmeasured logins of users whose session was gone (a 401 on refresh) |
//! | `error_messages` | `{"401 Invalid refresh token": n, …}`: up to 32 distinct messages |
//! | `kinds` | per request kind in the scenario (`health`, `login`, `refresh`, `sessions`, `logout`, `introspect`, `me`): `requests`, `requests_per_sec`, `success`, `errors`, `errors_by_status`, `transport_errors`, `unexpected_answers`, `latency_ms` |
//!
//! The exit code is 0 whenever the run happened, errors or not (the caller reads the counts);
//! it is non-zero when the arguments are bad (2) or setup fails (1).

#![forbid(unsafe_code)]

mod answers;
mod connection;
mod report;
mod scenario;
mod setup;
mod stats;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hyper::header::HeaderValue;
use tokio::task::JoinSet;

use report::{Report, RunInfo};
use scenario::{Scenario, VirtualUser, Window};
use stats::Stats;
use target::Target;

const SERVER_CONFIG: &str = "\
Server-side configuration the scenarios need (tokenledger's environment):
  every scenario but health   LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off REFRESH_RATE_LIMIT=off
                              (the default limits answer 429 after 10 logins a minute)
  refresh                     REFRESH_TOKEN_ROTATION=false (the default); a token in
                              the answer is used anyway, so a rotating server works too
  refresh-rotate              REFRESH_TOKEN_ROTATION=true
  login, refresh*, mixed      COOKIE_RESPONSE=false (the default): tokens in the body
  introspect                  INTROSPECTION_CLIENTS=<id>:<secret>, and the same
                              --introspection-client <id>:<secret> here

Example:
  DATA_DIR=$(mktemp -d) LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off REFRESH_RATE_LIMIT=off PORT=18080 \\
    JWT_SECRET=... REFRESH_JWT_SECRET=... target/release/tokenledger &
  loadgen --base-url http://127.0.0.1:18080 --scenario refresh --connections 64 --duration 10s

With --json, stdout is exactly one JSON object (fields documented in the crate docs:
scenario, connections, duration_secs, requests, requests_per_sec, success, errors,
errors_by_status, transport_errors, unexpected_answers, latency_ms{p50,p90,p99,p99_9,max,mean},
relogins, error_messages, kinds{<kind>: {...}}). The exit code is 0 when the run happened,
whatever the errors; 1 when setup fails; 2 for bad arguments.";

/// Drives the login and refresh-token API of tokenledger (or Strapi with the refresh-token
/// plugin) and reports throughput and latency.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, after_long_help = SERVER_CONFIG)]
struct Args {
    /// What each virtual user loops over.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// The server: http://host[:port][/prefix].
    #[arg(long, default_value = "http://127.0.0.1:1337")]
    base_url: String,
    /// Virtual users, one keep-alive connection each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// How long to measure, after the warm-up (`10s`, `1m`, …).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    duration: Duration,
    /// How long to run before measuring (`0s` for none).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Users to register first; virtual user i logs in as user i % N [default: --connections].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: Option<u32>,
    /// Usernames are `{prefix}-{i}` (emails `{prefix}-{i}@loadgen.test`); reuse a prefix to
    /// reuse users [default: a new `lg…` prefix each run].
    #[arg(long, value_parser = user_prefix)]
    user_prefix: Option<String>,
    /// The users' password.
    #[arg(long, default_value = "loadgen-password-1")]
    password: String,
    /// Runtime worker threads [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// `introspect`: the service credential, `client_id:client_secret`, one of the server's
    /// INTROSPECTION_CLIENTS; sent with HTTP Basic.
    #[arg(long, value_parser = service_credential)]
    introspection_client: Option<HeaderValue>,
}

fn service_credential(text: &str) -> Result<HeaderValue, String> {
    match text.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            answers::basic(text).ok_or_else(|| "not a header-safe credential".into())
        }
        _ => Err("use client_id:client_secret".into()),
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".into()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

fn user_prefix(text: &str) -> Result<String, String> {
    let fits = !text.is_empty()
        && text.len() <= 200
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if fits {
        Ok(text.to_owned())
    } else {
        Err("use 1 to 200 of a-z, A-Z, 0-9, '-', '_', '.'".into())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenario == Scenario::Introspect && args.introspection_client.is_none() {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--scenario introspect needs --introspection-client <client_id:client_secret>",
            )
            .exit();
    }
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |n| n as usize,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(run(&args, threads))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    if report.total.errors > 0 {
        eprintln!(
            "loadgen: {} of {} requests failed",
            report.total.errors, report.total.requests
        );
    }
    if let Some(limited) = report.total.errors_by_status.get("429") {
        // The counts stand, but a rate-limited run measures the limiter, not the service.
        eprintln!(
            "loadgen: {limited} answers were 429 Too Many Requests: the server's rate limits are on \
             (start tokenledger with LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off REFRESH_RATE_LIMIT=off)"
        );
    }
    Ok(())
}

async fn run(args: &Args, threads: usize) -> anyhow::Result<Report> {
    let scenario = args.scenario;
    let connections = args.connections as usize;
    let target = Arc::new(Target::resolve(&args.base_url).await?);
    eprintln!(
        "loadgen: {} against {} ({}), {connections} connections on {threads} threads",
        scenario.name(),
        args.base_url,
        target.addr
    );

    connection::Connection::new(target.addr)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}; is the server running?", target.addr))?;

    let users = if scenario.needs_users() {
        let count = args.users.map_or(connections, |n| n as usize);
        let prefix = args.user_prefix.clone().unwrap_or_else(setup::fresh_prefix);
        let users = Arc::new(setup::users(&prefix, count, &args.password));
        let started = Instant::now();
        let registered = setup::register_all(&target, &users, connections)
            .await
            .context("setup: registering users")?;
        eprintln!(
            "loadgen: users {prefix}-0..{}: {} registered, {} already there ({:.1} s)",
            count - 1,
            registered.created,
            registered.existing,
            started.elapsed().as_secs_f64()
        );
        users
    } else {
        Arc::new(Vec::new())
    };

    let progress = Arc::new(AtomicU64::new(0));
    let mut preparing = JoinSet::new();
    for index in 0..connections {
        preparing.spawn(VirtualUser::prepare(
            scenario,
            target.clone(),
            users.clone(),
            index,
            progress.clone(),
            args.introspection_client.clone(),
        ));
    }
    let mut virtual_users = Vec::with_capacity(connections);
    while let Some(prepared) = preparing.join_next().await {
        virtual_users.push(
            prepared
                .context("a setup task panicked")?
                .context("setup")?,
        );
    }

    let now = Instant::now();
    let window = Window {
        from: now + args.warmup,
        end: now + args.warmup + args.duration,
    };
    let reporter = tokio::spawn(report_progress(progress, window));
    let mut running = JoinSet::new();
    for user in virtual_users {
        running.spawn(user.run(window));
    }
    let mut stats = Stats::default();
    while let Some(user) = running.join_next().await {
        stats.merge(&user.context("a virtual user panicked")?);
    }
    let measured = Instant::now().saturating_duration_since(window.from);
    reporter.abort();

    let info = RunInfo {
        scenario,
        base_url: args.base_url.clone(),
        connections,
        threads,
        users: users.len(),
        warmup: args.warmup,
        measured,
    };
    Ok(Report::new(info, &stats))
}

/// A line on stderr every second: requests per second, warm-up or measuring.
async fn report_progress(requests: Arc<AtomicU64>, window: Window) {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last = 0;
    loop {
        ticks.tick().await;
        let now = requests.load(Ordering::Relaxed);
        let phase = if Instant::now() < window.from {
            "warm-up"
        } else if Instant::now() < window.end {
            "measuring"
        } else {
            "finishing"
        };
        eprintln!(
            "loadgen: {:>4.0}s {phase:<9} {:>9} requests/s",
            started.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
}
