//! Who asks: the caller a use case records (address, user agent, request ids) and the
//! bearer token, read off the request.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use tokenledger_domain::Client;

use super::{AppState, client_ip};
use crate::store::{Actor, EventMetadata};
use crate::use_cases::Caller;

/// The ids of one request. Ours, a new UUID v7, is the request's id everywhere: in its log
/// lines, in the events it causes and in the answer's `X-Request-Id`, so that what a client
/// reports can be found in our log. The client's `X-Request-Id` is kept beside it, never in its
/// place: taken as ours, it let a client write whatever it liked into the audit trail's
/// request id, or give its requests another client's id.
#[derive(Clone, Debug)]
pub struct RequestId {
    pub ours: String,
    pub client: Option<String>,
}

/// The caller of a request: recorded with the events it causes.
pub fn caller(req: &HttpRequest, state: &AppState) -> Caller {
    let chain = client_ip::forwarded_chain(req.headers());
    let address = client_ip::client_ip(
        req.peer_addr().map(|addr| addr.ip()),
        chain.as_deref(),
        &state.config.server.trusted_proxies,
    );
    let ip = address.map(|ip| ip.to_string());
    // Lossy: a user agent with one non-ASCII byte must not vanish from the record.
    let user_agent = req.headers().get(header::USER_AGENT).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(512)
            .collect::<String>()
    });
    // Made here when the middleware did not run (a handler called on its own).
    let id = req.extensions().get::<RequestId>().cloned();
    let (request_id, client_request_id) = match id {
        Some(id) => (id.ours, id.client),
        None => (state.app.ids.new_id().to_string(), None),
    };
    Caller {
        ip: address,
        client: Client {
            ip: ip.clone(),
            user_agent: user_agent.clone(),
        },
        metadata: EventMetadata {
            request_id: Some(request_id),
            client_request_id,
            ip,
            user_agent,
            actor: Actor::User,
            erased: None,
        },
    }
}

/// The bearer token of `Authorization`, if there is one. Read as Strapi's users-permissions
/// reads it: the value split at whitespace must be exactly `Bearer <token>` (any case);
/// anything else is no token at all, so the request is the public role's (a 403), not a bad
/// token's (a 401).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split_ascii_whitespace();
    let (scheme, token) = (parts.next()?, parts.next()?);
    (scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none()).then_some(token)
}
