//! Forged tokens and malformed requests: always a 4xx in Strapi's body, never a 500, and a
//! forged refresh token never reaches the store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{REFRESH_SECRET, assert_error, assert_invalid_refresh_token};

use crate::helpers::{TestApp, spawn_app};

fn sign(claims: &Value, typ: &str, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"refresh+jwt"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

async fn user_with_token(app: &TestApp, name: &str) -> (Value, String) {
    let body = app.register(name).await;
    let token = app.login(name).await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    (body, token)
}

#[actix_web::test]
async fn forged_refresh_tokens_are_refused_without_touching_the_store() {
    let app = spawn_app().await;
    let (_, token) = user_with_token(&app, "mallory").await;
    let (victim, victim_token) = user_with_token(&app, "victim").await;
    let claims = support::claims(&token);
    let access = victim["jwt"].as_str().unwrap().to_owned();
    // A refresh token whose sub names another user than the one owning its session.
    let mut crossed = support::claims(&victim_token);
    crossed["sub"] = claims["sub"].clone();
    let forged = [
        (
            "another secret",
            sign(
                &claims,
                "refresh+jwt",
                b"another-secret-another-secret-another",
            ),
        ),
        (
            "SomethingSecret",
            sign(&claims, "refresh+jwt", b"SomethingSecret"),
        ),
        (
            "SuperSecretKey",
            sign(&claims, "refresh+jwt", b"SuperSecretKey"),
        ),
        ("alg none", unsigned(&claims)),
        ("access token as refresh token", access),
        ("wrong typ", sign(&claims, "JWT", REFRESH_SECRET.as_bytes())),
        (
            "sub of another user",
            sign(&crossed, "refresh+jwt", REFRESH_SECRET.as_bytes()),
        ),
        ("truncated", token[..token.len() - 5].to_owned()),
        ("padded", format!("{token}AAAA")),
    ];
    let touches = app.store().stats().touches();
    for (what, token) in forged {
        let (status, body) = app.refresh(&token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_invalid_refresh_token(status, &body);
    }
    assert_eq!(
        app.store().stats().touches(),
        touches,
        "a forged token reached the store"
    );
    // The genuine tokens still work.
    assert_eq!(app.refresh(&token).await.0, 200);
    assert_eq!(app.refresh(&victim_token).await.0, 200);
}

#[actix_web::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app().await;
    let (_, token) = user_with_token(&app, "oscar").await;
    let mut claims = support::claims(&token);
    claims["exp"] = json!(claims["iat"].as_i64().unwrap() - 10);
    let (status, _) = app
        .refresh(&sign(&claims, "refresh+jwt", REFRESH_SECRET.as_bytes()))
        .await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn malformed_requests_get_a_4xx_in_strapis_body() {
    let app = spawn_app().await;
    let json = Some("application/json");
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("/api/auth/local", json, b"{\"identifier\":".to_vec()),
        ("/api/auth/local", json, b"[1,2,3]".to_vec()),
        ("/api/auth/local", json, b"\"just a string\"".to_vec()),
        ("/api/auth/local", json, b"\xff\xfe\xfd".to_vec()),
        ("/api/auth/local", json, Vec::new()),
        ("/api/auth/local", None, Vec::new()),
        (
            "/api/auth/local",
            Some("text/plain"),
            b"identifier=x".to_vec(),
        ),
        (
            "/api/auth/local",
            json,
            br#"{"identifier":123,"password":["x"]}"#.to_vec(),
        ),
        ("/api/auth/local", json, br#"{"identifier":"a"}"#.to_vec()),
        (
            "/api/auth/local",
            json,
            br#"{"identifier":{"$ne":null},"password":"x"}"#.to_vec(),
        ),
        (
            "/api/auth/local/register",
            json,
            br#"{"username":"x","email":"x@y.z","password":"pw123456","admin":true}"#.to_vec(),
        ),
        (
            "/api/auth/local/register",
            json,
            br#"{"username":7,"email":null,"password":false}"#.to_vec(),
        ),
        (
            "/api/auth/local/refresh",
            json,
            br#"{"refreshToken":{"a":1}}"#.to_vec(),
        ),
        (
            "/api/auth/local/refresh",
            Some("application/x-www-form-urlencoded"),
            b"refreshToken=%ZZ".to_vec(),
        ),
        (
            "/api/auth/local",
            json,
            format!(
                "{{\"identifier\":{}}}",
                "[".repeat(5000) + &"]".repeat(5000)
            )
            .into_bytes(),
        ),
    ];
    for (path, content_type, body) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let (status, answer) = app.post_raw(path, content_type, body).await;
        assert!(
            (400..500).contains(&status),
            "{path} {content_type:?} {shown}: {status} {answer}"
        );
        assert_eq!(
            answer["error"]["status"], status,
            "{path} {shown}: {answer}"
        );
        assert!(answer["error"]["name"].is_string() && answer["error"]["message"].is_string());
        assert!(answer["data"].is_null());
    }
    let (status, body) = app.post_raw("/api/auth/local", None, Vec::new()).await;
    assert_error(status, &body, 400, "ValidationError", "2 errors occurred");
}

#[actix_web::test]
async fn a_one_mebibyte_body_is_a_413() {
    let app = spawn_app().await;
    let big = json!({"identifier": "x".repeat(1 << 20), "password": "y"}).to_string();
    let (status, body) = app
        .post_raw("/api/auth/local", Some("application/json"), big)
        .await;
    assert_error(
        status,
        &body,
        413,
        "PayloadTooLargeError",
        "request entity too large",
    );
    // Without a declared length (chunked), the limit still holds.
    let chunks =
        futures::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![b' '; 32 * 1024])));
    let response = app
        .client
        .post(app.url("/api/auth/local"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[actix_web::test]
async fn an_unknown_route_is_strapis_404_and_a_wrong_method_its_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/auth/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert_error(404, &body, 404, "NotFoundError", "Not Found");
    let response = app
        .client
        .get(app.url("/api/auth/local"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_error(
        405,
        &body,
        405,
        "MethodNotAllowedError",
        "Method Not Allowed",
    );
}

#[actix_web::test]
async fn a_body_that_never_arrives_times_out_with_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /api/auth/local HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ide")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&answer).contains("RequestTimeoutError") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 30 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"name\":\"RequestTimeoutError\""), "{text}");
}
