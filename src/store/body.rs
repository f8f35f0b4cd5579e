//! How an event is stored since personal data is sealed: one `body` column instead of the JSON
//! `payload` and `metadata` (which stay for the rows written before, and are read as before).
//!
//! A body is a format byte, a head (the request's ids and actor, and the sealed sections),
//! then the event's fields in the compact encoding with its personal fields taken out. Each
//! personal field is stored once: the IP and user agent an event records are the request's
//! (kept a second time only when the metadata differs), inside a section sealed under the
//! data key of the stream's owner for the month the event happened; the names a registration
//! records are in a section under the account's own key. The hash chain covers the body as
//! stored, so it needs no key, and still verifies after a key is deleted; reading a section
//! whose key is gone gives `ERASED` for each of its fields.

use serde::{Deserialize, Serialize};
use tokenledger_domain::{AccountNames, DecodeError, ERASED, Event, Personal};
use uuid::Uuid;

use super::sealed::{ACCOUNT_PERIOD, DataKey, period_of};
use super::{Actor, EventMetadata};

/// The first byte of every body: the layout below.
const FORMAT: u8 = 1;

/// A request id is a UUID (16 bytes) unless a row was written with something else.
#[derive(Debug, Serialize, Deserialize)]
enum RequestId {
    Uuid(Uuid),
    Text(String),
}

impl RequestId {
    fn of(text: &str) -> RequestId {
        match Uuid::try_parse(text) {
            Ok(id) if id.to_string() == text => RequestId::Uuid(id),
            _ => RequestId::Text(text.to_owned()),
        }
    }

    fn text(self) -> String {
        match self {
            RequestId::Uuid(id) => id.to_string(),
            RequestId::Text(text) => text,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Head<'a> {
    request_id: Option<RequestId>,
    client_request_id: Option<String>,
    actor: Actor,
    #[serde(borrow)]
    sections: Vec<Section<'a>>,
}

/// Fields sealed under the data key of one period: read in place from the body, not copied.
#[derive(Debug, Serialize, Deserialize)]
struct Section<'a> {
    period: i64,
    sealed: &'a [u8],
}

/// What a request section holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RequestFields {
    personal: Personal,
    /// The metadata's IP and user agent, when they are not the event's own.
    metadata: Option<(Option<String>, Option<String>)>,
}

/// Where an event sits in the log: what each sealed section is bound to, so that a section
/// moved to another event does not open.
pub struct Place<'a> {
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
}

impl Place<'_> {
    fn binding(&self, period: i64) -> Vec<u8> {
        [
            self.stream_id.as_bytes(),
            b"\0",
            &self.stream_version.to_be_bytes(),
            self.event_type.as_bytes(),
            b"\0",
            &period.to_be_bytes(),
        ]
        .concat()
    }
}

/// The periods whose data keys sealing `event` with `metadata` takes.
pub fn periods(event: &Event, metadata: &EventMetadata) -> Vec<i64> {
    let mut periods = Vec::new();
    if matches!(event, Event::UserRegistered(_)) {
        periods.push(ACCOUNT_PERIOD);
    }
    // What `request_fields` would take is there: a section is sealed (without a copy of the
    // event to take it from).
    let asked = metadata.ip.is_some() || metadata.user_agent.is_some();
    if !event.same_client() && (asked || event.holds_personal()) {
        periods.push(period_of(event.occurred_at()));
    }
    periods
}

impl RequestFields {
    fn is_empty(&self) -> bool {
        self.personal == Personal::default() && self.metadata.is_none()
    }
}

/// Takes the request's personal fields out of `event`, with the metadata's where they differ.
/// An event from the session's last client (`same_client`) keeps none: the metadata's are
/// that client's, recorded already.
fn request_fields(event: &mut Event, metadata: &EventMetadata) -> RequestFields {
    if event.same_client() {
        event.take_personal();
        return RequestFields::default();
    }
    let asked = (metadata.ip.clone(), metadata.user_agent.clone());
    if !event.has_personal() {
        let (ip, user_agent) = asked;
        return RequestFields {
            personal: Personal {
                ip,
                user_agent,
                device_id: None,
            },
            metadata: None,
        };
    }
    let personal = event.take_personal();
    let own = (personal.ip.clone(), personal.user_agent.clone());
    RequestFields {
        metadata: (asked != own).then_some(asked),
        personal,
    }
}

/// The body of `event`, appended with `metadata` at `place`. `key` gives the data key of a
/// period; a section whose key it has not (its owner was forgotten) is left out, fields and
/// all.
pub fn encode<'k>(
    event: &Event,
    metadata: &EventMetadata,
    place: &Place,
    key: impl Fn(i64) -> Option<&'k DataKey>,
) -> Vec<u8> {
    let mut event = event.clone();
    let mut sealed = Vec::new();
    if let Some(names) = event.take_names()
        && let Some(key) = key(ACCOUNT_PERIOD)
    {
        let plain = postcard::to_allocvec(&names).expect("names serialise");
        let binding = place.binding(ACCOUNT_PERIOD);
        sealed.push((ACCOUNT_PERIOD, key.seal(&plain, &binding)));
    }
    let fields = request_fields(&mut event, metadata);
    let period = period_of(event.occurred_at());
    if !fields.is_empty()
        && let Some(key) = key(period)
    {
        let plain = postcard::to_allocvec(&fields).expect("fields serialise");
        sealed.push((period, key.seal(&plain, &place.binding(period))));
    }
    let head = Head {
        request_id: metadata.request_id.as_deref().map(RequestId::of),
        client_request_id: metadata.client_request_id.clone(),
        actor: metadata.actor,
        sections: sealed
            .iter()
            .map(|(period, sealed)| Section {
                period: *period,
                sealed,
            })
            .collect(),
    };
    let mut body = vec![FORMAT];
    body.extend(postcard::to_allocvec(&head).expect("the head serialises"));
    body.extend(event.to_compact());
    body
}

/// The periods of the sections sealed in `body` (none if it cannot be read: `decode` says
/// why).
pub fn sealed_periods(body: &[u8]) -> Vec<i64> {
    match body.split_first() {
        Some((&FORMAT, rest)) => postcard::take_from_bytes::<Head>(rest)
            .map(|(head, _)| head.sections.iter().map(|s| s.period).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// What a reader has for a period's data key.
pub enum KeyState<'k> {
    Open(&'k DataKey),
    /// Deleted, for this reason (`forgotten`, `expired`), or never found (`missing`).
    Gone(&'k str),
}

fn corrupt(event_type: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Compact {
        event_type: event_type.to_owned(),
        reason: reason.into(),
    }
}

/// The event and metadata a body holds, with the fields of each section whose key `key` does
/// not give as `ERASED` and `metadata.erased` saying why.
pub fn decode<'k>(
    place: &Place,
    body: &[u8],
    key: impl Fn(i64) -> KeyState<'k>,
) -> Result<(Event, EventMetadata), DecodeError> {
    let event_type = place.event_type;
    let Some((&FORMAT, rest)) = body.split_first() else {
        return Err(corrupt(event_type, "unknown body format"));
    };
    let (head, rest) = postcard::take_from_bytes::<Head>(rest)
        .map_err(|e| corrupt(event_type, format!("head: {e}")))?;
    let mut event = Event::from_compact(event_type, rest)?;
    let mut metadata = EventMetadata {
        request_id: head.request_id.map(RequestId::text),
        client_request_id: head.client_request_id,
        ip: None,
        user_agent: None,
        actor: head.actor,
        erased: None,
    };
    for section in head.sections {
        let plain = match key(section.period) {
            KeyState::Open(key) => key.open(section.sealed, &place.binding(section.period)),
            KeyState::Gone(why) => {
                metadata.erased = Some(why.to_owned());
                None
            }
        };
        let plain = match plain {
            Some(plain) => plain,
            None if metadata.erased.is_some() => {
                erase(&mut event, &mut metadata, section.period);
                continue;
            }
            None => return Err(corrupt(event_type, "a sealed section does not open")),
        };
        if section.period == ACCOUNT_PERIOD && matches!(event, Event::UserRegistered(_)) {
            let names: AccountNames = postcard::from_bytes(&plain)
                .map_err(|e| corrupt(event_type, format!("names: {e}")))?;
            event.put_names(names);
        } else {
            let fields: RequestFields = postcard::from_bytes(&plain)
                .map_err(|e| corrupt(event_type, format!("fields: {e}")))?;
            put_request_fields(&mut event, &mut metadata, fields);
        }
    }
    Ok((event, metadata))
}

fn put_request_fields(event: &mut Event, metadata: &mut EventMetadata, fields: RequestFields) {
    let RequestFields {
        personal,
        metadata: asked,
    } = fields;
    let (ip, user_agent) = match asked {
        Some(asked) => asked,
        None => (personal.ip.clone(), personal.user_agent.clone()),
    };
    metadata.ip = ip;
    metadata.user_agent = user_agent;
    event.put_personal(personal);
}

fn erase(event: &mut Event, metadata: &mut EventMetadata, period: i64) {
    if period == ACCOUNT_PERIOD && matches!(event, Event::UserRegistered(_)) {
        event.put_names(AccountNames::erased());
        return;
    }
    event.put_personal(Personal::erased());
    metadata.ip = Some(ERASED.to_owned());
    metadata.user_agent = Some(ERASED.to_owned());
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use tokenledger_domain::{
        IssueReason, SessionRevoked, TokenHash, TokenIssued, TokenRotated, UserRegistered,
    };

    use super::*;
    use crate::config::KeyBytes;
    use crate::store::sealed::MasterKey;

    const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

    fn at(s: i64) -> tokenledger_domain::Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 123_456_789).unwrap()
    }

    fn metadata(ip: &str) -> EventMetadata {
        EventMetadata {
            request_id: Some(Uuid::now_v7().to_string()),
            client_request_id: Some("client-7".to_owned()),
            ip: Some(ip.to_owned()),
            user_agent: Some(AGENT.to_owned()),
            actor: Actor::User,
            erased: None,
        }
    }

    fn issued() -> Event {
        Event::TokenIssued(TokenIssued {
            session_id: Uuid::now_v7(),
            device_id: "Alice's phone".to_owned(),
            token_id: Uuid::now_v7(),
            token_hash: TokenHash([7; 32]),
            reason: IssueReason::Login,
            issued_at: at(0),
            token_expires_at: at(60),
            idle_expires_at: at(60),
            absolute_expires_at: at(120),
            ip: Some("198.51.100.23".to_owned()),
            user_agent: Some(AGENT.to_owned()),
        })
    }

    fn rotated() -> Event {
        Event::TokenRotated(TokenRotated {
            session_id: Uuid::now_v7(),
            generation: 3,
            token_id: Uuid::now_v7(),
            token_hash: TokenHash([9; 32]),
            rotated_at: at(5),
            token_expires_at: at(65),
            idle_expires_at: at(65),
            ip: Some("198.51.100.23".to_owned()),
            user_agent: Some(AGENT.to_owned()),
            same_client: false,
        })
    }

    fn registered() -> Event {
        Event::UserRegistered(UserRegistered {
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            password_digest: Some("ab".repeat(32)),
            registered_at: at(0),
        })
    }

    fn keys() -> (DataKey, DataKey) {
        let master = MasterKey::new(&KeyBytes::new([3; 32].map(|b: u8| b ^ 0x5a)));
        (
            master.generate("user-1", ACCOUNT_PERIOD).0,
            master.generate("user-1", period_of(at(0))).0,
        )
    }

    fn place(event: &Event) -> Place<'_> {
        Place {
            stream_id: "user-1",
            stream_version: 4,
            event_type: event.event_type(),
        }
    }

    #[test]
    fn given_events_with_personal_fields_when_encoded_and_decoded_with_their_keys_then_they_are_the_same()
     {
        let (account, month) = keys();
        let by_period = |p: i64| {
            if p == ACCOUNT_PERIOD {
                &account
            } else {
                &month
            }
        };
        for (event, metadata) in [
            (issued(), metadata("198.51.100.23")),
            (rotated(), metadata("198.51.100.23")),
            // The metadata's address differs from the event's: both are kept.
            (rotated(), metadata("203.0.113.1")),
            (registered(), metadata("192.0.2.5")),
            (
                Event::SessionRevoked(SessionRevoked {
                    session_id: Uuid::now_v7(),
                    reason: tokenledger_domain::RevokeReason::Logout,
                    revoked_at: at(9),
                }),
                metadata("192.0.2.9"),
            ),
            // An operator's command: nothing personal, no key.
            (
                Event::SessionRevoked(SessionRevoked {
                    session_id: Uuid::now_v7(),
                    reason: tokenledger_domain::RevokeReason::Admin,
                    revoked_at: at(9),
                }),
                EventMetadata::default(),
            ),
        ] {
            let body = encode(&event, &metadata, &place(&event), |p| Some(by_period(p)));
            // The keys a writer fetches first are exactly those the body is sealed under.
            assert_eq!(
                sealed_periods(&body),
                periods(&event, &metadata),
                "{event:?}"
            );
            let text = String::from_utf8_lossy(&body);
            for clear in [
                "198.51.100",
                "Mozilla",
                "alice",
                "Alice's",
                "192.0.2",
                "203.0",
            ] {
                assert!(!text.contains(clear), "{clear} in clear in {text}");
            }
            let decoded = decode(&place(&event), &body, |p| KeyState::Open(by_period(p)));
            assert_eq!(decoded.unwrap(), (event, metadata));
        }
    }

    #[test]
    fn given_a_rotation_then_its_body_is_a_fraction_of_its_json() {
        let (_, month) = keys();
        let (event, metadata) = (rotated(), metadata("198.51.100.23"));
        let body = encode(&event, &metadata, &place(&event), |_| Some(&month));
        let json = event.payload().len() + serde_json::to_string(&metadata).unwrap().len();
        // Ids and hash as bytes, instants as integers, the address and agent once.
        assert!(body.len() * 2 < json, "{} bytes against {json}", body.len());
    }

    #[test]
    fn given_a_refresh_from_the_sessions_last_client_then_nothing_personal_is_stored() {
        let mut event = rotated();
        if let Event::TokenRotated(e) = &mut event {
            (e.ip, e.user_agent, e.same_client) = (None, None, true);
        }
        let metadata = metadata("198.51.100.23");
        assert!(periods(&event, &metadata).is_empty(), "no key is fetched");
        let body = encode(&event, &metadata, &place(&event), |_| None);
        assert!(sealed_periods(&body).is_empty());
        let (read, metadata) = decode(&place(&event), &body, |_| KeyState::Gone("x")).unwrap();
        assert_eq!(
            (read, metadata.ip, metadata.user_agent),
            (event, None, None)
        );
    }

    #[test]
    fn given_a_deleted_key_when_decoded_then_its_fields_are_erased_and_the_rest_is_intact() {
        let (account, month) = keys();
        let event = registered();
        let body = encode(&event, &metadata("192.0.2.5"), &place(&event), |p| {
            Some(if p == ACCOUNT_PERIOD {
                &account
            } else {
                &month
            })
        });
        let (read, metadata) = decode(&place(&event), &body, |p| {
            if p == ACCOUNT_PERIOD {
                KeyState::Gone("forgotten")
            } else {
                KeyState::Open(&month)
            }
        })
        .unwrap();
        let Event::UserRegistered(read) = read else {
            panic!("{read:?}")
        };
        assert_eq!(
            (read.username.as_str(), read.email.as_str()),
            (ERASED, ERASED)
        );
        assert_eq!(read.document_id, "k1x9d0q2m3n4b5v6c7x8z9l0");
        assert_eq!(metadata.ip.as_deref(), Some("192.0.2.5"));
        assert_eq!(metadata.erased.as_deref(), Some("forgotten"));

        let event = issued();
        let body = encode(&event, &metadata, &place(&event), |_| Some(&month));
        let (read, metadata) =
            decode(&place(&event), &body, |_| KeyState::Gone("expired")).unwrap();
        let Event::TokenIssued(read) = read else {
            panic!("{read:?}")
        };
        assert_eq!(read.ip.as_deref(), Some(ERASED));
        assert_eq!(read.device_id, ERASED);
        assert_eq!(read.issued_at, at(0));
        assert_eq!(metadata.user_agent.as_deref(), Some(ERASED));
        assert_eq!(metadata.erased.as_deref(), Some("expired"));
    }

    #[test]
    fn given_a_section_moved_to_another_event_then_it_does_not_open() {
        let (_, month) = keys();
        let event = rotated();
        let body = encode(&event, &metadata("198.51.100.23"), &place(&event), |_| {
            Some(&month)
        });
        let elsewhere = Place {
            stream_version: 5,
            ..place(&event)
        };
        assert!(decode(&elsewhere, &body, |_| KeyState::Open(&month)).is_err());
    }

    #[test]
    fn given_no_key_for_a_forgotten_owner_then_the_fields_are_not_stored_at_all() {
        let event = rotated();
        let body = encode(&event, &metadata("198.51.100.23"), &place(&event), |_| None);
        let (read, metadata) = decode(&place(&event), &body, |_| KeyState::Gone("x")).unwrap();
        let Event::TokenRotated(read) = read else {
            panic!("{read:?}")
        };
        assert_eq!((read.ip, metadata.ip, metadata.erased), (None, None, None));
    }
}
