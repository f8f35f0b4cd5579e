//! Event schemas: the version each event type is written with today, and upcasting — old
//! payloads are brought up to the current schema when read, so the log is never rewritten and
//! every reader sees one shape per event type. Decoding a stored event goes through here.
//!
//! The one real example so far: `TokenIssued` version 1 had no `device_id` (sessions were
//! not told apart by device). Version 2 added it; a version 1 session reads as the device
//! named after its session id, unique and stable, which is what the service does for a login
//! that gives no device id.

use std::borrow::Cow;

use serde_json::Value;

use crate::events::Event;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} has no schema version {schema_version}")]
    UnknownVersion {
        event_type: String,
        schema_version: i16,
    },
    #[error("{event_type} payload: {source}")]
    Payload {
        event_type: String,
        source: serde_json::Error,
    },
    #[error("{event_type} in the compact encoding: {reason}")]
    Compact { event_type: String, reason: String },
}

/// The schema version each event type is written with today. The account events
/// (`UserRegistered`, `PasswordChanged`, `UserBlocked`, `UserUnblocked`) are at version 1:
/// their fields are those of `events`, as first written.
pub fn current_version(event_type: &str) -> i16 {
    match event_type {
        // 2: `device_id` added (version 1 sessions had none).
        "TokenIssued" => 2,
        _ => 1,
    }
}

impl Event {
    /// The current schema version of this event's payload. Bump it when the fields change,
    /// and teach `upcast` below to bring the old form up to date.
    pub fn schema_version(&self) -> i16 {
        current_version(self.event_type())
    }

    /// A stored event, upcast to the current schema and parsed.
    pub fn decode(
        event_type: &str,
        schema_version: i16,
        payload: &str,
    ) -> Result<Event, DecodeError> {
        let upcast = upcast(event_type, schema_version, payload)?;
        let payload = upcast.as_ref();
        fn parse<T: serde::de::DeserializeOwned>(
            event_type: &str,
            payload: &str,
        ) -> Result<T, DecodeError> {
            serde_json::from_str(payload).map_err(|source| DecodeError::Payload {
                event_type: event_type.to_owned(),
                source,
            })
        }
        Ok(match event_type {
            "TokenIssued" => Event::TokenIssued(parse(event_type, payload)?),
            "TokenRotated" => Event::TokenRotated(parse(event_type, payload)?),
            "TokenRefreshed" => Event::TokenRefreshed(parse(event_type, payload)?),
            "RefreshTokenReused" => Event::RefreshTokenReused(parse(event_type, payload)?),
            "SessionRevoked" => Event::SessionRevoked(parse(event_type, payload)?),
            "SessionsCleared" => Event::SessionsCleared(parse(event_type, payload)?),
            "LoginFailed" => Event::LoginFailed(parse(event_type, payload)?),
            "UserRegistered" => Event::UserRegistered(parse(event_type, payload)?),
            "PasswordChanged" => Event::PasswordChanged(parse(event_type, payload)?),
            "UserBlocked" => Event::UserBlocked(parse(event_type, payload)?),
            "UserUnblocked" => Event::UserUnblocked(parse(event_type, payload)?),
            "UserForgotten" => Event::UserForgotten(parse(event_type, payload)?),
            "UserImported" => Event::UserImported(parse(event_type, payload)?),
            "PasswordRehashed" => Event::PasswordRehashed(parse(event_type, payload)?),
            "PasswordResetRequested" => Event::PasswordResetRequested(parse(event_type, payload)?),
            "PasswordReset" => Event::PasswordReset(parse(event_type, payload)?),
            "EmailConfirmationRequested" => {
                Event::EmailConfirmationRequested(parse(event_type, payload)?)
            }
            "EmailConfirmed" => Event::EmailConfirmed(parse(event_type, payload)?),
            "EmailSent" => Event::EmailSent(parse(event_type, payload)?),
            "EmailFailed" => Event::EmailFailed(parse(event_type, payload)?),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }
}

pub fn upcast<'p>(
    event_type: &str,
    schema_version: i16,
    payload: &'p str,
) -> Result<Cow<'p, str>, DecodeError> {
    let current = current_version(event_type);
    if schema_version == current {
        return Ok(Cow::Borrowed(payload));
    }
    let unknown = || DecodeError::UnknownVersion {
        event_type: event_type.to_owned(),
        schema_version,
    };
    match (event_type, schema_version) {
        ("TokenIssued", 1) => {
            let mut fields: Value =
                serde_json::from_str(payload).map_err(|source| DecodeError::Payload {
                    event_type: event_type.to_owned(),
                    source,
                })?;
            let object = fields.as_object_mut().ok_or_else(unknown)?;
            if !object.contains_key("device_id") {
                let session = object.get("session_id").cloned().unwrap_or(Value::Null);
                object.insert("device_id".to_owned(), session);
            }
            Ok(Cow::Owned(fields.to_string()))
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use crate::events::{Event, IssueReason};

    /// A `TokenIssued` as version 1 wrote it, by hand: no `device_id`.
    const VERSION_1: &str = r#"{"session_id":"01a2259e-7247-769b-a2d4-4d3729a4b46e","token_id":"01a2259e-7247-769b-a2d4-4d390e2b629d","token_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":"login","issued_at":"2026-11-29T04:00:00Z","token_expires_at":"2026-12-29T04:00:00Z","idle_expires_at":"2026-12-29T04:00:00Z","absolute_expires_at":"2027-02-27T04:00:00Z","ip":"192.0.2.7","user_agent":"old-client"}"#;

    #[test]
    fn given_a_version_1_token_issued_when_read_then_it_is_the_current_type() {
        let event = Event::decode("TokenIssued", 1, VERSION_1).unwrap();
        let Event::TokenIssued(issued) = &event else {
            panic!("not TokenIssued: {event:?}")
        };
        assert_eq!(issued.device_id, "01a2259e-7247-769b-a2d4-4d3729a4b46e");
        assert_eq!(issued.reason, IssueReason::Login);
        assert_eq!(issued.ip.as_deref(), Some("192.0.2.7"));
        // Written again, it is version 2 and reads back unchanged.
        assert_eq!(event.schema_version(), 2);
        assert_eq!(
            Event::decode("TokenIssued", 2, &event.payload()).unwrap(),
            event
        );
    }

    #[test]
    fn given_each_account_event_when_written_and_read_then_it_is_the_same_at_version_1() {
        use crate::events::{PasswordChanged, UserBlocked, UserRegistered, UserUnblocked};
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for event in [
            Event::UserRegistered(UserRegistered {
                document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
                username: "alice".into(),
                email: "alice@example.com".into(),
                provider: "local".into(),
                confirmed: true,
                blocked: false,
                password_digest: None,
                registered_at: at,
            }),
            Event::PasswordChanged(PasswordChanged {
                password_digest: "ab".repeat(32),
                changed_at: at,
            }),
            Event::UserBlocked(UserBlocked { blocked_at: at }),
            Event::UserUnblocked(UserUnblocked { unblocked_at: at }),
        ] {
            assert_eq!(event.schema_version(), 1);
            assert_eq!(event.occurred_at(), at);
            let read = Event::decode(event.event_type(), 1, &event.payload()).unwrap();
            assert_eq!(read, event);
        }
    }

    #[test]
    fn unknown_versions_are_refused_not_guessed() {
        assert!(Event::decode("TokenIssued", 3, VERSION_1).is_err());
        assert!(Event::decode("LoginFailed", 0, "{}").is_err());
    }
}
