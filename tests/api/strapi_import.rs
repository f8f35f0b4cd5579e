//! Moving from Strapi: `tokenledger import strapi` on a copy of a real Strapi 5.54 database
//! (`../shared/fixtures/strapi-5.54`, kept in `tests/fixtures/strapi-5.54`), and from the same
//! tables on PostgreSQL; the plugin's refresh tokens and Strapi's access tokens afterwards.

use std::path::{Path, PathBuf};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::Row;
use support::{FreshSchema, Server, assert_error};

const BINARY: &str = env!("CARGO_BIN_EXE_tokenledger");
/// The secrets the fixture's Strapi ran with (its `secrets.env`).
const STRAPI_JWT_SECRET: &str = "cGVlci1qd3Qtc2VjcmV0LWZpeGVk";
const STRAPI_REFRESH_SECRET: &str = "peer-refresh-jwt-secret-fixed";
/// Ada's plugin token row: its `document_id` is the token's `secret`.
const ADA_SECRET: &str = "bga7xt3ue0781ubp1v5go3bh";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/strapi-5.54/strapi-data.db")
}

/// A copy of the fixture the test may open (the import only reads it).
fn fixture_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("strapi-data.db");
    std::fs::copy(fixture(), &copy).expect("copy the Strapi fixture");
    copy
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` as Strapi's `jsonwebtoken` does: HS256, `typ: JWT`.
fn strapi_sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A plugin refresh token of Ada's shape (`{userId, secret, iat, exp}`), signed now.
fn ada_plugin_token() -> String {
    let iat = now();
    let claims = json!({"userId": 1, "secret": ADA_SECRET, "iat": iat, "exp": iat + 30 * 86400});
    strapi_sign(&claims, STRAPI_REFRESH_SECRET)
}

/// A Strapi access token of Ada's (`{id, iat, exp}`).
fn ada_strapi_access_token() -> String {
    let iat = now();
    strapi_sign(
        &json!({"id": 1, "iat": iat, "exp": iat + 7200}),
        STRAPI_JWT_SECRET,
    )
}

/// A server with the Strapi deployment's secrets (the plugin's is weak, hence
/// `--insecure-dev`), rotation on and no grace, so a late plugin token counts as reuse.
fn strapi_server(server: Server) -> Server {
    server
        .envs(&[
            ("JWT_SECRET", STRAPI_JWT_SECRET),
            ("REFRESH_JWT_SECRET", STRAPI_REFRESH_SECRET),
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
        ])
        .args(&["--insecure-dev", "serve"])
}

fn import(server: &Server, from: &str, extra: &[&str]) -> String {
    let mut args = vec!["--insecure-dev", "import", "strapi", "--from", from];
    args.extend_from_slice(extra);
    let output = server.cli(&args);
    assert!(output.status.success(), "import {from} failed");
    String::from_utf8(output.stdout).unwrap()
}

fn header_typ(jwt: &str) -> String {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    header.typ.unwrap_or_default()
}

/// Everything the acceptance list asks of an imported database, over HTTP; `hash_of` reads
/// Ada's stored hash. Returns nothing: each step asserts.
async fn imported_users_and_sessions_work(server: &Server, ada_hash: impl AsyncFn() -> String) {
    let api = server.api();
    assert!(
        ada_hash().await.starts_with("$2a$10$"),
        "imported as bcrypt"
    );
    let (status, ada) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "ada", "password": "Lovelace-1815"}),
        )
        .await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["user"]["id"], 1);
    assert_eq!(ada["user"]["documentId"], "k8j7ju2dajihatvv8j0nrfho");
    assert_eq!(ada["user"]["createdAt"], "2026-12-02T18:56:05.143Z");
    assert!(
        ada_hash().await.starts_with("$argon2id$"),
        "rehashed at login"
    );
    let (status, again) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "ada@example.com", "password": "Lovelace-1815"}),
        )
        .await;
    assert_eq!(status, 200, "after the rehash: {again}");
    let (status, _) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "ada", "password": "lovelace-1815"}),
        )
        .await;
    assert_eq!(status, 400);

    let (status, grace) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "Grace.Hopper@Example.com", "password": "Cobol-1959!"}),
        )
        .await;
    assert_eq!(status, 200, "{grace}");
    assert_eq!(grace["user"]["id"], 2);
    assert_eq!(grace["user"]["documentId"], "bcjbw8iqkf4sj1cktzh1iz0c");

    let (status, linus) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "linus", "password": "penguin-1991"}),
        )
        .await;
    assert_error(
        status,
        &linus,
        400,
        "ApplicationError",
        "Your account has been blocked by an administrator",
    );

    // The plugin's token: once into our format, then ours rotates as any other.
    let plugin = ada_plugin_token();
    let (status, first) = api.refresh(&plugin).await;
    assert_eq!(status, 200, "{first}");
    let ours = first["refreshToken"].as_str().expect("rotated").to_owned();
    assert_eq!(header_typ(&ours), "refresh+jwt");
    let (status, me) = api
        .get_with_bearer("/api/users/me", first["jwt"].as_str().unwrap())
        .await;
    assert_eq!((status, me["id"].clone()), (200, json!(1)));
    let (status, second) = api.refresh(&ours).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    // The plugin's token again, after it gave way: reuse, which ends the session.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(api.refresh(&plugin).await.0, 401);
    assert_eq!(
        api.refresh(second["refreshToken"].as_str().unwrap())
            .await
            .0,
        401,
        "the family ended with the reuse"
    );

    // A plugin token whose secret was never a row here is refused.
    let iat = now();
    let forged = strapi_sign(
        &json!({"userId": 1, "secret": "zzzzzzzzzzzzzzzzzzzzzzzz", "iat": iat, "exp": iat + 60}),
        STRAPI_REFRESH_SECRET,
    );
    assert_eq!(api.refresh(&forged).await.0, 401);

    let (status, new) = api
        .post(
            "/api/auth/local/register",
            json!({"username": "barbara", "email": "barbara@example.com", "password": "Liskov-1939"}),
        )
        .await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["user"]["id"], 4, "above the imported ids");
}

fn first_import_says_what_it_did(said: &str) {
    for line in [
        "user 1 (ada): imported",
        "user 2 (grace): imported",
        "user 3 (linus): imported",
        "plugin token row 1 of user 1: imported",
        "plugin token row 2 of user 2: imported",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }
    assert!(
        !said.contains(ADA_SECRET),
        "the secret is never printed:\n{said}"
    );
}

fn second_import_changes_nothing(said: &str) {
    assert!(
        said.contains("0 users (3 already here, 0 conflicts); 0 plugin sessions (2 already here"),
        "{said}"
    );
}

async fn sqlite_count(db: &Path, sql: &str) -> String {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap();
    let value: String = row.try_get(0).unwrap();
    pool.close().await;
    value
}

#[actix_web::test]
async fn a_strapi_sqlite_database_is_imported_and_nobody_logs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let from = fixture_copy(dir.path());
    let from = from.to_str().unwrap();
    let data = dir.path().join("data");
    let mut server = strapi_server(Server::on(BINARY, &data));

    let dry = import(&server, from, &["--dry-run"]);
    assert!(dry.contains("would import from strapi sqlite"), "{dry}");
    assert!(
        !data.join("tokenledger.db").exists() || {
            let users = sqlite_count(
                &data.join("tokenledger.db"),
                "SELECT CAST(COUNT(*) AS TEXT) FROM users",
            )
            .await;
            users == "0"
        }
    );
    first_import_says_what_it_did(&import(&server, from, &[]));
    server.start();
    server.ready().await;
    let db = data.join("tokenledger.db");
    let ada_hash = async || sqlite_count(&db, "SELECT password_hash FROM users WHERE id = 1").await;
    imported_users_and_sessions_work(&server, ada_hash).await;
    server.stop_with("TERM").await;

    let events = "SELECT CAST(COUNT(*) AS TEXT) FROM events";
    let before = sqlite_count(&db, events).await;
    second_import_changes_nothing(&import(&server, from, &[]));
    assert_eq!(sqlite_count(&db, events).await, before, "no event appended");
    // The imported rows, the rehash and the later registration are all explained by the log.
    let verified = server.cli(&["--insecure-dev", "verify"]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{said}");
    assert!(said.contains("users: 4 rows explained"), "{said}");
}

#[actix_web::test]
async fn strapi_access_tokens_are_accepted_only_when_asked() {
    let token = ada_strapi_access_token();
    let dir = tempfile::tempdir().unwrap();
    let from = fixture_copy(dir.path());
    let data = dir.path().join("data");
    let server = strapi_server(Server::on(BINARY, &data));
    import(&server, from.to_str().unwrap(), &[]);

    let mut refusing = server.serving().await;
    let (status, _) = refusing
        .api()
        .get_with_bearer("/api/users/me", &token)
        .await;
    assert_eq!(status, 401, "refused by default");
    refusing.stop_with("TERM").await;
    drop(refusing);

    let mut accepting = strapi_server(Server::on(BINARY, &data))
        .env("STRAPI_ACCESS_TOKENS", "accept")
        .serving()
        .await;
    let (status, me) = accepting
        .api()
        .get_with_bearer("/api/users/me", &token)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["documentId"], "k8j7ju2dajihatvv8j0nrfho");
    assert!(
        accepting.log_text().contains("STRAPI_ACCESS_TOKENS=accept"),
        "the start says they cannot be revoked"
    );
    // Still checked: signature, expiry, and the user's state.
    let expired = strapi_sign(
        &json!({"id": 1, "iat": now() - 7300, "exp": now() - 100}),
        STRAPI_JWT_SECRET,
    );
    assert_eq!(
        accepting
            .api()
            .get_with_bearer("/api/users/me", &expired)
            .await
            .0,
        401
    );
    let forged = strapi_sign(
        &json!({"id": 1, "iat": now(), "exp": now() + 60}),
        "another-secret-entirely-32-bytes!!",
    );
    assert_eq!(
        accepting
            .api()
            .get_with_bearer("/api/users/me", &forged)
            .await
            .0,
        401
    );
    let linus = strapi_sign(
        &json!({"id": 3, "iat": now(), "exp": now() + 60}),
        STRAPI_JWT_SECRET,
    );
    assert_eq!(
        accepting
            .api()
            .get_with_bearer("/api/users/me", &linus)
            .await
            .0,
        401,
        "blocked"
    );
    accepting.stop_with("TERM").await;
}

/// The fixture's tables, as Strapi creates them on PostgreSQL, with the fixture's rows.
async fn strapi_tables_on_postgres(schema: &FreshSchema) {
    let pg = sqlx::PgPool::connect_with(schema.options()).await.unwrap();
    for ddl in [
        "CREATE TABLE up_users (id serial PRIMARY KEY, document_id varchar(255), username varchar(255), \
         email varchar(255), provider varchar(255), password varchar(255), reset_password_token varchar(255), \
         confirmation_token varchar(255), confirmed boolean, blocked boolean, created_at timestamp(6), \
         updated_at timestamp(6), published_at timestamp(6), created_by_id integer, updated_by_id integer, \
         locale varchar(255))",
        "CREATE TABLE \"refresh-token_token\" (id serial PRIMARY KEY, document_id varchar(255), ip_address text, \
         created_at timestamp(6), updated_at timestamp(6), published_at timestamp(6), created_by_id integer, \
         updated_by_id integer, locale varchar(255))",
        "CREATE TABLE refresh_token_token_user_lnk (id serial PRIMARY KEY, token_id integer REFERENCES \
         \"refresh-token_token\" (id) ON DELETE CASCADE, user_id integer REFERENCES up_users (id) ON DELETE CASCADE, \
         token_ord double precision)",
    ] {
        sqlx::query(ddl).execute(&pg).await.unwrap();
    }
    let url = format!("sqlite://{}?mode=ro", fixture().display());
    let lite = sqlx::SqlitePool::connect(&url).await.unwrap();
    let users = sqlx::query(
        "SELECT id, document_id, username, email, provider, password, confirmed, blocked, created_at, updated_at, published_at FROM up_users",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    for u in users {
        sqlx::query(
            "INSERT INTO up_users (id, document_id, username, email, provider, password, confirmed, blocked, \
             created_at, updated_at, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             to_timestamp($9 / 1000.0) AT TIME ZONE 'UTC', to_timestamp($10 / 1000.0) AT TIME ZONE 'UTC', \
             to_timestamp($11 / 1000.0) AT TIME ZONE 'UTC')",
        )
        .bind(u.get::<i64, _>(0) as i32)
        .bind(u.get::<String, _>(1))
        .bind(u.get::<String, _>(2))
        .bind(u.get::<String, _>(3))
        .bind(u.get::<String, _>(4))
        .bind(u.get::<String, _>(5))
        .bind(u.get::<bool, _>(6))
        .bind(u.get::<bool, _>(7))
        .bind(u.get::<i64, _>(8) as f64)
        .bind(u.get::<i64, _>(9) as f64)
        .bind(u.get::<i64, _>(10) as f64)
        .execute(&pg)
        .await
        .unwrap();
    }
    let tokens = sqlx::query(
        "SELECT t.id, t.document_id, t.ip_address, t.created_at, l.user_id FROM \"refresh-token_token\" t \
         JOIN refresh_token_token_user_lnk l ON l.token_id = t.id",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    for t in tokens {
        let id = t.get::<i64, _>(0) as i32;
        sqlx::query(
            "INSERT INTO \"refresh-token_token\" (id, document_id, ip_address, created_at) \
             VALUES ($1, $2, $3, to_timestamp($4 / 1000.0) AT TIME ZONE 'UTC')",
        )
        .bind(id)
        .bind(t.get::<String, _>(1))
        .bind(t.get::<String, _>(2))
        .bind(t.get::<i64, _>(3) as f64)
        .execute(&pg)
        .await
        .unwrap();
        sqlx::query("INSERT INTO refresh_token_token_user_lnk (token_id, user_id, token_ord) VALUES ($1, $2, 1)")
            .bind(id)
            .bind(t.get::<i64, _>(4) as i32)
            .execute(&pg)
            .await
            .unwrap();
    }
    lite.close().await;
    pg.close().await;
}

#[actix_web::test]
async fn a_strapi_postgres_database_is_imported_into_postgres() {
    let (Some(strapi), Some(ours)) = (FreshSchema::create().await, FreshSchema::create().await)
    else {
        return;
    };
    strapi_tables_on_postgres(&strapi).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = strapi_server(Server::on(BINARY, dir.path())).env("DATABASE_URL", &ours.url());
    let from = strapi.url();
    first_import_says_what_it_did(&import(&server, &from, &[]));
    server.start();
    server.ready().await;
    let options = ours.options();
    let ada_hash = async || {
        let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        hash
    };
    imported_users_and_sessions_work(&server, ada_hash).await;
    server.stop_with("TERM").await;
    second_import_changes_nothing(&import(&server, &from, &[]));
    strapi.drop().await;
    ours.drop().await;
}

#[actix_web::test]
async fn an_import_reports_conflicts_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let from = fixture_copy(dir.path());
    let from = from.to_str().unwrap();
    let mut server = strapi_server(Server::on(BINARY, &dir.path().join("data")));
    // Someone here already holds id 1 and Ada's email.
    let added = server.cli(&[
        "--insecure-dev",
        "user",
        "add",
        "--username",
        "adele",
        "--email",
        "ADA@example.com",
        "--password",
        "Adele-Here-2026",
    ]);
    assert!(added.status.success());
    let dry = import(&server, from, &["--dry-run"]);
    let said = import(&server, from, &[]);
    for report in [&dry, &said] {
        assert!(
            report.contains("user 1 (ada): conflict, left out: its id is user 1 here"),
            "{report}"
        );
        assert!(
            report.contains("plugin token row 1 of user 1: left out: its user was not imported"),
            "{report}"
        );
        assert!(report.contains("user 2 (grace): imported"), "{report}");
    }
    server.start();
    server.ready().await;
    let api = server.api();
    let (status, _) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "ada@example.com", "password": "Lovelace-1815"}),
        )
        .await;
    assert_eq!(status, 400, "Strapi's Ada did not replace the user here");
    let (status, adele) = api
        .post(
            "/api/auth/local",
            json!({"identifier": "ada@example.com", "password": "Adele-Here-2026"}),
        )
        .await;
    assert_eq!(
        (status, adele["user"]["username"].clone()),
        (200, json!("adele"))
    );
    assert_eq!(
        api.refresh(&ada_plugin_token()).await.0,
        401,
        "her plugin session was left out"
    );
    server.stop_with("TERM").await;
}

#[actix_web::test]
async fn with_rotation_off_the_plugins_token_keeps_serving_as_the_plugin_did() {
    let dir = tempfile::tempdir().unwrap();
    let from = fixture_copy(dir.path());
    let server = strapi_server(Server::on(BINARY, &dir.path().join("data")))
        .env("REFRESH_TOKEN_ROTATION", "false");
    import(&server, from.to_str().unwrap(), &[]);
    let mut server = server.serving().await;
    let plugin = ada_plugin_token();
    for _ in 0..2 {
        let (status, body) = server.api().refresh(&plugin).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.get("refreshToken").is_none(),
            "only {{jwt}}, as the plugin: {body}"
        );
        let (status, me) = server
            .api()
            .get_with_bearer("/api/users/me", body["jwt"].as_str().unwrap())
            .await;
        assert_eq!((status, me["username"].clone()), (200, json!("ada")));
    }
    server.stop_with("TERM").await;
}
