//! The investigator's commands: `audit` (a user's trail), `replay` (the sessions alive at a
//! past moment), `verify` (every stream's hash chain) and `rebuild` (refold the projections
//! from the start, timed).

use std::io::IsTerminal;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokenledger_domain::{Event, UserId};
use tokenledger_projections::{ActiveSessions, sessions_alive_at};

use crate::audit::{AuditEntry, table};
use crate::catch_up::fold_into;
use crate::config::{Config, KeyBytes};
use crate::store::users::strapi_time;
use crate::store::{self, ChainKey, ChainVerifier, Opened, StoreError, stream_of};
use crate::terminal::{printable, printable_json};

async fn open(config: &Config) -> anyhow::Result<Opened> {
    let url = &config.server.database_url;
    store::open(url, true, ledger_key(config)?)
        .await
        .with_context(|| format!("opening {url}"))
}

/// The ledger key, which `secrets::resolve` has filled in by now.
pub fn ledger_key(config: &Config) -> anyhow::Result<&KeyBytes> {
    config.ledger.key.as_ref().context("LEDGER_KEY is not set")
}

async fn user_id(opened: &Opened, key: &str) -> anyhow::Result<UserId> {
    let user = opened.users.find_any(key).await?;
    Ok(user.with_context(|| format!("no user {key:?}"))?.id)
}

/// `tokenledger audit <user> [--json]`
pub async fn audit(config: &Config, key: &str, json: bool) -> anyhow::Result<()> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let id = user_id(&opened, key).await?;
    let records = store.read_stream(&stream_of(id), 0).await?;
    let entries: Vec<AuditEntry> = records
        .iter()
        .map(AuditEntry::of)
        .collect::<Result<_, _>>()?;
    if json {
        for entry in &entries {
            say!("{}", printable_json(&serde_json::to_string(entry)?));
        }
    } else {
        say!("{}", table(&entries));
    }
    store.close().await;
    Ok(())
}

fn decode(record: &crate::store::RecordedEvent) -> Result<Event, StoreError> {
    record.decode().map_err(|source| StoreError::Corrupt {
        position: record.position,
        source,
    })
}

/// `tokenledger replay [--until T] [--user U]`: the sessions alive at `until` (default now).
pub async fn replay(
    config: &Config,
    until: Option<DateTime<Utc>>,
    user: Option<&str>,
) -> anyhow::Result<()> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let at = until.unwrap_or_else(Utc::now);
    let only = match user {
        Some(key) => Some(user_id(&opened, key).await?),
        None => None,
    };
    // Each user's events, in stream order.
    let mut streams: std::collections::BTreeMap<UserId, Vec<Event>> = Default::default();
    match only {
        Some(id) => {
            let records = store.read_stream(&stream_of(id), 0).await?;
            streams.insert(id, records.iter().map(decode).collect::<Result<_, _>>()?);
        }
        None => {
            let mut all = store.read_all(0);
            while let Some(record) = all.try_next().await? {
                if let Some(id) = record.user_id() {
                    streams.entry(id).or_default().push(decode(&record)?);
                }
            }
        }
    }
    say!("sessions alive at {}", at.to_rfc3339());
    say!(
        "{:>6}  {:<36}  {:<20}  {:>3}  {:<24}  {:<24}  ip",
        "user",
        "session",
        "device",
        "gen",
        "login",
        "last used"
    );
    let mut count = 0;
    for (id, events) in &streams {
        for s in sessions_alive_at(*id, events, at) {
            count += 1;
            let device: String = s.device_id.chars().take(20).collect();
            let ip = s.last_ip.as_deref().unwrap_or("-");
            say!(
                "{:>6}  {:<36}  {:<20}  {:>3}  {:<24}  {:<24}  {}",
                id,
                s.id,
                printable(&device),
                s.generation,
                strapi_time(&s.created_at),
                strapi_time(&s.last_used_at),
                printable(ip)
            );
        }
    }
    say!("{count} session{}", if count == 1 { "" } else { "s" });
    store.close().await;
    Ok(())
}

/// `tokenledger verify`: recomputes every chain; the first break fails the command.
pub async fn verify(config: &Config) -> anyhow::Result<bool> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let mut verifier = ChainVerifier::new(ChainKey::new(ledger_key(config)?));
    let mut all = store.read_all(0);
    let mut broken = None;
    while let Some(record) = all.try_next().await? {
        if let Err(at) = verifier.check(&record) {
            broken = Some(at);
            break;
        }
    }
    drop(all);
    if broken.is_none() {
        broken = verifier.finish().err();
    }
    store.close().await;
    match broken {
        Some(at) => {
            say!("broken: {}", printable(&at.to_string()));
            Ok(false)
        }
        None => {
            let (events, streams) = verifier.totals();
            say!("ok: {events} events in {streams} streams");
            Ok(true)
        }
    }
}

/// `tokenledger rebuild`: folds every event into fresh projections, with a progress bar on a
/// terminal and plain lines otherwise, and reports the rate.
pub async fn rebuild(config: &Config) -> anyhow::Result<()> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let total = store.count().await?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    // The same fold the server runs at start-up.
    let projection = Arc::new(RwLock::new(ActiveSessions::new()));
    let mut reported = 0u64;
    let (_, folded) = fold_into(store.as_ref(), &projection, 0, &mut |read, _| match &bar {
        Some(bar) => bar.set_position(read),
        None if read / 1_000_000 > reported / 1_000_000 => {
            reported = read;
            eprintln!("{read}/{total} events");
        }
        None => {}
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let live = projection.read().unwrap_or_else(|p| p.into_inner()).len();
    let seconds = started.elapsed().as_secs_f64();
    say!(
        "rebuilt: {folded} events, {live} live sessions in {:.3} s ({:.0} events/s)",
        seconds,
        folded as f64 / seconds.max(1e-9)
    );
    store.close().await;
    Ok(())
}
