//! Personal data (issue 17), end to end on the real binary: a person registers, logs in from
//! two devices, mistypes a password and rotates a token from a third network; everything
//! personal is sealed from the start (the stored bytes never hold an IP, user agent or device
//! in clear, though the trail shows them), and once the person is forgotten, by the command
//! line or by the admin API, the database files (SQLite, after the server stopped) or a
//! `pg_dump` (PostgreSQL) hold none of it, nor the deleted data keys; `verify` passes, `audit`
//! and the admin API show the same events with `erased` fields, and the names are free again.
//! Retention, with the injected clock, erases the months past it and keeps the names.

use std::path::Path;

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{Api, FreshSchema, PASSWORD, Server, assert_error};
use tempfile::TempDir;

use crate::helpers::{TestApp, spawn_app_with};

const BINARY: &str = env!("CARGO_BIN_EXE_tokenledger");
const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const ERASED: &str = "erased";

const USERNAME: &str = "Quokka_Privacy47";
/// Mixed case on purpose: the row stores it lower-cased, the search ignores case.
const EMAIL: &str = "Quokka.Probe47@Example.net";

/// Where a request comes from: `X-Forwarded-For` (the test's proxy is trusted) and
/// `User-Agent`, each distinctive enough to be searched for in the stored bytes.
#[derive(Clone, Copy, Debug)]
struct Client {
    ip: &'static str,
    agent: &'static str,
}

const SIGNUP: Client = Client {
    ip: "192.0.2.219",
    agent: "QuokkaSignup/1.0 (privacy-test registration)",
};
const LAPTOP: Client = Client {
    ip: "203.0.113.47",
    agent: "Mozilla/5.0 (Kestrel Laptop; PrivacyProbe 7.3)",
};
const PHONE: Client = Client {
    ip: "198.51.100.173",
    agent: "PrivacyProbeMobile/9.1 (Wombat phone)",
};
const GUESSER: Client = Client {
    ip: "2001:db8:5eed::47",
    agent: "BruteForcer/0.1 (numbat)",
};
/// The laptop on another network: its rotation records a new IP.
const ROAMING: Client = Client {
    ip: "100.64.77.201",
    agent: LAPTOP.agent,
};
const LAPTOP_DEVICE: &str = "Kestrel's laptop";
const PHONE_DEVICE: &str = "Wombat phone 9";

/// What the requests say about the person, never stored in clear: every IP, user agent and
/// device, and the distinctive words in them.
const REQUEST_DATA: [&str; 15] = [
    SIGNUP.ip,
    SIGNUP.agent,
    LAPTOP.ip,
    LAPTOP.agent,
    PHONE.ip,
    PHONE.agent,
    GUESSER.ip,
    GUESSER.agent,
    ROAMING.ip,
    LAPTOP_DEVICE,
    PHONE_DEVICE,
    "kestrel",
    "wombat",
    "numbat",
    "privacyprobe",
];

/// The names the users row holds in clear for as long as the account exists.
const NAMES: [&str; 3] = [USERNAME, EMAIL, "quokka"];

/// Everything personal about the person.
fn everything() -> Vec<&'static str> {
    [&REQUEST_DATA[..], &NAMES].concat()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// How the person is forgotten.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Forget {
    Cli,
    Admin,
}

/// A database of the service: a data folder, and on PostgreSQL a fresh schema.
struct Db {
    dir: TempDir,
    schema: Option<FreshSchema>,
}

impl Db {
    /// `None` where PostgreSQL is unreachable (`FreshSchema::create` says why).
    async fn create(backend: Backend) -> Option<Db> {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(FreshSchema::create().await?),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        Some(Db { dir, schema })
    }

    /// The binary on this database: behind a trusted proxy, with the admin API and rotation.
    fn server(&self) -> Server {
        let server = Server::on(BINARY, self.dir.path()).envs(&[
            ("ADMIN_API_TOKEN", ADMIN),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("REFRESH_TOKEN_ROTATION", "true"),
        ]);
        match &self.schema {
            Some(schema) => server.env("DATABASE_URL", &schema.url()),
            None => server,
        }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("tokenledger.db")
    }

    /// `data_keys` rows of user `id`: period, wrapped key, why erased. On SQLite through a
    /// connection of the test's own, closed before it returns (it must not hold the WAL open
    /// past the server's stop).
    async fn key_rows(&self, id: i64) -> Vec<(i64, Option<Vec<u8>>, Option<String>)> {
        let owner = format!("user-{id}");
        match &self.schema {
            None => {
                let url = format!("sqlite://{}", self.file().display());
                let pool = sqlx::SqlitePool::connect(&url).await.expect("the file");
                let sql =
                    "SELECT period, wrapped, erased FROM data_keys WHERE owner = ? ORDER BY period";
                let rows = sqlx::query_as(sql).bind(&owner).fetch_all(&pool).await;
                pool.close().await;
                rows.expect("data_keys")
            }
            Some(schema) => {
                let pool = sqlx::PgPool::connect_with(schema.options()).await.unwrap();
                let sql = "SELECT period, wrapped, erased FROM data_keys WHERE owner = $1 ORDER BY period";
                let rows = sqlx::query_as(sql).bind(&owner).fetch_all(&pool).await;
                pool.close().await;
                rows.expect("data_keys")
            }
        }
    }

    /// The user's data keys, as stored (wrapped).
    async fn wrapped_keys(&self, id: i64) -> Vec<Vec<u8>> {
        let rows = self.key_rows(id).await;
        rows.into_iter()
            .filter_map(|(_, wrapped, _)| wrapped)
            .collect()
    }

    /// `PRAGMA wal_checkpoint(<mode>)` on the SQLite file, through a connection of the test's
    /// own: busy, frames in the WAL, frames checkpointed.
    async fn checkpoint(&self, mode: &str) -> (i64, i64, i64) {
        let url = format!("sqlite://{}", self.file().display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("the file");
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await;
        pool.close().await;
        row.expect("a checkpoint")
    }

    /// Every byte the database holds, by where: on SQLite every file of the data folder (the
    /// database, its `-wal` and `-shm` where they are); on PostgreSQL a data-only `pg_dump` of
    /// the schema.
    fn stored(&self) -> Vec<(String, Vec<u8>)> {
        match &self.schema {
            None => files_in(self.dir.path()),
            Some(schema) => vec![("pg_dump".to_owned(), pg_dump(&schema.name))],
        }
    }

    async fn drop(self) {
        if let Some(schema) = self.schema {
            schema.drop().await;
        }
    }
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the data folder") {
        let path = entry.expect("an entry").path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read(&path).expect("a file")));
        }
    }
    assert!(
        files.iter().any(|(name, _)| name == "tokenledger.db"),
        "{:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    files
}

/// `pg_dump --data-only` of `schema` (bytea shows as hex, text as text).
fn pg_dump(schema: &str) -> Vec<u8> {
    let output = std::process::Command::new("pg_dump")
        .args(["--data-only", "--schema", schema, "--dbname"])
        .arg(support::postgres_url())
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.stdout.is_empty());
    output.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// The forms a text may be stored in: its bytes in any case, or hex (bytea in a dump).
fn forms(text: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![text.to_ascii_lowercase().into_bytes()];
    for case in [
        text.to_owned(),
        text.to_ascii_lowercase(),
        text.to_ascii_uppercase(),
    ] {
        forms.push(hex::encode(case).into_bytes());
    }
    forms
}

/// Which of `texts` (in any case, also as hex) and `raw` (exact bytes, also as hex) are in
/// `stored`, as "what in where".
fn found(stored: &[(String, Vec<u8>)], texts: &[&str], raw: &[Vec<u8>]) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, bytes) in stored {
        let lower = bytes.to_ascii_lowercase();
        for text in texts {
            if forms(text).iter().any(|form| contains(&lower, form)) {
                hits.push(format!("{text:?} in {name}"));
            }
        }
        for key in raw {
            if contains(bytes, key) || contains(&lower, hex::encode(key).as_bytes()) {
                hits.push(format!("data key {}… in {name}", &hex::encode(key)[..16]));
            }
        }
    }
    hits
}

/// `POST path` as `client`.
async fn post_as(api: &Api, client: Client, path: &str, body: Value) -> (u16, Value) {
    let request = api
        .client
        .post(api.url(path))
        .header("user-agent", client.agent)
        .header("x-forwarded-for", client.ip)
        .json(&body);
    Api::send(request).await.expect("request")
}

/// Registers the person as `SIGNUP`; their id.
async fn register(api: &Api) -> i64 {
    let body = json!({"username": USERNAME, "email": EMAIL, "password": PASSWORD});
    let (status, body) = post_as(api, SIGNUP, "/api/auth/local/register", body).await;
    assert_eq!(status, 200, "register: {body}");
    body["user"]["id"].as_i64().expect("an id")
}

/// Logs in as `client` naming `device`; the refresh token.
async fn login_as(api: &Api, client: Client, device: &str) -> String {
    let body = json!({"identifier": USERNAME, "password": PASSWORD, "requestRefresh": true, "deviceId": device});
    let (status, body) = post_as(api, client, "/api/auth/local", body).await;
    assert_eq!(status, 200, "login: {body}");
    body["refreshToken"].as_str().expect("a token").to_owned()
}

/// Rotates `token` as `client`; the successor.
async fn rotate_as(api: &Api, client: Client, token: &str) -> String {
    let body = json!({ "refreshToken": token });
    let (status, body) = post_as(api, client, "/api/auth/local/refresh", body).await;
    assert_eq!(status, 200, "refresh: {body}");
    body["refreshToken"]
        .as_str()
        .expect("a rotation")
        .to_owned()
}

/// The person's id and their two live refresh tokens.
struct Person {
    id: i64,
    tokens: [String; 2],
}

/// Registers, logs in on the laptop and the phone, lets a guesser mistype the password, and
/// rotates the laptop's token from the laptop, then from another network.
async fn lives(api: &Api) -> Person {
    let id = register(api).await;
    let laptop = login_as(api, LAPTOP, LAPTOP_DEVICE).await;
    let phone = login_as(api, PHONE, PHONE_DEVICE).await;
    let wrong = json!({"identifier": EMAIL, "password": "not-the-password"});
    let (status, body) = post_as(api, GUESSER, "/api/auth/local", wrong).await;
    assert_eq!(status, 400, "a wrong password: {body}");
    let laptop = rotate_as(api, LAPTOP, &laptop).await;
    let laptop = rotate_as(api, ROAMING, &laptop).await;
    // The failed login is recorded without the request waiting for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !types(&trail(api, id).await).contains(&"LoginFailed") {
        assert!(std::time::Instant::now() < deadline, "no LoginFailed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Person {
        id,
        tokens: [laptop, phone],
    }
}

/// The user's trail as the admin API shows it.
async fn trail(api: &Api, id: i64) -> Vec<Value> {
    let path = format!("/api/admin/users/{id}/events?limit=1000");
    let (status, body) = api.get_with_bearer(&path, ADMIN).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("entries").clone()
}

/// Runs the binary's command line on a database.
type Cli<'a> = dyn Fn(&[&str]) -> std::process::Output + 'a;

/// `tokenledger audit <id> --json`, one entry a line.
fn audit(cli: &Cli, id: i64) -> Vec<Value> {
    let output = cli(&["audit", &id.to_string(), "--json"]);
    assert!(output.status.success(), "audit: {output:?}");
    String::from_utf8(output.stdout)
        .expect("text")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn verify_passes(cli: &Cli) {
    let output = cli(&["verify"]);
    assert!(
        output.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn types(trail: &[Value]) -> Vec<&str> {
    trail.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Where each entry says its request came from: type, IP, user agent.
fn sources(trail: &[Value]) -> Vec<(&str, Option<&str>, Option<&str>)> {
    trail
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["ip"].as_str(),
                e["userAgent"].as_str(),
            )
        })
        .collect()
}

fn devices(trail: &[Value]) -> Vec<&str> {
    trail
        .iter()
        .filter(|e| e["type"] == "TokenIssued")
        .filter_map(|e| e["payload"]["device_id"].as_str())
        .collect()
}

/// Before the person is forgotten the trail shows everything the requests said.
#[track_caller]
fn assert_readable(trail: &[Value]) {
    let sources = sources(trail);
    for (kind, client) in [
        ("UserRegistered", SIGNUP),
        ("TokenIssued", LAPTOP),
        ("TokenIssued", PHONE),
        ("LoginFailed", GUESSER),
        ("TokenRotated", ROAMING),
    ] {
        let seen = (kind, Some(client.ip), Some(client.agent));
        assert!(sources.contains(&seen), "{seen:?} in {sources:?}");
    }
    let same = trail
        .iter()
        .filter(|e| e["type"] == "TokenRotated" && e["sameClient"] == true);
    assert_eq!(same.map(|e| &e["ip"]).collect::<Vec<_>>(), [&Value::Null]);
    assert_eq!(trail[0]["type"], "UserRegistered");
    let registered = &trail[0]["payload"];
    assert_eq!(registered["username"], USERNAME, "{registered}");
    let email = registered["email"].as_str().unwrap();
    assert!(email.eq_ignore_ascii_case(EMAIL), "{registered}");
    let devices = devices(trail);
    assert!(devices.contains(&LAPTOP_DEVICE) && devices.contains(&PHONE_DEVICE));
    assert!(
        trail.iter().all(|e| e.get("erased").is_none()),
        "{trail:#?}"
    );
}

/// The entries the same but for the personal fields, which read `erased` for `why`.
#[track_caller]
fn assert_same_events_erased(before: &[Value], after: &[Value], why: &str) {
    for (b, a) in before.iter().zip(after) {
        for field in ["position", "version", "type", "sessionId", "generation"] {
            assert_eq!(a[field], b[field], "{field} of {a}");
        }
        if b["ip"].is_string() {
            let seen = (&a["ip"], &a["userAgent"]);
            assert_eq!(seen, (&json!(ERASED), &json!(ERASED)), "{a}");
            assert_eq!(a["erased"], why, "{a}");
        }
        if a["type"] == "TokenIssued" {
            for field in ["device_id", "ip", "user_agent"] {
                assert_eq!(a["payload"][field], ERASED, "{a}");
            }
        }
    }
}

/// After forgetting: the same events, erased, then `UserForgotten` and
/// `SessionsCleared{forgotten}` of every session; nothing personal anywhere in them.
#[track_caller]
fn assert_forgotten(before: &[Value], after: &[Value]) {
    let mut expected = types(before);
    expected.extend(["UserForgotten", "SessionsCleared"]);
    assert_eq!(types(after), expected, "{after:#?}");
    assert_same_events_erased(before, after, "forgotten");
    let registered = &after[0]["payload"];
    assert_eq!(
        (&registered["username"], &registered["email"]),
        (&json!(ERASED), &json!(ERASED))
    );
    assert_eq!(
        registered["document_id"],
        before[0]["payload"]["document_id"]
    );
    let cleared = &after.last().unwrap()["payload"];
    assert_eq!(cleared["reason"], "forgotten", "{cleared}");
    let ended = cleared["session_ids"].as_array().expect("session ids");
    for session in sessions(before) {
        assert!(ended.contains(&json!(session)), "{session} in {cleared}");
    }
    let text = [("trail".to_owned(), serde_json::to_vec(after).unwrap())];
    let left = found(&text, &everything(), &[]);
    assert_eq!(left, Vec::<String>::new(), "{after:#?}");
}

/// The sessions the trail started.
fn sessions(trail: &[Value]) -> Vec<&str> {
    trail
        .iter()
        .filter(|e| e["type"] == "TokenIssued")
        .map(|e| e["sessionId"].as_str().unwrap())
        .collect()
}

/// The stored bytes before forgetting: no request data in clear, but the names (the users row)
/// and the wrapped keys are found, so the search is not blind.
#[track_caller]
fn assert_sealed(db: &Db, keys: &[Vec<u8>]) {
    let stored = db.stored();
    assert_eq!(found(&stored, &REQUEST_DATA, &[]), Vec::<String>::new());
    assert!(
        !found(&stored, &[USERNAME, EMAIL], &[]).is_empty(),
        "the search finds the row"
    );
    assert_eq!(
        found(&stored, &[], keys).len(),
        keys.len(),
        "the search finds each key"
    );
}

/// Forgets the person `how`; a second time is a 404 and the command line finds no one.
async fn forget(server: &Server, api: &Api, person: &Person, before: &[Value], how: Forget) {
    let id = person.id;
    match how {
        Forget::Cli => {
            let output = server.cli(&["user", "forget", USERNAME]);
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{output:?}");
            assert!(said.contains(&format!("forgot user {id}")), "{said}");
        }
        Forget::Admin => {
            let (status, body) = api
                .delete_with_bearer(&format!("/api/admin/users/{id}"), ADMIN)
                .await;
            assert_eq!(status, 200, "{body}");
            let expected = json!({"id": id, "documentId": before[0]["payload"]["document_id"], "forgotten": true, "sessionsEnded": sessions(before).len()});
            assert_eq!(body["data"], expected);
        }
    }
    let (status, body) = api
        .delete_with_bearer(&format!("/api/admin/users/{id}"), ADMIN)
        .await;
    assert_error(status, &body, 404, "NotFoundError", "User not found");
    let again = server.cli(&["user", "forget", &id.to_string()]);
    assert!(!again.status.success(), "{again:?}");
}

/// The forgotten person's tokens and password no longer work.
async fn assert_locked_out(api: &Api, person: &Person) {
    for token in &person.tokens {
        let (status, body) = api.refresh(token).await;
        assert_eq!(status, 401, "{body}");
    }
    let body = json!({"identifier": USERNAME, "password": PASSWORD});
    let (status, body) = post_as(api, LAPTOP, "/api/auth/local", body).await;
    assert_eq!(status, 400, "{body}");
}

/// Every key row of the user is there, with no key in it, `forgotten`.
async fn assert_keys_deleted(db: &Db, id: i64, periods: usize) {
    let rows = db.key_rows(id).await;
    assert_eq!(rows.len(), periods, "{rows:?}");
    for (period, wrapped, erased) in rows {
        assert_eq!(
            (wrapped, erased.as_deref()),
            (None, Some("forgotten")),
            "period {period}"
        );
    }
}

/// The email and username can be registered again, by someone with another id.
async fn registers_again(api: &Api, old: i64) {
    let id = register(api).await;
    assert_ne!(id, old);
    login_as(api, PHONE, PHONE_DEVICE).await;
}

/// The whole story on one backend, forgetting `how`.
async fn forgetting_leaves_nothing_personal(backend: Backend, how: Forget) {
    let Some(db) = Db::create(backend).await else {
        return;
    };
    let mut server = db.server().serving().await;
    let api = server.api();
    let person = lives(&api).await;
    let cli = |args: &[&str]| server.cli(args);
    let before = trail(&api, person.id).await;
    assert_readable(&before);
    assert_readable(&audit(&cli, person.id));
    let keys = db.wrapped_keys(person.id).await;
    assert!(keys.len() >= 2, "the account's key and a month's");
    assert_sealed(&db, &keys);

    forget(&server, &api, &person, &before, how).await;
    assert_locked_out(&api, &person).await;
    if how == Forget::Admin {
        assert_forgotten(&before, &trail(&api, person.id).await);
    }
    server.stop_with("TERM").await;
    let left = found(&db.stored(), &everything(), &keys);
    assert_eq!(left, Vec::<String>::new(), "after forgetting");
    assert_keys_deleted(&db, person.id, keys.len()).await;
    let cli = |args: &[&str]| server.cli(args);
    verify_passes(&cli);
    assert_forgotten(&before, &audit(&cli, person.id));

    server.start();
    server.ready().await;
    let api = server.api();
    assert_forgotten(&before, &trail(&api, person.id).await);
    registers_again(&api, person.id).await;
    // Nor does the server's own log (at `info`) hold any of it.
    let log = [(
        "the server's log".to_owned(),
        server.log_text().into_bytes(),
    )];
    assert_eq!(found(&log, &everything(), &[]), Vec::<String>::new());
    drop(server);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_forgotten_by_the_cli_leaves_nothing_personal_in_the_files() {
    forgetting_leaves_nothing_personal(Backend::Sqlite, Forget::Cli).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_forgotten_by_the_admin_api_leaves_nothing_personal_in_the_files() {
    forgetting_leaves_nothing_personal(Backend::Sqlite, Forget::Admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_forgotten_by_the_cli_leaves_nothing_personal_in_a_dump() {
    forgetting_leaves_nothing_personal(Backend::Postgres, Forget::Cli).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_forgotten_by_the_admin_api_leaves_nothing_personal_in_a_dump() {
    forgetting_leaves_nothing_personal(Backend::Postgres, Forget::Admin).await;
}

/// A server that read (and so cached) the person's keys, while another process forgets them
/// (the command line; on PostgreSQL, as another instance would): its admin API must show the
/// fields erased at once, not what its cache still opens.
async fn a_running_server_shows_erased_once_another_process_forgot(backend: Backend) {
    let Some(db) = Db::create(backend).await else {
        return;
    };
    let server = db.server().serving().await;
    let api = server.api();
    let person = lives(&api).await;
    let before = trail(&api, person.id).await;
    assert_readable(&before);
    let output = server.cli(&["user", "forget", &person.id.to_string()]);
    assert!(output.status.success(), "{output:?}");
    assert_locked_out(&api, &person).await;
    // A page that stops before the `UserForgotten`: erased once the catch-up reader passed it.
    let first = first_entry_once_erased(&api, person.id).await;
    assert_eq!(first["erased"], "forgotten", "{first}");
    assert_forgotten(&before, &trail(&api, person.id).await);
    drop(server);
    db.drop().await;
}

/// The first entry of the user's trail, read alone until its IP reads `erased` (the catch-up
/// reader passes a `UserForgotten` within a second on SQLite, at once on PostgreSQL).
async fn first_entry_once_erased(api: &Api, id: i64) -> Value {
    let path = format!("/api/admin/users/{id}/events?limit=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = api.get_with_bearer(&path, ADMIN).await;
        assert_eq!(status, 200, "{body}");
        let first = body["data"][0].clone();
        if first["ip"] == ERASED || std::time::Instant::now() > deadline {
            return first;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_running_server_shows_erased_once_the_cli_forgot() {
    a_running_server_shows_erased_once_another_process_forgot(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_running_server_shows_erased_once_another_process_forgot() {
    a_running_server_shows_erased_once_another_process_forgot(Backend::Postgres).await;
}

/// The app in this process with a 30-day retention, on SQLite or at `url`.
async fn app_with_retention(url: Option<&str>) -> TestApp {
    let mut env = vec![
        ("PERSONAL_DATA_RETENTION", "30d"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("ADMIN_API_TOKEN", ADMIN),
    ];
    env.extend(url.map(|url| ("DATABASE_URL", url)));
    spawn_app_with(&env).await
}

/// After the expiry: the entries of the old month read `erased` (`expired`), the newer ones
/// and the registration's names do not.
#[track_caller]
fn assert_expired(before: &[Value], after: &[Value]) {
    assert_same_events_erased(before, &after[..before.len()], "expired");
    let registered = &after[0]["payload"];
    assert_eq!(
        registered["username"], USERNAME,
        "the account's key is kept"
    );
    assert!(
        registered["email"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(EMAIL)
    );
    let newer = &after[before.len()..];
    assert!(!newer.is_empty());
    for entry in newer {
        assert_eq!(
            (entry["ip"].as_str(), entry["userAgent"].as_str()),
            (Some(PHONE.ip), Some(PHONE.agent)),
            "{entry}"
        );
        assert!(entry.get("erased").is_none(), "{entry}");
    }
    let devices = devices(newer);
    assert!(!devices.is_empty() && devices.iter().all(|d| *d == PHONE_DEVICE));
}

/// Events of month M, then 70 days later of month M+2 or M+3; the expiry deletes M's key.
async fn retention_erases_old_months_and_keeps_the_names(app: &TestApp) {
    let id = register(app).await;
    login_as(app, LAPTOP, LAPTOP_DEVICE).await;
    let before = trail(app, id).await;
    assert_eq!(
        types(&before),
        ["UserRegistered", "TokenIssued", "TokenIssued"]
    );
    assert!(before.iter().all(|e| e["ip"].is_string()), "{before:#?}");
    assert_eq!(
        app.state().expire_personal_data().await.unwrap(),
        0,
        "nothing old yet"
    );

    app.advance(TimeDelta::days(70));
    login_as(app, PHONE, PHONE_DEVICE).await;
    let expired = app.state().expire_personal_data().await.unwrap();
    assert!(expired >= 1, "{expired}");
    assert_eq!(app.state().expire_personal_data().await.unwrap(), 0, "once");
    assert_expired(&before, &trail(app, id).await);
    let cli = |args: &[&str]| app.cli(args);
    assert_expired(&before, &audit(&cli, id));
    verify_passes(&cli);
    // The account still logs in, on a key of this month.
    login_as(app, PHONE, PHONE_DEVICE).await;
    assert_expired(&before, &trail(app, id).await);
}

#[actix_web::test]
async fn sqlite_retention_erases_old_months_and_keeps_the_names() {
    let app = app_with_retention(None).await;
    retention_erases_old_months_and_keeps_the_names(&app).await;
}

#[actix_web::test]
async fn postgres_retention_erases_old_months_and_keeps_the_names() {
    let Some(url) = support::fresh_postgres_url().await else {
        return;
    };
    let app = app_with_retention(Some(&url)).await;
    retention_erases_old_months_and_keeps_the_names(&app).await;
    app.stop().await;
}

/// The README: "On SQLite `secure_delete` is on, so the deleted key and row leave no bytes
/// behind in the file once the WAL is checkpointed"; SECURITY.md: "their old pages stay in the
/// `-wal` file until the next checkpoint (the server checkpoints as it runs and at stop)". So
/// once a checkpoint ran while the server still serves (`PASSIVE`, as SQLite's automatic
/// one), no file may hold the forgotten names or keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_once_checkpointed_while_serving_no_file_holds_what_was_forgotten() {
    let db = Db::create(Backend::Sqlite).await.expect("SQLite");
    let server = db.server().serving().await;
    let api = server.api();
    let person = lives(&api).await;
    let before = trail(&api, person.id).await;
    let keys = db.wrapped_keys(person.id).await;
    forget(&server, &api, &person, &before, Forget::Admin).await;
    let (busy, frames, done) = db.checkpoint("PASSIVE").await;
    assert_eq!((busy, done), (0, frames), "the whole WAL checkpointed");
    let left = found(&db.stored(), &everything(), &keys);
    assert_eq!(
        left,
        Vec::<String>::new(),
        "after a checkpoint, the server serving"
    );
}
