//! The users table is explained by the log: a registration, a password change, a block and
//! an unblock are events of the user's stream, written with the row; sessions keep working
//! around them; `verify` passes, and names any users row edited behind the service's back.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{FreshSchema, PASSWORD, assert_error};
use tokenledger::config::KeyBytes;
use tokenledger::store::postgres::{PgDatabase, PostgresEventStore};
use tokenledger::store::sqlite::{Database, SqliteEventStore};
use tokenledger::store::users::{NewUser, Users};
use tokenledger::store::users_explained::explain_users;
use tokenledger::store::{Actor, EventMetadata, EventStore, StoreKeys, password_digest};

use crate::helpers::{TestApp, spawn_app_with, test_env};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const NEW_PASSWORD: &str = "battery-staple-42";

fn s(value: &Value) -> &str {
    value.as_str().expect("a string")
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The users row's password hash, read from the SQLite file itself.
async fn hash_in_sqlite_file(app: &TestApp, id: i64) -> String {
    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    hash
}

/// `POST /api/admin/users/:id/<action>` with the admin token.
async fn admin_post(app: &TestApp, id: i64, action: &str) -> (u16, Value) {
    app.post_with_bearer(&format!("/api/admin/users/{id}/{action}"), ADMIN, json!({}))
        .await
}

/// The user's trail as the admin API shows it.
async fn trail(app: &TestApp, id: i64) -> Vec<Value> {
    let (status, body) = app
        .get_with_bearer(&format!("/api/admin/users/{id}/events?limit=1000"), ADMIN)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn types(trail: &[Value]) -> Vec<&str> {
    trail.iter().map(|e| s(&e["type"])).collect()
}

/// A login with `password`: its status and answer.
async fn login_with_password(app: &TestApp, name: &str, password: &str) -> (u16, Value) {
    app.post(
        "/api/auth/local",
        json!({"identifier": name, "password": password, "requestRefresh": true}),
    )
    .await
}

/// Refreshes `token` until a rotation-off server says 200: the user's actor, whose stream an
/// account event moved on, must have reloaded and decided again.
async fn assert_refreshes(app: &TestApp, token: &str) {
    for _ in 0..2 {
        let (status, body) = app.refresh(token).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn assert_blocked(app: &TestApp, name: &str, password: &str) {
    let (status, body) = login_with_password(app, name, password).await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Your account has been blocked by an administrator",
    );
}

/// Registers `name` and checks that its stream starts with its `UserRegistered`, which says
/// what the row says and holds a digest of its hash, never the hash; returns the user's id.
async fn registered(app: &TestApp, name: &str) -> i64 {
    let user = app.register(name).await["user"].clone();
    let id = user["id"].as_i64().unwrap();
    let trail = trail(app, id).await;
    assert_eq!(types(&trail), ["UserRegistered", "TokenIssued"]);
    let registration = &trail[0];
    assert_eq!(registration["version"], 1);
    assert_eq!(registration["actor"], "user");
    let payload = &registration["payload"];
    for (field, value) in [
        ("document_id", &user["documentId"]),
        ("username", &user["username"]),
        ("email", &user["email"]),
        ("provider", &user["provider"]),
        ("confirmed", &user["confirmed"]),
        ("blocked", &user["blocked"]),
    ] {
        assert_eq!(&payload[field], value, "{field}");
    }
    let shown = s(&payload["password_digest"]);
    assert_eq!(shown.chars().count(), 13, "a prefix of the digest: {shown}");
    id
}

/// The steps both backends go through; `row_hash` reads the users row's password hash.
async fn account_events_keep_sessions_working<F, Fut>(app: &TestApp, row_hash: F)
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let id = registered(app, "ursula").await;
    let stored = app.payloads(id, "UserRegistered").await;
    assert_eq!(
        stored[0]["password_digest"],
        sha256_hex(&row_hash(id).await),
        "the digest of the row's hash"
    );

    // A password change: its event carries the digest of the new hash.
    let login = app.login("ursula").await;
    let (status, changed) = app
        .post_with_bearer(
            "/api/auth/change-password",
            s(&login["jwt"]),
            json!({"currentPassword": PASSWORD, "password": NEW_PASSWORD, "passwordConfirmation": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let new_hash = row_hash(id).await;
    let changes = app.payloads(id, "PasswordChanged").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["password_digest"], sha256_hex(&new_hash));
    assert_ne!(changes[0]["password_digest"], stored[0]["password_digest"]);
    assert_refreshes(app, s(&changed["refreshToken"])).await;
    let (status, body) = login_with_password(app, "ursula", NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = s(&body["refreshToken"]).to_owned();
    assert_refreshes(app, &token).await;

    // Blocked and unblocked with the admin API, then with the command line.
    let (status, body) = admin_post(app, id, "block").await;
    assert_eq!((status, &body["data"]["blocked"]), (200, &json!(true)));
    assert_eq!(admin_post(app, id, "block").await.0, 200, "again: a no-op");
    assert_eq!(app.refresh(&token).await.0, 401, "the block ended it");
    assert_blocked(app, "ursula", NEW_PASSWORD).await;
    let (status, body) = admin_post(app, id, "unblock").await;
    assert_eq!((status, &body["data"]["blocked"]), (200, &json!(false)));
    let (status, body) = login_with_password(app, "ursula", NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = s(&body["refreshToken"]).to_owned();
    assert_refreshes(app, &token).await;

    for command in ["block", "unblock"] {
        let output = app.cli(&["user", command, "ursula"]);
        assert!(output.status.success(), "{output:?}");
    }
    assert_eq!(app.refresh(&token).await.0, 401, "the CLI's block ended it");
    let (status, body) = login_with_password(app, "ursula", NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_refreshes(app, s(&body["refreshToken"])).await;

    let trail = trail(app, id).await;
    let account: Vec<(&str, &str)> = trail
        .iter()
        .filter(|e| !s(&e["type"]).starts_with("Token"))
        .map(|e| (s(&e["type"]), e["actor"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        account,
        [
            ("UserRegistered", "user"),
            ("PasswordChanged", "user"),
            ("SessionsCleared", "user"),
            ("UserBlocked", "admin"),
            ("SessionsCleared", "admin"),
            ("UserUnblocked", "admin"),
            ("UserBlocked", "admin"),
            ("SessionsCleared", "admin"),
            ("UserUnblocked", "admin"),
        ],
        "{trail:#?}"
    );
    let text = serde_json::to_string(&trail).unwrap();
    assert!(!text.contains(&new_hash) && !text.contains("argon2"));

    let verified = app.cli(&["verify"]);
    let said = stdout(&verified);
    assert!(verified.status.success(), "{said}");
    assert!(said.contains("\nusers: 1 rows explained"), "{said}");
}

#[actix_web::test]
async fn registration_password_changes_and_blocks_are_the_users_events_on_sqlite() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    account_events_keep_sessions_working(&app, |id| hash_in_sqlite_file(&app, id)).await;

    // `audit --json` shows the same trail, registration first.
    let output = app.cli(&["audit", "ursula", "--json"]);
    let first: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "UserRegistered");
}

#[actix_web::test]
async fn registration_password_changes_and_blocks_are_the_users_events_on_postgres() {
    let Some(url) = support::fresh_postgres_url().await else {
        return;
    };
    let app = spawn_app_with(&[("DATABASE_URL", &url), ("ADMIN_API_TOKEN", ADMIN)]).await;
    let users = app.state().users.clone();
    account_events_keep_sessions_working(&app, |id| {
        let users = users.clone();
        async move {
            let user = users.find(id).await.unwrap().unwrap();
            user.password_hash.unwrap()
        }
    })
    .await;
    app.stop().await;
}

/// `tokenledger verify` on a copy of the app's database, edited by `sql` first.
async fn verify_a_copy_edited_by(app: &TestApp, sql: &str) -> (bool, String) {
    let copy = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let file = copy.path().join("tokenledger.db");
    // A consistent copy, the write-ahead log included.
    sqlx::query("VACUUM INTO ?")
        .bind(file.display().to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let edited = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&edited)
        .await
        .unwrap();
    edited.close().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .arg("verify")
        .envs(test_env(copy.path()))
        .output()
        .unwrap();
    (output.status.success(), stdout(&output))
}

#[actix_web::test]
async fn a_users_row_edited_with_sql_makes_verify_name_the_user_and_the_field() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    app.register("vera").await;
    let id = app.register("wes").await["user"]["id"].as_i64().unwrap();
    assert_eq!(admin_post(&app, id, "block").await.0, 200);
    let (ok, said) = verify_a_copy_edited_by(&app, "SELECT 1").await;
    assert!(ok, "an unedited copy verifies: {said}");
    assert!(said.contains("users: 2 rows explained"), "{said}");

    let cases = [
        (
            format!("UPDATE users SET password_hash = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA' WHERE id = {id}"),
            format!("broken: users row {id}: password_hash is not what the log records"),
        ),
        (
            format!("UPDATE users SET blocked = 0 WHERE id = {id}"),
            format!("broken: users row {id}: blocked is not what the log records"),
        ),
        (
            format!("UPDATE users SET email = 'mallory@example.com' WHERE id = {id}"),
            format!("broken: users row {id}: email is not what the log records"),
        ),
        (
            "INSERT INTO users (id, document_id, username, email, password_hash, provider, confirmed, blocked, created_at, updated_at) \
             VALUES (99, 'x', 'mallory', 'm@example.com', 'h', 'local', 1, 0, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')".to_owned(),
            "broken: users row 99: no UserRegistered event".to_owned(),
        ),
    ];
    for (sql, named) in cases {
        let (ok, said) = verify_a_copy_edited_by(&app, &sql).await;
        assert!(!ok, "{sql}: {said}");
        assert!(said.contains(&named), "{sql}: {said}");
    }
}

/// A users store, its event store, and the folder its file is in (on SQLite).
type Stores = (
    Box<dyn Users>,
    Box<dyn EventStore>,
    Option<tempfile::TempDir>,
);

/// The users store of a fresh database on each backend, and its event store.
async fn both_stores() -> Vec<Stores> {
    let key = StoreKeys {
        ledger: KeyBytes::parse(support::LEDGER_KEY).unwrap(),
        personal: KeyBytes::parse(support::PERSONAL_DATA_KEY).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    let sqlite = Database::open(&url, &key).await.unwrap();
    let mut stores: Vec<Stores> = vec![(
        Box::new(sqlite.clone()),
        Box::new(SqliteEventStore::start(sqlite)),
        Some(dir),
    )];
    if let Some(schema) = FreshSchema::create().await {
        let pg = PgDatabase::open_with(schema.options(), &key).await.unwrap();
        stores.push((
            Box::new(pg.clone()),
            Box::new(PostgresEventStore::start(pg)),
            None,
        ));
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_of_a_users_row_commits_with_the_event_that_explains_it() {
    let admin = EventMetadata {
        actor: Actor::Admin,
        ..EventMetadata::default()
    };
    for (users, events, _dir) in both_stores().await {
        let now = chrono::Utc::now();
        let new = |name: &str| NewUser {
            username: name.into(),
            email: format!("{name}@example.com"),
            password_hash: format!("hash-of-{name}"),
        };
        let user = users.create(new("xena"), now, &admin).await.unwrap();
        let many = users
            .create_many(&[new("yan"), new("zoe")], now, &admin)
            .await
            .unwrap();
        users
            .set_password(user.id, "hash-of-xena", "new-hash", now, &admin)
            .await
            .unwrap();
        let refused = users
            .set_password(user.id, "hash-of-xena", "other", now, &admin)
            .await;
        assert!(refused.is_err(), "a stale previous hash changes nothing");
        for blocked in [true, true, false, false] {
            users
                .set_blocked(user.id, blocked, now, &admin)
                .await
                .unwrap();
        }
        let stream = events
            .read_stream(&format!("user-{}", user.id), 0)
            .await
            .unwrap();
        let kinds: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "UserRegistered",
                "PasswordChanged",
                "UserBlocked",
                "UserUnblocked"
            ],
            "one event a change, none for no change"
        );
        assert!(stream[1].payload.contains(&password_digest("new-hash")));
        for id in many {
            let stream = events.read_stream(&format!("user-{id}"), 0).await.unwrap();
            assert_eq!(stream.len(), 1);
            assert_eq!(stream[0].event_type, "UserRegistered");
        }
        let checked = explain_users(events.as_ref(), users.as_ref())
            .await
            .unwrap();
        assert_eq!((checked.rows, checked.findings), (3, vec![]));
        events.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_account_event_that_loses_a_version_to_another_instance_is_appended_after_it() {
    let Some(schema) = FreshSchema::create().await else {
        return;
    };
    let key = StoreKeys {
        ledger: KeyBytes::parse(support::LEDGER_KEY).unwrap(),
        personal: KeyBytes::parse(support::PERSONAL_DATA_KEY).unwrap(),
    };
    let db = PgDatabase::open_with(schema.options(), &key).await.unwrap();
    let new = NewUser {
        username: "ada".into(),
        email: "ada@example.com".into(),
        password_hash: "hash".into(),
    };
    let meta = EventMetadata::default();
    let user = db.create(new, chrono::Utc::now(), &meta).await.unwrap();
    let stream = format!("user-{}", user.id);
    // Another instance's appender holds version 2, not committed yet.
    let mut other = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload, \
         metadata, recorded_at, prev_hash, hash) \
         VALUES ($1, 2, 'LoginFailed', 1, '{}', '{}', now(), '\\x00', '\\x00')",
    )
    .bind(&stream)
    .execute(&mut *other)
    .await
    .unwrap();
    let blocking = {
        let db = db.clone();
        let meta = meta.clone();
        tokio::spawn(async move {
            db.set_blocked(user.id, true, chrono::Utc::now(), &meta)
                .await
        })
    };
    // The block reads version 1 as the head and waits on the key the other holds.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!blocking.is_finished());
    other.commit().await.unwrap();
    let blocked = blocking
        .await
        .unwrap()
        .expect("the block is not failed by a lost race");
    assert!(blocked.blocked);
    let events = PostgresEventStore::start(db.clone());
    let written: Vec<(i64, String)> = events
        .read_stream(&stream, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.stream_version, e.event_type))
        .collect();
    assert_eq!(
        written,
        [
            (1, "UserRegistered".to_owned()),
            (2, "LoginFailed".to_owned()),
            (3, "UserBlocked".to_owned())
        ]
    );
    let checked = explain_users(&events, &db).await.unwrap();
    assert_eq!(checked.findings, [], "the row is what its events say");
    events.close().await;
}
