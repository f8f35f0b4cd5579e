//! The ledger for auditors, behind the admin token: the latest signed checkpoint, and
//! inclusion and consistency proofs to check against checkpoints kept elsewhere.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::admin::{authorize, query};
use super::errors::{ApiError, ErrorBody, ReadUnavailable};
use crate::ledger::checkpoints::CheckpointError;
use crate::ledger::proofs::{self, ConsistencyProof, InclusionProof, ProveError};

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "ledger");
    ApiError::unavailable()
}

fn failed(error: ProveError) -> ApiError {
    match error {
        ProveError::NoEvent(_) | ProveError::NotInTree { .. } | ProveError::BeyondTree { .. } => {
            ApiError::not_found_message(error.to_string())
        }
        ProveError::Proof(_) | ProveError::Store(_) => unavailable(error),
    }
}

/// A whole-number parameter, at least `min`.
fn number(query: &HashMap<String, String>, key: &str, min: u64) -> Result<Option<u64>, ApiError> {
    query
        .get(key)
        .map(|text| {
            text.parse::<u64>()
                .ok()
                .filter(|n| *n >= min && *n <= i64::MAX as u64)
                .ok_or_else(|| {
                    ApiError::validation(format!("{key} must be a whole number of at least {min}"))
                })
        })
        .transpose()
}

fn required(value: Option<u64>, key: &str) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::validation(format!("{key} is required")))
}

/// `GET /api/admin/ledger/checkpoint`: the latest checkpoint, made first if the log grew.
#[utoipa::path(
    get,
    path = "/api/admin/ledger/checkpoint",
    tag = "admin",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The latest signed checkpoint (C2SP tlog-checkpoint, a signed note)", content_type = "text/plain", body = String),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn checkpoint(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let (_, note) = state
        .ledger
        .checkpoint()
        .await
        .map_err(|e: CheckpointError| unavailable(e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(note))
}

/// `GET /api/admin/ledger/proof/inclusion?position=&size=`
#[utoipa::path(
    get,
    path = "/api/admin/ledger/proof/inclusion",
    tag = "admin",
    security(("adminToken" = [])),
    params(
        ("position" = i64, Query, minimum = 1, description = "The event's position in the log"),
        ("size" = Option<i64>, Query, minimum = 1, description = "The tree size to prove against, e.g. a kept checkpoint's; the whole tree by default"),
    ),
    responses(
        (status = 200, description = "The event and its audit path (hex hashes, leaf to root)", body = InclusionProof),
        (status = 400, description = "A missing or malformed parameter", body = ErrorBody),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such event, or not in a tree of that size; or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn inclusion(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let query = query(&req)?;
    let position = required(number(&query, "position", 1)?, "position")? as i64;
    let size = number(&query, "size", 1)?;
    let proof = proofs::inclusion(state.ledger.ledger().as_ref(), position, size)
        .await
        .map_err(failed)?;
    Ok(HttpResponse::Ok().json(proof))
}

/// `GET /api/admin/ledger/proof/consistency?from=&to=`
#[utoipa::path(
    get,
    path = "/api/admin/ledger/proof/consistency",
    tag = "admin",
    security(("adminToken" = [])),
    params(
        ("from" = i64, Query, minimum = 0, description = "The older tree size (a kept checkpoint's)"),
        ("to" = i64, Query, minimum = 0, description = "The newer tree size, at least `from`"),
    ),
    responses(
        (status = 200, description = "Both roots and the proof (hex hashes)", body = ConsistencyProof),
        (status = 400, description = "A missing or malformed parameter, or `from` above `to`", body = ErrorBody),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "`to` beyond the tree; or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn consistency(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let query = query(&req)?;
    let from = required(number(&query, "from", 0)?, "from")?;
    let to = required(number(&query, "to", 0)?, "to")?;
    if from > to {
        return Err(ApiError::validation("from must not be above to"));
    }
    let proof = proofs::consistency(state.ledger.ledger().as_ref(), from, to)
        .await
        .map_err(failed)?;
    Ok(HttpResponse::Ok().json(proof))
}
