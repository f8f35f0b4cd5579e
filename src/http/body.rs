//! Request bodies as Strapi accepts them: JSON or `application/x-www-form-urlencoded`, at most
//! 64 KiB, always an object. Whatever arrives, the handler gets a map or the client a 4xx.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::errors::ApiError;

pub const BODY_LIMIT: usize = 64 * 1024;
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body parsed into a JSON object (empty when there is no body).
pub struct Body(pub Map<String, Value>);

impl Body {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

enum Kind {
    Json,
    Form,
    Other(String),
}

fn kind(req: &HttpRequest) -> Kind {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        // curl -d without a type, or a hand-written client: accept JSON as the common case.
        return Kind::Json;
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Kind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        Kind::Form
    } else {
        Kind::Other(essence)
    }
}

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let kind = kind(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > BODY_LIMIT) {
                return Err(ApiError::payload_too_large());
            }
            let read = async {
                let mut bytes = BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|_| ApiError::validation("The request body could not be read"))?;
                    if bytes.len() + chunk.len() > BODY_LIMIT {
                        return Err(ApiError::payload_too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(bytes)
            };
            // A client that announces a body and never sends it must not hold a connection.
            let bytes = tokio::time::timeout(BODY_TIMEOUT, read)
                .await
                .map_err(|_| ApiError::request_timeout())??;
            parse(kind, &bytes).map(Body)
        })
    }
}

fn parse(kind: Kind, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match kind {
        Kind::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::validation(
                "The request body must be a JSON object",
            )),
            Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::validation(format!(
                "Invalid JSON in the request body: {e}"
            ))),
            Err(_) => Err(ApiError::validation(
                "The request body is not valid UTF-8 JSON",
            )),
        },
        Kind::Form => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
                .map_err(|_| ApiError::validation("The request body is not a valid form"))?;
            Ok(pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect())
        }
        Kind::Other(essence) => Err(ApiError::validation(format!(
            "Unsupported content type {essence:?}: send application/json or application/x-www-form-urlencoded"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_and_empty_bodies_become_objects() {
        let map = parse(Kind::Json, br#"{"identifier":"a","password":"b"}"#).unwrap();
        assert_eq!(map["identifier"], "a");
        let form = parse(Kind::Form, b"identifier=a%40b.c&requestRefresh=true").unwrap();
        assert_eq!(form["identifier"], "a@b.c");
        assert_eq!(form["requestRefresh"], "true");
        assert!(parse(Kind::Json, b"  ").unwrap().is_empty());
    }

    #[test]
    fn anything_else_is_a_validation_error() {
        for (kind, body) in [
            (Kind::Json, &b"{\"a\":"[..]),
            (Kind::Json, b"[1,2]"),
            (Kind::Json, b"\xff\xfe"),
            (Kind::Other("text/plain".into()), b"hello"),
        ] {
            let error = parse(kind, body).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.name),
                (400, "ValidationError")
            );
        }
    }
}
