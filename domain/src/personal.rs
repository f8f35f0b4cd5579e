//! Personal data in events, and the compact form events are stored in.
//!
//! An event's personal fields (where a request came from, the device it named, the account's
//! names) are taken out of it before it is stored, so that they can be sealed under a data
//! key that erasing a person deletes; the rest of the event is written in the compact
//! encoding (postcard: ids and hashes as bytes, instants as integers), and JSON stays the
//! format of the API and of exports. Reading reverses both; fields whose key is gone read as
//! `ERASED`.

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::schema::DecodeError;

/// What a personal field reads as once its key is deleted.
pub const ERASED: &str = "erased";

/// The personal fields of a request an event records: kept no longer than the retention of
/// the period they were recorded in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Personal {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The device a login named (a client may send "Alice's iPhone").
    pub device_id: Option<String>,
}

impl Personal {
    /// Every field as `ERASED`, as a reader without the key sees them.
    pub fn erased() -> Personal {
        let erased = || Some(ERASED.to_owned());
        Personal {
            ip: erased(),
            user_agent: erased(),
            device_id: erased(),
        }
    }
}

/// The names an account is known by: kept for as long as the account, under a key of its own
/// that only forgetting the user deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountNames {
    pub username: String,
    pub email: String,
}

impl AccountNames {
    pub fn erased() -> AccountNames {
        AccountNames {
            username: ERASED.to_owned(),
            email: ERASED.to_owned(),
        }
    }
}

impl Event {
    /// Whether this event type records a request's personal fields itself (besides the
    /// metadata every event has).
    pub fn has_personal(&self) -> bool {
        matches!(
            self,
            Event::TokenIssued(_)
                | Event::TokenRotated(_)
                | Event::TokenRefreshed(_)
                | Event::RefreshTokenReused(_)
                | Event::LoginFailed(_)
        )
    }

    /// Whether the event says its request came from the client its session was last used
    /// from: then neither it nor its metadata repeats where that was.
    pub fn same_client(&self) -> bool {
        match self {
            Event::TokenRotated(e) => e.same_client,
            Event::TokenRefreshed(e) => e.same_client,
            _ => false,
        }
    }

    /// Whether `take_personal` would take anything (a login always names its device).
    pub fn holds_personal(&self) -> bool {
        let (ip, user_agent) = match self {
            Event::TokenIssued(_) => return true,
            Event::TokenRotated(e) => (&e.ip, &e.user_agent),
            Event::TokenRefreshed(e) => (&e.ip, &e.user_agent),
            Event::RefreshTokenReused(e) => (&e.ip, &e.user_agent),
            Event::LoginFailed(e) => (&e.ip, &e.user_agent),
            _ => return false,
        };
        ip.is_some() || user_agent.is_some()
    }

    /// Takes the request's personal fields out, leaving `None` (or an empty device id).
    pub fn take_personal(&mut self) -> Personal {
        let (ip, user_agent) = match self {
            Event::TokenIssued(e) => (&mut e.ip, &mut e.user_agent),
            Event::TokenRotated(e) => (&mut e.ip, &mut e.user_agent),
            Event::TokenRefreshed(e) => (&mut e.ip, &mut e.user_agent),
            Event::RefreshTokenReused(e) => (&mut e.ip, &mut e.user_agent),
            Event::LoginFailed(e) => (&mut e.ip, &mut e.user_agent),
            _ => return Personal::default(),
        };
        let mut personal = Personal {
            ip: ip.take(),
            user_agent: user_agent.take(),
            device_id: None,
        };
        if let Event::TokenIssued(e) = self {
            personal.device_id = Some(std::mem::take(&mut e.device_id));
        }
        personal
    }

    /// Puts back what `take_personal` took (or `Personal::erased`).
    pub fn put_personal(&mut self, personal: Personal) {
        let (ip, user_agent) = match self {
            Event::TokenIssued(e) => {
                e.device_id = personal.device_id.unwrap_or_default();
                (&mut e.ip, &mut e.user_agent)
            }
            Event::TokenRotated(e) => (&mut e.ip, &mut e.user_agent),
            Event::TokenRefreshed(e) => (&mut e.ip, &mut e.user_agent),
            Event::RefreshTokenReused(e) => (&mut e.ip, &mut e.user_agent),
            Event::LoginFailed(e) => (&mut e.ip, &mut e.user_agent),
            _ => return,
        };
        *ip = personal.ip;
        *user_agent = personal.user_agent;
    }

    /// Takes a registration's names out, leaving them empty; `None` for any other event.
    pub fn take_names(&mut self) -> Option<AccountNames> {
        let Event::UserRegistered(e) = self else {
            return None;
        };
        Some(AccountNames {
            username: std::mem::take(&mut e.username),
            email: std::mem::take(&mut e.email),
        })
    }

    pub fn put_names(&mut self, names: AccountNames) {
        if let Event::UserRegistered(e) = self {
            e.username = names.username;
            e.email = names.email;
        }
    }

    /// The compact encoding of this event's fields (see the module's documentation).
    pub fn to_compact(&self) -> Vec<u8> {
        // As `payload`: plain structs always serialise.
        let encoded = match self {
            Event::TokenIssued(e) => postcard::to_allocvec(e),
            Event::TokenRotated(e) => postcard::to_allocvec(e),
            Event::TokenRefreshed(e) => postcard::to_allocvec(e),
            Event::RefreshTokenReused(e) => postcard::to_allocvec(e),
            Event::SessionRevoked(e) => postcard::to_allocvec(e),
            Event::SessionsCleared(e) => postcard::to_allocvec(e),
            Event::LoginFailed(e) => postcard::to_allocvec(e),
            Event::UserRegistered(e) => postcard::to_allocvec(e),
            Event::PasswordChanged(e) => postcard::to_allocvec(e),
            Event::UserBlocked(e) => postcard::to_allocvec(e),
            Event::UserUnblocked(e) => postcard::to_allocvec(e),
            Event::UserForgotten(e) => postcard::to_allocvec(e),
            Event::UserImported(e) => postcard::to_allocvec(e),
            Event::PasswordRehashed(e) => postcard::to_allocvec(e),
            Event::PasswordResetRequested(e) => postcard::to_allocvec(e),
            Event::PasswordReset(e) => postcard::to_allocvec(e),
            Event::EmailConfirmationRequested(e) => postcard::to_allocvec(e),
            Event::EmailConfirmed(e) => postcard::to_allocvec(e),
            Event::EmailSent(e) => postcard::to_allocvec(e),
            Event::EmailFailed(e) => postcard::to_allocvec(e),
        };
        encoded.expect("event payloads always serialise")
    }

    /// An event of `event_type` from its compact encoding, written at the current schema
    /// version. (A later version of a type reads the old layout with a struct of its own and
    /// converts it, as `upcast` does for JSON.)
    pub fn from_compact(event_type: &str, bytes: &[u8]) -> Result<Event, DecodeError> {
        fn parse<'a, T: Deserialize<'a>>(
            event_type: &str,
            bytes: &'a [u8],
        ) -> Result<T, DecodeError> {
            postcard::from_bytes(bytes).map_err(|e| DecodeError::Compact {
                event_type: event_type.to_owned(),
                reason: e.to_string(),
            })
        }
        Ok(match event_type {
            "TokenIssued" => Event::TokenIssued(parse(event_type, bytes)?),
            "TokenRotated" => Event::TokenRotated(parse(event_type, bytes)?),
            "TokenRefreshed" => Event::TokenRefreshed(parse(event_type, bytes)?),
            "RefreshTokenReused" => Event::RefreshTokenReused(parse(event_type, bytes)?),
            "SessionRevoked" => Event::SessionRevoked(parse(event_type, bytes)?),
            "SessionsCleared" => Event::SessionsCleared(parse(event_type, bytes)?),
            "LoginFailed" => Event::LoginFailed(parse(event_type, bytes)?),
            "UserRegistered" => Event::UserRegistered(parse(event_type, bytes)?),
            "PasswordChanged" => Event::PasswordChanged(parse(event_type, bytes)?),
            "UserBlocked" => Event::UserBlocked(parse(event_type, bytes)?),
            "UserUnblocked" => Event::UserUnblocked(parse(event_type, bytes)?),
            "UserForgotten" => Event::UserForgotten(parse(event_type, bytes)?),
            "UserImported" => Event::UserImported(parse(event_type, bytes)?),
            "PasswordRehashed" => Event::PasswordRehashed(parse(event_type, bytes)?),
            "PasswordResetRequested" => Event::PasswordResetRequested(parse(event_type, bytes)?),
            "PasswordReset" => Event::PasswordReset(parse(event_type, bytes)?),
            "EmailConfirmationRequested" => {
                Event::EmailConfirmationRequested(parse(event_type, bytes)?)
            }
            "EmailConfirmed" => Event::EmailConfirmed(parse(event_type, bytes)?),
            "EmailSent" => Event::EmailSent(parse(event_type, bytes)?),
            "EmailFailed" => Event::EmailFailed(parse(event_type, bytes)?),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::events::*;
    use crate::types::TokenHash;

    fn at(s: i64) -> crate::types::Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 987_654_321).unwrap()
    }

    fn every_type() -> Vec<Event> {
        let ip = || Some("198.51.100.4".to_owned());
        let agent = || Some("agent/1".to_owned());
        vec![
            Event::TokenIssued(TokenIssued {
                session_id: Uuid::from_u128(1),
                device_id: "phone".into(),
                token_id: Uuid::from_u128(2),
                token_hash: TokenHash([3; 32]),
                reason: IssueReason::Register,
                issued_at: at(0),
                token_expires_at: at(1),
                idle_expires_at: at(2),
                absolute_expires_at: at(3),
                ip: ip(),
                user_agent: agent(),
            }),
            Event::TokenRotated(TokenRotated {
                session_id: Uuid::from_u128(1),
                generation: 70_000,
                token_id: Uuid::from_u128(4),
                token_hash: TokenHash([5; 32]),
                rotated_at: at(4),
                token_expires_at: at(5),
                idle_expires_at: at(6),
                ip: None,
                user_agent: None,
                same_client: true,
            }),
            Event::TokenRefreshed(TokenRefreshed {
                session_id: Uuid::from_u128(1),
                generation: 2,
                refreshed_at: at(7),
                idle_expires_at: at(8),
                ip: ip(),
                user_agent: None,
                same_client: false,
            }),
            Event::RefreshTokenReused(RefreshTokenReused {
                session_id: Uuid::from_u128(1),
                token_id: Uuid::from_u128(6),
                presented_generation: 0,
                current_generation: 3,
                detected_at: at(9),
                ip: ip(),
                user_agent: agent(),
            }),
            Event::SessionRevoked(SessionRevoked {
                session_id: Uuid::from_u128(1),
                reason: RevokeReason::Evicted,
                revoked_at: at(10),
            }),
            Event::SessionsCleared(SessionsCleared {
                reason: ClearReason::Forgotten,
                session_ids: vec![Uuid::from_u128(1), Uuid::from_u128(7)],
                kept: Some(Uuid::from_u128(8)),
                cleared_at: at(11),
            }),
            Event::LoginFailed(LoginFailed {
                failed_at: at(12),
                ip: ip(),
                user_agent: agent(),
            }),
            Event::UserRegistered(UserRegistered {
                document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
                username: "alice".into(),
                email: "alice@example.com".into(),
                provider: "local".into(),
                confirmed: true,
                blocked: false,
                password_digest: Some("ab".repeat(32)),
                registered_at: at(13),
            }),
            Event::PasswordChanged(PasswordChanged {
                password_digest: "cd".repeat(32),
                changed_at: at(14),
            }),
            Event::UserBlocked(UserBlocked { blocked_at: at(15) }),
            Event::UserUnblocked(UserUnblocked {
                unblocked_at: at(16),
            }),
            Event::UserForgotten(UserForgotten {
                forgotten_at: at(17),
            }),
        ]
    }

    #[test]
    fn given_every_event_type_when_written_compact_then_it_reads_back_the_same_and_smaller() {
        for event in every_type() {
            let compact = event.to_compact();
            let read = Event::from_compact(event.event_type(), &compact).unwrap();
            assert_eq!(read, event);
            assert!(compact.len() < event.payload().len(), "{event:?}");
            // Another type's layout does not pass for this one.
            assert!(Event::from_compact("Nope", &compact).is_err());
        }
    }

    #[test]
    fn given_an_event_when_its_personal_fields_are_taken_and_put_back_then_it_is_whole() {
        for event in every_type() {
            let mut stripped = event.clone();
            let personal = stripped.take_personal();
            let names = stripped.take_names();
            if event.has_personal() && !event.same_client() {
                assert_ne!(personal, Personal::default(), "{event:?}");
            }
            assert_eq!(
                event.holds_personal(),
                personal != Personal::default(),
                "{event:?}"
            );
            assert_eq!(names.is_some(), matches!(event, Event::UserRegistered(_)));
            let text = stripped.payload();
            for clear in ["198.51.100.4", "agent/1", "phone", "alice"] {
                assert!(!text.contains(clear), "{clear} left in {text}");
            }
            stripped.put_personal(personal);
            if let Some(names) = names {
                stripped.put_names(names);
            }
            assert_eq!(stripped, event);
        }
    }
}
