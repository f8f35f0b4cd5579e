//! The audit page at `/admin`: one HTML file, one script, one stylesheet, compiled into the
//! binary so that the service needs no asset folder and the page no build step. The files
//! themselves hold no secret; the page asks for the admin token and sends it to the admin API
//! (`admin.rs`), which is where the guard is. Without `ADMIN_API_TOKEN` the page does not
//! exist either (404), like the API it drives.
//!
//! The page obeys the service's Content-Security-Policy (`security_headers`): no inline script,
//! no `on*` attributes, nothing from another origin.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;
use super::errors::{ApiError, ErrorBody};

const INDEX: &str = include_str!("admin_page/index.html");
const SCRIPT: &str = include_str!("admin_page/app.js");
const STYLE: &str = include_str!("admin_page/app.css");

fn serve(
    state: &AppState,
    content_type: &'static str,
    body: &'static str,
) -> Result<HttpResponse, ApiError> {
    if state.config.admin.api_token.is_none() {
        return Err(ApiError::not_found());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body))
}

/// The audit page.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "admin",
    responses(
        (status = 200, description = "The audit page; it asks for the admin token", content_type = "text/html", body = String),
        (status = 404, description = "No `ADMIN_API_TOKEN` configured", body = ErrorBody),
    )
)]
pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&state, "text/html; charset=utf-8", INDEX)
}

/// The page's script and stylesheet.
#[utoipa::path(
    get,
    path = "/admin/{file}",
    tag = "admin",
    params(("file" = String, Path, description = "`app.js` or `app.css`", example = "app.js")),
    responses(
        (status = 200, description = "The file", content(("text/javascript"), ("text/css"))),
        (status = 404, description = "No such file, or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
    )
)]
pub async fn asset(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match file.as_str() {
        "app.js" => serve(&state, "text/javascript; charset=utf-8", SCRIPT),
        "app.css" => serve(&state, "text/css; charset=utf-8", STYLE),
        _ => Err(ApiError::not_found_message("No such file")),
    }
}
