//! The audit trail as people read it: one entry per event with its session, generation and
//! the request that caused it. Token hashes and password digests are cut to a short prefix —
//! enough to correlate entries, useless to an attacker — and tokens, passwords and password
//! hashes never appear at all (none is ever in the log).

use serde::Serialize;
use serde_json::Value;
use tokenledger_domain::Event;
use utoipa::ToSchema;

use crate::store::{RecordedEvent, StoreError};
use crate::terminal::printable;

/// How many hex digits of a token hash or password digest the trail shows.
const HASH_PREFIX: usize = 12;

#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub position: i64,
    pub version: i64,
    pub recorded_at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i16,
    pub session_id: Option<String>,
    pub generation: Option<u32>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub actor: Option<String>,
    /// Ours, made for the request that caused the event.
    pub request_id: Option<String>,
    /// The `X-Request-Id` that request carried, if any: the client's word, not ours.
    pub client_request_id: Option<String>,
    /// Why the personal fields (IP, user agent, device, names) read as `erased`: `forgotten`
    /// (the user was), `expired` (older than `PERSONAL_DATA_RETENTION`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased: Option<String>,
    /// A refresh from the client the session was last used from: its IP and user agent are
    /// those of the session's earlier events, not repeated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub same_client: bool,
    /// The event's own fields, token hashes cut short.
    #[schema(value_type = Object)]
    pub payload: Value,
    #[serde(skip)]
    pub event: Option<Event>,
}

fn generation(event: &Event) -> Option<u32> {
    match event {
        Event::TokenIssued(_) => Some(0),
        Event::TokenRotated(e) => Some(e.generation),
        Event::TokenRefreshed(e) => Some(e.generation),
        Event::RefreshTokenReused(e) => Some(e.presented_generation),
        _ => None,
    }
}

fn session_of(event: &Event) -> Option<String> {
    match event {
        Event::TokenIssued(e) => Some(e.session_id.to_string()),
        Event::TokenRotated(e) => Some(e.session_id.to_string()),
        Event::TokenRefreshed(e) => Some(e.session_id.to_string()),
        Event::RefreshTokenReused(e) => Some(e.session_id.to_string()),
        Event::SessionRevoked(e) => Some(e.session_id.to_string()),
        Event::SessionsCleared(_)
        | Event::LoginFailed(_)
        | Event::UserRegistered(_)
        | Event::PasswordChanged(_)
        | Event::UserBlocked(_)
        | Event::UserUnblocked(_)
        | Event::UserForgotten(_)
        | Event::UserImported(_)
        | Event::PasswordRehashed(_)
        | Event::PasswordResetRequested(_)
        | Event::PasswordReset(_)
        | Event::EmailConfirmationRequested(_)
        | Event::EmailConfirmed(_)
        | Event::EmailSent(_)
        | Event::EmailFailed(_) => None,
    }
}

/// Cuts every `token_hash`, `password_digest` and `code_digest` in a payload to its prefix.
fn redact(mut payload: Value) -> Value {
    for key in ["token_hash", "password_digest", "code_digest"] {
        if let Some(hash) = payload.get_mut(key)
            && let Some(text) = hash.as_str()
        {
            let prefix: String = text.chars().take(HASH_PREFIX).collect();
            *hash = Value::String(format!("{prefix}…"));
        }
    }
    payload
}

impl AuditEntry {
    pub fn of(record: &RecordedEvent) -> Result<AuditEntry, StoreError> {
        let event = record.decode().map_err(|source| StoreError::Corrupt {
            position: record.position,
            source,
        })?;
        // The current form (older schema versions upcast), not the stored bytes.
        let payload = serde_json::from_str(&event.payload()).unwrap_or(Value::Null);
        let metadata: Value = serde_json::from_str(&record.metadata).unwrap_or(Value::Null);
        let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(AuditEntry {
            position: record.position,
            version: record.stream_version,
            recorded_at: record
                .recorded_at
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
            event_type: record.event_type.clone(),
            schema_version: record.schema_version,
            session_id: session_of(&event),
            generation: generation(&event),
            ip: text("ip"),
            user_agent: text("user_agent"),
            actor: text("actor"),
            request_id: text("request_id"),
            client_request_id: text("client_request_id"),
            erased: text("erased"),
            same_client: event.same_client(),
            payload: redact(payload),
            event: Some(event),
        })
    }
}

/// A cell of where a request came from: `=` where it is the session's last client's, the
/// reason after `erased` where the key is gone.
fn seen(entry: &AuditEntry, value: Option<String>) -> String {
    match (value, &entry.erased) {
        (Some(value), Some(why)) if value == tokenledger_domain::ERASED => {
            format!("erased ({why})")
        }
        (Some(value), _) => value,
        (None, _) if entry.same_client => "=".to_owned(),
        (None, _) => "-".to_owned(),
    }
}

/// The trail as an aligned table: time, event, session, generation, IP, user agent, actor.
/// Every cell is `printable`: the user agent is the client's, and a terminal shows the table.
pub fn table(entries: &[AuditEntry]) -> String {
    // Long user agents would widen every row; the JSON form keeps them whole.
    let cut = |text: String| -> String {
        if text.chars().count() > 60 {
            text.chars().take(59).chain(['…']).collect()
        } else {
            text
        }
    };
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.recorded_at.clone(),
                e.event_type.clone(),
                e.session_id
                    .as_deref()
                    .map(|s| s.chars().take(13).collect())
                    .unwrap_or_else(|| "-".into()),
                e.generation
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "-".into()),
                seen(e, e.ip.clone()),
                cut(seen(e, e.user_agent.clone())),
                e.actor.clone().unwrap_or_else(|| "-".into()),
            ]
            .map(|cell| printable(&cell).into_owned())
        })
        .collect();
    let header = [
        "time",
        "event",
        "session",
        "gen",
        "ip",
        "user agent",
        "actor",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    std::iter::once(line(&header))
        .chain(rows.iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}
