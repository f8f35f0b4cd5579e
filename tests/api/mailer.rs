//! The mailer against a real SMTP server (Python's aiosmtpd, `support::SmtpServer`): a
//! requested email arrives once, with its headers and a code whose digest is the logged one;
//! a server that is not there yet gets it after a retry; a superseded code is never sent; and
//! two PostgreSQL instances send fifty emails once each. Requests are appended as the use
//! cases append them (`Users::request_code`), then the mailer is woken; and end to end, the
//! emailed links of forgot-password and of a registration to confirm do their work.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{PERSONAL_DATA_KEY, SmtpServer, free_port, fresh_postgres_url};
use tokenledger::email_codes::{CodeKey, digest};
use tokenledger::store::EventMetadata;
use tokenledger::store::users::NewCode;
use tokenledger_domain::EmailKind;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};

/// The settings of a mailer sending to `port`, with retries every 200 ms.
fn smtp_on(port: &str) -> Vec<(&'static str, String)> {
    [
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port),
        ("SMTP_SECURITY", "none"),
        ("SMTP_TIMEOUT", "2s"),
        ("EMAIL_FROM", "Accounts <accounts@example.com>"),
        ("EMAIL_REPLY_TO", "help@example.com"),
        ("EMAIL_RESET_PASSWORD", "https://app.example.com/reset"),
        ("EMAIL_RETRY_DELAY", "200ms"),
        ("LOGIN_RATE_LIMIT", "off"),
        ("LOGIN_IP_RATE_LIMIT", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

async fn spawn(settings: &[(&'static str, String)], extra: &[(&str, &str)]) -> TestApp {
    let mut overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}

fn code_key() -> CodeKey {
    let mut key = [0u8; 32];
    hex::decode_to_slice(PERSONAL_DATA_KEY, &mut key).unwrap();
    CodeKey::derive(&key)
}

/// Appends a request of `kind` for `user` as the use cases do, and wakes the mailer; the
/// code's id.
async fn request(app: &TestApp, user: i64, kind: EmailKind) -> Uuid {
    let code_id = Uuid::now_v7();
    let now = app.state().clock.now();
    let code = NewCode {
        code_id,
        digest: digest(&code_key().code(code_id)),
        expires_at: now + TimeDelta::hours(1),
    };
    (app.state().users)
        .request_code(user, kind, &code, now, &EventMetadata::default())
        .await
        .expect("request appended");
    app.state().mail.wake();
    code_id
}

/// Waits until the user's stream has an event of `event_type`; its payloads.
async fn eventually(app: &TestApp, user: i64, event_type: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = app.payloads(user, event_type).await;
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'m>(message: &'m Value, name: &str) -> &'m str {
    message["headers"][name].as_str().unwrap_or_default()
}

/// The code in a link `…?<param>=<code>` of the message's text part.
fn code_in(message: &Value, param: &str) -> String {
    let text = message["text"].as_str().expect("a text part");
    let start = text.find(&format!("?{param}=")).expect("a link") + param.len() + 2;
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect()
}

#[actix_web::test]
async fn a_requested_reset_email_arrives_once_with_its_headers_and_the_logged_code() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = spawn(&smtp_on(&smtp.port.to_string()), &[]).await;
    let id = app.register("ada").await["user"]["id"].as_i64().unwrap();
    let code_id = request(&app, id, EmailKind::ResetPassword).await;

    let messages = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["rcpt_tos"], serde_json::json!(["ada@example.com"]));
    assert_eq!(header(message, "To"), "ada@example.com");
    assert_eq!(header(message, "From"), "Accounts <accounts@example.com>");
    assert_eq!(header(message, "Reply-To"), "help@example.com");
    assert_eq!(header(message, "Subject"), "Reset password");
    let message_id = format!("<{code_id}@example.com>");
    assert_eq!(header(message, "Message-ID"), message_id);
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("You can use the following link to reset your password:\nhttps://app.example.com/reset?code="),
        "Strapi's words and the front end's page: {text}"
    );
    let code = code_in(message, "code");
    assert_eq!(code.len(), 64);
    let requested = app.payloads(id, "PasswordResetRequested").await;
    assert_eq!(requested[0]["code_digest"].as_str().unwrap(), digest(&code));
    assert!(
        message["html"]
            .as_str()
            .unwrap()
            .contains(&format!("?code={code}</p>"))
    );

    let sent = eventually(&app, id, "EmailSent").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["message_id"], message_id.as_str());
    assert_eq!(sent[0]["attempt"], 1);
    assert_eq!(sent[0]["kind"], "reset_password");
    // More passes of the mailer, and a restart, send nothing again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let app = app.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(app.payloads(id, "EmailSent").await.len(), 1);
    app.stop().await;
}

#[actix_web::test]
async fn a_confirmation_email_links_to_the_services_own_confirmation_route() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = spawn(&smtp_on(&smtp.port.to_string()), &[]).await;
    let id = app.register("bea").await["user"]["id"].as_i64().unwrap();
    request(&app, id, EmailKind::EmailConfirmation).await;
    let messages = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&messages[0], "Subject"), "Account confirmation");
    let link = app.url("/api/auth/email-confirmation?confirmation=");
    let text = messages[0]["text"].as_str().unwrap();
    assert!(text.contains(&link), "{link} in {text}");
    let code = code_in(&messages[0], "confirmation");
    let requested = app.payloads(id, "EmailConfirmationRequested").await;
    assert_eq!(requested[0]["code_digest"].as_str().unwrap(), digest(&code));
    assert_eq!(
        eventually(&app, id, "EmailSent").await[0]["kind"],
        "email_confirmation"
    );
    app.stop().await;
}

#[actix_web::test]
async fn an_smtp_server_that_is_not_there_yet_gets_the_email_after_a_retry() {
    let port = free_port();
    let app = spawn(&smtp_on(&port.to_string()), &[]).await;
    let id = app.register("cyd").await["user"]["id"].as_i64().unwrap();
    let code_id = request(&app, id, EmailKind::ResetPassword).await;
    let failed = eventually(&app, id, "EmailFailed").await;
    assert_eq!(failed[0]["attempt"], 1, "{failed:?}");
    assert_eq!(failed[0]["code_id"], code_id.to_string());
    assert!(failed[0]["retry_at"].is_string(), "{failed:?}");
    assert!(!failed[0]["error"].as_str().unwrap().is_empty());

    let Some(smtp) = SmtpServer::start_on(port).await else {
        return;
    };
    let messages = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        header(&messages[0], "Message-ID"),
        format!("<{code_id}@example.com>")
    );
    let sent = eventually(&app, id, "EmailSent").await;
    assert!(sent[0]["attempt"].as_u64().unwrap() >= 2, "{sent:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(smtp.messages().len(), 1, "sent once, and not retried after");
    app.stop().await;
}

#[actix_web::test]
async fn a_code_superseded_before_it_was_sent_is_never_sent() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    // Without SMTP the links are only logged and nothing is recorded: both requests are
    // still owed when the server comes back with an SMTP server.
    let app = spawn_app_with(&[("EMAIL_RESET_PASSWORD", "https://app.example.com/reset")]).await;
    let id = app.register("dee").await["user"]["id"].as_i64().unwrap();
    let older = request(&app, id, EmailKind::ResetPassword).await;
    let newer = request(&app, id, EmailKind::ResetPassword).await;
    let settings = smtp_on(&smtp.port.to_string());
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart_with(&overrides).await;
    let sent = eventually(&app, id, "EmailSent").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["code_id"], newer.to_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "only the newest code");
    assert_eq!(
        header(&messages[0], "Message-ID"),
        format!("<{newer}@example.com>")
    );
    assert!(!format!("{messages:?}").contains(&older.to_string()));
    app.stop().await;
}

#[actix_web::test]
async fn two_postgres_instances_send_fifty_emails_once_each() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let settings = smtp_on(&smtp.port.to_string());
    let a = spawn(&settings, &[("DATABASE_URL", &url)]).await;
    let b = spawn(&settings, &[("DATABASE_URL", &url)]).await;
    let mut users = Vec::new();
    for n in 0..50 {
        let app = if n % 2 == 0 { &a } else { &b };
        let id = app.register(&format!("user{n}")).await["user"]["id"]
            .as_i64()
            .unwrap();
        request(app, id, EmailKind::ResetPassword).await;
        users.push(id);
    }
    let messages = smtp.wait_for(50, Duration::from_secs(60)).await;
    // Passes of both mailers after the last email: none sends anything again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let messages_after = smtp.messages();
    assert_eq!(messages.len(), 50);
    assert_eq!(messages_after.len(), 50, "no email twice");
    let ids: HashSet<&str> = messages_after
        .iter()
        .map(|m| header(m, "Message-ID"))
        .collect();
    assert_eq!(ids.len(), 50, "fifty different Message-IDs");
    for id in users {
        assert_eq!(eventually(&a, id, "EmailSent").await.len(), 1, "user {id}");
    }
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn forgot_password_emails_a_link_whose_code_resets_the_password() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = spawn(&smtp_on(&smtp.port.to_string()), &[]).await;
    app.register("eve").await;
    let old_session = app.login("eve").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let forgot =
        |email: &'static str| app.post("/api/auth/forgot-password", json!({ "email": email }));
    assert_eq!(forgot("nobody@example.com").await.0, 200);
    assert_eq!(forgot("eve@example.com").await.0, 200);
    let messages = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(header(&messages[0], "To"), "eve@example.com");
    let code = code_in(&messages[0], "code");
    let (status, body) = app
        .post(
            "/api/auth/reset-password",
            json!({"code": code, "password": "a-new-password", "passwordConfirmation": "a-new-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "eve", "password": "a-new-password"}),
        )
        .await;
    assert_eq!(status, 200, "the new password logs in");
    let old = json!({"identifier": "eve", "password": "password123"});
    assert_eq!(
        app.post("/api/auth/local", old).await.0,
        400,
        "the old password"
    );
    assert_eq!(app.refresh(&old_session).await.0, 401, "an old session");
    let again = json!({"code": code, "password": "third-password", "passwordConfirmation": "third-password"});
    assert_eq!(
        app.post("/api/auth/reset-password", again).await.0,
        400,
        "used once"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1, "the unknown email got none");

    // A code past its lifetime (1 hour by default), on the injected clock.
    assert_eq!(forgot("eve@example.com").await.0, 200);
    let messages = smtp.wait_for(2, Duration::from_secs(20)).await;
    let late = code_in(&messages[1], "code");
    app.advance(chrono::TimeDelta::minutes(61));
    let expired = json!({"code": late, "password": "third-password", "passwordConfirmation": "third-password"});
    let (status, body) = app.post("/api/auth/reset-password", expired).await;
    assert_eq!(status, 400, "expired: {body}");
    app.stop().await;
}

#[actix_web::test]
async fn a_registration_to_confirm_emails_the_link_that_confirms_it() {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let app = spawn(
        &smtp_on(&smtp.port.to_string()),
        &[("EMAIL_CONFIRMATION", "true")],
    )
    .await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "fay", "email": "fay@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let login = json!({"identifier": "fay", "password": "password123"});
    assert_eq!(
        app.post("/api/auth/local", login.clone()).await.0,
        400,
        "not yet confirmed"
    );
    let messages = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&messages[0], "Subject"), "Account confirmation");
    let code = code_in(&messages[0], "confirmation");
    let link = app.url(&format!("/api/auth/email-confirmation?confirmation={code}"));
    let followed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(link)
        .send()
        .await
        .unwrap();
    assert!(followed.status().is_redirection(), "{}", followed.status());
    assert_eq!(app.post("/api/auth/local", login).await.0, 200, "confirmed");
    app.stop().await;
}
