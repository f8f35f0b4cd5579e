//! Three real `tokenledger` processes on one PostgreSQL database (DESIGN §10): a token works
//! on every instance, concurrent refreshes spread over them never fork a session, and a log
//! out on one is felt on the others at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::Server as Instance;
use crate::store::fresh_postgres_url;

async fn start(url: &str, dir: &std::path::Path) -> Instance {
    let instance = Instance::start(
        dir,
        &[
            ("DATABASE_URL", url),
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("REFRESH_RATE_LIMIT", "off"),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
        ],
    );
    instance.wait_until_ready().await;
    instance
}

async fn post(
    client: &reqwest::Client,
    at: &Instance,
    path: &str,
    body: Value,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(format!("{}{path}", at.address)).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get(client: &reqwest::Client, at: &Instance, path: &str, bearer: &str) -> u16 {
    client
        .get(format!("{}{path}", at.address))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The session id (`sid`) an access token belongs to.
fn session_of(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
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
    let [a, b, c] = [&instances[0], &instances[1], &instances[2]];
    let client = reqwest::Client::new();

    let (status, _) = post(
        &client,
        a,
        "/api/auth/local/register",
        json!({"username": "zoe", "email": "zoe@example.com", "password": "password123"}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, login) = post(
        &client,
        a,
        "/api/auth/local",
        json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let jwt = login["jwt"].as_str().unwrap().to_owned();
    let token = login["refreshToken"].as_str().unwrap().to_owned();

    // (a) Issued on A, usable on B and C at once: an instance that has not seen a session
    // yet reads the user's stream before it says "unknown".
    for other in [b, c] {
        assert_eq!(
            get(&client, other, "/api/users/me", &jwt).await,
            200,
            "{}",
            other.address
        );
    }
    let (status, probe) = post(
        &client,
        b,
        "/api/auth/local",
        json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &client,
        c,
        "/api/auth/local/refresh",
        json!({ "refreshToken": probe["refreshToken"] }),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "a token issued on B refreshes on C at once: {body}"
    );
    // B's actor for zoe is warm now (the probe): it must still see what A does next.
    let (_, fresh) = post(
        &client,
        a,
        "/api/auth/local",
        json!({"identifier": "zoe", "password": "password123", "requestRefresh": true}),
        None,
    )
    .await;
    let (status, body) = post(
        &client,
        b,
        "/api/auth/local/refresh",
        json!({ "refreshToken": fresh["refreshToken"] }),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "a warm actor on B sees A's new session: {body}"
    );
    let (status, _) = post(
        &client,
        b,
        "/api/auth/logout",
        json!({}),
        fresh["jwt"].as_str(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &client,
        a,
        "/api/auth/local/refresh",
        json!({ "refreshToken": fresh["refreshToken"] }),
        None,
    )
    .await;
    assert_eq!(status, 401, "the logout on B really ended A's session");

    // (b) 200 concurrent refreshes of that one token, spread over the three instances.
    let answers = futures::future::join_all((0..200).map(|n| {
        let (client, token, instances) = (&client, token.clone(), &instances);
        async move {
            post(
                client,
                &instances[n % 3],
                "/api/auth/local/refresh",
                json!({ "refreshToken": token }),
                None,
            )
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
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let session = session_of(&jwt);
    let rotations: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE event_type = 'TokenRotated' AND payload->>'session_id' = $1",
    )
    .bind(&session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        rotations, 1,
        "one TokenRotated for the one accepted generation"
    );
    // The login's one session (registration and the probe on B started the others), on every
    // instance alike.
    for instance in &instances {
        let listed = client
            .get(format!("{}/api/auth/sessions", instance.address))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        let listed: Value = listed.json().await.unwrap();
        assert_eq!(
            listed["data"].as_array().map(Vec::len),
            Some(3),
            "{}: {listed}",
            instance.address
        );
    }

    // (c) Log out everywhere on A: refresh fails on B and C at once, /api/users/me within a second.
    let (status, _) = post(
        &client,
        a,
        "/api/auth/logout",
        json!({"scope": "all"}),
        Some(&jwt),
    )
    .await;
    assert_eq!(status, 200);
    for other in [b, c] {
        let (status, body) = post(
            &client,
            other,
            "/api/auth/local/refresh",
            json!({ "refreshToken": successor }),
            None,
        )
        .await;
        assert_eq!(status, 401, "{}: {body}", other.address);
        assert!(
            eventually(Duration::from_secs(1), async || get(
                &client,
                other,
                "/api/users/me",
                &jwt
            )
            .await
                == 401)
            .await,
            "{} still accepts the access token after a second",
            other.address
        );
    }
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'SessionsCleared'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 1);
    pool.close().await;
}
