//! Access tokens other services check without our secret: EdDSA and ES256 tokens verified by
//! an independent library (Node's `jose`, pinned in tests/jwks/package-lock.json) through
//! `/.well-known/jwks.json` alone; rotation without logging anyone out; the default HS256
//! mode as Strapi's.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const SIGNING_KEY: &str = "5a1f0c3e9b7d2a4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f708192a3b4c5d6e7f809";

/// `tests/jwks/check.mjs` with these arguments; its one line of output. `None`: skipped.
async fn jose(args: &[&str]) -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jwks");
    // CI installs what it needs (.ci/run): there, a missing piece is a failure, not a skip.
    if !support::runs_here(
        "the JWKS test",
        crate::helpers::node_packages_missing(&dir, &["jose"]),
    ) {
        return None;
    }
    let mut node = Command::new("node");
    node.arg(dir.join("check.mjs")).args(args).current_dir(&dir);
    // The server runs on this test's runtime: wait for node off it.
    let output = actix_web::rt::task::spawn_blocking(move || node.output())
        .await
        .expect("the node task")
        .expect("node runs");
    assert!(
        output.status.success(),
        "check.mjs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// jose's verdict on `token`, checked against the server's JWKS and issuer.
async fn verified(app: &TestApp, token: &str) -> Option<Value> {
    let url = format!("{}/.well-known/jwks.json", app.address);
    let said = jose(&["verify", &url, token, &app.address]).await?;
    Some(serde_json::from_str(&said).expect("check.mjs answers JSON"))
}

fn header(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON header")
}

fn s(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

async fn cache_control(app: &TestApp) -> String {
    let answer = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request");
    let value = answer
        .headers()
        .get("cache-control")
        .expect("Cache-Control");
    value.to_str().unwrap().to_owned()
}

async fn kids(app: &TestApp) -> Vec<String> {
    let (status, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{jwks}");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| s(&key["kid"]))
        .collect()
}

async fn asymmetric_tokens_verify_through_the_jwks_alone(alg: &str) {
    let app = spawn_app_with(&[("ACCESS_TOKEN_ALG", alg), ("SIGNING_KEY", SIGNING_KEY)]).await;
    let id = app.register("ada").await["user"]["id"].as_i64().unwrap();
    let jwt = s(&app.login("ada").await["jwt"]);
    let head = header(&jwt);
    assert_eq!(
        (head["alg"].as_str(), head["typ"].as_str()),
        (Some(alg), Some("JWT"))
    );
    let kid = s(&head["kid"]);
    assert!(
        kids(&app).await.contains(&kid),
        "the signing key is published"
    );
    // Our own routes take it too.
    assert_eq!(app.get_with_bearer("/api/users/me", &jwt).await.0, 200);

    let Some(verdict) = verified(&app, &jwt).await else {
        return;
    };
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["payload"]["id"], id);
    assert_eq!(verdict["payload"]["iss"], app.address.as_str());
    assert_eq!(verdict["header"]["kid"], kid.as_str());

    // Signed by a key not in the set: under our kid, and under one of its own.
    let iat = chrono::Utc::now().timestamp();
    let claims = json!({"id": id, "sid": "00000000-0000-7000-8000-000000000000", "iat": iat,
        "exp": iat + 600, "iss": app.address})
    .to_string();
    for forged_kid in [kid.as_str(), "someone-elses-key"] {
        let forged = jose(&["forge", alg, forged_kid, &claims]).await.unwrap();
        let verdict = verified(&app, &forged).await.unwrap();
        assert_eq!(verdict["ok"], false, "{verdict}");
        assert_eq!(app.get_with_bearer("/api/users/me", &forged).await.0, 401);
    }
    // One byte of the signature changed.
    let mut tampered = jwt.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(verified(&app, &tampered).await.unwrap()["ok"], false);
}

#[actix_web::test]
async fn eddsa_tokens_verify_through_the_jwks_alone_and_foreign_keys_are_refused() {
    asymmetric_tokens_verify_through_the_jwks_alone("EdDSA").await;
}

#[actix_web::test]
async fn es256_tokens_verify_through_the_jwks_alone_and_foreign_keys_are_refused() {
    asymmetric_tokens_verify_through_the_jwks_alone("ES256").await;
}

#[actix_web::test]
async fn the_default_signs_as_strapi_and_publishes_no_key() {
    let app = spawn_app_with(&[]).await;
    app.register("ada").await;
    let jwt = s(&app.login("ada").await["jwt"]);
    assert_eq!(header(&jwt), json!({"alg": "HS256", "typ": "JWT"}));
    let (status, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!((status, jwks), (200, json!({"keys": []})));
    assert_eq!(cache_control(&app).await, "public, max-age=300");
    let (status, metadata) = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(metadata["issuer"], app.address.as_str());
    assert_eq!(
        metadata["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.address)
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{}/api/auth/introspect", app.address)
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{}/api/auth/revoke", app.address)
    );
    // Nothing about keys is written in the default mode.
    assert!(
        app.store()
            .read_stream("signing-keys", 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Waits until the server signs with a key other than `kid` ("": `JWT_SECRET`'s, which has
/// none): it learns of a rotation made by another process through its catch-up reader.
async fn until_signing_key_changes(app: &TestApp, user: &str, kid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jwt = s(&app.login(user).await["jwt"]);
        if header(&jwt)["kid"].as_str().unwrap_or("") != kid {
            return jwt;
        }
        assert!(
            Instant::now() < deadline,
            "the server never took the new key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_rotation_logs_nobody_out_and_the_old_key_leaves_once_its_tokens_expired() {
    let app = spawn_app_with(&[
        ("ACCESS_TOKEN_ALG", "EdDSA"),
        ("SIGNING_KEY", SIGNING_KEY),
        ("LOGIN_RATE_LIMIT", "off"),
    ])
    .await;
    app.register("ada").await;
    let login = app.login("ada").await;
    let (before, refresh) = (s(&login["jwt"]), s(&login["refreshToken"]));
    let old_kid = s(&header(&before)["kid"]);

    let rotated = app.cli(&["keys", "rotate"]);
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        said.starts_with("rotated: generation 2 (EdDSA, kid "),
        "{said}"
    );
    let after = until_signing_key_changes(&app, "ada", &old_kid).await;
    let new_kid = s(&header(&after)["kid"]);
    assert!(said.contains(&new_kid), "{said}");

    // The token signed before still works, here and for a service checking the JWKS.
    assert_eq!(app.get_with_bearer("/api/users/me", &before).await.0, 200);
    if let Some(verdict) = verified(&app, &before).await {
        assert_eq!(verdict["ok"], true, "{verdict}");
    }
    assert!(kids(&app).await.contains(&old_kid));
    // The refresh token from before the rotation gets an access token of the new key.
    let (status, refreshed) = app.refresh(&refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(header(&s(&refreshed["jwt"]))["kid"], new_kid.as_str());

    // Just before the old key's last token expires, it is still published and taken.
    app.advance(TimeDelta::hours(2) - TimeDelta::seconds(30));
    assert_eq!(app.get_with_bearer("/api/users/me", &before).await.0, 200);
    assert!(kids(&app).await.contains(&old_kid));
    // Past it (and the slack for instances that learn of a rotation late), it is gone.
    app.advance(TimeDelta::seconds(100));
    assert_eq!(app.get_with_bearer("/api/users/me", &before).await.0, 401);
    let published = kids(&app).await;
    assert!(!published.contains(&old_kid), "{published:?}");
    assert!(published.contains(&new_kid), "{published:?}");
    // And the user is still logged in.
    // With rotation off (the default) the same refresh token goes on.
    let refresh = refreshed["refreshToken"]
        .as_str()
        .map_or(refresh.clone(), str::to_owned);
    let (status, again) = app.refresh(&refresh).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&again["jwt"]))
            .await
            .0,
        200
    );

    // Each rotation is an event of the ledger, which still verifies.
    let recorded = app.store().read_stream("signing-keys", 0).await.unwrap();
    let reasons: Vec<Value> = recorded
        .iter()
        .map(|e| {
            assert_eq!(e.event_type, "SigningKeyRotated");
            serde_json::from_str::<Value>(&e.payload).unwrap()["reason"].clone()
        })
        .collect();
    assert_eq!(reasons, vec![json!("algorithm"), json!("manual")]);
    let verify = app.cli(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[actix_web::test]
async fn a_scheduled_rotation_comes_when_the_key_is_that_old() {
    let app = spawn_app_with(&[
        ("ACCESS_TOKEN_ALG", "ES256"),
        ("SIGNING_KEY", SIGNING_KEY),
        ("SIGNING_KEY_ROTATION", "1d"),
        ("LOGIN_RATE_LIMIT", "off"),
    ])
    .await;
    app.register("ada").await;
    let before = s(&app.login("ada").await["jwt"]);
    let kid = s(&header(&before)["kid"]);
    let (_, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    // A quarter of the schedule, at most an hour.
    assert_eq!(cache_control(&app).await, "public, max-age=3600");
    app.advance(TimeDelta::days(1));
    let after = until_signing_key_changes(&app, "ada", &kid).await;
    assert_eq!(header(&after)["alg"], "ES256");
    assert_eq!(app.get_with_bearer("/api/users/me", &after).await.0, 200);
}

#[actix_web::test]
async fn a_change_of_algorithm_keeps_the_tokens_of_the_old_one_until_they_expire() {
    let app = spawn_app_with(&[("ACCESS_TOKEN_ALG", "EdDSA"), ("SIGNING_KEY", SIGNING_KEY)]).await;
    app.register("ada").await;
    let eddsa = s(&app.login("ada").await["jwt"]);
    let app = app.restart_with(&[("ACCESS_TOKEN_ALG", "HS256")]).await;
    let hs = s(&app.login("ada").await["jwt"]);
    assert_eq!(header(&hs), json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(app.get_with_bearer("/api/users/me", &eddsa).await.0, 200);
    assert_eq!(app.get_with_bearer("/api/users/me", &hs).await.0, 200);
}

/// Two processes on one PostgreSQL database: a key rotated by the command line is taken by
/// both, and a token either signed before it still works on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_postgresql_take_a_rotation_made_elsewhere() {
    let Some(url) = support::fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let server = crate::helpers::server_on(dir.path())
            .envs(&[
                ("DATABASE_URL", url.as_str()),
                ("ACCESS_TOKEN_ALG", "EdDSA"),
                ("SIGNING_KEY", SIGNING_KEY),
                ("ACCESS_TOKEN_ISSUER", "https://auth.example.com"),
                ("LOGIN_RATE_LIMIT", "off"),
                ("LOGIN_IP_RATE_LIMIT", "off"),
            ])
            .serving()
            .await;
        instances.push(server);
    }
    let (a, b) = (instances[0].api(), instances[1].api());
    a.register("ada").await;
    let before = s(&a.login("ada").await["jwt"]);
    let old_kid = s(&header(&before)["kid"]);
    // The second start found the first's key: one algorithm rotation in the log, not two.
    assert_eq!(
        header(&s(&b.login("ada").await["jwt"]))["kid"],
        old_kid.as_str()
    );

    let rotated = instances[0].cli(&["keys", "rotate"]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    for api in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let jwt = s(&api.login("ada").await["jwt"]);
            if header(&jwt)["kid"] != old_kid.as_str() {
                // Signed on one instance, taken on the other.
                let other = if std::ptr::eq(api, &a) { &b } else { &a };
                assert_eq!(other.get_with_bearer("/api/users/me", &jwt).await.0, 200);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never took the new key",
                api.address
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(api.get_with_bearer("/api/users/me", &before).await.0, 200);
    }
    let (_, on_a) = a.get("/.well-known/jwks.json").await;
    let (_, on_b) = b.get("/.well-known/jwks.json").await;
    assert_eq!(on_a, on_b);
    assert_eq!(on_a["keys"].as_array().unwrap().len(), 3, "{on_a}");
}

#[actix_web::test]
async fn hs256_rotates_too_and_names_its_secret_by_kid() {
    // As `serve` generates it on first start.
    let app = spawn_app_with(&[("SIGNING_KEY", SIGNING_KEY), ("LOGIN_RATE_LIMIT", "off")]).await;
    app.register("ada").await;
    let before = s(&app.login("ada").await["jwt"]);
    let rotated = app.cli(&["keys", "rotate"]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let after = until_signing_key_changes(&app, "ada", "").await;
    let kid = s(&header(&after)["kid"]);
    assert_eq!(header(&after)["alg"], "HS256");
    // The services that check HS256 tokens are given the new secret by the operator.
    let listed = app.cli(&["keys", "list", "--secrets"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let line = listed
        .lines()
        .find(|line| line.contains(&kid))
        .unwrap_or_else(|| panic!("{listed}"));
    let secret = line.split("secret ").nth(1).expect("the secret").trim();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let checked = jsonwebtoken::decode::<Value>(
        &after,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).unwrap(),
        &validation,
    );
    assert!(checked.is_ok(), "{checked:?}");
    // Nothing was published, and the token signed with JWT_SECRET before still works.
    assert_eq!(kids(&app).await, Vec::<String>::new());
    assert_eq!(app.get_with_bearer("/api/users/me", &before).await.0, 200);
    assert_eq!(app.get_with_bearer("/api/users/me", &after).await.0, 200);
}
