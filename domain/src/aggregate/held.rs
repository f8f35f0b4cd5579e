//! The values a `Session` holds in place of its events' larger ones. The projection keeps a
//! million sessions in memory (issue 20), so every byte of one is a megabyte; both values
//! encode exactly as the event fields they come from, so a snapshot of sessions (and the
//! projection's digest over it) is the same bytes as before they were made smaller.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::types::{Timestamp, instant};

/// An instant as a session holds it: nanoseconds since the Unix epoch, 8 bytes where a
/// `Timestamp` takes 12. Exact for every instant the log or a snapshot can hold, whose compact
/// encoding is these very nanoseconds (`types::instant`).
///
/// Aligned to 4 bytes, not 8: `Option<PreviousToken>` then puts its tag where an 8-byte
/// alignment would put padding, and a `Session` is 256 bytes — one of mimalloc's size
/// classes — where 264 would round every user's vector of sessions up to the next one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C, packed(4))]
pub struct UnixNanos(i64);

impl UnixNanos {
    pub fn to_timestamp(self) -> Timestamp {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }
}

impl From<Timestamp> for UnixNanos {
    /// Saturates outside the years 1677 to 2262, which i64 nanoseconds span. No recorded
    /// instant is out there: `types::instant` refuses to write one, to the log as to a snapshot.
    fn from(at: Timestamp) -> UnixNanos {
        let saturated = if at.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        };
        UnixNanos(at.timestamp_nanos_opt().unwrap_or(saturated))
    }
}

impl fmt::Debug for UnixNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_timestamp())
    }
}

/// As a `Timestamp` field with `types::instant`: RFC 3339 in JSON, the nanoseconds in the
/// compact encoding.
impl Serialize for UnixNanos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        instant::serialize(&self.to_timestamp(), serializer)
    }
}

impl<'de> Deserialize<'de> for UnixNanos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        instant::deserialize(deserializer).map(UnixNanos::from)
    }
}

/// A session's device id, as the login named it: the 16 bytes of a UUID when the text is one
/// exactly as `Uuid` writes it (lowercase, hyphenated) — what a login without a device id
/// gets, and what most clients send — else the text. Either way it displays, compares and
/// serializes as that text, so no reader can tell which it holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(Held);

/// Never `Text` of a text that is `Uuid` (see `DeviceId::from`): equal ids are equal `Held`s.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Held {
    Uuid(Uuid),
    Text(Box<str>),
}

impl DeviceId {
    fn with_text<R>(&self, read: impl FnOnce(&str) -> R) -> R {
        match &self.0 {
            Held::Uuid(id) => read(id.hyphenated().encode_lower(&mut Uuid::encode_buffer())),
            Held::Text(text) => read(text),
        }
    }
}

impl From<&str> for DeviceId {
    fn from(text: &str) -> DeviceId {
        let uuid = Uuid::try_parse(text)
            .ok()
            .filter(|id| id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text);
        DeviceId(match uuid {
            Some(id) => Held::Uuid(id),
            None => Held::Text(text.into()),
        })
    }
}

impl PartialEq<str> for DeviceId {
    fn eq(&self, other: &str) -> bool {
        self.with_text(|text| text == other)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| write!(f, "DeviceId({text:?})"))
    }
}

/// As the `String` it was made from.
impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DeviceIdVisitor)
    }
}

struct DeviceIdVisitor;

impl Visitor<'_> for DeviceIdVisitor {
    type Value = DeviceId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device id")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DeviceId, E> {
        Ok(DeviceId::from(text))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn held(text: &str) -> &'static str {
        match DeviceId::from(text).0 {
            Held::Uuid(_) => "uuid",
            Held::Text(_) => "text",
        }
    }

    /// Written and read back as JSON and in the compact encoding, each the same as the text's.
    fn round_trip(text: &str) -> DeviceId {
        let id = DeviceId::from(text);
        assert_eq!(id.to_string(), text);
        assert!(id == *text);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, serde_json::to_string(text).unwrap());
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
        let compact = postcard::to_allocvec(&id).unwrap();
        assert_eq!(compact, postcard::to_allocvec(text).unwrap());
        assert_eq!(postcard::from_bytes::<DeviceId>(&compact).unwrap(), id);
        id
    }

    #[test]
    fn given_a_lowercase_uuid_text_then_it_is_held_as_16_bytes_and_reads_back_the_same() {
        let text = "01a2259e-7247-769b-a2d4-4d3729a4b46e";
        assert_eq!(held(text), "uuid");
        let id = round_trip(text);
        assert!(id != *"01a2259e-7247-769b-a2d4-4d3729a4b46f");
    }

    #[test]
    fn given_a_uuid_written_any_other_way_then_it_stays_the_text_it_was() {
        for text in [
            "01A2259E-7247-769B-A2D4-4D3729A4B46E",
            "01a2259e7247769ba2d44d3729a4b46e",
            "{01a2259e-7247-769b-a2d4-4d3729a4b46e}",
            "urn:uuid:01a2259e-7247-769b-a2d4-4d3729a4b46e",
        ] {
            assert_eq!(held(text), "text", "{text}");
            let id = round_trip(text);
            assert_ne!(
                id,
                DeviceId::from("01a2259e-7247-769b-a2d4-4d3729a4b46e"),
                "{text} is not the lowercase id"
            );
        }
    }

    #[test]
    fn given_any_other_text_then_it_is_held_and_read_back_as_it_was() {
        for text in [
            "phone",
            "",
            "device-42",
            "Écran \"salon\" ✓",
            "01a2259e-7247",
        ] {
            assert_eq!(held(text), "text", "{text}");
            round_trip(text);
        }
        let phone = DeviceId::from("phone");
        assert!(phone != *"Phone");
    }

    #[test]
    fn given_an_instant_then_it_is_held_to_the_nanosecond_and_encoded_as_the_event_field() {
        #[derive(Serialize)]
        struct EventField(#[serde(with = "crate::types::instant")] Timestamp);
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let held = UnixNanos::from(at);
        assert_eq!(held.to_timestamp(), at);
        assert_eq!(
            postcard::to_allocvec(&held).unwrap(),
            postcard::to_allocvec(&EventField(at)).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&held).unwrap(),
            serde_json::to_string(&EventField(at)).unwrap()
        );
        let compact = postcard::to_allocvec(&held).unwrap();
        assert_eq!(postcard::from_bytes::<UnixNanos>(&compact).unwrap(), held);
        let json = serde_json::to_string(&held).unwrap();
        assert_eq!(serde_json::from_str::<UnixNanos>(&json).unwrap(), held);
        let before = DateTime::from_timestamp(-1, 999_999_999).unwrap();
        assert_eq!(UnixNanos::from(before).to_timestamp(), before);
        assert!(
            UnixNanos::from(before) < held,
            "ordered as the instants are"
        );
    }

    #[test]
    fn given_an_instant_beyond_i64_nanoseconds_then_it_saturates_on_its_side() {
        let far = DateTime::from_timestamp(10_000_000_000, 0).unwrap();
        assert_eq!(UnixNanos::from(far), UnixNanos(i64::MAX));
        let early = DateTime::from_timestamp(-10_000_000_000, 0).unwrap();
        assert_eq!(UnixNanos::from(early), UnixNanos(i64::MIN));
    }
}
