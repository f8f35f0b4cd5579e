//! The investigator's commands: `audit` (a user's trail), `replay` (the sessions alive at a
//! past moment), `verify` (every stream's hash chain, then every users row against the log)
//! and `rebuild` (refold the projections from the start, timed).

use std::io::IsTerminal;
use std::path::PathBuf;
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
use crate::config::{Config, DatabaseUrl, KeyBytes};
use crate::ledger::checkpoints::{notes_in, signing_key};
use crate::ledger::verify::{Expected, LedgerVerifier};
use crate::store::ledger::Upgrading;
use crate::store::users::strapi_time;
use crate::store::users_explained::LogAccounts;
use crate::store::{self, ChainKey, Opened, StoreError, StoreKeys, stream_of};
use crate::terminal::{printable, printable_json};
use crate::tlog::note::{VerifierKey, open as open_note};

pub(super) async fn open(config: &Config) -> anyhow::Result<Opened> {
    let url = &config.server.database_url;
    // Before asking for the key: pointed at the wrong folder, that is the news.
    if let DatabaseUrl::Sqlite(sqlite) = url {
        store::sqlite::Database::exists(sqlite).with_context(|| format!("opening {url}"))?;
    }
    store::open(url, true, &StoreKeys::of(config)?, Upgrading::Leave)
        .await
        .with_context(|| format!("opening {url}"))
}

/// The ledger key, which `secrets::resolve` has filled in by now.
pub fn ledger_key(config: &Config) -> anyhow::Result<&KeyBytes> {
    config.ledger.key.as_ref().context(
        "LEDGER_KEY is not set, nor in DATA_DIR/secrets.json (a database an older version made: run `tokenledger migrate` once)",
    )
}

/// The user `key` names; by id also a forgotten user, whose events remain.
async fn user_id(opened: &Opened, key: &str) -> anyhow::Result<UserId> {
    if let Some(user) = opened.users.find_any(key).await? {
        return Ok(user.id);
    }
    if let Ok(id) = key.parse::<UserId>()
        && !opened
            .events
            .read_stream_page(&stream_of(id), 0, 1)
            .await?
            .is_empty()
    {
        return Ok(id);
    }
    anyhow::bail!("no user {key:?}")
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
            let device: String = s.device_id.to_string().chars().take(20).collect();
            let ip = s.last_ip.as_deref().unwrap_or("-");
            say!(
                "{:>6}  {:<36}  {:<20}  {:>3}  {:<24}  {:<24}  {}",
                id,
                s.id,
                printable(&device),
                s.generation,
                strapi_time(&s.created_at.to_timestamp()),
                strapi_time(&s.last_used_at.to_timestamp()),
                printable(ip)
            );
        }
    }
    say!("{count} session{}", if count == 1 { "" } else { "s" });
    store.close().await;
    Ok(())
}

/// The tree heads the log must reproduce: the tree's persisted head, every stored
/// checkpoint, and every note of the given files, each checkpoint opened with our key.
async fn expected_heads(
    config: &Config,
    opened: &Opened,
    files: &[PathBuf],
) -> anyhow::Result<Result<Vec<Expected>, String>> {
    let key = signing_key(&config.ledger)?;
    let verifier = VerifierKey::parse(&key.verifier_key())?;
    let tree = opened.ledger.tree().await?;
    let mut expected = vec![Expected {
        size: tree.size,
        root: tree.root,
        from: "the ledger's own tree head".to_owned(),
    }];
    let mut notes: Vec<(String, String)> = Vec::new();
    for (size, note) in opened.ledger.checkpoints().await? {
        notes.push((format!("stored checkpoint {size}"), note));
    }
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let found = notes_in(&text);
        if found.is_empty() {
            return Ok(Err(format!(
                "checkpoint {}: holds no signed note",
                file.display()
            )));
        }
        for (i, note) in found.into_iter().enumerate() {
            notes.push((
                format!("checkpoint {} (note {})", file.display(), i + 1),
                note,
            ));
        }
    }
    for (from, note) in notes {
        match open_note(&note, &verifier) {
            Ok(checkpoint) => expected.push(Expected {
                size: checkpoint.size,
                root: checkpoint.root,
                from,
            }),
            Err(e) => return Ok(Err(format!("{from}: {e}"))),
        }
    }
    Ok(Ok(expected))
}

/// `tokenledger verify [--checkpoint FILE]…`: the keyed chain, the seal of an unkeyed
/// prefix, and the tree against every checkpoint; the first finding fails the command. Then,
/// on a log that verified, every users row against its stream's account events
/// (`users_explained`): each row the log does not explain fails the command too.
pub async fn verify(config: &Config, files: &[PathBuf]) -> anyhow::Result<bool> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let expected = match expected_heads(config, &opened, files).await? {
        Ok(expected) => expected,
        Err(refused) => {
            store.close().await;
            say!("broken: {}", printable(&refused));
            return Ok(false);
        }
    };
    let checkpoints = expected.len() - 1;
    let mut verifier = LedgerVerifier::new(ChainKey::new(ledger_key(config)?), expected);
    let mut accounts = LogAccounts::default();
    let mut all = store.read_committed(0);
    let mut finding = None;
    loop {
        let record = match all.try_next().await {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(StoreError::Corrupt { position, source }) => {
                drop(all);
                store.close().await;
                say!(
                    "broken: position {position}: {}",
                    printable(&source.to_string())
                );
                return Ok(false);
            }
            Err(other) => return Err(other.into()),
        };
        if let Err(found) = verifier.check(&record) {
            finding = Some(found);
            break;
        }
        accounts.observe(&record)?;
    }
    drop(all);
    let finished = match finding {
        Some(found) => Err(found),
        None => verifier.finish(),
    };
    let summary = match finished {
        Err(found) => {
            store.close().await;
            say!("broken: {}", printable(&found.to_string()));
            return Ok(false);
        }
        Ok((size, root)) => {
            let (events, streams) = verifier.totals();
            format!(
                "ok: {events} events in {streams} streams; tree size {size}, root {}; {checkpoints} checkpoint{} match",
                hex::encode(root),
                if checkpoints == 1 { "" } else { "s" }
            )
        }
    };
    // Only the facts of a log that verified can explain the users table.
    let checked = accounts
        .check(opened.events.as_ref(), opened.users.as_ref())
        .await;
    store.close().await;
    let checked = checked?;
    for finding in &checked.findings {
        say!("broken: {}", printable(&finding.to_string()));
    }
    if !checked.findings.is_empty() {
        return Ok(false);
    }
    say!("{summary}");
    say!("users: {} rows explained", checked.rows);
    Ok(true)
}

/// A progress bar on a terminal; `None` elsewhere, where the caller prints plain lines.
pub fn progress_bar(total: u64, unit: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// `tokenledger rebuild`: folds every event into fresh projections, with a progress bar on a
/// terminal and plain lines otherwise, and reports the rate.
pub async fn rebuild(config: &Config) -> anyhow::Result<()> {
    let opened = open(config).await?;
    let store = opened.events.clone();
    let total = store.count().await?;
    let bar = progress_bar(total.max(0) as u64, "events");
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
    let seconds = started.elapsed().as_secs_f64();
    let (live, digest) = {
        let folded = projection.read().unwrap_or_else(|p| p.into_inner());
        (folded.len(), hex::encode(folded.digest()))
    };
    say!(
        "rebuilt: {folded} events, {live} live sessions in {:.3} s ({:.0} events/s)",
        seconds,
        folded as f64 / seconds.max(1e-9)
    );
    say!("digest: {digest}");
    store.close().await;
    Ok(())
}
