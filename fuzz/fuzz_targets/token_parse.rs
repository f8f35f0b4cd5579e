//! Arbitrary input as an access token and as a refresh token, through `Tokens`' own
//! verification (`verify_access`, `verify_refresh`, `expired_refresh`). Never a panic, and the
//! promises of `src/tokens.rs` hold: an access token is never a refresh token or the reverse,
//! even with one secret for both, and a refresh token's hash is the hash of what was presented.
//!
//! The first byte picks how the rest is used:
//! - `0..=127`: the rest is the token itself (lossily made UTF-8, as a header or body gives
//!   it), which rarely gets past the signature;
//! - `128..=255`: the rest is `<header JSON>\n<claims JSON>`, which the target encodes and
//!   signs with the test secret, so that everything after the signature check (header `typ`,
//!   claims, `sub`, expiry) is reached with attacker-shaped JSON.

#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tokenledger::tokens::{self, Tokens};

/// One secret for both kinds: only the `typ` keeps them apart then, which is what is tested.
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef0123456789abcdef";

/// A fixed "now" (2026-01-01T00:00:00Z), so a run is reproducible.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid fixed timestamp")
}

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        Tokens::new(SECRET, SECRET, TimeDelta::hours(2)).expect("a non-empty secret")
    })
}

/// `header.claims.signature` over the given JSON texts, HS256 with the test secret.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET).expect("a non-empty secret");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256");
    format!("{message}.{signature}")
}

fn check(token: &str) {
    let tokens = tokens();
    let now = now();
    let access = tokens.verify_access(token, now);
    let refresh = tokens.verify_refresh(token, now);
    assert!(
        !(access.is_ok() && refresh.is_ok()),
        "one token verified as both an access and a refresh token: {token:?}"
    );
    if let Ok(presented) = &refresh {
        assert_eq!(presented.hash, tokens::hash(token), "hash of {token:?}");
    }
    let expired = tokens.expired_refresh(token, now);
    assert!(
        !(expired.is_some() && refresh.is_ok()),
        "a refresh token both valid and expired: {token:?}"
    );
    // Whatever verified must sign back to a token that verifies the same way.
    if let Ok(claims) = access {
        let again = tokens.sign_access(claims.id, claims.sid, now);
        let back = tokens
            .verify_access(&again, now)
            .expect("a fresh access token");
        assert_eq!((back.id, back.sid), (claims.id, claims.sid));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 128 {
        let token: Cow<'_, str> = String::from_utf8_lossy(rest);
        check(&token);
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &b"{}"[..]),
        };
        check(&signed(header, claims));
    }
});
