//! Token attacks (RFC 8725, OWASP ASVS V9): every forged, confused, mistimed or crossed token
//! is a 401 in Strapi's body, decided before the store is touched. One named test an attack.
//!
//! Tokens are crafted byte by byte here (header, claims, HMAC-SHA256 by hand), so a test can
//! say anything a client could send, whatever a JWT library would refuse to produce.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{JWT_SECRET, REFRESH_SECRET, assert_invalid_refresh_token};

use crate::helpers::{TestApp, spawn_app};

/// HMAC-SHA256 (RFC 2104), written out so that an empty or any other key can sign.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A JWT with this header and these claims, its signature the HMAC-SHA256 of `key`.
fn craft(header: Value, claims: &Value, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", encode(&header), encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn refresh_header() -> Value {
    json!({"alg": "HS256", "typ": "refresh+jwt"})
}

fn access_header() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

/// A user logged in with a refresh token, and the claims of both its tokens.
struct Holder {
    refresh: String,
    access: String,
    refresh_claims: Value,
    access_claims: Value,
}

async fn holder(app: &TestApp, name: &str) -> Holder {
    app.register(name).await;
    let login = app.login(name).await;
    let refresh = login["refreshToken"].as_str().unwrap().to_owned();
    let access = login["jwt"].as_str().unwrap().to_owned();
    Holder {
        refresh_claims: support::claims(&refresh),
        access_claims: support::claims(&access),
        refresh,
        access,
    }
}

async fn target() -> (TestApp, Holder) {
    let app = spawn_app().await;
    let holder = holder(&app, "target").await;
    (app, holder)
}

/// The forged refresh token is a 401 "Invalid refresh token", no event store read or append
/// happened for it, and the genuine token still works afterwards.
async fn refresh_refused(app: &TestApp, genuine: &str, forged: &str) {
    let touches = app.store().stats().touches();
    let (status, body) = app.refresh(forged).await;
    assert_invalid_refresh_token(status, &body);
    assert_eq!(
        app.store().stats().touches(),
        touches,
        "the forged refresh token reached the store"
    );
    assert_eq!(app.refresh(genuine).await.0, 200, "the genuine token broke");
}

/// The forged access token is refused on every bearer route without touching the store, and
/// the genuine one still works.
async fn access_refused(app: &TestApp, genuine: &str, forged: &str) {
    let touches = app.store().stats().touches();
    for path in ["/api/users/me", "/api/auth/sessions"] {
        let (status, body) = app.get_with_bearer(path, forged).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["name"], "UnauthorizedError", "{path}: {body}");
    }
    assert_eq!(
        app.store().stats().touches(),
        touches,
        "the forged access token reached the store"
    );
    assert_eq!(app.get_with_bearer("/api/users/me", genuine).await.0, 200);
}

#[actix_web::test]
async fn alg_none_is_refused_for_both_tokens() {
    let (app, t) = target().await;
    for typ in ["refresh+jwt", "JWT"] {
        let header = encode(&json!({"alg": "none", "typ": typ}));
        let unsigned = |claims: &Value| format!("{header}.{}.", encode(claims));
        refresh_refused(&app, &t.refresh, &unsigned(&t.refresh_claims)).await;
        access_refused(&app, &t.access, &unsigned(&t.access_claims)).await;
        // `None`, `NONE`: some libraries compared case-insensitively.
        let shouting = encode(&json!({"alg": "NONE", "typ": typ}));
        let forged = format!("{shouting}.{}.", encode(&t.refresh_claims));
        refresh_refused(&app, &t.refresh, &forged).await;
    }
}

#[actix_web::test]
async fn an_rs256_header_over_an_hmac_of_the_secret_is_refused() {
    // The HS/RS confusion: a verifier that let the header pick the algorithm would check an
    // "RS256" token against a key an attacker can compute with. Here the signature is the
    // HMAC a confused verifier would accept; only a pinned HS256 refuses it.
    let (app, t) = target().await;
    for alg in ["RS256", "ES256", "PS256", "EdDSA"] {
        let forged = craft(
            json!({"alg": alg, "typ": "refresh+jwt"}),
            &t.refresh_claims,
            REFRESH_SECRET.as_bytes(),
        );
        refresh_refused(&app, &t.refresh, &forged).await;
        let forged = craft(
            json!({"alg": alg, "typ": "JWT"}),
            &t.access_claims,
            JWT_SECRET.as_bytes(),
        );
        access_refused(&app, &t.access, &forged).await;
    }
}

#[actix_web::test]
async fn another_hmac_algorithm_with_the_right_secret_is_refused() {
    // Signed with HS256 but announced as HS384/HS512: the algorithm is pinned, not read.
    let (app, t) = target().await;
    for alg in ["HS384", "HS512", "hs256"] {
        let forged = craft(
            json!({"alg": alg, "typ": "refresh+jwt"}),
            &t.refresh_claims,
            REFRESH_SECRET.as_bytes(),
        );
        refresh_refused(&app, &t.refresh, &forged).await;
    }
}

#[actix_web::test]
async fn a_wrong_or_missing_typ_is_refused() {
    let (app, t) = target().await;
    let secret = REFRESH_SECRET.as_bytes();
    for header in [
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({"alg": "HS256", "typ": "at+jwt"}),
        json!({"alg": "HS256"}),
    ] {
        let forged = craft(header, &t.refresh_claims, secret);
        refresh_refused(&app, &t.refresh, &forged).await;
    }
    let forged = craft(
        json!({"alg": "HS256", "typ": "refresh+jwt"}),
        &t.access_claims,
        JWT_SECRET.as_bytes(),
    );
    access_refused(&app, &t.access, &forged).await;
}

#[actix_web::test]
async fn an_expired_token_is_refused() {
    let (app, t) = target().await;
    let mut claims = t.refresh_claims.clone();
    claims["exp"] = json!(claims["iat"].as_i64().unwrap() - 1);
    let forged = craft(refresh_header(), &claims, REFRESH_SECRET.as_bytes());
    refresh_refused(&app, &t.refresh, &forged).await;
    let mut claims = t.access_claims.clone();
    claims["exp"] = claims["iat"].clone();
    let forged = craft(access_header(), &claims, JWT_SECRET.as_bytes());
    access_refused(&app, &t.access, &forged).await;
}

#[actix_web::test]
async fn a_not_before_in_the_future_is_refused() {
    let (app, t) = target().await;
    let mut claims = t.refresh_claims.clone();
    claims["nbf"] = json!(claims["iat"].as_i64().unwrap() + 3600);
    let forged = craft(refresh_header(), &claims, REFRESH_SECRET.as_bytes());
    refresh_refused(&app, &t.refresh, &forged).await;
    let mut claims = t.access_claims.clone();
    claims["nbf"] = json!(claims["iat"].as_i64().unwrap() + 3600);
    let forged = craft(access_header(), &claims, JWT_SECRET.as_bytes());
    access_refused(&app, &t.access, &forged).await;
}

#[actix_web::test]
async fn truncated_and_padded_tokens_are_refused() {
    let (app, t) = target().await;
    let (header, rest) = t.refresh.split_once('.').unwrap();
    let forged = [
        t.refresh[..t.refresh.len() - 1].to_owned(),
        t.refresh[..t.refresh.len() / 2].to_owned(),
        header.to_owned(),
        format!("{header}.{}", rest.split('.').next().unwrap()),
        format!("{}A", t.refresh),
        format!("{}=", t.refresh),
        format!("{}.", t.refresh),
        format!(" {}", t.refresh),
        format!("{}.{}", t.refresh, t.refresh),
    ];
    for token in &forged {
        refresh_refused(&app, &t.refresh, token).await;
    }
    access_refused(&app, &t.access, &t.access[..t.access.len() - 1]).await;
    access_refused(&app, &t.access, &format!("{}A", t.access)).await;
}

#[actix_web::test]
async fn tokens_signed_with_known_default_or_empty_secrets_are_refused() {
    let (app, t) = target().await;
    for secret in [&b"SomethingSecret"[..], b"SuperSecretKey", b"", b"secret"] {
        let forged = craft(refresh_header(), &t.refresh_claims, secret);
        refresh_refused(&app, &t.refresh, &forged).await;
        let forged = craft(access_header(), &t.access_claims, secret);
        access_refused(&app, &t.access, &forged).await;
    }
    // The one secret used for the other kind of token does not cross over either.
    let forged = craft(refresh_header(), &t.refresh_claims, JWT_SECRET.as_bytes());
    refresh_refused(&app, &t.refresh, &forged).await;
    let forged = craft(access_header(), &t.access_claims, REFRESH_SECRET.as_bytes());
    access_refused(&app, &t.access, &forged).await;
}

#[actix_web::test]
async fn keys_named_by_the_token_itself_are_never_used() {
    // `jwk`, `jku`, `x5u` and `kid` point at the attacker's key; only the configured secret
    // verifies, whatever the header says.
    let (app, t) = target().await;
    let attacker = b"attacker-key-attacker-key-attacker-key!!";
    let header = json!({
        "alg": "HS256",
        "typ": "refresh+jwt",
        "kid": "attacker",
        "jku": "https://attacker.example/keys.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker)},
    });
    let forged = craft(header, &t.refresh_claims, attacker);
    refresh_refused(&app, &t.refresh, &forged).await;
}

#[actix_web::test]
async fn an_access_token_is_not_a_refresh_token_and_the_reverse() {
    let (app, t) = target().await;
    refresh_refused(&app, &t.refresh, &t.access).await;
    access_refused(&app, &t.access, &t.refresh).await;
}

#[actix_web::test]
async fn a_token_whose_subject_and_session_belong_to_different_users_is_refused() {
    // Correctly signed (the attacker has the secret, or found a signing bug): the session
    // must still belong to the subject, and the check runs on the projection, not the store.
    let (app, alice) = target().await;
    let bob = holder(&app, "bob").await;
    let mut crossed = alice.refresh_claims.clone();
    crossed["sid"] = bob.refresh_claims["sid"].clone();
    let forged = craft(refresh_header(), &crossed, REFRESH_SECRET.as_bytes());
    refresh_refused(&app, &alice.refresh, &forged).await;
    let mut crossed = bob.refresh_claims.clone();
    crossed["sub"] = alice.refresh_claims["sub"].clone();
    let forged = craft(refresh_header(), &crossed, REFRESH_SECRET.as_bytes());
    refresh_refused(&app, &bob.refresh, &forged).await;
    let mut crossed = alice.access_claims.clone();
    crossed["sid"] = bob.access_claims["sid"].clone();
    let forged = craft(access_header(), &crossed, JWT_SECRET.as_bytes());
    access_refused(&app, &alice.access, &forged).await;
}

#[test]
fn the_hand_written_hmac_matches_rfc_4231() {
    // RFC 4231 test case 2, so that the forgeries above are what they claim to be.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[actix_web::test]
async fn crafting_with_the_real_secret_reproduces_the_servers_tokens() {
    // The control: the crafting above signs exactly like the server, so the refusals are the
    // server's checks at work, not a broken forgery.
    let (_app, t) = target().await;
    let header_of = |token: &str| {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    };
    let again = craft(
        header_of(&t.refresh),
        &t.refresh_claims,
        REFRESH_SECRET.as_bytes(),
    );
    assert_eq!(again, t.refresh);
    let again = craft(
        header_of(&t.access),
        &t.access_claims,
        JWT_SECRET.as_bytes(),
    );
    assert_eq!(again, t.access);
}
