//! The server on PostgreSQL: the same API, and two instances on one database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fresh_postgres_url;

use crate::helpers::{TestApp, spawn_app_with};

async fn on_postgres(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("DATABASE_URL", url),
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_RATE_LIMIT", "off"),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}

#[actix_web::test]
async fn the_api_works_on_postgres_and_survives_a_restart() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let app = on_postgres(&url, &[]).await;
    let id = app.register("pat").await["user"]["id"].as_i64().unwrap();
    let token = app.login("pat").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let answers = futures::future::join_all((0..30).map(|_| app.refresh(&token))).await;
    let successors: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["refreshToken"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(successors.len(), 1);
    assert_eq!(
        app.event_types(id).await,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "TokenRotated"
        ]
    );
    let successor = successors.into_iter().next().unwrap();
    let app = app.restart().await;
    assert_eq!(
        app.refresh(&successor).await.0,
        200,
        "state rebuilt from PostgreSQL"
    );
    let (status, _) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "pat", "email": "other@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 400, "the users table is PostgreSQL's too");
    app.stop().await;
}

#[actix_web::test]
async fn two_instances_on_one_database_share_sessions() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let a = on_postgres(&url, &[]).await;
    let b = on_postgres(&url, &[]).await;
    a.register("quin").await;
    let login = a.login("quin").await;
    let token = login["refreshToken"].as_str().unwrap().to_owned();
    // B learns of A's session from the log (LISTEN/NOTIFY wakes its reader).
    let deadline = Instant::now() + Duration::from_secs(2);
    let rotated = loop {
        let (status, body) = b.refresh(&token).await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "B never saw A's session: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A refresh on A of the same token is the grace window's identical successor, not a fork.
    let (status, again) = a.refresh(&token).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refreshToken"], rotated["refreshToken"]);

    // Log out everywhere on A: refresh on B fails at once.
    let (status, _) = a
        .post_with_bearer(
            "/api/auth/logout",
            login["jwt"].as_str().unwrap(),
            json!({"scope": "all"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        b.refresh(rotated["refreshToken"].as_str().unwrap()).await.0,
        401
    );
    a.stop().await;
    b.stop().await;
}
