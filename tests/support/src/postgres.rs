//! A fresh schema of the PostgreSQL test database for each test (`TEST_POSTGRES_URL`, by
//! default the local `test` database), so tests on one database never see each other's rows.
//! Where no PostgreSQL is reachable a test skips its PostgreSQL half, saying why; under `CI` it
//! fails instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;

/// The test database, as the tests' own connections reach it.
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of the test database that this test alone uses.
#[derive(Clone, Debug)]
pub struct FreshSchema {
    pub name: String,
}

impl FreshSchema {
    /// Creates the schema, after dropping those of runs older than an hour; `None` (with the
    /// reason printed) where no PostgreSQL is reachable.
    pub async fn create() -> Option<FreshSchema> {
        let url = postgres_url();
        let admin = match sqlx::PgPool::connect(&url).await {
            Ok(pool) => pool,
            Err(error) if std::env::var("CI").is_err() => {
                eprintln!(
                    "skipping the PostgreSQL half of this test: {url} is unreachable ({error})"
                );
                return None;
            }
            Err(error) => panic!("PostgreSQL must be reachable in CI at {url}: {error}"),
        };
        drop_stale_schemas(&admin).await;
        let name = format!("tl_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .expect("CREATE SCHEMA");
        admin.close().await;
        Some(FreshSchema { name })
    }

    /// A URL of the test database whose connections work in this schema.
    pub fn url(&self) -> String {
        let url = postgres_url();
        let glue = if url.contains('?') { '&' } else { '?' };
        format!("{url}{glue}options=-c%20search_path%3D{}", self.name)
    }

    /// Connection options for the schema, for a store opened in the test's own process.
    pub fn options(&self) -> PgConnectOptions {
        let options: PgConnectOptions = postgres_url().parse().expect("a PostgreSQL URL");
        options.options([("search_path", self.name.as_str())])
    }

    /// Drops the schema and what it holds.
    pub async fn drop(self) {
        let admin = sqlx::PgPool::connect(&postgres_url())
            .await
            .expect("PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        )))
        .execute(&admin)
        .await
        .expect("DROP SCHEMA");
        admin.close().await;
    }
}

/// The URL of a fresh schema (see `FreshSchema::create`), for a test that only needs a URL.
pub async fn fresh_postgres_url() -> Option<String> {
    Some(FreshSchema::create().await?.url())
}

/// Runs `test` on a fresh schema and drops it once the test passed (a failed test's schema
/// stays for a look, until a later run drops it as stale); skips where `create` does.
pub async fn on_fresh_schema<F, Fut>(test: F)
where
    F: FnOnce(FreshSchema) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(schema) = FreshSchema::create().await else {
        return;
    };
    test(schema.clone()).await;
    schema.drop().await;
}

/// Drops the schemas of test runs older than an hour (their names carry a UUID v7, which
/// carries its creation time), so the shared test database does not fill up.
async fn drop_stale_schemas(admin: &sqlx::PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tl\\_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for name in names {
        let created = uuid::Uuid::parse_str(&name[3..])
            .ok()
            .and_then(|id| id.get_timestamp())
            .map(|t| UNIX_EPOCH + Duration::from_secs(t.to_unix().0));
        if created.is_some_and(|t| t < hour_ago) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(admin)
            .await;
        }
    }
}
