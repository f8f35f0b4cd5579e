//! The SQLite event store on a real file: appends, typed conflicts, order, the hash chain.

use futures::TryStreamExt;
use tokenledger::store::sqlite::{Database, SqliteEventStore};
use tokenledger::store::{EventMetadata, EventStore, NewEvent, StoreError, chain_hash};

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_type: "LoginFailed",
        schema_version: 1,
        payload: format!("{{\"n\":{n}}}"),
    }
}

async fn open() -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let store = SqliteEventStore::start(Database::open(&url).await.unwrap());
    (dir, store)
}

#[tokio::test]
async fn appends_read_back_in_order_with_an_unbroken_chain() {
    let (_dir, store) = open().await;
    let meta = EventMetadata::default();
    store
        .append("user-1", 0, vec![event(1), event(2)], &meta)
        .await
        .unwrap();
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
    assert_eq!(stream[0].prev_hash, vec![0; 32]);
    for pair in stream.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for e in &stream {
        let recorded_at = e.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let expected = chain_hash(
            &e.prev_hash,
            &e.stream_id,
            e.stream_version,
            &e.event_type,
            &e.payload,
            &e.metadata,
            &recorded_at,
        );
        assert_eq!(e.hash, expected, "hash of version {}", e.stream_version);
    }
    assert_eq!(store.read_stream("user-1", 2).await.unwrap().len(), 1);
    let all: Vec<_> = store.read_all(0).try_collect().await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(all[2].stream_id, "user-2");
    let tail: Vec<_> = store.read_all(2).try_collect().await.unwrap();
    assert_eq!(tail.len(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict_and_writes_nothing() {
    let (_dir, store) = open().await;
    let meta = EventMetadata::default();
    store
        .append("user-1", 0, vec![event(1)], &meta)
        .await
        .unwrap();
    match store.append("user-1", 0, vec![event(2)], &meta).await {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_on_one_stream_have_exactly_one_winner_per_version() {
    let (_dir, store) = open().await;
    let store = std::sync::Arc::new(store);
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
    let all: Vec<_> = store.read_all(0).try_collect().await.unwrap();
    assert_eq!(all.len(), 201);
    store.close().await;
}
