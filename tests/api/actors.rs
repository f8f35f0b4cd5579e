//! Actor life cycle: passivation when idle, and deciding again after another writer.

use std::time::Duration;

use serde_json::json;
use tokenledger::store::{EventMetadata, NewContent, NewEvent, stream_of};

use crate::helpers::spawn_app_with;

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
