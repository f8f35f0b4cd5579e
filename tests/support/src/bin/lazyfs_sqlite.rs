//! SQLite in a process of its own, for the power-loss tests (`tests/lazyfs.rs`): a test
//! process that opened the database itself would keep SQLite's per-process state (locks,
//! the `-shm` mapping) across the power cut, which a machine losing power does not.
//!
//!   lazyfs_sqlite write DB SYNCHRONOUS ROWS   one row per transaction in WAL mode, printing
//!                                             each row's number once its commit returned,
//!                                             then exits without closing, as a killed
//!                                             server does
//!   lazyfs_sqlite count DB                    prints the rows there are, the journal mode
//!                                             and integrity_check

use std::io::Write;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", db, synchronous, rows] => {
            let rows = rows.parse().expect("ROWS is a number");
            let synchronous = SqliteSynchronous::from_str(synchronous).expect("SYNCHRONOUS");
            let connection = runtime.block_on(write(db, synchronous, rows));
            // Never closed: closing would checkpoint the WAL, which a crash does not.
            std::mem::forget(connection);
            std::process::exit(0);
        }
        ["count", db] => runtime.block_on(count(db)),
        _ => panic!("usage: lazyfs_sqlite write DB SYNCHRONOUS ROWS | count DB"),
    }
}

async fn write(db: &str, synchronous: SqliteSynchronous, rows: u32) -> SqliteConnection {
    let mut connection = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .connect()
        .await
        .expect("open the database");
    sqlx::query("CREATE TABLE IF NOT EXISTS acknowledged (n INTEGER PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .expect("create the table");
    let mut stdout = std::io::stdout();
    for n in 0..rows {
        sqlx::query("INSERT INTO acknowledged (n) VALUES (?)")
            .bind(n)
            .execute(&mut connection)
            .await
            .expect("insert a row");
        writeln!(stdout, "{n}")
            .and_then(|()| stdout.flush())
            .expect("stdout");
    }
    connection
}

async fn count(db: &str) {
    let mut connection = SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .expect("open the database");
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .expect("integrity_check")
        .get(0);
    let journal: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut connection)
        .await
        .expect("journal_mode")
        .get(0);
    // A database whose table creation was lost has no rows, not an error.
    let rows: i64 = sqlx::query("SELECT count(*) FROM acknowledged")
        .fetch_one(&mut connection)
        .await
        .map_or(0, |row| row.get(0));
    println!("{rows} {journal} {integrity}");
    connection.close().await.expect("close");
}
