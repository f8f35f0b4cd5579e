//! Group commit, for every backend: one task takes whatever appends are queued, hands them to
//! the backend's `BatchWriter` to write in one transaction, and answers each only after that
//! transaction has committed. Many actors' appends thus share one commit (one fsync).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use std::collections::HashSet;

use super::body::{self, Place};
use super::chain::{ChainKey, GENESIS, Hashed};
use super::keyring::{BatchKeys, Slot};
use super::{EventMetadata, NewContent, NewEvent, RecordedEvent, StoreError, StoreStats};

/// The most appends one transaction takes; more wait for the next batch.
pub const MAX_BATCH: usize = 512;

pub struct AppendRequest {
    pub stream: String,
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
    pub metadata: EventMetadata,
    /// Set once this append is written.
    landing: Arc<Landing>,
    /// An earlier append of the same stream whose events this one was decided on: this one
    /// is written only if that one was (see `plan`).
    after: Option<Arc<Landing>>,
    reply: oneshot::Sender<Outcome>,
}

/// Whether an append was written: set by the appender once the append's batch has
/// committed, before any append of the batch is answered. A submitter that decides its next
/// append on the events of one still in flight names it as that append's `after`, so that a
/// failed append takes every append decided on it down with it, even when the stream's
/// head would let a later one through (another instance wrote the failed one's version).
#[derive(Debug, Default)]
pub struct Landing(AtomicBool);

impl Landing {
    pub fn landed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// An append queued with `Appender::submit`: its landing, and its answer to await.
pub struct Submitted {
    pub landing: Arc<Landing>,
    answer: Option<oneshot::Receiver<Outcome>>,
}

impl Submitted {
    /// The append's outcome, once its batch has committed (or failed).
    pub async fn outcome(self) -> Outcome {
        match self.answer {
            Some(answer) => answer.await.map_err(|_| StoreError::Closed)?,
            None => Err(StoreError::Closed),
        }
    }
}

impl AppendRequest {
    /// An append its caller writes in a transaction of its own (a users row and the event
    /// that explains it), planned and inserted by the same helpers as a batch: nobody waits
    /// for an answer.
    pub fn unanswered(
        stream: String,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> AppendRequest {
        let (reply, _) = oneshot::channel();
        AppendRequest {
            stream,
            expected_version,
            events,
            metadata,
            landing: Arc::default(),
            after: None,
            reply,
        }
    }
}

pub type Outcome = Result<Vec<RecordedEvent>, StoreError>;

/// Writes a batch in one transaction. A stale expected version fails that append alone (its
/// outcome is a `Conflict`); an error of the database fails the whole batch.
#[async_trait]
pub trait BatchWriter: Send + Sync + 'static {
    async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error>;
}

enum Message {
    Append(AppendRequest),
    /// Finish what is queued, then stop.
    Close(oneshot::Sender<()>),
}

/// The queue is unbounded so that `submit` queues at once, in call order: every append in it
/// has a caller awaiting its answer (an HTTP request, or a spawned task), which bounds it.
pub struct Appender {
    inbox: mpsc::UnboundedSender<Message>,
}

impl Appender {
    /// Starts the appender task on the current tokio runtime.
    pub fn start(writer: impl BatchWriter, stats: Arc<StoreStats>) -> Appender {
        let (inbox, messages) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, messages, stats));
        Appender { inbox }
    }

    pub async fn append(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
    ) -> Outcome {
        self.submit(stream, expected_version, events, metadata, None)
            .outcome()
            .await
    }

    /// Queues an append now, behind every append queued before this call, without waiting
    /// for its answer. With `after`, it is written only if that earlier append was.
    pub fn submit(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
        after: Option<Arc<Landing>>,
    ) -> Submitted {
        let (reply, answer) = oneshot::channel();
        let landing = Arc::new(Landing::default());
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected_version,
            events,
            metadata: metadata.clone(),
            landing: landing.clone(),
            after,
            reply,
        };
        let queued = self.inbox.send(Message::Append(request)).is_ok();
        Submitted {
            landing,
            answer: queued.then_some(answer),
        }
    }

    /// Writes what is queued, then stops the task.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.inbox.send(Message::Close(done)).is_ok() {
            let _ = finished.await;
        }
    }
}

async fn run(
    writer: impl BatchWriter,
    mut inbox: mpsc::UnboundedReceiver<Message>,
    stats: Arc<StoreStats>,
) {
    let mut closing: Option<oneshot::Sender<()>> = None;
    while let Some(first) = inbox.recv().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Append(request) => batch.push(request),
                Message::Close(done) => {
                    inbox.close();
                    closing = Some(done);
                }
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            stats.batches.record(batch.len());
            if let Err(error) = commit(&writer, batch, &stats).await {
                fail_queued(&mut inbox, &error, &mut closing);
            }
        }
        if closing.is_some() && inbox.is_empty() {
            break;
        }
    }
    let sizes = &stats.batches;
    if sizes.batches() > 0 {
        tracing::info!(
            batches = sizes.batches(),
            appends = sizes.appends(),
            mean = format!("{:.1}", sizes.appends() as f64 / sizes.batches() as f64),
            sizes = %sizes,
            "group commit: appends a batch"
        );
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Answers every append queued while a batch failed with its error, at once: the database
/// just failed them (away, or silent until the deadline), and trying them again would keep
/// their callers waiting as long once more — a 503 after twice the pool's acquire timeout.
/// Appends queued after this are tried afresh.
fn fail_queued(
    inbox: &mut mpsc::UnboundedReceiver<Message>,
    error: &Arc<sqlx::Error>,
    closing: &mut Option<oneshot::Sender<()>>,
) {
    while let Ok(message) = inbox.try_recv() {
        match message {
            Message::Append(request) => {
                let _ = request.reply.send(Err(StoreError::Database(error.clone())));
            }
            Message::Close(done) => {
                inbox.close();
                *closing = Some(done);
            }
        }
    }
}

/// Writes `batch` and answers its appends; the database's error if the whole batch failed.
async fn commit(
    writer: &impl BatchWriter,
    batch: Vec<AppendRequest>,
    stats: &StoreStats,
) -> Result<(), Arc<sqlx::Error>> {
    let started = std::time::Instant::now();
    let written = writer.write(&batch).await;
    tracing::debug!(
        appends = batch.len(),
        micros = started.elapsed().as_micros() as u64,
        "batch"
    );
    match written {
        Ok(outcomes) => {
            stats.record_written(
                batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, outcome)| outcome.is_ok())
                    .flat_map(|(request, _)| &request.events),
            );
            // All landings first: a later append of this batch's streams may be answered
            // (and its successor submitted) as soon as the first reply goes out.
            for (request, outcome) in batch.iter().zip(&outcomes) {
                if outcome.is_ok() {
                    request.landing.set();
                }
            }
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, appends = batch.len(), "group commit failed; no append of the batch was acknowledged");
            let error = Arc::new(error);
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Database(error.clone())));
            }
            Err(error)
        }
    }
}

/// The moment a batch is recorded, as stored (microseconds) and as text (what the hash
/// covers), so an answer equals a later read to the microsecond.
pub fn recording_time() -> (DateTime<Utc>, String) {
    let text = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let time = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    (time, text)
}

/// The head of each stream a batch appends to: its version and the hash of its last event.
pub type Heads = HashMap<String, (i64, Vec<u8>)>;

/// The streams a batch appends to, each once.
pub fn streams(batch: &[AppendRequest]) -> Vec<&str> {
    let mut streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    streams
}

/// The data keys a batch's events are sealed under: each event's owner (its stream) and the
/// periods `body::periods` names.
pub fn slots(batch: &[AppendRequest]) -> HashSet<Slot> {
    let mut slots = HashSet::new();
    for request in batch {
        for event in &request.events {
            if let NewContent::Event(event) = &event.content {
                for period in body::periods(event, &request.metadata) {
                    slots.insert((request.stream.clone(), period));
                }
            }
        }
    }
    slots
}

/// What a batch is written with: the ledger key, and the data keys of its personal fields.
pub struct Sealing<'a> {
    pub chain: &'a ChainKey,
    pub keys: &'a BatchKeys,
}

/// Checks every append of a batch against its stream's head, in order (an append earlier in
/// the batch moves the head for a later one), and chains the events of those that match. A
/// stream missing from `heads` has no events yet. An append that follows another (`after`)
/// is written only if that one was written by an earlier batch or is planned in this one.
/// Positions are filled in by `place` once the events are inserted.
pub fn plan(
    sealing: &Sealing,
    batch: &[AppendRequest],
    mut heads: Heads,
    recorded: &(DateTime<Utc>, String),
) -> Vec<Outcome> {
    let mut planned: HashSet<*const Landing> = HashSet::new();
    batch
        .iter()
        .map(|request| {
            let followed = request
                .after
                .as_ref()
                .is_none_or(|after| after.landed() || planned.contains(&Arc::as_ptr(after)));
            if !followed {
                return Err(StoreError::Abandoned {
                    stream: request.stream.clone(),
                    expected: request.expected_version,
                });
            }
            let head = heads
                .entry(request.stream.clone())
                .or_insert_with(|| (0, GENESIS.to_vec()));
            if head.0 != request.expected_version {
                return Err(StoreError::Conflict {
                    stream: request.stream.clone(),
                    expected: request.expected_version,
                    actual: head.0,
                });
            }
            let written = chained(sealing, request, head.0, head.1.clone(), recorded);
            if let Some(last) = written.last() {
                *head = (last.stream_version, last.hash.clone());
            }
            planned.insert(Arc::as_ptr(&request.landing));
            Ok(written)
        })
        .collect()
}

/// The events a plan writes, in order.
pub fn to_insert(plan: &[Outcome]) -> impl Iterator<Item = &RecordedEvent> {
    plan.iter().filter_map(|o| o.as_ref().ok()).flatten()
}

/// Gives the planned events the positions the database assigned, by `(stream, version)`.
pub fn place(plan: &mut [Outcome], positions: &HashMap<(String, i64), i64>) {
    for event in plan.iter_mut().filter_map(|o| o.as_mut().ok()).flatten() {
        if let Some(position) = positions.get(&(event.stream_id.clone(), event.stream_version)) {
            event.position = *position;
        }
    }
}

/// Rows one multi-row INSERT takes: ten values each stay below both databases' limits on
/// bound parameters.
pub const ROWS_PER_INSERT: usize = 1000;

/// `INSERT INTO events (…) VALUES (…), (…) RETURNING position, stream_id, stream_version` for
/// `rows` rows, with `?` placeholders; `json` is the placeholder of the payload and metadata
/// (on PostgreSQL, empty text stored as NULL JSON).
pub fn insert_sql(rows: usize, json: &str) -> String {
    let row = format!("(?, ?, ?, ?, {json}, {json}, ?, ?, ?, ?)");
    format!(
        "INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload, \
         metadata, body, recorded_at, prev_hash, hash) VALUES {} \
         RETURNING position, stream_id, stream_version",
        vec![row.as_str(); rows].join(", ")
    )
}

/// The events of one append as they will be stored, chained on from `(version, prev_hash)`
/// of the stream's head; positions are filled in by the caller after the insert. A domain
/// event is stored as a body (its payload and metadata empty), sealed with the batch's keys.
pub fn chained(
    sealing: &Sealing,
    request: &AppendRequest,
    head_version: i64,
    head_hash: Vec<u8>,
    recorded: &(DateTime<Utc>, String),
) -> Vec<RecordedEvent> {
    let mut prev_hash = head_hash;
    request
        .events
        .iter()
        .zip(head_version + 1..)
        .map(|(event, version)| {
            let (payload, metadata, body) = match &event.content {
                NewContent::Event(domain) => {
                    let place = Place {
                        stream_id: &request.stream,
                        stream_version: version,
                        event_type: event.event_type,
                    };
                    let body = body::encode(domain, &request.metadata, &place, |period| {
                        sealing.keys.get(&request.stream, period)
                    });
                    (String::new(), String::new(), Some(body))
                }
                NewContent::Json(payload) => (
                    payload.clone(),
                    serde_json::to_string(&request.metadata).expect("metadata is plain strings"),
                    None,
                ),
            };
            let hash = sealing.chain.hash(
                &prev_hash,
                &Hashed {
                    stream_id: &request.stream,
                    stream_version: version,
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    payload: &payload,
                    metadata: &metadata,
                    recorded_at: &recorded.1,
                    body: body.as_deref(),
                },
            );
            RecordedEvent {
                position: 0,
                stream_id: request.stream.clone(),
                stream_version: version,
                event_type: event.event_type.to_owned(),
                schema_version: event.schema_version,
                payload,
                metadata,
                body,
                recorded_at: recorded.0,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
                revealed: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every batch, as a database that went away would.
    struct Unreachable;

    #[async_trait]
    impl BatchWriter for Unreachable {
        async fn write(&self, _: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
            Err(sqlx::Error::PoolTimedOut)
        }
    }

    /// `plan` of `batch` on `heads`, under a test chain key and no data keys.
    fn planned(batch: &[AppendRequest], heads: Heads) -> Vec<Outcome> {
        let keys = BatchKeys {
            keys: HashMap::new(),
            made: Vec::new(),
        };
        let chain = ChainKey::new(&crate::config::KeyBytes::new([7; 32]));
        let sealing = Sealing {
            chain: &chain,
            keys: &keys,
        };
        plan(&sealing, batch, heads, &recording_time())
    }

    fn request(expected_version: i64, after: Option<&AppendRequest>) -> AppendRequest {
        let mut request = AppendRequest::unanswered(
            "user-1".to_owned(),
            expected_version,
            vec![NewEvent {
                event_type: "Noted",
                schema_version: 1,
                content: NewContent::Json("{}".to_owned()),
            }],
            EventMetadata::default(),
        );
        request.after = after.map(|a| a.landing.clone());
        request
    }

    fn versions(plan: &[Outcome]) -> Vec<Result<i64, String>> {
        plan.iter()
            .map(|o| match o {
                Ok(events) => Ok(events.last().map_or(0, |e| e.stream_version)),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    }

    #[test]
    fn given_an_append_following_one_earlier_in_the_batch_then_both_are_written_in_turn() {
        let first = request(0, None);
        let second = request(1, Some(&first));
        let batch = [first, second];

        let plan = planned(&batch, Heads::new());

        assert_eq!(versions(&plan), vec![Ok(1), Ok(2)]);
    }

    #[test]
    fn given_a_conflicting_append_then_the_one_following_it_is_abandoned_though_the_head_fits() {
        // Another writer took version 1: the first append conflicts, and the second, decided
        // on the first's events, would fit the head if only versions were checked.
        let heads = Heads::from([("user-1".to_owned(), (1, vec![1]))]);
        let first = request(0, None);
        let second = request(1, Some(&first));
        let batch = [first, second];

        let plan = planned(&batch, heads);

        assert!(matches!(
            plan[0],
            Err(StoreError::Conflict { actual: 1, .. })
        ));
        assert!(matches!(
            plan[1],
            Err(StoreError::Abandoned { expected: 1, .. })
        ));
    }

    #[test]
    fn given_an_append_following_one_that_landed_in_an_earlier_batch_then_it_is_written() {
        let first = request(0, None);
        first.landing.set();
        let batch = [request(1, Some(&first))];
        let heads = Heads::from([("user-1".to_owned(), (1, vec![1]))]);

        let plan = planned(&batch, heads);

        assert_eq!(versions(&plan), vec![Ok(2)]);
    }

    /// Fails its first batch, then writes every batch on an empty log, as `plan` says.
    struct FailsOnce(AtomicBool);

    #[async_trait]
    impl BatchWriter for FailsOnce {
        async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
            if !self.0.swap(true, Ordering::SeqCst) {
                return Err(sqlx::Error::PoolTimedOut);
            }
            Ok(planned(batch, Heads::new()))
        }
    }

    #[tokio::test]
    async fn given_a_failed_batch_then_an_append_following_one_of_it_is_abandoned_and_a_fresh_one_written()
     {
        let appender = Appender::start(FailsOnce(AtomicBool::new(false)), Arc::default());
        let metadata = EventMetadata::default();
        let failed = appender.submit("user-1", 0, vec![], &metadata, None);
        let landing = failed.landing.clone();
        assert!(failed.outcome().await.is_err(), "the first batch fails");
        assert!(!landing.landed());

        let follower = appender.submit("user-1", 1, vec![], &metadata, Some(landing));
        let fresh = appender.submit("user-1", 0, vec![], &metadata, None);
        let fresh_landing = fresh.landing.clone();

        assert!(matches!(
            follower.outcome().await,
            Err(StoreError::Abandoned { .. })
        ));
        assert!(fresh.outcome().await.is_ok());
        assert!(fresh_landing.landed());
        appender.close().await;
    }

    /// Fails every batch after 300 ms, counting the appends it was given.
    struct Slow(Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait]
    impl BatchWriter for Slow {
        async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
            self.0.fetch_add(batch.len(), Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Err(sqlx::Error::PoolTimedOut)
        }
    }

    #[tokio::test]
    async fn given_a_batch_that_fails_then_appends_queued_meanwhile_get_its_error_untried() {
        let written = Arc::default();
        let appender = Appender::start(Slow(Arc::clone(&written)), Arc::default());
        let metadata = EventMetadata::default();
        let first = appender.submit("user-1", 0, vec![], &metadata, None);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued = appender.submit("user-2", 0, vec![], &metadata, None);

        assert!(first.outcome().await.is_err());
        assert!(matches!(
            queued.outcome().await,
            Err(StoreError::Database(error)) if matches!(*error, sqlx::Error::PoolTimedOut)
        ));
        assert_eq!(
            written.load(Ordering::Relaxed),
            1,
            "only the first was tried"
        );

        let after = appender.submit("user-3", 0, vec![], &metadata, None);
        assert!(after.outcome().await.is_err());
        assert_eq!(
            written.load(Ordering::Relaxed),
            2,
            "a later append is tried afresh"
        );
        appender.close().await;
    }

    #[tokio::test]
    async fn given_a_failed_batch_then_every_append_gets_the_database_error_itself() {
        let appender = Appender::start(Unreachable, Arc::new(StoreStats::default()));
        let metadata = EventMetadata::default();
        let (one, two) = tokio::join!(
            appender.append("user-1", 0, vec![], &metadata),
            appender.append("user-2", 0, vec![], &metadata)
        );
        for outcome in [one, two] {
            let error = outcome.expect_err("the batch failed");
            let source = std::error::Error::source(&error).expect("the sqlx error is the source");
            assert!(
                matches!(
                    source.downcast_ref::<Arc<sqlx::Error>>().map(|e| &**e),
                    Some(sqlx::Error::PoolTimedOut)
                ),
                "{error:?}"
            );
        }
        appender.close().await;
    }
}
