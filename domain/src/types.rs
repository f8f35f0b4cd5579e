//! The small value types every event and command speaks in.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// A user's numeric id, as Strapi numbers its users.
pub type UserId = i64;
/// A session (token family): starts at login, lives through rotations until it ends.
pub type SessionId = uuid::Uuid;
/// The `jti` of one refresh token.
pub type TokenId = uuid::Uuid;
/// A moment in UTC; events keep microseconds, tokens whole seconds.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// SHA-256 of a refresh token: all that is ever stored of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Compares in constant time, so a mismatch leaks nothing of the stored hash.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(DIGITS[(byte >> 4) as usize] as char);
            out.push(DIGITS[(byte & 0xf) as usize] as char);
        }
        out
    }

    pub fn from_hex(text: &str) -> Option<TokenHash> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", &self.to_hex()[..12])
    }
}

/// Hex in JSON (the export and API format); its 32 bytes in the compact encoding.
impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 32]>::deserialize(deserializer).map(TokenHash);
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        TokenHash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// A `Timestamp` field: RFC 3339 in JSON, as chrono writes it; nanoseconds since the Unix
/// epoch (a varint of 8 or 9 bytes instead of 30 characters) in the compact encoding.
pub mod instant {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return at.serialize(serializer);
        }
        // Nanoseconds fit an i64 until the year 2262; no decision of this service makes an
        // instant anywhere near it (lifetimes are validated to years at most).
        at.timestamp_nanos_opt()
            .ok_or_else(|| serde::ser::Error::custom("an instant after 2262"))?
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        if deserializer.is_human_readable() {
            return Timestamp::deserialize(deserializer);
        }
        Ok(chrono::DateTime::from_timestamp_nanos(i64::deserialize(
            deserializer,
        )?))
    }
}

/// An `Option<Timestamp>` field, each instant as `instant` writes it.
pub mod optional_instant {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Timestamp;

    #[derive(Serialize, Deserialize)]
    struct At(#[serde(with = "super::instant")] Timestamp);

    pub fn serialize<S: Serializer>(
        at: &Option<Timestamp>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        at.map(At).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        Ok(Option::<At>::deserialize(deserializer)?.map(|At(at)| at))
    }
}

/// An `Option<Arc<str>>` field (a session's shared IP and user agent texts): the text as a
/// string, read back with one allocation (the `Arc` itself); or, inside `write_with_table` and
/// `read_with_table` (the projection's snapshots), the index of the text in a table of the
/// texts written, so that a text shared by a thousand sessions is written once and read back
/// as one shared copy. The table is this thread's while the closure runs: `serde` gives a
/// field no context of its own, and the encoding stays derived from the types.
pub mod shared_text {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The table being written: each text's index, and the texts in index order.
    type Writing = (HashMap<Arc<str>, u32>, Vec<Arc<str>>);

    thread_local! {
        static WRITING: RefCell<Option<Writing>> = const { RefCell::new(None) };
        static READING: RefCell<Option<Vec<Arc<str>>>> = const { RefCell::new(None) };
    }

    /// Clears this thread's table when the closure ends, even by a panic.
    struct Reset;

    impl Drop for Reset {
        fn drop(&mut self) {
            WRITING.with(|w| w.borrow_mut().take());
            READING.with(|r| r.borrow_mut().take());
        }
    }

    /// Runs `write` with texts written as indexes into a table; returns its result and the
    /// table, in index order.
    pub fn write_with_table<T>(write: impl FnOnce() -> T) -> (T, Vec<Arc<str>>) {
        let _reset = Reset;
        WRITING.with(|w| *w.borrow_mut() = Some(Default::default()));
        let written = write();
        let table = WRITING.with(|w| w.borrow_mut().take().map(|(_, t)| t).unwrap_or_default());
        (written, table)
    }

    /// Runs `read` with texts read as indexes into `table`, as `write_with_table` made it.
    pub fn read_with_table<T>(table: Vec<Arc<str>>, read: impl FnOnce() -> T) -> T {
        let _reset = Reset;
        READING.with(|r| *r.borrow_mut() = Some(table));
        read()
    }

    /// The index of `text` in the table being written, if one is.
    fn index_of(text: &Arc<str>) -> Option<u32> {
        WRITING.with(|w| {
            let mut writing = w.borrow_mut();
            let (indexes, table) = writing.as_mut()?;
            Some(*indexes.entry(text.clone()).or_insert_with(|| {
                table.push(text.clone());
                table.len() as u32 - 1
            }))
        })
    }

    pub fn serialize<S: Serializer>(
        text: &Option<Arc<str>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let tabled = WRITING.with(|w| w.borrow().is_some()) && !serializer.is_human_readable();
        match text {
            Some(text) if tabled => index_of(text).serialize(serializer),
            None if tabled => None::<u32>.serialize(serializer),
            _ => text.as_deref().serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Arc<str>>, D::Error> {
        let tabled = READING.with(|r| r.borrow().is_some()) && !deserializer.is_human_readable();
        if !tabled {
            return Ok(Option::<Text>::deserialize(deserializer)?.map(|Text(text)| text));
        }
        let Some(index) = Option::<u32>::deserialize(deserializer)? else {
            return Ok(None);
        };
        READING
            .with(|r| r.borrow().as_ref()?.get(index as usize).cloned())
            .map(Some)
            .ok_or_else(|| de::Error::custom("a text index beyond the table"))
    }

    struct Text(Arc<str>);

    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
            deserializer.deserialize_str(TextVisitor)
        }
    }

    struct TextVisitor;

    impl Visitor<'_> for TextVisitor {
        type Value = Text;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
            Ok(Text(Arc::from(text)))
        }
    }
}

/// The claims of one refresh token, all derived from the events of its session, so the same
/// grant always signs to the same token: that is what lets the grace window hand out the
/// identical successor again without storing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshGrant {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub generation: u32,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}
