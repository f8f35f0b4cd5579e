//! The event store conformance suite: the same tests on SQLite (a real file) and on
//! PostgreSQL (a fresh schema per test), plus PostgreSQL's out-of-order commit case.

use std::sync::Arc;

use futures::TryStreamExt;

use support::FreshSchema;
use tokenledger::config::KeyBytes;
use tokenledger::store::postgres::{PgDatabase, PostgresEventStore};
use tokenledger::store::sqlite::{Database, SqliteEventStore};
use tokenledger::store::{
    ChainKey, ChainVerifier, EventMetadata, EventPayload, EventStore, NewContent, NewEvent,
    RecordedEvent, StoreError, StoreKeys,
};

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_type: "LoginFailed",
        schema_version: 1,
        content: NewContent::Json(format!("{{\"n\":{n}}}")),
    }
}

fn ledger_key() -> StoreKeys {
    StoreKeys {
        ledger: KeyBytes::parse(support::LEDGER_KEY).unwrap(),
        personal: KeyBytes::parse(support::PERSONAL_DATA_KEY).unwrap(),
    }
}

/// A store on a fresh SQLite file, and the folder that holds it.
async fn sqlite_store() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    (
        dir,
        Arc::new(SqliteEventStore::start(
            Database::open(&url, &ledger_key()).await.unwrap(),
        )),
    )
}

async fn postgres_store() -> Option<Arc<dyn EventStore>> {
    let options = FreshSchema::create().await.map(|schema| schema.options())?;
    Some(Arc::new(PostgresEventStore::start(
        PgDatabase::open_with(options, &ledger_key()).await.unwrap(),
    )))
}

macro_rules! on_both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (_dir, store) = super::sqlite_store().await;
                super::$test(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(store) = super::postgres_store().await {
                    super::$test(store).await;
                }
            }
        }
    };
}

on_both_backends!(appends_read_back_in_order_with_an_unbroken_chain);
async fn appends_read_back_in_order_with_an_unbroken_chain(store: Arc<dyn EventStore>) {
    let meta = EventMetadata {
        request_id: Some("r-1".into()),
        ..EventMetadata::default()
    };
    let first = store
        .append("user-1", 0, vec![event(1), event(2)], &meta)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2]
    );
    store
        .append("user-2", 0, vec![event(3)], &meta)
        .await
        .unwrap();
    store
        .append("user-1", 2, vec![event(4)], &meta)
        .await
        .unwrap();

    let stream = store.read_stream("user-1", 0).await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(stream[0], first[0], "an append answers what a read returns");
    assert_eq!(stream[0].prev_hash, vec![0; 32]);
    for pair in stream.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(
        stream[2].payload, "{\"n\":4}",
        "payload text kept byte for byte"
    );
    assert_eq!(store.read_stream("user-1", 2).await.unwrap().len(), 1);

    let all = read_all_settled(store.as_ref(), 4).await;
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    let payloads: Vec<EventPayload> = store.read_payloads(0).try_collect().await.unwrap();
    assert_eq!(
        payloads
            .iter()
            .map(|e| (e.position, e.stream_version, e.payload.as_str()))
            .collect::<Vec<_>>(),
        all.iter()
            .map(|e| (e.position, e.stream_version, e.payload.as_str()))
            .collect::<Vec<_>>(),
        "the light read for folding sees what the full one does"
    );
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(
        all.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(),
        ["user-1", "user-1", "user-2", "user-1"]
    );
    let tail: Vec<_> = store.read_all(positions[1]).try_collect().await.unwrap();
    assert_eq!(tail.len(), 2);
    let mut verifier = ChainVerifier::new(ChainKey::new(&ledger_key().ledger));
    for e in &all {
        verifier.check(e).unwrap();
    }
    verifier.finish().unwrap();
    assert_eq!(verifier.totals(), (4, 2));
    store.close().await;
}

on_both_backends!(a_stale_expected_version_is_a_typed_conflict_and_writes_nothing);
async fn a_stale_expected_version_is_a_typed_conflict_and_writes_nothing(
    store: Arc<dyn EventStore>,
) {
    let meta = EventMetadata::default();
    store
        .append("user-1", 0, vec![event(1)], &meta)
        .await
        .unwrap();
    match store
        .append("user-1", 0, vec![event(2), event(3)], &meta)
        .await
    {
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.read_stream("user-1", 0).await.unwrap().len(), 1);
    store.close().await;
}

on_both_backends!(concurrent_appenders_have_exactly_one_winner_per_version);
async fn concurrent_appenders_have_exactly_one_winner_per_version(store: Arc<dyn EventStore>) {
    let meta = EventMetadata::default();
    let attempts = futures::future::join_all((0..20).map(|n| {
        let (store, meta) = (store.clone(), meta.clone());
        async move { store.append("user-9", 0, vec![event(n)], &meta).await }
    }))
    .await;
    assert_eq!(attempts.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        attempts
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict { .. }))
    );
    // Many streams at once all land, batched.
    let many = futures::future::join_all((0..200).map(|n| {
        let (store, meta) = (store.clone(), meta.clone());
        async move {
            store
                .append(&format!("user-{}", 1000 + n), 0, vec![event(n)], &meta)
                .await
        }
    }))
    .await;
    assert!(many.iter().all(Result::is_ok));
    assert_eq!(read_all_settled(store.as_ref(), 201).await.len(), 201);
    store.close().await;
}

on_both_backends!(two_stores_on_one_database_race_as_two_instances_would);
async fn two_stores_on_one_database_race_as_two_instances_would(store: Arc<dyn EventStore>) {
    // One store stands for both instances on SQLite (one writer per file); on PostgreSQL the
    // conflict surfaces from the unique key across transactions, tested below.
    let meta = EventMetadata::default();
    store
        .append("user-5", 0, vec![event(1)], &meta)
        .await
        .unwrap();
    let (a, b) = futures::join!(
        store.append("user-5", 1, vec![event(2)], &meta),
        store.append("user-5", 1, vec![event(3)], &meta)
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_conflict_through_the_unique_key() {
    let Some(options) = FreshSchema::create().await.map(|schema| schema.options()) else {
        return;
    };
    let one = PostgresEventStore::start(
        PgDatabase::open_with(options.clone(), &ledger_key())
            .await
            .unwrap(),
    );
    let two =
        PostgresEventStore::start(PgDatabase::open_with(options, &ledger_key()).await.unwrap());
    let meta = EventMetadata::default();
    for round in 0..20 {
        let (a, b) = futures::join!(
            one.append("user-7", round, vec![event(1)], &meta),
            two.append("user-7", round, vec![event(2)], &meta)
        );
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        for lost in [a, b].into_iter().filter_map(Result::err) {
            assert!(matches!(lost, StoreError::Conflict { .. }), "{lost:?}");
        }
    }
    assert_eq!(one.read_stream("user-7", 0).await.unwrap().len(), 20);
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_reader_never_skips_an_event_that_commits_late() {
    let Some(options) = FreshSchema::create().await.map(|schema| schema.options()) else {
        return;
    };
    let db = PgDatabase::open_with(options, &ledger_key()).await.unwrap();
    let store = PostgresEventStore::start(db.clone());
    let insert = "INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload, \
                  metadata, recorded_at, prev_hash, hash) VALUES ($1, 1, 'LoginFailed', 1, '{}', '{}', now(), '\\x00', '\\x00') \
                  RETURNING position";
    // T1 takes the lower position and stays open; T2 takes a higher one and commits.
    let mut slow = db.pool.begin().await.unwrap();
    let low: i64 = sqlx::query_scalar(insert)
        .bind("user-slow")
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    let mut fast = db.pool.begin().await.unwrap();
    let high: i64 = sqlx::query_scalar(insert)
        .bind("user-fast")
        .fetch_one(&mut *fast)
        .await
        .unwrap();
    fast.commit().await.unwrap();
    assert!(low < high);

    let read = || async {
        store
            .read_all(0)
            .map_ok(|e| e.position)
            .try_collect::<Vec<i64>>()
            .await
            .unwrap()
    };
    let seen = read().await;
    assert!(
        seen.is_empty(),
        "the committed higher position waits for the open lower one: {seen:?}"
    );
    slow.commit().await.unwrap();
    // The horizon is the whole cluster's (other tests' transactions hold it back for a
    // moment): poll until both show, and never the higher one alone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = read().await;
        assert!(
            !seen.contains(&high) || seen.starts_with(&[low]),
            "{seen:?}"
        );
        if seen == [low, high] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not both after 10 s: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.close().await;
}

on_both_backends!(read_all_pages_through_a_log_longer_than_one_page);
async fn read_all_pages_through_a_log_longer_than_one_page(store: Arc<dyn EventStore>) {
    let meta = EventMetadata::default();
    // Just over one page (10,000 events), so the second page is short and ends the stream.
    for chunk in 0..11 {
        let events = (0..910).map(|n| event(chunk * 910 + n)).collect();
        store
            .append("user-1", (chunk * 910) as i64, events, &meta)
            .await
            .unwrap();
    }
    let positions: Vec<i64> = read_all_settled(store.as_ref(), 10_010)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions.len(), 10_010);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let tail: Vec<i64> = store
        .read_all(positions[9_999])
        .map_ok(|e| e.position)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tail, positions[10_000..]);
    store.close().await;
}

on_both_backends!(a_stream_page_starts_after_any_cursor_and_stops_at_its_limit);
async fn a_stream_page_starts_after_any_cursor_and_stops_at_its_limit(store: Arc<dyn EventStore>) {
    // Given: two streams written in turns, so each one's positions have gaps the other fills.
    let meta = EventMetadata::default();
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for n in 0..6 {
        let version = n as i64;
        mine.extend(
            store
                .append("user-1", version, vec![event(n)], &meta)
                .await
                .unwrap(),
        );
        theirs.extend(
            store
                .append("user-2", version, vec![event(n)], &meta)
                .await
                .unwrap(),
        );
    }
    let positions = |page: &[RecordedEvent]| page.iter().map(|e| e.position).collect::<Vec<_>>();
    let mine_after = |cursor: i64| {
        mine.iter()
            .filter(|e| e.position > cursor)
            .map(|e| e.position)
            .collect::<Vec<_>>()
    };

    // When / then: from the start, from its own events' positions, from the other stream's
    // (between two of its own), and past its end, with limits that cut and that do not.
    let mut cursors = vec![0];
    cursors.extend(mine.iter().map(|e| e.position));
    cursors.extend(theirs.iter().map(|e| e.position));
    cursors.push(theirs.last().unwrap().position + 100);
    for cursor in cursors {
        for limit in [1, 2, 100] {
            let page = store
                .read_stream_page("user-1", cursor, limit)
                .await
                .unwrap();
            let expected: Vec<i64> = mine_after(cursor)
                .into_iter()
                .take(limit as usize)
                .collect();
            assert_eq!(positions(&page), expected, "after {cursor}, limit {limit}");
            assert!(page.iter().all(|e| e.stream_id == "user-1"));
        }
    }
    assert_eq!(
        store
            .read_stream_page("user-1", mine[2].position, 2)
            .await
            .unwrap(),
        mine[3..5],
        "a page reads what an append answered"
    );
    assert!(
        store
            .read_stream_page("user-3", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

/// Everything `read_all` yields once `expected` events are visible. On PostgreSQL it reads
/// only below the oldest transaction in flight in the whole cluster, and the other tests'
/// transactions hold that back for a moment.
async fn read_all_settled(store: &dyn EventStore, expected: usize) -> Vec<RecordedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all: Vec<RecordedEvent> = store.read_all(0).try_collect().await.unwrap();
        if all.len() >= expected || std::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both_backends!(the_read_for_folding_opens_the_sessions_events_and_passes_over_the_others);
async fn the_read_for_folding_opens_the_sessions_events_and_passes_over_the_others(
    store: Arc<dyn EventStore>,
) {
    use chrono::{TimeDelta, Utc};
    use tokenledger_domain::{ERASED, Event, IssueReason, LoginFailed, TokenHash, TokenIssued};
    use uuid::Uuid;
    let at = Utc::now();
    let (ip, agent) = (
        Some("192.0.2.7".to_owned()),
        Some("Firefox/133.0".to_owned()),
    );
    let login = Event::TokenIssued(TokenIssued {
        session_id: Uuid::now_v7(),
        device_id: "phone".into(),
        token_id: Uuid::now_v7(),
        token_hash: TokenHash([3; 32]),
        reason: IssueReason::Login,
        issued_at: at,
        token_expires_at: at + TimeDelta::days(30),
        idle_expires_at: at + TimeDelta::days(30),
        absolute_expires_at: at + TimeDelta::days(90),
        ip: ip.clone(),
        user_agent: agent.clone(),
    });
    let failed = Event::LoginFailed(LoginFailed {
        failed_at: at,
        ip: Some("198.51.100.9".to_owned()),
        user_agent: agent.clone(),
    });
    let events = [&failed, &login].map(NewEvent::from).to_vec();
    store
        .append("user-5", 0, events, &EventMetadata::default())
        .await
        .unwrap();

    // On PostgreSQL a read stops below the transactions still open in the database (the
    // catch-up horizon), which other tests' may be for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let payloads = loop {
        let payloads: Vec<EventPayload> = store.read_payloads(0).try_collect().await.unwrap();
        if payloads.len() >= 2 || std::time::Instant::now() > deadline {
            break payloads;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(payloads.len(), 2);
    let (failed_payload, login_payload) = (&payloads[0], &payloads[1]);
    assert!(login_payload.changes_sessions());
    assert_eq!(login_payload.clone().into_event().unwrap(), login);
    assert!(!failed_payload.changes_sessions());
    let Event::LoginFailed(passed_over) = failed_payload.clone().into_event().unwrap() else {
        panic!("a LoginFailed reads as one");
    };
    assert_eq!(
        passed_over.ip.as_deref(),
        Some(ERASED),
        "the fold does not open what it does not fold"
    );
    let all = read_all_settled(store.as_ref(), 2).await;
    assert_eq!(
        all[0].decode().unwrap(),
        failed,
        "a full read opens every event"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_only_another_connections_commit_is_a_write_elsewhere() {
    let (dir, store) = sqlite_store().await;
    let meta = EventMetadata::default();
    assert!(
        store.written_elsewhere_since(store.epoch()).await,
        "the first look has nothing to compare with"
    );
    let epoch = store.epoch();
    assert!(!store.written_elsewhere_since(epoch).await);
    store
        .append("user-1", 0, vec![event(1)], &meta)
        .await
        .unwrap();
    assert!(
        !store.written_elsewhere_since(epoch).await,
        "its own commit is nobody else's"
    );

    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let other = SqliteEventStore::start(Database::open(&url, &ledger_key()).await.unwrap());
    other
        .append("user-2", 0, vec![event(2)], &meta)
        .await
        .unwrap();
    assert!(store.written_elsewhere_since(epoch).await);
    let epoch = store.epoch();
    assert!(!store.written_elsewhere_since(epoch).await, "once");
    other.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_another_instance_may_always_have_written() {
    let Some(store) = postgres_store().await else {
        return;
    };
    assert!(store.written_elsewhere_since(store.epoch()).await);
    assert!(store.written_elsewhere_since(store.epoch()).await);
    store.close().await;
}
