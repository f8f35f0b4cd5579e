//! Actor life cycle: passivation when idle, and deciding again after another writer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tokenledger::config::KeyBytes;
use tokenledger::store::sqlite::{Database, SqliteEventStore};
use tokenledger::store::{EventMetadata, EventStore, NewContent, NewEvent, StoreKeys, stream_of};
use tokenledger_domain::{Event, TokenRefreshed};

use crate::helpers::{TestApp, spawn_app_with};

#[actix_web::test]
async fn an_idle_actor_stops_and_the_next_command_reloads_it_from_the_log() {
    let app = spawn_app_with(&[("ACTOR_IDLE_TIMEOUT", "300ms")]).await;
    app.register("rita").await;
    let token = app.login("rita").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.state().registry.live_actors(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.state().registry.live_actors() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.state().registry.live_actors(),
        0,
        "the idle actor stopped"
    );
    let reads = app
        .store()
        .stats()
        .stream_reads
        .load(std::sync::atomic::Ordering::Relaxed);
    let (status, body) = app.refresh(&token).await;
    assert_eq!(status, 200, "{body}");
    let after = app
        .store()
        .stats()
        .stream_reads
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after, reads + 1, "the new actor loaded the stream once");
}

#[actix_web::test]
async fn a_conflicting_append_by_another_writer_is_reloaded_and_decided_again() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_ROTATION", "true")]).await;
    let id = app.register("sam").await["user"]["id"].as_i64().unwrap();
    let token = app.login("sam").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another instance writes to the stream behind this actor's back.
    let stream = stream_of(id);
    let version = app.store().read_stream(&stream, 0).await.unwrap().len() as i64;
    let foreign = NewEvent {
        event_type: "LoginFailed",
        schema_version: 1,
        // As a version before sealed personal data wrote it: JSON.
        content: NewContent::Json(
            json!({"failed_at": "2026-01-01T00:00:00Z", "ip": "192.0.2.1", "user_agent": null})
                .to_string(),
        ),
    };
    app.store()
        .append(&stream, version, vec![foreign], &EventMetadata::default())
        .await
        .unwrap();

    let (status, body) = app.refresh(&token).await;
    assert_eq!(status, 200, "{body}");
    let types = app.event_types(id).await;
    assert_eq!(
        types,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "LoginFailed",
            "TokenRotated"
        ]
    );
}

/// The store a second process opens on the app's SQLite file, as the CLI does: its own
/// connections, its own appender.
async fn another_process(app: &TestApp) -> SqliteEventStore {
    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let keys = StoreKeys {
        ledger: KeyBytes::parse(support::LEDGER_KEY).unwrap(),
        personal: KeyBytes::parse(support::PERSONAL_DATA_KEY).unwrap(),
    };
    SqliteEventStore::start(Database::open(&url, &keys).await.unwrap())
}

#[actix_web::test]
async fn a_refresh_that_writes_nothing_reads_no_stream_until_another_process_writes() {
    let app = spawn_app_with(&[("SESSION_ACTIVITY_RESOLUTION", "10m")]).await;
    let id = app.register("tess").await["user"]["id"].as_i64().unwrap();
    let token = app.login("tess").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued = app.payloads(id, "TokenIssued").await.pop().unwrap();
    assert_eq!(app.refresh(&token).await.0, 200);
    let reads = || app.store().stats().stream_reads.load(Ordering::Relaxed);
    let quiet = reads();
    for _ in 0..3 {
        assert_eq!(app.refresh(&token).await.0, 200);
    }
    assert_eq!(
        reads(),
        quiet,
        "nobody else wrote: no refresh read its stream"
    );

    // Between two refreshes, another process records a use of the session from another
    // client. The actor's state still says this client used it a moment ago, which alone
    // would make the next refresh write nothing: it must read what the other one wrote.
    let other = another_process(&app).await;
    let stream = stream_of(id);
    let version = other.read_stream(&stream, 0).await.unwrap().len() as i64;
    let now = Utc::now();
    let elsewhere = Event::TokenRefreshed(TokenRefreshed {
        session_id: serde_json::from_value(issued["session_id"].clone()).unwrap(),
        generation: 0,
        refreshed_at: now,
        idle_expires_at: now + TimeDelta::hours(1),
        ip: Some("198.51.100.7".into()),
        user_agent: Some("another client".into()),
        same_client: false,
    });
    other
        .append(
            &stream,
            version,
            vec![NewEvent::from(&elsewhere)],
            &EventMetadata::default(),
        )
        .await
        .unwrap();
    other.close().await;
    let before = reads();
    assert_eq!(app.refresh(&token).await.0, 200);
    assert_eq!(reads(), before + 1, "the refresh read its stream's tail");
    let used = app.payloads(id, "TokenRefreshed").await;
    let ips: Vec<_> = used.iter().map(|e| e["ip"].clone()).collect();
    assert_eq!(
        ips,
        [json!("198.51.100.7"), issued["ip"].clone()],
        "after another client's use, this client's is recorded again"
    );

    let quiet = reads();
    assert_eq!(app.refresh(&token).await.0, 200);
    assert_eq!(reads(), quiet, "quiet again");
    // And the CLI itself, a process of its own: the refresh after it sees the block.
    let blocked = app.cli(&["user", "block", "tess"]);
    assert!(blocked.status.success(), "{blocked:?}");
    assert_eq!(app.refresh(&token).await.0, 401);
}
