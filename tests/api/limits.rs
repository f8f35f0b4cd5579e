//! Rate limits, blocked users, and the client address behind trusted proxies.

use serde_json::json;
use support::{JWT_SECRET, REFRESH_SECRET, assert_error, assert_rate_limited};

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn the_eleventh_login_in_a_minute_is_a_429() {
    let app = spawn_app().await;
    app.register("ora").await;
    for _ in 0..10 {
        let (status, _) = app
            .post(
                "/api/auth/local",
                json!({"identifier": "ora", "password": "wrong-password"}),
            )
            .await;
        assert_eq!(status, 400);
    }
    let response = app
        .client
        .post(app.url("/api/auth/local"))
        .json(&json!({"identifier": "ora", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = response.json().await.unwrap();
    assert_rate_limited(429, &body);
    // Another identifier from the same address is not held back.
    app.register("pia").await;
    assert!(app.login("pia").await["jwt"].is_string());
}

#[actix_web::test]
async fn refresh_is_limited_per_session_and_off_lifts_both_limits() {
    let app = spawn_app_with(&[("REFRESH_RATE_LIMIT", "3/60s")]).await;
    app.register("quin").await;
    let token = app.login("quin").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.refresh(&token).await.0, 200);
    }
    let (status, body) = app.refresh(&token).await;
    assert_rate_limited(status, &body);

    let open = spawn_app_with(&[("LOGIN_RATE_LIMIT", "off"), ("REFRESH_RATE_LIMIT", "off")]).await;
    open.register("ray").await;
    let token = open.login("ray").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..40 {
        assert_eq!(open.refresh(&token).await.0, 200);
    }
    for _ in 0..15 {
        open.login("ray").await;
    }
}

#[actix_web::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_RATE_LIMIT", "2/60s"),
    ])
    .await;
    app.register("sol").await;
    let login_from = |ip: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/api/auth/local"))
                .header("x-forwarded-for", ip)
                .json(&json!({"identifier": "sol", "password": "password123", "requestRefresh": true}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(login_from("198.51.100.1").await.0, 200);
    assert_eq!(login_from("198.51.100.1").await.0, 200);
    assert_eq!(login_from("198.51.100.1").await.0, 429);
    let (status, body) = login_from("198.51.100.2").await;
    assert_eq!(status, 200, "another client behind the same proxy");
    let (_, sessions) = app
        .get_with_bearer("/api/auth/sessions", body["jwt"].as_str().unwrap())
        .await;
    assert_eq!(sessions["data"][0]["ip"], "198.51.100.2");

    // Untrusted peers cannot choose their address with the header.
    let direct = spawn_app_with(&[("LOGIN_RATE_LIMIT", "2/60s")]).await;
    direct.register("tom").await;
    for (ip, expected) in [
        ("203.0.113.1", 200),
        ("203.0.113.2", 200),
        ("203.0.113.3", 429),
    ] {
        let response = direct
            .client
            .post(direct.url("/api/auth/local"))
            .header("x-forwarded-for", ip)
            .json(&json!({"identifier": "tom", "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{ip}");
    }
}

#[actix_web::test]
async fn a_blocked_user_is_logged_out_everywhere_and_cannot_log_in() {
    let app = spawn_app().await;
    let id = app.register("uma").await["user"]["id"].as_i64().unwrap();
    let login = app.login("uma").await;
    let token = login["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(
        app.refresh(&token).await.0,
        200,
        "its actor is alive and holds the stream"
    );

    let blocked = app.cli(&["user", "block", "uma@example.com"]);
    assert!(
        blocked.status.success(),
        "{}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    assert!(String::from_utf8_lossy(&blocked.stdout).contains(&format!("blocked user {id}")));

    assert_eq!(
        app.refresh(&token).await.0,
        401,
        "the running server refuses the old token"
    );
    assert_eq!(
        app.get_with_bearer("/api/users/me", login["jwt"].as_str().unwrap())
            .await
            .0,
        401
    );
    let (status, body) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "uma", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Your account has been blocked by an administrator",
    );
    assert_eq!(
        app.payloads(id, "SessionsCleared").await[0]["reason"],
        "blocked"
    );

    let listed = String::from_utf8_lossy(&app.cli(&["user", "list"]).stdout).into_owned();
    let row = listed
        .lines()
        .find(|l| l.contains("uma@example.com"))
        .expect("uma is listed");
    assert!(row.contains("yes"), "{listed}");

    let unblocked = app.cli(&["user", "unblock", &id.to_string()]);
    assert!(
        unblocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unblocked.stderr)
    );
    assert!(app.login("uma").await["jwt"].is_string());
    let missing = app.cli(&["user", "block", "nobody"]);
    assert!(!missing.status.success());
}

#[actix_web::test]
async fn no_session_survives_a_block_racing_with_logins() {
    let app = spawn_app_with(&[("LOGIN_RATE_LIMIT", "off")]).await;
    let id = app.register("vic").await["user"]["id"].as_i64().unwrap();
    let logins = futures::future::join_all((0..12).map(|_| {
        app.post(
            "/api/auth/local",
            json!({"identifier": "vic", "password": "password123", "requestRefresh": true}),
        )
    }));
    let dir = app.dir.path().to_owned();
    let block = tokio::task::spawn_blocking(move || {
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
            .args(["user", "block", "vic"])
            .env("DATA_DIR", dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
            .env("LEDGER_KEY", support::LEDGER_KEY)
            .env("PERSONAL_DATA_KEY", support::PERSONAL_DATA_KEY)
            .status()
            .unwrap()
    });
    let (answers, blocked) = futures::join!(logins, block);
    assert!(blocked.unwrap().success());
    // Give the catch-up reader a moment to fold the CLI's event.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for (status, body) in answers {
        if status == 200 {
            assert_eq!(
                app.refresh(body["refreshToken"].as_str().unwrap()).await.0,
                401,
                "a session outlived the block"
            );
        } else if status == 503 {
            // More logins at once than the password queue holds on a small machine: refused
            // before any session started.
            assert_eq!(body["error"]["name"], "ServiceUnavailableError", "{body}");
        } else {
            assert_error(
                status,
                &body,
                400,
                "ApplicationError",
                "Your account has been blocked by an administrator",
            );
        }
    }
    let live = app
        .state()
        .projection
        .read()
        .unwrap()
        .sessions_of(id, chrono::Utc::now());
    assert!(live.is_empty(), "{live:?}");
}

#[actix_web::test]
async fn malformed_logins_count_against_the_limit_too() {
    let app = spawn_app_with(&[("LOGIN_RATE_LIMIT", "2/60s")]).await;
    for _ in 0..2 {
        let (status, _) = app
            .post("/api/auth/local", json!({"identifier": ["x"]}))
            .await;
        assert_eq!(status, 400);
    }
    let (status, _) = app
        .post("/api/auth/local", json!({"identifier": ["x"]}))
        .await;
    assert_eq!(status, 429);
}
