//! A kill while an email is owed: the server is `SIGKILL`ed after a reset was requested and
//! before its email could leave (the SMTP server is not there yet); restarted with the SMTP
//! server up, it sends the email exactly once and records `EmailSent`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use support::{
    Api, CHECKPOINT_KEY, JWT_SECRET, LEDGER_KEY, PERSONAL_DATA_KEY, REFRESH_SECRET, Server,
    SmtpServer, free_port,
};
use tokenledger::config::Config;
use tokenledger::email_codes::{CodeKey, digest};
use tokenledger::store::ledger::Upgrading;
use tokenledger::store::users::NewCode;
use tokenledger::store::{self, EventMetadata, EventStore, StoreKeys};
use tokenledger_domain::EmailKind;
use uuid::Uuid;

/// The store of the server's SQLite file, opened in this process as the CLI opens it.
async fn open_store(data: &std::path::Path) -> store::Opened {
    let env: HashMap<String, String> = [
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_JWT_SECRET", REFRESH_SECRET),
        ("LEDGER_KEY", LEDGER_KEY),
        ("CHECKPOINT_KEY", CHECKPOINT_KEY),
        ("PERSONAL_DATA_KEY", PERSONAL_DATA_KEY),
        ("DATA_DIR", data.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::load(None, &env, false).unwrap();
    let keys = StoreKeys::of(&config).unwrap();
    store::open(&config.server.database_url, true, &keys, Upgrading::Refuse)
        .await
        .expect("the server's database")
}

/// The payloads of the user's events of `event_type`, once there are `at_least`.
async fn events(events: &dyn EventStore, user: i64, event_type: &str, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = (events
            .read_stream(&format!("user-{user}"), 0)
            .await
            .unwrap())
        .iter()
        .filter(|e| e.event_type == event_type)
        .count();
        if found >= at_least || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_owed_at_a_kill_is_sent_once_after_the_restart() {
    let Some(probe) = SmtpServer::start().await else {
        return;
    };
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut server = Server::on(env!("CARGO_BIN_EXE_tokenledger"), dir.path()).envs(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &port),
        ("SMTP_SECURITY", "none"),
        ("EMAIL_RESET_PASSWORD", "https://app.example.com/reset"),
        ("EMAIL_RETRY_DELAY", "200ms"),
        ("EMAIL_MAX_ATTEMPTS", "100"),
    ]);
    server.start();
    server.ready().await;
    let id = Api::new(server.address.clone()).register("kim").await["user"]["id"]
        .as_i64()
        .unwrap();
    // The request as the use case appends it; the server's mailer finds it in the log.
    let opened = open_store(dir.path()).await;
    let mut key = [0u8; 32];
    hex::decode_to_slice(PERSONAL_DATA_KEY, &mut key).unwrap();
    let code_id = Uuid::now_v7();
    let now = Utc::now();
    let code = NewCode {
        code_id,
        digest: digest(&CodeKey::derive(&key).code(code_id)),
        expires_at: now + TimeDelta::hours(1),
    };
    (opened.users)
        .request_code(
            id,
            EmailKind::ResetPassword,
            &code,
            now,
            &EventMetadata::default(),
        )
        .await
        .unwrap();
    let log = opened.events.as_ref();
    assert!(events(log, id, "EmailFailed", 1).await >= 1, "a try failed");
    server.kill();

    let smtp = SmtpServer::start_on(port.parse().unwrap()).await.unwrap();
    server.start();
    server.ready().await;
    let messages = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(events(log, id, "EmailSent", 1).await, 1);
    // Passes of the mailer after it: nothing more.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(smtp.messages().len(), 1, "{messages:?}");
    assert_eq!(
        messages[0]["headers"]["Message-ID"],
        format!("<{code_id}@localhost>")
    );
    assert_eq!(events(log, id, "EmailSent", 1).await, 1);
    server.kill();
    opened.events.close().await;
}
