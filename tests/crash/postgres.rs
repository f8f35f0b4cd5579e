//! The PostgreSQL half: a fresh schema of the test database for a run, and the killed
//! server's backends, which must have ended before the log is read.

/// A fresh schema of the test database, and the URL that names it.
pub struct Postgres {
    pub url: String,
    pub schema: String,
}

impl Postgres {
    /// The server's connections carry this name, so that its backends can be told apart.
    pub fn application_name(&self) -> String {
        format!("crash-{}", self.schema)
    }
}

fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A URL of a fresh schema of the test database, and the schema's name; `None` (with the
/// reason printed) where no PostgreSQL is reachable, which in CI fails instead. The same as
/// the `api` tests' `fresh_postgres_url`, which lives in another test binary.
pub async fn fresh_postgres_url() -> Option<(String, String)> {
    let url = postgres_url();
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) if std::env::var("CI").is_err() => {
            eprintln!("skipping the PostgreSQL crash test: {url} is unreachable ({error})");
            return None;
        }
        Err(error) => panic!("PostgreSQL must be reachable in CI at {url}: {error}"),
    };
    let schema = format!("tl_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("CREATE SCHEMA");
    admin.close().await;
    let glue = if url.contains('?') { '&' } else { '?' };
    Some((
        format!("{url}{glue}options=-c%20search_path%3D{schema}"),
        schema,
    ))
}

/// How many PostgreSQL backends serve the server's connections.
pub async fn backends(postgres: &Postgres) -> i64 {
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("PostgreSQL");
    let count =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(postgres.application_name())
            .fetch_one(&admin)
            .await
            .expect("pg_stat_activity");
    admin.close().await;
    count
}

/// Drops a passed run's schema (a failed run's stays for a look; the `api` tests drop those
/// older than an hour).
pub async fn drop_schema(schema: &str) {
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .expect("DROP SCHEMA");
    admin.close().await;
}

/// Runs `test` on a fresh schema and drops it after; skips (saying why) where
/// `fresh_postgres_url` does.
pub async fn on_fresh_postgres<F, Fut>(test: F)
where
    F: FnOnce(Postgres) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some((url, schema)) = fresh_postgres_url().await else {
        return;
    };
    test(Postgres {
        url,
        schema: schema.clone(),
    })
    .await;
    drop_schema(&schema).await;
}
