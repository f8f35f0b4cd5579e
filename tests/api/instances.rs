//! Three real `tokenledger` processes on one PostgreSQL database (DESIGN §10): a token works
//! on every instance, concurrent refreshes spread over them never fork a session, and a log
//! out on one is felt on the others at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use support::{Api, Server, claims, fresh_postgres_url};

use crate::helpers::server_on;

async fn start(url: &str, dir: &std::path::Path) -> Server {
    server_on(dir)
        .envs(&[
            ("DATABASE_URL", url),
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("REFRESH_RATE_LIMIT", "off"),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
        ])
        .serving()
        .await
}

/// Waits until `check` holds, for at most `limit`.
async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(start(&url, dir.path()).await);
    }
    // One connection pool for all three, as a load balancer in front of them would have.
    let client = reqwest::Client::new();
    let apis: Vec<Api> = instances
        .iter()
        .map(|instance| Api::with_client(instance.address.clone(), client.clone()))
        .collect();
    let [a, b, c] = [&apis[0], &apis[1], &apis[2]];

    let (status, _) = a
        .post(
            "/api/auth/local/register",
            json!({"username": "zoe", "email": "zoe@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, login) = a
        .post(
            "/api/auth/local",
            json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let jwt = login["jwt"].as_str().unwrap().to_owned();
    let token = login["refreshToken"].as_str().unwrap().to_owned();

    // (a) Issued on A, usable on B and C at once: an instance that has not seen a session
    // yet reads the user's stream before it says "unknown".
    for other in [b, c] {
        assert_eq!(
            other.get_with_bearer("/api/users/me", &jwt).await.0,
            200,
            "{}",
            other.address
        );
    }
    let (status, probe) = b
        .post(
            "/api/auth/local",
            json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = c
        .post(
            "/api/auth/local/refresh",
            json!({ "refreshToken": probe["refreshToken"] }),
        )
        .await;
    assert_eq!(
        status, 200,
        "a token issued on B refreshes on C at once: {body}"
    );
    // B's actor for zoe is warm now (the probe): it must still see what A does next.
    let (_, fresh) = a
        .post(
            "/api/auth/local",
            json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        )
        .await;
    let (status, body) = b
        .post(
            "/api/auth/local/refresh",
            json!({ "refreshToken": fresh["refreshToken"] }),
        )
        .await;
    assert_eq!(
        status, 200,
        "a warm actor on B sees A's new session: {body}"
    );
    let (status, _) = b
        .post_with_bearer(
            "/api/auth/logout",
            fresh["jwt"].as_str().unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = a
        .post(
            "/api/auth/local/refresh",
            json!({ "refreshToken": fresh["refreshToken"] }),
        )
        .await;
    assert_eq!(status, 401, "the logout on B really ended A's session");

    // (b) 200 concurrent refreshes of that one token, spread over the three instances.
    let answers = futures::future::join_all((0..200).map(|n| {
        let (token, apis) = (token.clone(), &apis);
        async move {
            apis[n % 3]
                .post("/api/auth/local/refresh", json!({ "refreshToken": token }))
                .await
        }
    }))
    .await;
    let successors: HashSet<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["refreshToken"].as_str().unwrap()
        })
        .collect();
    assert_eq!(successors.len(), 1, "every 200 carries the same successor");
    let successor = successors.into_iter().next().unwrap().to_owned();
    // The trail as the command line reads it (the events' fields are in their bodies).
    let session = claims(&jwt)["sid"].as_str().unwrap().to_owned();
    let trail = instances[0].cli(&["audit", "zoe", "--json"]);
    assert!(trail.status.success());
    let rotations = String::from_utf8_lossy(&trail.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["type"] == "TokenRotated" && e["sessionId"] == session.as_str())
        .count();
    assert_eq!(
        rotations, 1,
        "one TokenRotated for the one accepted generation"
    );
    // The login's one session (registration and the probe on B started the others), on every
    // instance alike.
    for instance in &apis {
        let (_, listed) = instance.get_with_bearer("/api/auth/sessions", &jwt).await;
        assert_eq!(
            listed["data"].as_array().map(Vec::len),
            Some(3),
            "{}: {listed}",
            instance.address
        );
    }

    // (c) Log out everywhere on A: refresh fails on B and C at once, /api/users/me within a second.
    let (status, _) = a
        .post_with_bearer("/api/auth/logout", &jwt, json!({"scope": "all"}))
        .await;
    assert_eq!(status, 200);
    for other in [b, c] {
        let (status, body) = other
            .post(
                "/api/auth/local/refresh",
                json!({ "refreshToken": successor }),
            )
            .await;
        assert_eq!(status, 401, "{}: {body}", other.address);
        assert!(
            eventually(Duration::from_secs(1), async || other
                .get_with_bearer("/api/users/me", &jwt)
                .await
                .0
                == 401)
            .await,
            "{} still accepts the access token after a second",
            other.address
        );
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'SessionsCleared'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 1);
    pool.close().await;
}
