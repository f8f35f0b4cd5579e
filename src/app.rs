//! `Application`: builds the whole service from a `Config` — store, projection, actors,
//! HTTP — binds its port, and runs until stopped. Tests start it on port 0.

use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::Arbiter;
use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokenledger_projections::ActiveSessions;

use crate::actors::{Core, Registry};
use crate::catch_up;
use crate::clock::Clock;
use crate::config::{Config, DatabaseUrl};
use crate::http::{self, AppState, middleware};
use crate::ids::Ids;
use crate::ledger::checkpoints::{Checkpointer, signing_key};
use crate::limits::RateLimits;
use crate::mailer::Mailer;
use crate::password::Passwords;
use crate::retention;
use crate::signing_keys;
use crate::snapshots::{SnapshotKey, Snapshots};
use crate::store;
use crate::store::EventStore;
use crate::store::ledger::Upgrading;
use crate::store::sqlite::lock_for_serving;
use crate::tokens::Tokens;
use crate::use_cases::Services;

pub struct Application {
    port: u16,
    handle: ServerHandle,
    /// The server, spawned at once so that it answers the probes during the rebuild.
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    store: Arc<dyn EventStore>,
    arbiters: Vec<Arbiter>,
    state: web::Data<AppState>,
    /// The catch-up reader, the mailer and the rate limiters' clean-up, stopped with the
    /// server.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Held while serving; see `lock_for_serving`.
    _lock: Option<std::fs::File>,
    /// Where the projection's snapshots are made, and the position of the newest (0: none).
    snapshots: Snapshots,
    last_snapshot: Arc<AtomicI64>,
}

impl Application {
    /// Must run inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        // Bound first, so that a port chosen by the system (`PORT=0`) is in the public URL
        // that tokens name as their issuer.
        let address = config.server.bind_address();
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        config.server.port = listener.local_addr()?.port();
        let tokens = Arc::new(tokens_of(&config)?);
        let (lock, keys, opened) = open_for_serving(&config).await?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
        let shared = Arc::new(config.clone());
        let app = services(shared.clone(), &opened, tokens, &arbiters, cores)?;
        signing_keys::start(app.store.as_ref(), &app.tokens, &app.clock)
            .await
            .context("the access-token signing keys")?;
        // Before serving: a template file or email setting that is wrong stops the start.
        let mut mailer = Mailer::new(
            &config,
            opened.mail.clone(),
            opened.users.clone(),
            app.clock.clone(),
        )
        .map_err(anyhow::Error::msg)
        .context("the mailer")?;
        let store = app.store.clone();
        let snapshots = snapshots_of(&opened, &keys);
        let catch_up = Arc::new(catch_up::Progress::default());
        let ledger = Arc::new(checkpointer(&config, &opened)?);
        let state = web::Data::new(AppState {
            app,
            config: shared,
            metrics: Arc::default(),
            catch_up: catch_up.clone(),
            ledger: ledger.clone(),
        });
        // Bound and serving before the log is folded, so that orchestrators see the instance
        // start (`/_health`) and wait on `/_ready`; `until_ready` refuses the rest meanwhile.
        let (port, handle, serving) = serve(listener, &config, state.clone(), cores)?;
        mailer.serving_on(&config.server, port);
        tracing::info!(port, "listening; rebuilding the projections from the log");
        let (position, from_snapshot) = match rebuild(&state, &snapshots).await {
            Ok(reached) => reached,
            Err(error) => {
                handle.stop(false).await;
                let _ = serving.await;
                return Err(error).context("replaying the event log");
            }
        };
        let last_snapshot = Arc::new(AtomicI64::new(from_snapshot));
        let mut background =
            background_tasks(&config, &opened, &state, position, catch_up, ledger, mailer);
        if config.server.snapshot_interval > 0 {
            background.push(snapshot_periodically(
                snapshots.clone(),
                state.clone(),
                last_snapshot.clone(),
                config.server.snapshot_interval,
            ));
        }
        Ok(Application {
            port,
            handle,
            serving,
            store,
            arbiters,
            background,
            state,
            _lock: lock,
            snapshots,
            last_snapshot,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// On `SIGTERM` or `SIGINT`: stop accepting, finish the requests in flight (up to
    /// `DRAIN` and `SHUTDOWN_TIMEOUT`), then `run_until_stopped` flushes the appender and closes the store.
    /// A second signal ends the process at once: every acknowledged write is durable already,
    /// and only answers still being worked on are lost. Installed once serving: a signal
    /// during the start-up fold ends the process at once, with nothing written yet to lose.
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        let mut signals = StopSignals::listen()?;
        let handle = self.handle.clone();
        let state = self.state.clone();
        actix_web::rt::spawn(async move {
            let (name, _) = signals.next().await;
            tracing::info!(
                "{name}: finishing the requests in flight (up to {} s), then stopping; a second \
                 signal stops at once",
                DRAIN.as_secs() + SHUTDOWN_TIMEOUT
            );
            actix_web::rt::spawn(async move {
                // Drained first, then stopped: actix stops an idle worker at once while another
                // still answers, and a PostgreSQL connection the stopped worker's runtime had
                // opened fails the answering one's query.
                handle.pause().await;
                state.metrics.in_flight.drain(DRAIN).await;
                handle.stop(true).await;
            });
            let (name, code) = signals.next().await;
            tracing::warn!(
                "{name} again: stopping now, without waiting for the requests in flight"
            );
            std::process::exit(code);
        });
        Ok(())
    }

    /// The shared state, for tests that look behind the API (store counters, live actors).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// Serves until the server is stopped (signal or handle), then flushes the appender and
    /// closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self
            .serving
            .await
            .unwrap_or_else(|panicked| Err(std::io::Error::other(panicked)));
        for task in self.background {
            task.abort();
            // Awaited, so the task is dropped here, inside the runtime: a PostgreSQL listener
            // must give its connection back while there is a runtime to do it on.
            let _ = task.await;
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        }
        if self.state.config.server.snapshot_interval > 0 && self.state.catch_up.is_ready() {
            snapshot_at_stop(&self.snapshots, &self.state, &self.last_snapshot).await;
        }
        self.store.close().await;
        tracing::info!("stopped: the appender flushed and the store closed");
        served
    }
}

/// The database, opened (and migrated) for serving: on SQLite, locked for this server alone
/// (PostgreSQL is made for several); with the keys it was opened with.
async fn open_for_serving(
    config: &Config,
) -> anyhow::Result<(Option<std::fs::File>, store::StoreKeys, store::Opened)> {
    let database_url = &config.server.database_url;
    let lock = match database_url {
        DatabaseUrl::Postgres(_) => None,
        DatabaseUrl::Sqlite(url) => {
            Some(lock_for_serving(url).with_context(|| format!("locking {database_url}"))?)
        }
    };
    let keys = store::StoreKeys::of(config)?;
    let upgrading = Upgrading::for_writing(&config.ledger);
    let opened = store::open(database_url, false, &keys, upgrading)
        .await
        .with_context(|| format!("opening {database_url}"))?;
    Ok((lock, keys, opened))
}

/// The ledger's checkpoints: signed with CHECKPOINT_KEY, kept in the database, appended to
/// CHECKPOINT_FILE and posted to CHECKPOINT_WEBHOOK_URL where set.
fn checkpointer(config: &Config, opened: &store::Opened) -> anyhow::Result<Checkpointer> {
    let ledger = &config.ledger;
    let checkpointer = Checkpointer::new(
        opened.ledger.clone(),
        signing_key(ledger)?,
        ledger.checkpoint_file.clone(),
    );
    tracing::info!(
        verifier_key = checkpointer.verifier_key(),
        "checkpoints are signed; give this key to whoever checks them"
    );
    Ok(match &ledger.checkpoint_webhook_url {
        Some(url) => checkpointer.with_webhook(url.clone()),
        None => checkpointer,
    })
}

/// The tokens of `config`: the access and refresh signing keys, which `secrets::resolve` has
/// filled in by now, and what the tokens carry.
pub(crate) fn tokens_of(config: &Config) -> anyhow::Result<Tokens> {
    let signing = &config.tokens;
    let jwt_secret = signing
        .jwt_secret
        .as_ref()
        .context("JWT_SECRET is not set")?;
    let refresh_secret = signing
        .refresh_secret
        .as_ref()
        .context("REFRESH_JWT_SECRET is not set")?;
    Tokens::new(
        jwt_secret.expose().as_bytes(),
        refresh_secret.expose().as_bytes(),
        signing.jwt_expires_in,
    )
    .map(|tokens| tokens.accepting_strapi_access_tokens(signing.strapi_access_tokens))
    .map(|tokens| tokens.with_session_mode_claims(config.sessions.refresh_mode()))
    .map(|tokens| tokens.with_signing(signing.access_alg, signing.signing_key.clone()))
    .map(|tokens| {
        tokens.with_issuer_and_audience(config.access_token_issuer(), signing.audience.clone())
    })
    .context("signing keys")
}

/// What the use cases work with: the stores, the actors (one arbiter a core), the projection
/// they keep, the password pool, the limits, and the one clock and id source.
fn services(
    config: Arc<Config>,
    opened: &store::Opened,
    tokens: Arc<Tokens>,
    arbiters: &[Arbiter],
    cores: usize,
) -> anyhow::Result<Services> {
    let store = opened.events.clone();
    let projection = Arc::new(RwLock::new(ActiveSessions::new()));
    let clock = Arc::new(Clock::system());
    let shared_log = config.server.database_url.is_postgres();
    let core = Arc::new(Core {
        store: store.clone(),
        tokens: tokens.clone(),
        projection: projection.clone(),
        clock: clock.clone(),
        shared_log,
    });
    let idle = config
        .server
        .actor_idle_timeout
        .to_std()
        .unwrap_or(Duration::from_secs(300));
    let limits = &config.limits;
    Ok(Services {
        users: opened.users.clone(),
        passwords: Passwords::new(cores).context("argon2")?,
        tokens,
        registry: Registry::new(core, arbiters.iter().map(Arbiter::handle).collect(), idle),
        projection,
        clock,
        ids: Arc::new(Ids::system()),
        limits: RateLimits::new(
            limits.login,
            limits.login_ip,
            limits.refresh,
            limits.account_failures,
        )
        .with_email_limit(limits.email),
        store,
        personal: opened.personal.clone(),
        code_key: crate::email_codes::CodeKey::derive(
            config
                .privacy
                .key
                .as_ref()
                .context("PERSONAL_DATA_KEY is not set")?
                .expose(),
        ),
        shared_log,
        config,
        mail: crate::mailer::Wake::default(),
    })
}

type Serving = actix_web::rt::task::JoinHandle<std::io::Result<()>>;

/// Binds the port and serves at once, with every layer in its order; the port, a handle
/// to stop it, and the running server.
fn serve(
    listener: TcpListener,
    config: &Config,
    state: web::Data<AppState>,
    cores: usize,
) -> anyhow::Result<(u16, ServerHandle, Serving)> {
    let port = listener.local_addr()?.port();
    let served = config.clone();
    let server = HttpServer::new(move || {
        App::new()
            // Innermost: the 404 of an encoded operator path still gets every layer's
            // headers, its request id and its `unmatched` count.
            .wrap(from_fn(middleware::operator_paths_as_written))
            .wrap(from_fn(middleware::until_ready))
            // Outside readiness: during start-up a preflight still passes and the 503 can
            // be read by the page; inside the security headers, which every answer carries.
            .wrap(from_fn(http::cors::cors))
            .wrap(middleware::security_headers(&served))
            .wrap(from_fn(middleware::track))
            .wrap(from_fn(middleware::request_id))
            // First, so that every layer and the route see the one path.
            .wrap(from_fn(middleware::api_trailing_slash))
            .app_data(state.clone())
            .configure(http::routes)
    })
    .workers(cores)
    // actix stops gracefully on SIGTERM but drops requests in flight on SIGINT; the
    // command line stops both ways gracefully (`stop_on_signals`), and tests by the handle.
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT)
    .listen(listener)?
    .run();
    let handle = server.handle();
    Ok((port, handle, actix_web::rt::spawn(server)))
}

/// Loads the newest snapshot of the projection that verifies (see `crate::snapshots`) and
/// folds the log after it, or the whole log when none does; then says the instance is ready.
/// The position reached, from which `catch_up::follow` goes on, and the snapshot's (0: none).
async fn rebuild(
    state: &AppState,
    snapshots: &Snapshots,
) -> Result<(i64, i64), crate::store::StoreError> {
    let started = std::time::Instant::now();
    let (store, projection) = (state.app.store.as_ref(), &state.app.projection);
    let progress = &state.catch_up;
    let from = match snapshots.load_newest().await {
        Ok(Some(loaded)) => {
            tracing::info!(
                snapshot = loaded.position,
                users = loaded.users,
                sessions = loaded.sessions,
                bytes = loaded.bytes,
                read_ms = loaded.read.as_millis() as u64,
                checked_ms = loaded.checked.as_millis() as u64,
                decoded_ms = loaded.decoded.as_millis() as u64,
                elapsed_ms = loaded.elapsed.as_millis() as u64,
                "snapshot loaded; folding the log after it"
            );
            *projection.write().unwrap_or_else(|p| p.into_inner()) = loaded.projection;
            loaded.position
        }
        Ok(None) => {
            tracing::info!("no snapshot to start from: folding the whole log");
            0
        }
        Err(error) => {
            tracing::warn!(%error, "reading the snapshots failed: folding the whole log");
            0
        }
    };
    progress.advance(from);
    let (position, events) =
        catch_up::fold_into(store, projection, from, &mut |_, at| progress.advance(at)).await?;
    // A rotation made elsewhere while the log was folded is behind the catch-up reader's
    // start: the stream is read again.
    if let Err(error) = signing_keys::load(store, &state.app.tokens).await {
        tracing::warn!(
            error = format!("{error:#}"),
            "reading the signing keys again failed"
        );
    }
    progress.set_ready();
    tracing::info!(
        events,
        sessions = state.app.projection().len(),
        snapshot = from,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "projections rebuilt from {}; ready",
        if from > 0 {
            "a snapshot and the log after it"
        } else {
            "the whole log"
        }
    );
    log_digest(state.app.projection.clone(), position.max(from));
    Ok((position.max(from), from))
}

/// Logs the projection's digest (see `ActiveSessions::digest`), worked out off the start-up's
/// path: a batch of users at a time under the read lock, on a blocking thread. A test compares
/// it with `tokenledger rebuild`'s; requests served meanwhile may change it.
fn log_digest(projection: Arc<RwLock<ActiveSessions>>, position: i64) {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let digest = hex::encode(ActiveSessions::digest_in_batches(|| {
            projection.read().unwrap_or_else(|p| p.into_inner())
        }));
        tracing::info!(
            digest,
            position,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "projection digest"
        );
    });
}

/// Where the projection's snapshots are kept, and their key (derived from the ledger key).
fn snapshots_of(opened: &store::Opened, keys: &store::StoreKeys) -> Snapshots {
    Snapshots {
        events: opened.events.clone(),
        ledger: opened.ledger.clone(),
        kept: opened.snapshots.clone(),
        key: SnapshotKey::derive(&keys.ledger, &keys.personal),
    }
}

/// Every minute, a snapshot when at least `interval` events were appended since the last.
fn snapshot_periodically(
    snapshots: Snapshots,
    state: web::Data<AppState>,
    last: Arc<AtomicI64>,
    interval: u64,
) -> tokio::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let grown = match snapshots.events.head().await {
                Ok(head) => head.saturating_sub(last.load(Ordering::Acquire)),
                Err(error) => {
                    tracing::warn!(%error, "reading the log's head for a snapshot failed");
                    continue;
                }
            };
            if grown >= interval as i64 {
                take_snapshot(&snapshots, &state, &last, "periodic").await;
            }
        }
    })
}

/// At a graceful stop, a snapshot unless the newest is of the log's end already.
async fn snapshot_at_stop(snapshots: &Snapshots, state: &AppState, last: &AtomicI64) {
    match past_dead_connections(|| snapshots.events.head()).await {
        Ok(head) if head > last.load(Ordering::Acquire) => {
            take_snapshot(snapshots, state, last, "stop").await;
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "no snapshot at stop: reading the log failed"),
    }
}

/// Runs `attempt` until it gives anything but a database error, at most 16 times: at a stop,
/// each PostgreSQL connection a stopped worker's runtime had opened fails its query
/// (`Application::stop_on_signals`) and leaves the pool, which opens others on this runtime.
async fn past_dead_connections<T, Fut>(
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, crate::store::StoreError>
where
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut result = attempt().await;
    for _ in 1..16 {
        if !matches!(result, Err(crate::store::StoreError::Database(_))) {
            break;
        }
        result = attempt().await;
    }
    result
}

/// Makes a snapshot of the running projection and logs it (a failure is logged: the next
/// start folds a longer tail, nothing more).
async fn take_snapshot(snapshots: &Snapshots, state: &AppState, last: &AtomicI64, why: &str) {
    let folded = state.catch_up.position();
    let taken = past_dead_connections(|| snapshots.take(&state.app.projection, folded)).await;
    match taken {
        Ok(Some(taken)) => {
            last.fetch_max(taken.position, Ordering::AcqRel);
            tracing::info!(
                why,
                position = taken.position,
                tree_size = taken.tree_size,
                users = taken.users,
                sessions = taken.sessions,
                bytes = taken.bytes,
                elapsed_ms = taken.elapsed.as_millis() as u64,
                "snapshot of the projections stored"
            );
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, why, "making a snapshot failed"),
    }
}

/// Every minute, the rate limiters drop the keys that are back to a full allowance.
/// What runs beside the server until it stops: the log's follower, the limits' sweep, the
/// checkpoints, the mailer and, when configured, retention.
fn background_tasks(
    config: &Config,
    opened: &store::Opened,
    state: &web::Data<AppState>,
    position: i64,
    catch_up: Arc<catch_up::Progress>,
    ledger: Arc<crate::ledger::checkpoints::Checkpointer>,
    mailer: Mailer,
) -> Vec<tokio::task::JoinHandle<()>> {
    let following = actix_web::rt::spawn(catch_up::follow(
        state.app.store.clone(),
        state.app.projection.clone(),
        position,
        Duration::from_secs(1),
        opened.postgres.clone(),
        catch_up,
        state.app.tokens.clone(),
    ));
    let interval = config
        .ledger
        .checkpoint_interval
        .to_std()
        .unwrap_or(Duration::from_secs(10));
    [
        Some(following),
        Some(forget_idle_limits(state.clone())),
        Some(ledger.spawn(interval)),
        Some(actix_web::rt::spawn(
            mailer.run(state.app.mail.clone(), opened.postgres.clone()),
        )),
        config.privacy.retention.map(|retention| {
            retention::spawn(opened.personal.clone(), state.app.clock.clone(), retention)
        }),
        config.tokens.signing_key_rotation.map(|every| {
            signing_keys::schedule(
                state.app.store.clone(),
                state.app.tokens.clone(),
                state.app.clock.clone(),
                every,
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn forget_idle_limits(state: web::Data<AppState>) -> tokio::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            state.app.limits.forget_idle();
        }
    })
}

/// How long a stop waits for the requests in flight (`DRAIN`), then for the connections
/// left (`SHUTDOWN_TIMEOUT`, seconds): 25 s in all, inside Kubernetes' default 30 s grace
/// period, so that the flush and the close still come before its `SIGKILL`.
const DRAIN: Duration = Duration::from_secs(20);
const SHUTDOWN_TIMEOUT: u64 = 5;

/// The signals that stop the server, each with the exit code a process killed by it has.
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Listened for from the call on.
    fn listen() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    async fn next(&mut self) -> (&'static str, i32) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => ("SIGTERM", 143),
                _ = self.interrupt.recv() => ("SIGINT", 130),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                // No Ctrl-C to listen for: never, rather than at once.
                std::future::pending::<()>().await;
            }
            ("Ctrl-C", 130)
        }
    }
}
