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
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }
}
