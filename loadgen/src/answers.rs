//! The little the load generator reads from answers, and the bodies it writes.
//!
//! Only `jwt` and `refreshToken` are read from a successful answer, borrowed from the body
//! (serde skips the rest, `user` included), and `active` from an introspection's; an error
//! answer is read for its message only. Refresh bodies are written into one reused buffer.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Deserialize;

/// `{jwt, refreshToken}` of a login, register or refresh answer; a missing field is empty.
#[derive(Deserialize)]
pub struct Tokens<'a> {
    #[serde(borrow, default)]
    pub jwt: Cow<'a, str>,
    #[serde(borrow, default, rename = "refreshToken")]
    pub refresh_token: Cow<'a, str>,
}

/// The tokens of an answer, `None` when the body is not a JSON object.
pub fn tokens(body: &[u8]) -> Option<Tokens<'_>> {
    serde_json::from_slice(body).ok()
}

/// Whether an introspection answer says the token is live (`{"active": true, …}`).
pub fn active(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Introspection {
        active: bool,
    }
    serde_json::from_slice::<Introspection>(body).is_ok_and(|answer| answer.active)
}

/// `Basic <base64(id:secret)>` for a service credential written `id:secret` (RFC 7617), or
/// `None` when it cannot be a header value.
pub fn basic(credential: &str) -> Option<HeaderValue> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut value = b"Basic ".to_vec();
    for chunk in credential.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let bits = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for i in 0..4 {
            let sextet = (bits >> (18 - 6 * i)) & 0x3f;
            value.push(if i <= chunk.len() {
                ALPHABET[sextet as usize]
            } else {
                b'='
            });
        }
    }
    HeaderValue::from_bytes(&value).ok()
}

/// `"{status} {message}"`: Strapi's `error.message` when the body has one, else the start of
/// the body.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Strapi {
        error: StrapiError,
    }
    #[derive(Deserialize)]
    struct StrapiError {
        message: String,
    }
    match serde_json::from_slice::<Strapi>(body) {
        Ok(strapi) => format!("{} {}", status.as_u16(), strapi.error.message),
        Err(_) if body.is_empty() => status.to_string(),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let start: String = text.chars().take(80).collect();
            format!("{} {start}", status.as_u16())
        }
    }
}

/// Writes JSON bodies that carry a token into one buffer, whose allocation is reused once the
/// previous body has been sent and dropped.
pub struct BodyWriter {
    buffer: BytesMut,
}

impl Default for BodyWriter {
    fn default() -> Self {
        BodyWriter {
            buffer: BytesMut::with_capacity(4096),
        }
    }
}

impl BodyWriter {
    /// `{"refreshToken":"<token>"}`.
    pub fn refresh(&mut self, token: &str) -> Bytes {
        self.buffer.reserve(token.len() + 24);
        self.buffer.put_slice(b"{\"refreshToken\":");
        self.put_json_string(token);
        self.buffer.put_u8(b'}');
        self.buffer.split().freeze()
    }

    /// `{"token":"<token>"}`, an introspection's body.
    pub fn introspection(&mut self, token: &str) -> Bytes {
        self.buffer.reserve(token.len() + 16);
        self.buffer.put_slice(b"{\"token\":");
        self.put_json_string(token);
        self.buffer.put_u8(b'}');
        self.buffer.split().freeze()
    }

    /// `Bearer <jwt>`, or `None` when the token cannot be a header value.
    pub fn bearer(&mut self, jwt: &str) -> Option<HeaderValue> {
        self.buffer.reserve(jwt.len() + 7);
        self.buffer.put_slice(b"Bearer ");
        self.buffer.put_slice(jwt.as_bytes());
        HeaderValue::from_maybe_shared(self.buffer.split().freeze()).ok()
    }

    fn put_json_string(&mut self, text: &str) {
        // Tokens are JWTs (base64url and dots): nothing to escape, so no serializer.
        let plain = text
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f);
        if plain {
            self.buffer.put_u8(b'"');
            self.buffer.put_slice(text.as_bytes());
            self.buffer.put_u8(b'"');
        } else {
            let quoted = serde_json::Value::from(text).to_string();
            self.buffer.put_slice(quoted.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_tokens() {
        let body = br#"{"jwt":"a.b.c","user":{"id":1,"username":"x"},"refreshToken":"d.e.f"}"#;
        let tokens = tokens(body).expect("an object");
        assert_eq!(tokens.jwt, "a.b.c");
        assert_eq!(tokens.refresh_token, "d.e.f");
        assert!(matches!(tokens.jwt, Cow::Borrowed(_)));
    }

    #[test]
    fn a_missing_refresh_token_is_empty() {
        let tokens = tokens(br#"{"jwt":"a.b.c"}"#).expect("an object");
        assert_eq!(tokens.refresh_token, "");
        assert!(super::tokens(b"not json").is_none());
    }

    #[test]
    fn refresh_bodies_are_json() {
        let mut writer = BodyWriter::default();
        for token in ["a.b.c", "with \"quotes\" and \\"] {
            let body = writer.refresh(token);
            let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(value["refreshToken"], token);
        }
    }

    #[test]
    fn introspection_bodies_and_answers() {
        let body = BodyWriter::default().introspection("a.b.c");
        assert_eq!(&body[..], br#"{"token":"a.b.c"}"#);
        assert!(active(br#"{"active":true,"sub":"1"}"#));
        assert!(!active(br#"{"active":false}"#));
        assert!(!active(b"not json"));
    }

    #[test]
    fn basic_credentials_are_base64_as_rfc_7617_writes_them() {
        // RFC 7617 §2's example, and each padding length.
        assert_eq!(
            basic("Aladdin:open sesame").unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic("a:b").unwrap(), "Basic YTpi");
        assert_eq!(basic("a:bc").unwrap(), "Basic YTpiYw==");
        assert_eq!(basic("a:bcd").unwrap(), "Basic YTpiY2Q=");
    }

    #[test]
    fn error_messages_are_strapis() {
        let body = br#"{"data":null,"error":{"status":401,"name":"UnauthorizedError","message":"Invalid refresh token","details":{}}}"#;
        assert_eq!(
            error_message(StatusCode::UNAUTHORIZED, body),
            "401 Invalid refresh token"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            "502 <html>bad gateway</html>"
        );
    }
}
