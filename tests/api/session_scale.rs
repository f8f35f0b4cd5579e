//! A user with very many sessions: clearing them must not hold up other users, a login beyond
//! `MAX_SESSIONS_PER_USER` ends the least recently used one, and the list comes a page at a
//! time. Thousands of logins through argon2 would take minutes, so the sessions are written
//! into the user's stream through the store, as another instance or an import would write
//! them, and the server reads them as it reads any log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use support::{assert_error, assert_invalid_refresh_token};
use tokenledger::store::{Actor, EventMetadata, NewEvent, stream_of};
use tokenledger_domain::{Event, IssueReason, TokenHash, TokenIssued};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

fn s(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// Appends `count` logins of `user_id`, the first at `first_at` and each a millisecond after
/// the one before, and returns their session ids in login order.
async fn seed_sessions(
    app: &TestApp,
    user_id: i64,
    count: usize,
    first_at: DateTime<Utc>,
) -> Vec<Uuid> {
    let stream = stream_of(user_id);
    let mut version = app
        .store()
        .read_stream(&stream, 0)
        .await
        .expect("read stream")
        .last()
        .map_or(0, |e| e.stream_version);
    let metadata = EventMetadata {
        actor: Actor::System,
        ..EventMetadata::default()
    };
    let mut ids = Vec::with_capacity(count);
    let logins: Vec<Event> = (0..count)
        .map(|i| {
            let issued_at = first_at + TimeDelta::milliseconds(i as i64);
            let session_id = Uuid::now_v7();
            ids.push(session_id);
            Event::TokenIssued(TokenIssued {
                session_id,
                device_id: format!("seeded-{i}"),
                token_id: Uuid::now_v7(),
                token_hash: TokenHash([0; 32]),
                reason: IssueReason::Login,
                issued_at,
                token_expires_at: issued_at + TimeDelta::days(30),
                idle_expires_at: issued_at + TimeDelta::days(30),
                absolute_expires_at: issued_at + TimeDelta::days(90),
                ip: Some("192.0.2.10".to_owned()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned()),
            })
        })
        .collect();
    for chunk in logins.chunks(500) {
        let recorded = app
            .store()
            .append(
                &stream,
                version,
                chunk.iter().map(NewEvent::from).collect(),
                &metadata,
            )
            .await
            .expect("append the seeded logins");
        version = recorded.last().expect("appended").stream_version;
    }
    ids
}

/// The latency below which `share` of the samples fall.
fn percentile(samples: &mut [Duration], share: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * share).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[actix_web::test]
async fn logging_out_of_5000_sessions_does_not_hold_up_another_users_requests() {
    let app = spawn_app_with(&[
        ("MAX_SESSIONS_PER_USER", "10000"),
        ("LOGIN_RATE_LIMIT", "off"),
    ])
    .await;
    let crowd = app.register("crowd").await;
    let crowd_id = crowd["user"]["id"].as_i64().unwrap();
    let other = app.register("bystander").await;
    seed_sessions(&app, crowd_id, 4_999, Utc::now()).await;
    // A fresh start folds the 5,000 sessions into the projection, and the clear below starts
    // the user's actor, which folds them again.
    let app = app.restart().await;

    let (status, _) = app
        .get_with_bearer("/api/users/me", &s(&crowd["jwt"]))
        .await;
    assert_eq!(status, 200, "the seeded stream folded");

    // Open loop: a request every 10 ms whether or not the last has answered, so a stall
    // shows in every request it holds up, not in one slow sample of a waiting client.
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (client, url, jwt) = (
            app.client.clone(),
            app.url("/api/users/me"),
            s(&other["jwt"]),
        );
        let polling = polling.clone();
        actix_web::rt::spawn(async move {
            let mut ticks = actix_web::rt::time::interval(Duration::from_millis(10));
            let mut requests = Vec::new();
            while polling.load(Ordering::Acquire) {
                ticks.tick().await;
                let (client, url, jwt) = (client.clone(), url.clone(), jwt.clone());
                requests.push(actix_web::rt::spawn(async move {
                    let started = Instant::now();
                    let response = client.get(&url).bearer_auth(&jwt).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    started.elapsed()
                }));
            }
            let mut latencies = Vec::with_capacity(requests.len());
            for request in requests {
                latencies.push(request.await.unwrap());
            }
            latencies
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&crowd["jwt"]),
            json!({"scope": "all"}),
        )
        .await;
    let clear = started.elapsed();
    assert_eq!(status, 200, "{body}");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    polling.store(false, Ordering::Release);
    let mut latencies = poller.await.unwrap();

    let p99 = percentile(&mut latencies, 0.99);
    let worst = latencies.last().copied().unwrap_or_default();
    println!(
        "clear of 5000 sessions: {clear:?}; another user's /api/users/me over {} requests: p99 {p99:?}, max {worst:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 20,
        "too few requests: {}",
        latencies.len()
    );
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?} (clear {clear:?})"
    );

    let cleared = app.payloads(crowd_id, "SessionsCleared").await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0]["session_ids"].as_array().unwrap().len(), 5_000);
    let projection = app.state().projection.read().unwrap().len();
    assert_eq!(projection, 1, "only the bystander's session is left");
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&crowd["jwt"]))
            .await
            .0,
        401
    );
}

#[actix_web::test]
async fn the_101st_login_evicts_the_least_recently_used_session() {
    // The default limit, 100. Registration hands out a refresh token too, for the session
    // that will be the least recently used.
    let app = spawn_app_with(&[("REQUEST_REFRESH_ON_ALL", "true")]).await;
    let registered = app.register("collector").await;
    let id = registered["user"]["id"].as_i64().unwrap();
    let oldest = s(&registered["refreshToken"]);
    let oldest_session = app.payloads(id, "TokenIssued").await[0]["session_id"].clone();
    // 99 more, each used later than the registration's: 100 in all. Written behind the
    // actor's back, so the login below meets them as another instance's events.
    let seeded = seed_sessions(&app, id, 99, Utc::now() + TimeDelta::seconds(1)).await;

    // The server's clock past the seeded sessions: the new ones are the most recently used.
    app.advance(TimeDelta::minutes(1));
    let login = app.login("collector").await;
    let jwt = s(&login["jwt"]);

    let (status, body) = app.refresh(&oldest).await;
    assert_invalid_refresh_token(status, &body);
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["reason"], "evicted");
    assert_eq!(revoked[0]["session_id"], oldest_session);
    let trail = app.event_types(id).await;
    assert_eq!(
        trail[trail.len() - 2..],
        ["SessionRevoked", "TokenIssued"],
        "the eviction is recorded before the login it made room for"
    );

    let (status, page) = app
        .get_with_bearer("/api/auth/sessions?pagination[pageSize]=100", &jwt)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["meta"]["pagination"]["total"], 100);
    let listed: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!listed.contains(&s(&oldest_session)));
    assert!(
        listed.contains(&seeded[0].to_string()),
        "the next oldest stays"
    );
    assert_eq!(page["data"][0]["current"], true);

    // The next login evicts the next least recently used: the first seeded session.
    app.login("collector").await;
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[1]["session_id"], seeded[0].to_string());
}

#[actix_web::test]
async fn the_session_list_comes_a_page_at_a_time_in_strapis_shape() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN_TOKEN)]).await;
    let registered = app.register("pager").await;
    let id = registered["user"]["id"].as_i64().unwrap();
    let jwt = s(&registered["jwt"]);
    // 59 more sessions, used an hour ago: the registration's (the current one) is the most
    // recent as well.
    seed_sessions(&app, id, 59, Utc::now() - TimeDelta::hours(1)).await;
    let app = app.restart().await;

    let page = |query: &'static str| {
        let (app, jwt) = (&app, &jwt);
        async move {
            app.get_with_bearer(&format!("/api/auth/sessions{query}"), jwt)
                .await
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, first) = page("").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["meta"],
        json!({"pagination": {"page": 1, "pageSize": 25, "pageCount": 3, "total": 60}})
    );
    assert_eq!(first["data"].as_array().unwrap().len(), 25);
    assert_eq!(
        first["data"][0]["current"], true,
        "the current session first"
    );
    assert_eq!(
        first["data"][1]["deviceId"], "seeded-58",
        "then the most recent"
    );

    let (_, second) = page("?pagination[page]=2").await;
    let (_, third) = page("?pagination%5Bpage%5D=3&pagination%5BpageSize%5D=25").await;
    assert_eq!(second["data"][0]["deviceId"], "seeded-34");
    assert_eq!(third["data"].as_array().unwrap().len(), 10);
    assert_eq!(third["meta"]["pagination"]["page"], 3);
    let mut all: Vec<String> = [&first, &second, &third]
        .into_iter()
        .flat_map(ids)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "the pages cover every session once");

    let (_, sized) = page("?pagination[page]=2&pagination[pageSize]=50").await;
    assert_eq!(sized["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        sized["meta"]["pagination"],
        json!({"page": 2, "pageSize": 50, "pageCount": 2, "total": 60})
    );
    assert_eq!(sized["data"][0]["current"], false);
    let (_, past) = page("?pagination[page]=9").await;
    assert_eq!(past["data"], json!([]));
    let (_, capped) = page("?pagination[pageSize]=1000").await;
    assert_eq!(
        capped["meta"]["pagination"]["pageSize"], 100,
        "Strapi's maxLimit"
    );
    assert_eq!(capped["data"].as_array().unwrap().len(), 60);

    for (query, message) in [
        (
            "?pagination[page]=0",
            "Invalid 'page' parameter. Expected an integer > 0",
        ),
        (
            "?pagination[page]=two",
            "Invalid 'page' parameter. Expected an integer > 0",
        ),
        (
            "?pagination[pageSize]=-5",
            "Invalid 'pageSize' parameter. Expected an integer > 0",
        ),
        (
            "?pagination[pageSize]=",
            "Invalid 'pageSize' parameter. Expected an integer > 0",
        ),
        (
            "?pagination[page]=1.5",
            "Invalid 'page' parameter. Expected an integer > 0",
        ),
    ] {
        let (status, body) = page(query).await;
        assert_error(status, &body, 400, "ValidationError", message);
    }

    // The admin's replay of the same user pages the same way.
    let response = app
        .client
        .get(app.url(&format!(
            "/api/admin/users/{id}/sessions?pagination[pageSize]=10&pagination[page]=6"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        replayed["meta"]["pagination"],
        json!({"page": 6, "pageSize": 10, "pageCount": 6, "total": 60})
    );
    assert!(replayed["meta"]["at"].is_string());
}
